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

/// A server with these timeouts, over TLS when `tls`; its port, its certificate and what stops it.
async fn serving_with_timeouts(
    h: &common::Harness,
    tls: bool,
) -> (u16, rcgen::CertifiedKey<rcgen::KeyPair>, tokio::sync::oneshot::Sender<()>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (h.dir.path().join("cert.pem"), h.dir.path().join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let acceptor = tls.then(|| tessera_server::tls::acceptor(&cert_path, &key_path).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(tessera_server::serve(listener, h.state.clone(), acceptor, async {
        let _ = stopped.await;
    }));
    (port, certified, stop)
}

/// Whether the server closes the connection (end of stream or an error) before the test gives up on it.
async fn closed_by_the_server(mut stream: impl tokio::io::AsyncRead + Unpin) -> bool {
    let mut buf = [0u8; 64];
    // Only to stop the test: the timeouts under test are a fraction of a second.
    let give_up = std::time::Duration::from_secs(10);
    matches!(
        tokio::time::timeout(give_up, tokio::io::AsyncReadExt::read(&mut stream, &mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

const SHORT: std::time::Duration = std::time::Duration::from_millis(300);
const LONG: std::time::Duration = std::time::Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_sends_its_hello_is_cut_off_at_the_handshake_timeout() {
    let settings =
        Settings { tls: true, tls_handshake_timeout: SHORT, header_read_timeout: LONG, ..Settings::default() };
    let h = common::harness_with(settings).await;
    let (port, _, stop) = serving_with_timeouts(&h, true).await;
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(closed_by_the_server(silent).await, "a silent client holds its socket");
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_sends_a_request_is_cut_off_at_the_header_read_timeout() {
    let settings =
        Settings { tls: true, tls_handshake_timeout: LONG, header_read_timeout: SHORT, ..Settings::default() };
    let h = common::harness_with(settings).await;
    let (port, certified, stop) = serving_with_timeouts(&h, true).await;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    for alpn in [b"http/1.1".to_vec(), b"h2".to_vec()] {
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.clone()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let shaken = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
        assert!(
            closed_by_the_server(shaken).await,
            "{}: a client that sends no request holds its socket",
            String::from_utf8_lossy(&alpn)
        );
    }
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_that_sends_nothing_or_half_a_request_is_cut_off_at_the_header_read_timeout() {
    let h = common::harness_with(Settings { header_read_timeout: SHORT, ..Settings::default() }).await;
    let (port, _, stop) = serving_with_timeouts(&h, false).await;
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(closed_by_the_server(silent).await, "a silent client holds its socket");
    // A request line and part of its headers, then nothing; and the start of the HTTP/2 preface, then nothing.
    for start in [&b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n"[..], b"PRI * HTTP/2.0"] {
        let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut slow, start).await.unwrap();
        assert!(closed_by_the_server(slow).await, "{}", String::from_utf8_lossy(start));
    }
    stop.send(()).unwrap();
}
