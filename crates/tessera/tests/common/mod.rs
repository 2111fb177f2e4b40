//! Running the `tessera` binary in tests: a clean environment, a user, a server on a free port, raw HTTP.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::panic)] // test helpers: a panic is a failed test

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub mod store_faults;

pub const PASSWORD: &str = "correct horse battery";

pub fn tessera(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command.current_dir(dir);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TESSERA_")) {
        command.env_remove(name);
    }
    command
}

pub fn add_user(dir: &Path, name: &str) {
    with_password(dir, &["user", "add", name], PASSWORD);
}

/// Runs `tessera ARGS --password-stdin` with `password` on standard input; panics unless it succeeds.
pub fn with_password(dir: &Path, args: &[&str], password: &str) {
    let mut child =
        tessera(dir).args(args).arg("--password-stdin").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, |_| {})
    }

    /// `tessera serve` on a free port, logging at `rust_log` to the file `log`.
    pub fn start_logging(dir: &Path, rust_log: &str, log: &Path) -> Self {
        Self::start_with(dir, |command| {
            command.env("RUST_LOG", rust_log).stderr(std::fs::File::create(log).unwrap());
        })
    }

    /// `tessera serve` on a free port, its command changed by `configure` first (the environment, where its log
    /// goes).
    pub fn start_with(dir: &Path, configure: impl FnOnce(&mut Command)) -> Self {
        let (child, line) = serve(dir, "127.0.0.1:0", configure);
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected: {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }
}

/// Starts `tessera serve --listen LISTEN` in `dir`, logging warnings to nowhere unless `configure` changes its
/// command, and waits for the first line it prints: the process and that line.
pub fn serve(dir: &Path, listen: &str, configure: impl FnOnce(&mut Command)) -> (Child, String) {
    let mut command = tessera(dir);
    command.args(["serve", "--listen", listen]).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::null());
    configure(&mut command);
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    request(addr, method, path, &format!("content-type: {content_type}\r\n"), body)
}

/// One HTTP/1.1 request with extra header lines (each ending in CRLF) on a fresh connection: (status, body).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.get(9..12).and_then(|s| s.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).ok_or(std::io::ErrorKind::InvalidData)?;
    Ok((status, body))
}

/// Waits until `condition` holds, for changes a running server picks up from the store within its reload
/// interval (250 ms by default); panics naming `what` after 10 s.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// The claims of a JWT, decoded without verification.
pub fn claims(token: &str) -> serde_json::Value {
    segment(token, 1)
}

/// The `kid` a token's header names.
pub fn kid_of(token: &str) -> String {
    segment(token, 0)["kid"].as_str().unwrap().to_owned()
}

/// Segment `index` of a compact token, decoded as JSON (unverified: tests only look).
fn segment(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).unwrap();
    let json = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The `kid`s a server publishes in its JWKS.
pub fn published_kids(addr: SocketAddr) -> Vec<String> {
    let (_, body) = http(addr, "GET", "/.well-known/jwks.json", "text/plain", "").unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
}

/// A login of `user` with the refresh token in the body: that refresh token.
pub fn login_for_refresh_token(addr: SocketAddr, user: &str) -> String {
    let body =
        serde_json::json!({"username": user, "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    let (status, body) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["refresh_token"].as_str().unwrap().to_owned()
}

/// The refresh grant for `token`: the status and the successor refresh token.
pub fn refresh(addr: SocketAddr, token: &str) -> std::io::Result<(u16, Option<String>)> {
    let (status, body) = http(
        addr,
        "POST",
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        &format!("grant_type=refresh_token&refresh_token={token}"),
    )?;
    let next = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
    Ok((status, next))
}

/// Reads a response's head (up to the blank line) from `stream`.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}
