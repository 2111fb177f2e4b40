//! `tessera serve` stopped hard and softly: SIGKILL in the middle of a refresh load, or of logins and logouts, loses
//! nothing acknowledged; SIGTERM finishes the requests in flight, then exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{add_user, eventually, http, login_for_refresh_token, read_head, refresh, request, Server, PASSWORD};
use serde_json::Value;

mod common;

#[test]
fn acknowledged_refreshes_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    let mut server = Server::start(d);
    let addr = server.addr;
    let jwks_before = http(addr, "GET", "/.well-known/jwks.json", "text/plain", "").unwrap().1;

    const SESSIONS: usize = 8;
    let latest: Arc<Vec<Mutex<String>>> =
        Arc::new((0..SESSIONS).map(|_| Mutex::new(login_for_refresh_token(addr, "alice"))).collect());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (latest, acknowledged, stop) = (Arc::clone(&latest), Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let token = latest[i].lock().unwrap().clone();
                    match refresh(addr, &token) {
                        Ok((200, Some(next))) => {
                            *latest[i].lock().unwrap() = next;
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, _)) => panic!("session {i}: refresh answered {status} before the kill"),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server mid-flight: no shutdown, no flush.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.load(Ordering::SeqCst) < 1_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for worker in workers {
        worker.join().unwrap();
    }
    let acked = acknowledged.load(Ordering::SeqCst);
    assert!(acked >= 1_000, "the load ran ({acked} refreshes acknowledged)");
    drop(server);

    let restarted = Server::start(d);
    // Every session's last acknowledged refresh token still works: its rotation was committed before the answer.
    // (If a later rotation committed but its answer was lost in the kill, the acknowledged token is the previous
    // generation and the grace window hands out that same successor.)
    for (i, token) in latest.iter().enumerate() {
        let token = token.lock().unwrap().clone();
        let (status, next) = refresh(restarted.addr, &token).unwrap();
        assert_eq!(status, 200, "session {i}: the last acknowledged refresh token was lost");
        assert_eq!(refresh(restarted.addr, &next.unwrap()).unwrap().0, 200, "session {i}: its successor is live");
    }
    // Users and keys survived too.
    assert_eq!(http(restarted.addr, "GET", "/.well-known/jwks.json", "text/plain", "").unwrap().1, jwks_before);
    login_for_refresh_token(restarted.addr, "alice");
}

/// SIGTERM: requests in flight are answered in full, then the server exits cleanly and stops listening. Each login
/// is provably in flight when the signal is handled: the server has read its head and its handler is waiting for
/// the body (it asked for it with `100 Continue`), and the body is sent only once the server logged that it is
/// shutting down.
#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice");
    let log = dir.path().join("server.log");
    let mut server = Server::start_logging(dir.path(), "info", &log);
    let addr = server.addr;
    let body = format!(r#"{{"username":"alice","password":"{PASSWORD}","refresh_token_delivery":"body"}}"#);
    let in_flight: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            write!(
                stream,
                "POST /auth/login HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 expect: 100-continue\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            let interim = read_head(&mut stream);
            assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim:?}");
            stream
        })
        .collect();
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    eventually("the server begins to shut down", || {
        std::fs::read_to_string(&log).unwrap().contains("shutting down: finishing requests in flight")
    });
    assert!(server.child.try_wait().unwrap().is_none(), "exited with requests in flight");
    for (i, mut stream) in in_flight.into_iter().enumerate() {
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "login {i} in flight at SIGTERM: {response:?}");
        assert!(response.contains("access_token"), "login {i} answered in full");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(TcpStream::connect(addr).is_err(), "still listening after exit");
}

/// Logins and logouts acknowledged before a SIGKILL all hold after the restart: each acknowledged login's session
/// refreshes, each acknowledged logout's session is over (refresh and access token refused).
#[test]
fn acknowledged_logins_and_logouts_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A fixed issuer (the restarted server listens elsewhere), and room for a stream of logins from one address
    // and for the refused refreshes of the logged-out sessions.
    std::fs::write(
        d.join("tessera.toml"),
        "issuer = \"http://tessera.test\"\n[rate_limits]\nlogin_per_ip = 100000\nfailed_refresh_per_ip = 100000\n\
         failed_refresh_per_user = 100000\n",
    )
    .unwrap();
    add_user(d, "alice");
    let mut server = Server::start(d);
    let addr = server.addr;
    // (access token, refresh token) of sessions whose login, or whose logout, was acknowledged.
    let (logged_in, logged_out) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let body =
                    serde_json::json!({"username": "alice", "password": PASSWORD, "refresh_token_delivery": "body"})
                        .to_string();
                // Every other session is logged out again at once.
                for turn in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok((200, login)) = http(addr, "POST", "/auth/login", "application/json", &body) else { break };
                    let login: Value = serde_json::from_str(&login).unwrap();
                    let session = (
                        login["access_token"].as_str().unwrap().to_owned(),
                        login["refresh_token"].as_str().unwrap().to_owned(),
                    );
                    if turn % 2 == 0 {
                        logged_in.lock().unwrap().push(session);
                        continue;
                    }
                    let bearer = format!("authorization: Bearer {}\r\n", session.0);
                    match request(addr, "POST", "/auth/logout", &bearer, "") {
                        Ok((204, _)) => logged_out.lock().unwrap().push(session),
                        _ => break, // the server is gone: this logout may or may not have been made
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while logged_out.lock().unwrap().len() < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.child.kill().unwrap(); // SIGKILL, with logins and logouts in flight
        server.child.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
    });
    drop(server);
    let (logged_in, logged_out) = (logged_in.into_inner().unwrap(), logged_out.into_inner().unwrap());
    assert!(logged_out.len() >= 20, "the load ran ({} logouts acknowledged)", logged_out.len());

    let restarted = Server::start(d);
    let verify = |token: &str| {
        request(restarted.addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
    };
    for (i, (access, refresh_token)) in logged_out.iter().enumerate() {
        assert_eq!(refresh(restarted.addr, refresh_token).unwrap().0, 400, "logout {i} was lost: it refreshes");
        assert_eq!(verify(access), 401, "logout {i} was lost: its access token verifies");
    }
    for (i, (access, refresh_token)) in logged_in.iter().enumerate() {
        assert_eq!(verify(access), 200, "login {i}: its access token");
        assert_eq!(refresh(restarted.addr, refresh_token).unwrap().0, 200, "login {i} was lost");
    }
}
