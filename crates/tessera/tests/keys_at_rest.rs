//! Keys at rest through the `tessera` binary: a shared store needs a master key, the MAC keys of refresh tokens
//! rotate with no session lost, an unsealed entry under a master key is refused, and the data directory is private.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use common::{add_user, http, serve, tessera, Server, PASSWORD};
use serde_json::Value;

mod common;

fn login(addr: SocketAddr) -> String {
    let body =
        serde_json::json!({"username": "alice", "password": PASSWORD, "refresh_token_delivery": "body"}).to_string();
    let (status, body) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["refresh_token"].as_str().unwrap().to_owned()
}

/// The refresh grant: the status and the successor.
fn refresh(addr: SocketAddr, token: &str) -> (u16, Option<String>) {
    let body = format!("grant_type=refresh_token&refresh_token={token}&client_id=tessera");
    let (status, body) = http(addr, "POST", "/oauth2/token", "application/x-www-form-urlencoded", &body).unwrap();
    (status, serde_json::from_str::<Value>(&body).ok().and_then(|v| v["refresh_token"].as_str().map(str::to_owned)))
}

/// The key id a refresh token names (after its version byte).
fn key_id(token: &str) -> u8 {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token).unwrap()[1]
}

/// Runs `tessera ARGS` with `env`: (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = tessera(dir).args(args).envs(env.iter().copied()).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[test]
fn a_shared_store_refuses_to_start_without_a_master_key_and_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Unreachable on purpose: the refusal comes before any connection is tried.
    for store in [
        "backend = \"postgres\"\npostgres_url = \"postgres://tessera@127.0.0.1:1/tessera\"",
        "backend = \"redis\"\nredis_urls = [\"redis://127.0.0.1:1\"]",
        "backend = \"tiered\"\npostgres_url = \"postgres://tessera@127.0.0.1:1/tessera\"\nredis_urls = [\"redis://127.0.0.1:1\"]",
    ] {
        std::fs::write(d.join("tessera.toml"), format!("issuer = \"http://tessera.test\"\n[store]\n{store}\n")).unwrap();
        for args in [&["serve", "--listen", "127.0.0.1:0"][..], &["keys", "list"], &["keys", "rotate-secrets"]] {
            let (code, _, stderr) = run(d, args, &[]);
            assert_ne!(code, 0, "{args:?} on {store}");
            for needle in ["needs a master key", "tessera keys master-key", "TESSERA_MASTER_KEY", "keys.master_key_file"]
            {
                assert!(stderr.contains(needle), "{args:?} on {store}: {needle:?} missing from {stderr}");
            }
            assert!(!stderr.contains("connecting to"), "checked before connecting: {stderr}");
        }
    }
    // The embedded store keeps working without one.
    std::fs::remove_file(d.join("tessera.toml")).unwrap();
    let (code, _, stderr) = run(d, &["keys", "list"], &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn rotating_the_secrets_while_a_session_lives_loses_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    let server = Server::start(d);
    let mut token = login(server.addr);
    let first_key = key_id(&token);

    let (code, stdout, stderr) = run(d, &["keys", "rotate-secrets", "--now"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("refresh-token-mac#"), "{stdout}");

    // Every refresh succeeds, before and after the server picks the rotation up; its tokens then name the new key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while key_id(&token) == first_key {
        assert!(std::time::Instant::now() < deadline, "the server never issued with the new key");
        let (status, next) = refresh(server.addr, &token);
        assert_eq!(status, 200, "a refresh after the rotation was refused");
        token = next.unwrap();
    }
    let (status, _) = refresh(server.addr, &token);
    assert_eq!(status, 200);
}

#[test]
fn unsealed_entries_are_refused_under_a_master_key_until_sealed_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    // Keys made before a master key was set: unsealed.
    let (code, _, stderr) = run(d, &["keys", "rotate"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let server = Server::start(d);
    let token = login(server.addr);
    drop(server);
    let (_, master, _) = run(d, &["keys", "master-key"], &[]);
    let with_master = [("TESSERA_MASTER_KEY", master.trim())];

    // With the master key, nothing seals them in passing: the server refuses to start and says what to run.
    let (code, _, stderr) = run(d, &["serve", "--listen", "127.0.0.1:0"], &with_master);
    assert_ne!(code, 0);
    assert!(stderr.contains("UNSEALED") && stderr.contains("tessera keys seal"), "{stderr}");
    let (code, stdout, stderr) = run(d, &["keys", "seal"], &with_master);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("keys.json") && stdout.contains("secrets.json"), "{stdout}");
    let sealed = std::fs::read_to_string(d.join("tessera-data/secrets.json")).unwrap();
    assert!(sealed.contains("aes-256-gcm") && !sealed.contains("\"none\""), "{sealed}");

    // Sealed, the same keys serve: the session from before still refreshes.
    let server = Server::start_with(d, |command| {
        command.envs(with_master);
    });
    let addr = server.addr;
    let (status, next) = refresh(addr, &token);
    assert_eq!(status, 200);

    // A MAC key planted in clear while it runs is refused: the session goes on with the genuine key.
    let path = d.join("tessera-data/secrets.json");
    let mut secrets: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for version in secrets["secrets"]["refresh-token-mac"]["versions"].as_array_mut().unwrap() {
        version["sealing"] = "none".into();
        version["value"] = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc".into();
    }
    std::fs::write(&path, secrets.to_string()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600)); // past two reload intervals
    let (status, _) = refresh(addr, &next.unwrap());
    assert_eq!(status, 200, "the keys in service were kept");
    drop(server);
    let (code, _, stderr) = run(d, &["serve", "--listen", "127.0.0.1:0"], &with_master);
    assert_ne!(code, 0);
    assert!(stderr.contains("secret refresh-token-mac#") && stderr.contains("UNSEALED"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_every_file_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    let server = Server::start(d);
    login(server.addr);
    let data = d.join("tessera-data");
    assert_eq!(mode(&data), 0o700);
    for file in ["tessera.db", "tessera.db-wal", "tessera.db-shm", "keys.lock", "keys.json", "secrets.json"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    drop(server);

    // A data directory someone opened up gets a warning at start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, line) = serve(d, "127.0.0.1:0", |command| {
        command.stderr(Stdio::piped());
    });
    assert!(line.starts_with("listening on"), "{line}");
    child.kill().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    child.wait().unwrap();
    assert!(stderr.contains("open to other users") && stderr.contains("755"), "{stderr}");
}
