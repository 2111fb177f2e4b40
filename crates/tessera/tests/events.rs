//! `tessera events` against a running `tessera serve`: a refresh-token reuse shows, filtered by kind and subject,
//! as lines and as JSON; without the admin credential the command says what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use common::{add_user, login_for_refresh_token, refresh, tessera, Server};
use serde_json::Value;

mod common;

const ADMIN: &str = "an-admin-credential-of-at-least-32-characters";

#[test]
fn tessera_events_shows_a_reuse_detection_from_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    add_user(d, "alice");
    let server = Server::start_with(d, |command| {
        command.env("TESSERA_ADMIN_TOKEN", ADMIN);
    });
    // Generation 0, rotated twice, comes back: reuse.
    let first = login_for_refresh_token(server.addr, "alice");
    let (_, second) = refresh(server.addr, &first).unwrap();
    let (status, _) = refresh(server.addr, &second.unwrap()).unwrap();
    assert_eq!(status, 200);
    assert_eq!(refresh(server.addr, &first).unwrap().0, 400, "reuse is refused");

    let url = format!("http://{}", server.addr);
    let events = |extra: &[&str]| {
        let output =
            tessera(d).args(["events", "--url", &url]).args(extra).env("TESSERA_ADMIN_TOKEN", ADMIN).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let lines = events(&["--kind", "refresh_token_reuse", "--sub", "alice", "--since", "1h"]);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains("refresh_token_reuse") && lines.contains("sub=alice"), "{lines}");
    assert!(!lines.contains(&first), "no token in the output");
    let json: Vec<Value> = serde_json::from_str(&events(&["--json", "--sub", "alice"])).unwrap();
    assert_eq!(json[0]["kind"], "refresh_token_reuse");
    assert_eq!(events(&["--sub", "bob"]), "", "nothing about bob");

    let output = tessera(d).args(["events", "--url", &url]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("TESSERA_ADMIN_TOKEN"));
    let output = tessera(d)
        .args(["events", "--url", &url, "--kind", "nope"])
        .env("TESSERA_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not one of"), "the server's reason is shown");
}
