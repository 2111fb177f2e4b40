//! The command line working on the store under a running `tessera serve`: users, keys, clients and revocations
//! made by other processes reach the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    add_user, claims, eventually, http, kid_of, login_for_refresh_token, published_kids, refresh, request, tessera,
    with_password, Server, PASSWORD,
};
use serde_json::Value;

mod common;

#[test]
fn user_commands_work_on_the_store_and_a_running_server_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "bob");
    let duplicate = tessera(d).args(["user", "add", "bob", "--password-stdin"]).stdin(Stdio::null()).output().unwrap();
    assert!(!duplicate.status.success());
    let short = {
        let mut child = tessera(d)
            .args(["user", "add", "carl", "--password-stdin"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"short\n").unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("8 to 1024"), "{}", String::from_utf8_lossy(&short.stderr));
    let no_tty = tessera(d).args(["user", "add", "dan"]).stdin(Stdio::null()).output().unwrap();
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("--password-stdin"));

    let list = tessera(d).args(["user", "list", "--json"]).output().unwrap();
    let users: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["username"], "bob");

    let server = Server::start(d);
    let token = login_for_refresh_token(server.addr, "bob");
    assert!(tessera(d).args(["user", "disable", "bob"]).status().unwrap().success());
    let (status, _) = refresh(server.addr, &token).unwrap();
    assert_eq!(status, 400, "a disabled user cannot refresh (invalid_grant)");
    let body = serde_json::json!({"username": "bob", "password": PASSWORD}).to_string();
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 401);
    assert!(tessera(d).args(["user", "enable", "bob"]).status().unwrap().success());
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 200);

    // A new password ends the user's sessions unless the operator asks to keep them.
    let (first, second) = (login_for_refresh_token(server.addr, "bob"), login_for_refresh_token(server.addr, "bob"));
    with_password(d, &["user", "set-password", "bob", "--keep-sessions"], PASSWORD);
    let (status, kept) = refresh(server.addr, &first).unwrap();
    assert_eq!(status, 200, "--keep-sessions keeps them");
    with_password(d, &["user", "set-password", "bob"], "a brand new password");
    for token in [kept.unwrap(), second] {
        assert_eq!(refresh(server.addr, &token).unwrap().0, 400, "sessions from before the change are over");
    }
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &body).unwrap().0, 401);
    let new = serde_json::json!({"username": "bob", "password": "a brand new password"}).to_string();
    assert_eq!(http(server.addr, "POST", "/auth/login", "application/json", &new).unwrap().0, 200);
    let missing = tessera(d).args(["user", "disable", "nobody"]).output().unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no user"));
}

