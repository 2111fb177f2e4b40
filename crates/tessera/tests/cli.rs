//! The `tessera` command as a user runs it: known-answer vectors, issue/verify round trips, keys at rest,
//! configuration precedence, and clear errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `tessera` in `dir` with a clean environment (no inherited TESSERA_* settings).
fn tessera(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = common::tessera(dir);
    command.args(args);
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let run = tessera(dir, args, &[]);
    assert_eq!(run.code, 0, "tessera {args:?} failed: {}", run.stderr);
    run.stdout
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tessera-jose/tests/fixtures").join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap().trim().to_owned()
}

/// Writes the public half of a private-JWK fixture as a one-key JWKS file.
fn public_jwks(dir: &Path, jwk_fixture: &str) -> String {
    let mut jwk: Value = serde_json::from_str(&fixture_text(jwk_fixture)).unwrap();
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    let path = dir.join(format!("{jwk_fixture}.jwks"));
    std::fs::write(&path, serde_json::json!({"keys": [jwk]}).to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn rfc_vectors_verify_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (token, jwk) in [
        ("rfc7515-a2-rs256.jws", "rfc7515-a2-rsa.private.jwk.json"),
        ("rfc7515-a3-es256.jws", "rfc7515-a3-p256.private.jwk.json"),
    ] {
        let jwks = public_jwks(d, jwk);
        let out = ok(
            d,
            &["token", "verify", &fixture_text(token), "--jwks", &jwks, "--profile", "jws", "--at", "1300819000"],
        );
        let claims: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(claims["iss"], "joe", "{token}");
        assert_eq!(claims["http://example.com/is_root"], true, "{token}");
    }
    let jwks = public_jwks(d, "rfc8037-a1-ed25519.private.jwk.json");
    let out = ok(
        d,
        &[
            "token",
            "verify",
            &fixture_text("rfc8037-a4-eddsa.jws"),
            "--jwks",
            &jwks,
            "--profile",
            "jws",
            "--at",
            "1300819000",
        ],
    );
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), "Example of Ed25519 signing");
}

#[test]
fn rfc_vectors_that_must_fail_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jwks = public_jwks(d, "rfc7515-a2-rsa.private.jwk.json");
    let cases = [
        ("rfc7515-a5-none.jws", "none"),
        ("rfc7515-a6-general-json.jws", "JSON serialization"),
        ("rfc7515-a7-flattened-json.jws", "JSON serialization"),
    ];
    for (name, reason) in cases {
        let run = tessera(
            d,
            &["token", "verify", &fixture_text(name), "--jwks", &jwks, "--profile", "jws", "--at", "1300819000"],
            &[],
        );
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{name}: nothing on stdout for a refused token");
        assert_eq!(run.stderr.lines().count(), 1, "{name}: one-line reason, got {:?}", run.stderr);
        assert!(run.stderr.contains(reason), "{name}: {}", run.stderr);
    }
    // After exp (plus leeway) the A.2 example is expired.
    let run = tessera(
        d,
        &[
            "token",
            "verify",
            &fixture_text("rfc7515-a2-rs256.jws"),
            "--jwks",
            &jwks,
            "--profile",
            "jws",
            "--at",
            "1300819500",
        ],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    // The access profile (the default) refuses it: it is not an RFC 9068 access token.
    let run = tessera(
        d,
        &["token", "verify", &fixture_text("rfc7515-a2-rs256.jws"), "--jwks", &jwks, "--at", "1300819000"],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("typ"), "{}", run.stderr);
}

