//! A real nginx (`auth_request`) in front of a tiny upstream, with Tessera deciding: the shipped example
//! configuration `deploy/nginx/tessera.conf`, run as is but for its addresses, and a Tessera whose route rules
//! protect `/admin`. Besides valid and invalid tokens, a hostile client: forwarded headers it injects to name
//! another request, and spellings of `/admin` meant to slip past the rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{tessera, Server, PASSWORD};
use tempfile::TempDir;

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

/// An upstream that answers 200 with the identity headers it received (and the request line), and counts
/// requests.
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
                let identity = ["x-user-id", "x-user-roles", "x-scope", "x-token-issuer", "x-external-subject"];
                if seen.is_empty() || identity.iter().any(|name| lower.starts_with(name)) {
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

/// Sends `request` (the request line and header lines, each ending in CRLF, without the final empty line) and
/// answers (status, head, body).
fn send(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "{request}host: app\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head[9..12].parse().unwrap(), head.to_owned(), body.to_owned())
}

fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let auth = bearer.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    send(addr, &format!("GET {path} HTTP/1.1\r\n{auth}x-user-id: forged-by-client\r\nx-token-issuer: forged\r\n"))
}

fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tessera as the shipped example documents it: nginx's headers only, an audience required in the auth URL,
/// and `/admin` (in any case) needing scope `admin`. The issuer is explicit, so that tokens the command line
/// issues name the one the server verifies.
const TESSERA_TOML: &str = r#"
issuer = "https://tessera.test"

[gateway]
forwarded_headers = "nginx"
require_audience = true

[[gateway.routes]]
path_prefix = "/admin"
case_insensitive = true
scopes = ["admin"]
"#;

/// Tessera (with user alice, role admin), the upstream, and nginx running the shipped configuration.
struct Gateway {
    addr: SocketAddr,
    tessera: Server,
    hits: Arc<AtomicUsize>,
    dir: TempDir,
    _nginx: Killed,
}

fn gateway() -> Gateway {
    let nginx = nginx_binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tessera.toml"), TESSERA_TOML).unwrap();
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
    let nginx = Killed(child);
    wait_for(nginx_addr);
    Gateway { addr: nginx_addr, tessera: server, hits, dir, _nginx: nginx }
}

impl Gateway {
    /// Alice's access token from a login (scope: none).
    fn login(&self) -> String {
        let login = serde_json::json!({"username": "alice", "password": PASSWORD}).to_string();
        let mut stream = TcpStream::connect(self.tessera.addr).unwrap();
        write!(stream, "POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{login}", login.len()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str::<serde_json::Value>(body).unwrap()["access_token"].as_str().unwrap().to_owned()
    }

    /// An access token for alice with `scope`, issued by the command line.
    fn token_with_scope(&self, scope: &str) -> String {
        let output =
            tessera(self.dir.path()).args(["token", "issue", "--sub", "alice", "--scope", scope]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[test]
fn nginx_auth_request_lets_only_valid_tokens_reach_the_upstream() {
    let gateway = gateway();
    let (nginx_addr, tessera_addr) = (gateway.addr, gateway.tessera.addr);
    let token = gateway.login();

    let (status, _, body) = get(nginx_addr, "/orders/7", Some(&token));
    assert_eq!(status, 200);
    assert!(body.contains("X-User-ID: alice"), "the upstream sees Tessera's identity, not the client's: {body}");
    assert!(!body.contains("forged"), "{body}");
    assert!(body.contains("X-User-Roles: admin"), "{body}");
    assert!(body.contains("X-Token-Issuer: https://tessera.test"), "{body}");
    assert!(!body.to_lowercase().contains("x-external-subject"), "a local user has no external subject: {body}");
    assert_eq!(gateway.hits(), 1);

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
    assert_eq!(gateway.hits(), 1, "no refused request reached the upstream");
}

#[test]
fn nginx_refuses_injected_forwarded_headers_and_every_spelling_of_a_protected_path() {
    let gateway = gateway();
    let user = gateway.login();
    let auth = format!("authorization: Bearer {user}\r\n");

    // The attack of issue 15: the client names a harmless request in every forwarded header it can think of.
    let injected = format!(
        "DELETE /admin/users/7 HTTP/1.1\r\n{auth}x-forwarded-uri: /public\r\nx-forwarded-method: GET\r\n\
         x-original-uri: /public\r\nx-original-method: GET\r\nx-forwarded-prefix: /public\r\n"
    );
    assert_eq!(send(gateway.addr, &injected).0, 403, "the rule for /admin applies to what nginx received");
    assert_eq!(gateway.hits(), 0);

    // Spellings the upstream reads as /admin/...: the rule applies to each. nginx passes the raw URI on, so an
    // upstream that does not remove dot segments routes `/admin/../public` under /admin: that rule applies too.
    let admin_spellings = [
        "/admin/users",
        "/%61dmin/users",
        "/x/../admin/users",
        "//admin/users",
        "/admin/./users",
        "/ADMIN/users",
        "/admin/../public",
        "/admin/%2e%2e/public",
    ];
    for path in admin_spellings {
        assert_eq!(get(gateway.addr, path, Some(&user)).0, 403, "{path}");
    }
    // Spellings no normalisation makes unambiguous: refused by nginx or by Tessera, 400 either way.
    for path in
        ["/admin%2Fusers", "/admin%5Cusers", "/admin\\users", "/admin/users%00", "/admin/%zz", "/../admin/users"]
    {
        assert_eq!(get(gateway.addr, path, Some(&user)).0, 400, "{path}");
    }
    assert_eq!(gateway.hits(), 0, "no refused request reached the upstream");

    // The same spellings with the scope the rule asks for do reach it, and it sees them as sent.
    let admin = gateway.token_with_scope("admin");
    for path in admin_spellings {
        let (status, _, body) = get(gateway.addr, path, Some(&admin));
        assert_eq!(status, 200, "{path}");
        assert!(body.starts_with(&format!("GET {path} HTTP/1.")), "{path}: {body}");
    }
    assert_eq!(gateway.hits(), admin_spellings.len());
    assert_eq!(get(gateway.addr, "/administrator", Some(&user)).0, 200, "prefixes match whole segments");
}