#[test]
fn key_rotation_from_the_command_line_reaches_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "erin");
    let server = Server::start(d);
    let before = published_kids(server.addr);
    let signing = kid_of(&login_access(server.addr, "erin"));
    assert_eq!(before.len(), 2, "a signing key and an RS256 key for ID tokens generated on first start");
    assert!(before.contains(&signing));
    let rotated = tessera(d).args(["keys", "rotate", "--now", "--json"]).output().unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let new_kid = serde_json::from_slice::<Value>(&rotated.stdout).unwrap()[0]["kid"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !published_kids(server.addr).contains(&new_kid) {
        assert!(Instant::now() < deadline, "the running server never published the new key");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(published_kids(server.addr).contains(&signing), "the old key stays published while its tokens live");
    assert_eq!(kid_of(&login_access(server.addr, "erin")), new_kid, "new tokens are signed with the rotated key");
}

/// A keyring lost under a running server (deleted, or gone with a store's data) is not silently replaced by a new
/// key, which would make every token issued so far fail: the keys in service stay, and nothing is written.
#[test]
fn a_keyring_that_vanishes_under_a_running_server_is_not_replaced_by_a_new_key() {
    // The signing keys, and the RS256 keys of ID tokens.
    for file in ["keys.json", "keys-rs256.json"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        add_user(d, "erin");
        // Made before the server starts, so the server loads them (one made at start is first seen by a reload).
        assert!(tessera(d).args(["keys", "generate", "--alg", "EdDSA"]).status().unwrap().success());
        assert!(tessera(d).args(["keys", "rotate", "--rs256"]).status().unwrap().success());
        let log = d.join("server.log");
        let server = Server::start_logging(d, "warn", &log);
        let before = published_kids(server.addr);
        let signing = kid_of(&login_access(server.addr, "erin"));
        let keyring = d.join("tessera-data").join(file);
        std::fs::remove_file(&keyring).unwrap();
        // A reload has run since and refused to go on without the keyring (logged once, then every so often).
        let logged = format!("{file}: the keyring disappeared while its keys were in service");
        eventually("a reload finds the keyring gone", || std::fs::read_to_string(&log).unwrap().contains(&logged));
        assert!(!keyring.exists(), "{file}: no new keyring was generated");
        assert_eq!(published_kids(server.addr), before, "the keys in service are still published");
        assert_eq!(kid_of(&login_access(server.addr, "erin")), signing, "and still sign");
    }
}

/// A login's access token.
fn login_access(addr: SocketAddr, user: &str) -> String {
    let body = serde_json::json!({"username": user, "password": PASSWORD}).to_string();
    let (_, login) = http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    serde_json::from_str::<Value>(&login).unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn clients_from_the_command_line_get_service_tokens_from_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let added = tessera(d)
        .args(["client", "add", "billing", "--scope", "read write", "--audience", "ledger", "--json"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let secret = serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "256 bits");
    let listed = tessera(d).args(["client", "list", "--json"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&secret), "secrets are never listed");
    let duplicate = tessera(d).args(["client", "add", "billing", "--audience", "ledger"]).output().unwrap();
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let server = Server::start(d);
    let grant = |secret: &str| {
        http(
            server.addr,
            "POST",
            "/oauth2/token",
            "application/x-www-form-urlencoded",
            &format!("grant_type=client_credentials&client_id=billing&client_secret={secret}&scope=read"),
        )
        .unwrap()
    };
    let (status, body) = grant(&secret);
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned();
    let (status, introspected) = http(
        server.addr,
        "POST",
        "/oauth2/introspect",
        "application/x-www-form-urlencoded",
        &format!("token={token}&client_id=billing&client_secret={secret}"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&introspected).unwrap()["active"], true, "{introspected}");

    let rotated = tessera(d).args(["client", "rotate-secret", "billing", "--json"]).output().unwrap();
    let new_secret =
        serde_json::from_slice::<Value>(&rotated.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    eventually("the old secret stops working", || grant(&secret).0 == 401);
    let (status, body) = grant(&new_secret);
    assert_eq!(status, 200);
    // A token minted right after the rotation is not caught by it (tokens carry whole seconds).
    let fresh = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned();
    let verify = |token: &str| {
        let request = format!("token={token}&client_id=billing&client_secret={new_secret}");
        let (_, body) =
            http(server.addr, "POST", "/oauth2/introspect", "application/x-www-form-urlencoded", &request).unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["active"].as_bool().unwrap()
    };
    assert!(verify(&fresh));
    assert!(!verify(&token), "the tokens of the rotated secret are dead");

    // `tessera revoke` writes to the store; the running server applies it within its reload interval.
    let revoked = tessera(d)
        .args(["revoke", "--jti", claims(&fresh)["jti"].as_str().unwrap(), "--reason", "test"])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    eventually("the revoked token is inactive", || !verify(&fresh));
    let refused = tessera(d).args(["revoke", "--jti", "a", "--sid", "b"]).output().unwrap();
    assert!(!refused.status.success());
    let future = tessera(d).args(["revoke", "--sub", "x", "--before", "99999999999"]).output().unwrap();
    assert!(String::from_utf8_lossy(&future.stderr).contains("future"), "{}", String::from_utf8_lossy(&future.stderr));

    assert!(tessera(d).args(["client", "disable", "billing"]).status().unwrap().success());
    eventually("a disabled client is refused", || grant(&new_secret).0 == 401);
}

#[test]
fn a_client_added_on_the_command_line_works_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The server would learn of the client from the store only at its next reload, a minute away.
    std::fs::write(
        d.join("tessera.toml"),
        "[server]\nreload_interval = \"60s\"\n[revocation]\nstale_after = \"120s\"\n",
    )
    .unwrap();
    let server = Server::start(d);
    let added = tessera(d).args(["client", "add", "scripted", "--audience", "ledger", "--json"]).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let secret = serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    let (status, body) = http(
        server.addr,
        "POST",
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        &format!("grant_type=client_credentials&client_id=scripted&client_secret={secret}"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// `tessera client disable` ends the client's outstanding tokens, not only its authentication.
#[test]
fn disabling_a_client_ends_its_outstanding_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let added = tessera(d).args(["client", "add", "billing", "--audience", "ledger", "--json"]).output().unwrap();
    let secret = serde_json::from_slice::<Value>(&added.stdout).unwrap()["client_secret"].as_str().unwrap().to_owned();
    let server = Server::start(d);
    let grant = || {
        let body = format!("grant_type=client_credentials&client_id=billing&client_secret={secret}");
        http(server.addr, "POST", "/oauth2/token", "application/x-www-form-urlencoded", &body).unwrap()
    };
    let (status, body) = grant();
    assert_eq!(status, 200, "{body}");
    let outstanding = serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned();
    let verify = |token: &str| {
        request(server.addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
    };
    assert_eq!(verify(&outstanding), 200);
    assert!(tessera(d).args(["client", "disable", "billing"]).status().unwrap().success());
    eventually("the disabled client's outstanding token is refused", || verify(&outstanding) == 401);
    assert_eq!(grant().0, 401, "and the client cannot get another");
}