#[test]
fn issued_tokens_pass_the_access_profile_for_every_algorithm() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ok(d, &["keys", "generate", "--alg", alg]);
        let token = ok(
            d,
            &[
                "token",
                "issue",
                "--sub",
                "alice",
                "--aud",
                "api",
                "--scope",
                "read write",
                "--claim",
                "tenant=7",
                "--ttl",
                "5m",
            ],
        );
        let token = token.trim();
        let claims: Value = serde_json::from_str(&ok(d, &["token", "verify", token, "--aud", "api"])).unwrap();
        assert_eq!(claims["sub"], "alice", "{alg}");
        assert_eq!(claims["scope"], "read write", "{alg}");
        assert_eq!(claims["tenant"], 7, "{alg}");
        assert_eq!(claims["client_id"], "tessera-cli", "{alg}");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300, "{alg}");
        assert!(claims["jti"].as_str().unwrap().len() >= 22, "{alg}: jti must carry 128 bits");

        // The published JWKS verifies it too, and holds no private member.
        let jwks = ok(d, &["keys", "jwks"]);
        let parsed: Value = serde_json::from_str(&jwks).unwrap();
        for key in parsed["keys"].as_array().unwrap() {
            for member in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(key.get(member).is_none(), "{alg}: JWKS publishes private member {member}");
            }
            assert_eq!(key["alg"], alg);
        }
        std::fs::write(d.join("jwks.json"), jwks).unwrap();
        ok(d, &["token", "verify", token, "--aud", "api", "--jwks", "jwks.json"]);

        // The wrong audience, and a later instant, are refused.
        let run = tessera(d, &["token", "verify", token], &[]);
        assert_eq!((run.code, run.stderr.contains("audience")), (1, true), "{alg}: {}", run.stderr);
        let later = (claims["exp"].as_i64().unwrap() + 31).to_string();
        let run = tessera(d, &["token", "verify", token, "--aud", "api", "--at", &later], &[]);
        assert_eq!((run.code, run.stderr.contains("expired")), (1, true), "{alg}: {}", run.stderr);
    }
}

