//! HTTPS served by Tessera itself: the handshake, HSTS, and clear errors for bad certificate files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use tessera_server::Settings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_hsts() {
    let h = common::harness_with(Settings { tls: true, ..Settings::default() }).await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = h.dir.path().join("cert.pem");
    let key_path = h.dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let acceptor = tessera_server::tls::acceptor(&cert_path, &key_path).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tessera_server::serve(listener, h.state.clone(), Some(acceptor), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let response = client.get(format!("https://localhost:{port}/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    assert!(response.text().await.unwrap().contains("\"keys\""));
    // Plain HTTP to the TLS port gets no answer.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_err());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn bad_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = tessera_server::tls::acceptor(&missing, &missing).err().unwrap().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = tessera_server::tls::acceptor(&empty, &empty).err().unwrap().to_string();
    assert!(err.contains("empty.pem") && err.contains("no certificate"), "{err}");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
    let err = tessera_server::tls::acceptor(&cert, &key).err().unwrap().to_string();
    assert!(err.contains("TLS configuration"), "a key that does not match its certificate: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_renewal_is_ignored() {
    let h = common::harness_with(Settings { tls: true, ..Settings::default() }).await;
    let (cert_path, key_path) = (h.dir.path().join("cert.pem"), h.dir.path().join("key.pem"));
    let write = |certified: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        std::fs::write(&cert_path, certified.cert.pem()).unwrap();
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    };
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    write(&first);
    // Checked on every handshake here; 10 s in service.
    let acceptor =
        tessera_server::tls::acceptor_checking_every(&cert_path, &key_path, std::time::Duration::ZERO).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tessera_server::serve(listener, h.state.clone(), Some(acceptor), async {
        let _ = stopped.await;
    }));
    // A fresh client per request: a new handshake each time.
    let served_to = |certified: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        let trusted = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([trusted])
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap();
        async move { client.get(format!("https://localhost:{port}/healthz")).send().await.is_ok() }
    };
    assert!(served_to(&first).await);

    // A broken renewal (a half-written file) is ignored: the certificate in service stays.
    std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\ngarbage").unwrap();
    assert!(served_to(&first).await, "the old certificate is kept");

    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    write(&renewed);
    assert!(served_to(&renewed).await, "the renewed certificate is served");
    assert!(!served_to(&first).await, "and the old one no longer");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
