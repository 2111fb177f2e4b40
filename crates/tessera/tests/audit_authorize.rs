//! `audit endpoint --authorize-client` against a deliberately lax authorization endpoint, served on loopback by
//! this test: it matches redirect URIs by prefix, takes any PKCE (or none), drops `state` from its errors, names
//! no issuer and redirects an unknown client's errors. Each flaw must come out as its own finding, so a probe that
//! found nothing could not pass here. (Tessera's own endpoint, which must come out clean, is probed in `serve.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::Command;

use serde_json::Value;

const REGISTERED: &str = "https://app.example/cb";

/// The lax endpoint's answer to one query string: a login page (200) when it goes on, a redirect otherwise.
fn answer(query: &str) -> (u16, Option<String>) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let param = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let redirect = param("redirect_uri").unwrap_or_default();
    if param("client_id").as_deref() != Some("app") {
        // An unknown client's error goes wherever the request says.
        return (302, Some(format!("{redirect}?error=invalid_client")));
    }
    // "Starts with the host" is the lax matcher: prefixes, other paths and the host as userinfo all pass.
    if !redirect.starts_with("https://app.example") && !redirect.starts_with("http://app.example") {
        return (400, None);
    }
    if param("response_type").as_deref() != Some("code") {
        // No state, no iss.
        return (302, Some(format!("{redirect}?error=unsupported_response_type")));
    }
    (200, None)
}

fn serve_lax_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/authorize", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            while reader.read_line(&mut String::new()).is_ok_and(|read| read > 2) {}
            let target = line.split_whitespace().nth(1).unwrap_or("/");
            let (status, location) = answer(target.split_once('?').map_or("", |(_, query)| query));
            let location = location.map(|l| format!("location: {l}\r\n")).unwrap_or_default();
            let _ = write!(stream, "HTTP/1.1 {status} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    url
}

#[test]
fn every_flaw_of_a_lax_authorization_endpoint_is_found() {
    let url = serve_lax_endpoint();
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "audit",
            "endpoint",
            &url,
            "--authorize-client",
            "app",
            "--redirect-uri",
            REGISTERED,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    let found: BTreeSet<&str> =
        report["findings"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    let expected = BTreeSet::from([
        "ENDPOINT-AUTHZ-REDIRECT-NOT-EXACT",
        "ENDPOINT-AUTHZ-REDIRECT-HOST",
        "ENDPOINT-AUTHZ-REDIRECT-DOWNGRADE",
        "ENDPOINT-AUTHZ-PKCE-MISSING",
        "ENDPOINT-AUTHZ-PKCE-PLAIN",
        "ENDPOINT-AUTHZ-STATE-DROPPED",
        "ENDPOINT-AUTHZ-NO-ISS",
        "ENDPOINT-AUTHZ-OPEN-REDIRECT",
    ]);
    assert_eq!(found, expected, "{report}");
    assert_eq!(output.status.code(), Some(1), "a HIGH or CRITICAL finding fails the audit");
}
