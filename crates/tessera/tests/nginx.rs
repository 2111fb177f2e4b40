//! A real nginx (`auth_request`) in front of a tiny upstream, with Tessera deciding: the shipped example
//! configuration `deploy/nginx/tessera.conf`, run as is but for its addresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{tessera, Server, PASSWORD};

mod common;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("nginx is not installed: `apt-get install nginx` (scripts/test installs it)"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An upstream that answers 200 with the identity headers it received, and counts requests.
fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut seen = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_lowercase();
                if lower.starts_with("x-user-id") || lower.starts_with("x-user-roles") || lower.starts_with("x-scope") {
                    seen.push(line.trim().to_owned());
                }
            }
            let body = seen.join("\n");
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    (addr, hits)
}

fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = bearer.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: app\r\n{auth}x-user-id: forged-by-client\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head[9..12].parse().unwrap(), head.to_owned(), body.to_owned())
}

fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nginx_auth_request_lets_only_valid_tokens_reach_the_upstream() {
    let nginx = nginx_binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut add = tessera(d)
        .args(["user", "add", "alice", "--role", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(add.wait().unwrap().success());

    let server = Server::start(d);
    let tessera_addr = server.addr;

    let (app_addr, hits) = upstream();
    let nginx_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let site = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nginx/tessera.conf"))
        .unwrap()
        .replace("server 127.0.0.1:8080;", &format!("server {tessera_addr};"))
        .replace("server 127.0.0.1:3000;", &format!("server {app_addr};"))
        .replace("listen 127.0.0.1:8000;", &format!("listen {nginx_addr};"));
    std::fs::write(d.join("site.conf"), site).unwrap();
    let p = d.display();
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "daemon off; master_process off; worker_processes 1; pid {p}/nginx.pid; error_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi;\n\
             uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi; include {p}/site.conf; }}\n"
        ),
    )
    .unwrap();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _nginx = Killed(child);
    wait_for(nginx_addr);

    let login = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
    let mut stream = TcpStream::connect(tessera_addr).unwrap();
    write!(stream, "POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{login}", login.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["access_token"].as_str().unwrap().to_owned();

    let (status, _, body) = get(nginx_addr, "/orders/7", Some(&token));
    assert_eq!(status, 200);
    assert!(body.contains("X-User-ID: alice"), "the upstream sees Tessera's identity, not the client's: {body}");
    assert!(!body.contains("forged-by-client"), "{body}");
    assert!(body.contains("X-User-Roles: admin"), "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    for (bearer, what) in [
        (None, "no token"),
        (Some("garbage"), "a garbage token"),
        (Some(&token[..token.len() - 4]), "a broken signature"),
    ] {
        let (status, head, _) = get(nginx_addr, "/orders/7", bearer);
        assert_eq!(status, 401, "{what}");
        assert!(head.to_lowercase().contains("www-authenticate: bearer"), "{what}: {head}");
    }
    // A revoked token: log the session out, then it never reaches the upstream either.
    let mut stream = TcpStream::connect(tessera_addr).unwrap();
    write!(stream, "POST /auth/logout HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 204"));
    assert_eq!(get(nginx_addr, "/orders/7", Some(&token)).0, 401);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no refused request reached the upstream");
}