#[test]
fn token_from_standard_input_and_inspect_marks_it_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = ok(d, &["token", "issue", "--sub", "bob", "--ttl", "14m"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .current_dir(d)
        .args(["token", "verify", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8(output.stdout).unwrap().contains("\"bob\""));

    let shown = ok(d, &["token", "inspect", token.trim()]);
    assert!(shown.starts_with("UNVERIFIED"), "{shown}");
    assert!(shown.contains("expires in 13 min") || shown.contains("expires in 14 min"), "{shown}");
    let json: Value = serde_json::from_str(&ok(d, &["token", "inspect", token.trim(), "--json"])).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["header"]["typ"], "at+jwt");
    assert_eq!(json["payload"]["sub"], "bob");
}

#[test]
fn keys_are_encrypted_at_rest_with_a_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let master = ok(d, &["keys", "master-key"]);
    let master = master.trim();
    let env = [("TESSERA_MASTER_KEY", master)];
    let run = tessera(d, &["keys", "generate", "--alg", "EdDSA", "--json"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("UNENCRYPTED"), "{}", run.stderr);
    let stored = std::fs::read_to_string(d.join("tessera-data/keys.json")).unwrap();
    assert!(stored.contains("aes-256-gcm"), "{stored}");

    let run = tessera(d, &["token", "issue", "--sub", "carol"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = tessera(d, &["keys", "list"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("TESSERA_MASTER_KEY"), "{}", run.stderr);
    let other = ok(d, &["keys", "master-key"]);
    let run = tessera(d, &["keys", "list"], &[("TESSERA_MASTER_KEY", other.trim())]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("does not decrypt"), "{}", run.stderr);

    // Without a master key, Tessera still works but says loudly that keys are stored in clear.
    let plain = tempfile::tempdir().unwrap();
    let run = tessera(plain.path(), &["keys", "generate", "--alg", "ES256"], &[]);
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("UNENCRYPTED"), "{}", run.stderr);
}

#[test]
fn rotation_publishes_first_and_old_tokens_keep_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keys", "generate", "--alg", "EdDSA"]);
    let before = ok(d, &["token", "issue", "--sub", "dave"]);
    let rotated: Value = serde_json::from_str(&ok(d, &["keys", "rotate", "--json"])).unwrap();
    let next_kid = rotated[0]["kid"].as_str().unwrap().to_owned();
    let list: Value = serde_json::from_str(&ok(d, &["keys", "list", "--json"])).unwrap();
    let phases: Vec<&str> = list.as_array().unwrap().iter().map(|k| k["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["active", "next"]);
    assert!(ok(d, &["keys", "jwks"]).contains(&next_kid), "the next key is published before it signs");
    let run = tessera(d, &["keys", "rotate"], &[]);
    assert_eq!(run.code, 2, "a second scheduled rotation is refused");
    assert!(run.stderr.contains("already scheduled"), "{}", run.stderr);

    ok(d, &["keys", "rotate", "--now"]);
    let after = ok(d, &["token", "issue", "--sub", "dave"]);
    let kid = |token: &str| {
        let json: Value = serde_json::from_str(&ok(d, &["token", "inspect", token.trim(), "--json"])).unwrap();
        json["header"]["kid"].as_str().unwrap().to_owned()
    };
    assert_eq!(kid(&after), next_kid);
    ok(d, &["token", "verify", before.trim()]);
    ok(d, &["token", "verify", after.trim()]);
}

#[test]
fn configuration_precedence_is_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("tessera.toml"),
        "issuer = \"https://from-file\"\ndata_dir = \"file-data\"\n[tokens]\naccess_ttl = \"5m\"\n",
    )
    .unwrap();
    // The payload of a token issued with `env` and `args`.
    let issued = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["token", "issue", "--sub", "x"];
        all.extend_from_slice(args);
        let run = tessera(d, &all, env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let json: Value = serde_json::from_str(&ok(d, &["token", "inspect", run.stdout.trim(), "--json"])).unwrap();
        json["payload"].clone()
    };
    let lifetime = |payload: &Value| payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap();
    let from_file = issued(&[], &[]);
    assert_eq!((from_file["iss"].as_str(), lifetime(&from_file)), (Some("https://from-file"), 300));
    assert!(d.join("file-data/keys.json").exists());
    assert_eq!(issued(&[("TESSERA_ISSUER", "https://from-env")], &[])["iss"], "https://from-env");
    issued(&[("TESSERA_DATA_DIR", "env-data")], &["--data-dir", "flag-data"]);
    assert!(d.join("flag-data/keys.json").exists());
    assert!(!d.join("env-data").exists());
    let ttl = [("TESSERA_TOKENS__ACCESS_TTL", "2m")];
    assert_eq!(lifetime(&issued(&ttl, &[])), 120, "the environment's lifetime beats the file's");
    assert_eq!(lifetime(&issued(&ttl, &["--ttl", "1m"])), 60, "and the flag beats the environment's");
}

#[test]
fn bad_configuration_and_flags_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "[tokens]\nmax_token_bytes = \"lots\"\naccess_ttl = \"soon\"\n").unwrap();
    let run = tessera(d, &["--config", "bad.toml", "keys", "list"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("max_token_bytes") || run.stderr.contains("access_ttl"), "{}", run.stderr);
    assert!(run.stderr.contains("bad.toml"), "the error names the file: {}", run.stderr);

    let run = tessera(d, &["keys", "list"], &[("TESSERA_KEYS__ALGORITHM", "HS256")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot sign"), "{}", run.stderr);
    let run = tessera(d, &["--config", "missing.toml", "keys", "list"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("missing.toml"), "{}", run.stderr);

    for (args, needle) in [
        (&["keys", "generate", "--alg", "HS256"][..], "verify-only"),
        (&["keys", "generate", "--alg", "rs256"][..], "unknown algorithm"),
        (&["keys", "generate", "--alg", "RS256", "--bits", "1024"][..], "2048 or 3072"),
        (&["token", "issue", "--sub", "a", "--ttl", "soon"][..], "--ttl"),
        (&["token", "issue", "--sub", "a", "--ttl", "400d"][..], "max_ttl"),
        (&["token", "issue", "--sub", "a", "--claim", "exp=1"][..], "set by the issuer"),
        (&["token", "verify", "x", "--at", "yesterday"][..], "--at"),
        (&["token", "verify", "x", "--jwks", "nope.json"][..], "nope.json"),
        (&["keys", "import", "nope.pem"][..], "nope.pem"),
    ] {
        let run = tessera(d, args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }

    std::fs::write(d.join("junk.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let run = tessera(d, &["keys", "import", "junk.pem"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("junk.pem") && run.stderr.contains("cannot import"), "{}", run.stderr);
    std::fs::write(d.join("evil.jwks"), r#"{"keys":[{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}]}"#).unwrap();
    let run = tessera(d, &["token", "verify", "a.b.c", "--jwks", "evil.jwks"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("too weak"), "{}", run.stderr);

    for garbage in ["", "a.b", "not a token", "a.b.c.d", "{\"payload\":\"x\"}"] {
        let run = tessera(
            d,
            &["token", "verify", garbage, "--jwks", &public_jwks(d, "rfc8037-a1-ed25519.private.jwk.json")],
            &[],
        );
        assert_eq!(run.code, 1, "{garbage:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("invalid token: "), "{garbage:?}: {}", run.stderr);
    }
}

#[test]
fn keys_import_pem_and_jwk() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imported: Value = serde_json::from_str(&ok(
        d,
        &["keys", "import", fixture("rfc8037-a1-ed25519.private.jwk.json").to_str().unwrap(), "--json"],
    ))
    .unwrap();
    assert_eq!(imported[0]["kid"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    // A PKCS#8 PEM of the RFC 8037 key (seed 9d61b1...).
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    std::fs::write(d.join("ed.pem"), pem).unwrap();
    let other = tempfile::tempdir().unwrap();
    let run = tessera(other.path(), &["keys", "import", d.join("ed.pem").to_str().unwrap(), "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let imported: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(imported[0]["kid"], "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "the same key from PEM");
}

#[test]
fn jwks_can_be_fetched_from_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keys", "generate", "--alg", "ES256"]);
    let token = ok(d, &["token", "issue", "--sub", "erin"]);
    let jwks = ok(d, &["keys", "jwks"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).unwrap();
        let response = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}", jwks.len());
        stream.write_all(response.as_bytes()).unwrap();
    });
    let other = tempfile::tempdir().unwrap();
    let claims: Value =
        serde_json::from_str(&ok(other.path(), &["token", "verify", token.trim(), "--jwks", &url])).unwrap();
    assert_eq!(claims["sub"], "erin");
    server.join().unwrap();
}

#[test]
fn help_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["keys", "--help"],
        &["keys", "rotate", "--help"],
        &["token", "verify", "--help"],
        &["token", "issue", "--help"],
    ] {
        let out = ok(dir.path(), args);
        assert!(out.contains("Usage:"), "{args:?}");
    }
    let bash = ok(dir.path(), &["completions", "bash"]);
    assert!(bash.contains("_tessera") && bash.contains("inspect"));
}

#[test]
fn audit_reports_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Tessera's own token and key set: nothing to report, exit 0.
    let token = ok(d, &["token", "issue", "--sub", "zoe"]);
    std::fs::write(d.join("jwks.json"), ok(d, &["keys", "jwks"])).unwrap();
    let clean = tessera(d, &["audit", "token", token.trim(), "--jwks", "jwks.json", "--format", "json"], &[]);
    assert_eq!(clean.code, 0, "{}", clean.stdout);
    let report: Value = serde_json::from_str(&clean.stdout).unwrap();
    assert!(report["findings"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(tessera(d, &["audit", "jwks", "jwks.json"], &[]).code, 0);

    // An HS256 token whose secret is in a CRLF wordlist: cracked, CRITICAL, exit 1, in SARIF.
    std::fs::write(d.join("secrets.list"), "alpha\r\nthe-team-secret-2019\r\nomega\r\n").unwrap();
    let header = tessera_jose::base64url::encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = tessera_jose::base64url::encode(r#"{"sub":"x","exp":9999999999,"iat":1700000000,"jti":"1"}"#);
    let input = format!("{header}.{payload}");
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"the-team-secret-2019"),
        input.as_bytes(),
    );
    let weak = format!("{input}.{}", tessera_jose::base64url::encode(tag.as_ref()));
    let run = tessera(
        d,
        &["audit", "token", &weak, "--wordlist", "secrets.list", "--brute-force-length", "1", "--format", "sarif"],
        &[],
    );
    assert_eq!(run.code, 1);
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "JWT-WEAK-HMAC-SECRET"
        && r["message"]["text"].as_str().unwrap().contains("the-team-secret-2019")));
    let markdown = tessera(d, &["audit", "token", &weak, "--wordlist", "secrets.list", "--format", "markdown"], &[]);
    assert!(markdown.stdout.starts_with("# JWT security audit"));

    // Not a JWT: a clear error, exit 2, no report.
    let run = tessera(d, &["audit", "token", "<html>not a token</html>"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a JWT"), "{}", run.stderr);
    let run = tessera(d, &["audit", "jwks", "missing.json"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("missing.json"), "{}", run.stderr);
}

#[test]
fn audit_source_finds_vulnerable_libraries_in_a_tree_without_following_links_or_stopping_at_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tessera-audit-source/tests/corpus");
    let tree = d.join("tree");
    let copy = |from: &str, to: &str| {
        std::fs::create_dir_all(tree.join(to).parent().unwrap()).unwrap();
        std::fs::copy(corpus.join(from), tree.join(to)).unwrap();
    };
    copy("deps/package-lock/vulnerable/package-lock.json", "web/package-lock.json");
    // Installed packages are covered by the project's own lockfile: not read again.
    copy("deps/package-lock/vulnerable/package-lock.json", "web/node_modules/sdk/package-lock.json");
    // go.mod says which versions are built; the go.sum beside it (listing an older one) is not read.
    copy("deps/go-mod/fixed/go.mod", "api/go.mod");
    copy("deps/go-sum/vulnerable/go.sum", "api/go.sum");
    // Code: a Python file with a fallback secret, one that does not parse, and Ruby code the rules do not read yet.
    copy("code/py-secrets/vulnerable/app/tokens.py", "api/tokens.py");
    // Test code signs with throwaway secrets on purpose: left out unless asked for.
    copy("code/py-secrets/vulnerable/app/tokens.py", "api/tests/test_tokens.py");
    std::fs::write(tree.join("api/broken.py"), "def f(:\n    return jwt.decode(token, key)\n").unwrap();
    std::fs::write(tree.join("api/app.rb"), "puts 1\n").unwrap();
    // A bundle over the 16 MiB a source file may have: named, not parsed.
    std::fs::write(tree.join("web/huge.min.js"), "x=1;".repeat(4 * 1024 * 1024 + 1)).unwrap();
    // A link back up the tree, a binary file and a lockfile that is not text: no loop, no crash.
    std::os::unix::fs::symlink(&tree, tree.join("web/loop")).unwrap();
    std::fs::write(tree.join("web/logo.png"), [0x89, b'P', b'N', b'G', 0, 0xff, 0xfe, 0]).unwrap();
    std::fs::write(tree.join("web/requirements-dev.txt"), [b'P', b'y', 0xff, b'=', b'=', b'1']).unwrap();

    let run = tessera(d, &["audit", "source", "tree", "--format", "sarif"], &[]);
    assert_eq!(run.code, 1, "HIGH findings fail the run: {}", run.stderr);
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let mut places: Vec<(String, u64)> = results
        .iter()
        .map(|r| {
            let location = &r["locations"][0]["physicalLocation"];
            (
                location["artifactLocation"]["uri"].as_str().unwrap().to_owned(),
                location["region"]["startLine"].as_u64().unwrap(),
            )
        })
        .collect();
    places.sort();
    let at = |path: &str, line| (path.to_owned(), line);
    let lock = "web/package-lock.json";
    let python = "api/tokens.py";
    assert_eq!(
        places,
        [
            at(python, 9),
            at(python, 9),
            at(python, 13),
            at(lock, 19),
            at(lock, 19),
            at(lock, 19),
            at(lock, 23),
            at(lock, 23)
        ],
        "{results:?}"
    );
    let stats = &sarif["runs"][0]["properties"];
    assert_eq!(stats["stats"]["files_with_syntax_errors"], 1, "{stats}");
    let not_tested = sarif["runs"][0]["properties"]["notTested"].to_string();
    assert!(not_tested.contains("web/requirements-dev.txt: not UTF-8 text"), "{not_tested}");
    assert!(not_tested.contains("1 Ruby files: the Ruby rules are not built yet"), "{not_tested}");
    assert!(
        not_tested.contains("code in web/huge.min.js: 16777220 bytes, over the 16777216-byte limit"),
        "{not_tested}"
    );

    assert!(not_tested.contains("1 test files"), "{not_tested}");
    // A wordlist adds known secrets: the long hard-coded one in tokens.py is in this one.
    std::fs::write(d.join("secrets.list"), "alpha\r\na-hard-coded-service-secret-that-is-long-enough\r\n").unwrap();
    let run =
        tessera(d, &["audit", "source", "tree/api/tokens.py", "--wordlist", "secrets.list", "--format", "json"], &[]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let weak = report["findings"].as_array().unwrap().iter().filter(|f| f["id"] == "CODE-WEAK-SECRET").count();
    assert_eq!(weak, 2, "the default's weakness and the wordlist's: {report}");
    let run = tessera(d, &["audit", "source", "tree", "--include-tests", "--format", "json"], &[]);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let in_tests =
        report["findings"].as_array().unwrap().iter().filter(|f| f["location"]["path"] == "api/tests/test_tokens.py");
    assert_eq!(in_tests.count(), 3, "{report}");

    // A newer table replaces the shipped one: only what it names is found; MEDIUM alone exits 0.
    std::fs::write(
        d.join("newer.tsv"),
        "# as of: 2027-01-01\nnpm\texpress\tmedium\tGHSA-test\t<5.0.0\t5.0.0\t2027-01-01\ta test advisory\n",
    )
    .unwrap();
    let run = tessera(
        d,
        &["audit", "source", "tree/web/package-lock.json", "--advisories", "newer.tsv", "--format", "json"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["location"], serde_json::json!({"path": "package-lock.json", "line": 15}));

    // A table that does not parse is refused whole, every bad line named; a missing path is a clear error.
    std::fs::write(d.join("bad.tsv"), "# as of: 2027-01-01\nnpm\texpress\n\nnpm\tx\tsevere\tX\t<1\t1\t2027-01-01\ti\n")
        .unwrap();
    let run = tessera(d, &["audit", "source", "tree", "--advisories", "bad.tsv"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("line 2: 2 tab-separated fields") && run.stderr.contains("line 4: unknown severity"),
        "{}",
        run.stderr
    );
    let run = tessera(d, &["audit", "source", "no-such-dir"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no-such-dir"), "{}", run.stderr);
}

#[test]
fn private_key_jwt_clients_are_added_with_public_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jwks = public_jwks(d, "rfc7515-a3-p256.private.jwk.json");
    let added = ok(d, &["client", "add", "signer", "--audience", "api", "--jwks", &jwks, "--json"]);
    let added: Value = serde_json::from_str(&added).unwrap();
    assert_eq!(added, serde_json::json!({"client_id": "signer", "token_endpoint_auth_method": "private_key_jwt"}));
    // No secret to rotate; the keys are replaced instead.
    let rotate = tessera(d, &["client", "rotate-secret", "signer"], &[]);
    assert!(rotate.code != 0 && rotate.stderr.contains("with a secret"), "{}", rotate.stderr);
    ok(d, &["client", "set-jwks", "signer", &jwks]);

    // Private members and symmetric keys are refused, and nothing is added.
    let private = d.join("private.jwks");
    std::fs::write(&private, format!(r#"{{"keys":[{}]}}"#, fixture_text("rfc7515-a3-p256.private.jwk.json"))).unwrap();
    let symmetric = d.join("oct.jwks");
    std::fs::write(
        &symmetric,
        r#"{"keys":[{"kty":"oct","alg":"HS256","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0ISE"}]}"#,
    )
    .unwrap();
    for (file, why) in [(&private, "private"), (&symmetric, "symmetric")] {
        let run = tessera(d, &["client", "add", "bad", "--audience", "api", "--jwks", file.to_str().unwrap()], &[]);
        assert!(run.code != 0 && run.stderr.contains(why), "{why}: {}", run.stderr);
    }
    let listed = ok(d, &["client", "list", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn apps_are_added_for_the_code_flow_only_with_redirect_uris_a_browser_may_be_sent_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = ok(
        d,
        &[
            "client",
            "add",
            "photos",
            "--public",
            "--scope",
            "openid profile",
            "--redirect-uri",
            "https://photos.example/cb",
            "--redirect-uri",
            "http://127.0.0.1/native",
            "--first-party",
            "--json",
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&public).unwrap(),
        serde_json::json!({"client_id": "photos", "token_endpoint_auth_method": "none"})
    );
    let confidential = ok(
        d,
        &[
            "client",
            "add",
            "billing",
            "--confidential",
            "--require-par",
            "--redirect-uri",
            "https://billing.example/cb",
            "--id-token-alg",
            "RS256",
            "--json",
        ],
    );
    assert!(serde_json::from_str::<Value>(&confidential).unwrap()["client_secret"].is_string());

    for (uri, why) in [
        ("http://photos.example/cb", "127.0.0.1"),
        ("https://photos.example/cb#x", "fragment"),
        ("https://user:pw@photos.example/cb", "credentials"),
        ("javascript:alert(1)", "reverse-domain"),
        ("/cb", "absolute"),
    ] {
        let run = tessera(d, &["client", "add", "bad", "--public", "--redirect-uri", uri], &[]);
        assert!(run.code != 0 && run.stderr.contains(why), "{uri}: {}", run.stderr);
    }
    let neither = tessera(d, &["client", "add", "bad", "--redirect-uri", "https://a.example/cb"], &[]);
    assert!(neither.code != 0 && neither.stderr.contains("--public"), "{}", neither.stderr);
    let add_signed_with = |alg: &str, config: &[(&str, &str)]| {
        let args =
            ["client", "add", "bad", "--public", "--redirect-uri", "https://a.example/cb", "--id-token-alg", alg];
        tessera(d, &args, config)
    };
    let other = add_signed_with("ES256", &[]);
    assert!(other.code != 0 && other.stderr.contains("keys.algorithm (EdDSA) or RS256"), "{}", other.stderr);
    let without_rs256_keys = add_signed_with("RS256", &[("TESSERA_KEYS__RS256_ID_TOKENS", "false")]);
    assert!(
        without_rs256_keys.code != 0 && without_rs256_keys.stderr.contains("keys.rs256_id_tokens"),
        "{}",
        without_rs256_keys.stderr
    );

    let listed: Value = serde_json::from_str(&ok(d, &["client", "list", "--json"])).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "nothing refused was added: {listed}");
    let photos = rows.iter().find(|row| row["client_id"] == "photos").unwrap();
    assert_eq!(photos["token_endpoint_auth_method"], "none");
    assert_eq!(photos["redirect_uris"], serde_json::json!(["https://photos.example/cb", "http://127.0.0.1/native"]));
    assert_eq!((photos["first_party"].as_bool(), photos["require_par"].as_bool()), (Some(true), Some(false)));
    assert_eq!(photos["grants"], serde_json::json!(["authorization_code"]), "a public client holds no credential");
    let billing = rows.iter().find(|row| row["client_id"] == "billing").unwrap();
    assert_eq!(billing["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(billing["require_par"], true);
    assert_eq!(billing["id_token_signed_response_alg"], "RS256");
    assert_eq!(photos["id_token_signed_response_alg"], "EdDSA", "the signing keys' algorithm by default");
}

#[test]
fn the_rs256_keys_of_id_tokens_rotate_apart_from_the_signing_keys_and_are_published_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keys", "generate", "--alg", "EdDSA"]);
    let created: Value = serde_json::from_str(&ok(d, &["keys", "rotate", "--rs256", "--now", "--json"])).unwrap();
    let rs256_kid = created[0]["kid"].as_str().unwrap().to_owned();
    let list: Value = serde_json::from_str(&ok(d, &["keys", "list", "--json"])).unwrap();
    let rows: Vec<(&str, &str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["keyring"].as_str().unwrap(), k["alg"].as_str().unwrap(), k["phase"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [("signing", "EdDSA", "active"), ("rs256-id-tokens", "RS256", "active")]);
    let jwks: Value = serde_json::from_str(&ok(d, &["keys", "jwks"])).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == rs256_kid && k["kty"] == "RSA"));
    // Access tokens are still signed by the signing keys.
    let token = ok(d, &["token", "issue", "--sub", "erin"]);
    let inspected: Value = serde_json::from_str(&ok(d, &["token", "inspect", token.trim(), "--json"])).unwrap();
    assert_eq!(inspected["header"]["alg"], "EdDSA");

    let run = tessera(d, &["keys", "rotate", "--rs256"], &[("TESSERA_KEYS__RS256_ID_TOKENS", "false")]);
    assert!(run.code != 0 && run.stderr.contains("no RS256 keys are kept"), "{}", run.stderr);
}

/// `GET /verify` with a bearer token on a running server: the status.
fn verify(addr: std::net::SocketAddr, token: &str) -> u16 {
    common::request(addr, "GET", "/verify", &format!("authorization: Bearer {token}\r\n"), "").unwrap().0
}

/// A login's access token.
fn login(addr: std::net::SocketAddr, user: &str) -> String {
    let body = serde_json::json!({"username": user, "password": common::PASSWORD}).to_string();
    let (status, body) = common::http(addr, "POST", "/auth/login", "application/json", &body).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// Revocations made with `tessera revoke` while no server runs (a session, a token, a subject) are all in force
/// the moment a restarted server first answers `/readyz` with 200, and a token nobody revoked still verifies: a
/// server is ready only once its index holds the whole log.
#[test]
fn a_restarted_server_refuses_every_revoked_token_as_soon_as_it_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A fixed issuer: the restarted server listens on another port, and would otherwise name another issuer.
    std::fs::write(d.join("tessera.toml"), "issuer = \"http://tessera.test\"\n").unwrap();
    for user in ["alice", "bob", "carol"] {
        common::add_user(d, user);
    }
    let server = common::Server::start(d);
    let (by_session, by_id, by_subject, live) = (
        login(server.addr, "alice"),
        login(server.addr, "alice"),
        login(server.addr, "bob"),
        login(server.addr, "carol"),
    );
    for token in [&by_session, &by_id, &by_subject, &live] {
        assert_eq!(verify(server.addr, token), 200);
    }
    drop(server);

    let claim = |token: &str, name: &str| common::claims(token)[name].as_str().unwrap().to_owned();
    ok(d, &["revoke", "--sid", &claim(&by_session, "sid"), "--reason", "restart test"]);
    ok(d, &["revoke", "--jti", &claim(&by_id, "jti")]);
    ok(d, &["revoke", "--sub", "bob"]);

    let restarted = common::Server::start(d);
    let addr = restarted.addr;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while common::request(addr, "GET", "/readyz", "", "").unwrap().0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the restarted server never became ready");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let statuses = [&by_session, &by_id, &by_subject, &live].map(|token| verify(addr, token));
    assert_eq!(statuses, [401, 401, 401, 200], "revoked by session, by token id, by subject; not revoked");
    let (_, metrics) = common::request(addr, "GET", "/metrics", "", "").unwrap();
    assert!(metrics.contains("tessera_revocation_index_entries 3"), "{metrics}");
}

#[test]
fn revoking_an_identifier_that_starts_with_a_dash_works() {
    // Random base64url identifiers start with '-' one time in 64: `--jti -x...` is a value, not a flag.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The revocation written, as `tessera revoke` reports it: `revoked: {json}`, or `already revoked (nothing
    // changed): {json}` for a session that does not exist.
    let revoked = |args: &[&str]| -> Value {
        let out = ok(d, args);
        serde_json::from_str(out.split_once(": ").unwrap().1).unwrap()
    };
    let by_id = revoked(&["revoke", "--jti", "-tAbCdEfGhIjKlMnOpQrStU", "--reason", "test"]);
    assert_eq!((&by_id["kind"], &by_id["jti"]), (&"token_by_id".into(), &"-tAbCdEfGhIjKlMnOpQrStU".into()));
    let by_session = revoked(&["revoke", "--sid", "-session"]);
    assert_eq!(by_session, serde_json::json!({"kind": "session", "sid": "-session"}));
    // The store's log holds the token's revocation under that identifier.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = tessera_store::SqliteStore::open(&d.join("tessera-data/tessera.db")).unwrap();
    let logged: Vec<Value> = runtime
        .block_on(tessera_store::Store::revocations_after(&store, &tessera_store::LogCursor::default(), 0, 10))
        .unwrap()
        .into_iter()
        .map(|entry| serde_json::to_value(entry.revocation).unwrap())
        .collect();
    assert_eq!(logged, [by_id]);
    // And a running server refuses what it covers: a token for a subject named with a leading dash.
    std::fs::write(d.join("tessera.toml"), "issuer = \"http://tessera.test\"\n").unwrap();
    let token = ok(d, &["token", "issue", "--sub=-mallory"]);
    let server = common::Server::start(d);
    assert_eq!(verify(server.addr, token.trim()), 200);
    ok(d, &["revoke", "--sub", "-mallory"]);
    common::eventually("the server refuses the dash subject's token", || verify(server.addr, token.trim()) == 401);
}

#[test]
fn a_user_with_a_role_outside_the_safe_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["admin,staff", "a b", "rôle"] {
        let run = tessera(
            dir.path(),
            &["user", "add", "mallory", "--role", "staff", "--role", role, "--password-stdin"],
            &[],
        );
        assert_ne!(run.code, 0, "{role}");
        assert!(run.stderr.contains("is not allowed"), "{role}: {}", run.stderr);
    }
    let users: Value = serde_json::from_str(&ok(dir.path(), &["user", "list", "--json"])).unwrap();
    assert_eq!(users, serde_json::json!([]), "nothing was added");
}
