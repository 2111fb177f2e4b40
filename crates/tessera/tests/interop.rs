//! Interoperability with an independent JOSE implementation (PyJWT with `cryptography`), both ways, for every
//! algorithm Tessera signs with: Tessera's tokens verify there against Tessera's JWKS, and tokens signed there
//! verify in Tessera through a JWKS served over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

fn python(script: &str, args: &[&str]) -> String {
    let check = Command::new("python3").args(["-c", "import jwt, cryptography"]).output();
    match check {
        Ok(output) if output.status.success() => {}
        _ => panic!("PyJWT is missing: `pip install 'pyjwt[crypto]'` (scripts/test installs it; needs python3)"),
    }
    let output = Command::new("python3").arg("-c").arg(script).args(args).stderr(Stdio::piped()).output().unwrap();
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn tessera(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = common::tessera(dir);
    command.args(args);
    let output = command.output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

const PYJWT_VERIFIES: &str = r#"
import json, sys, jwt
token, jwks, alg = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
kid = jwt.get_unverified_header(token)["kid"]
key = jwt.PyJWKSet.from_dict(jwks)[kid]
claims = jwt.decode(token, key.key, algorithms=[alg], audience="api", issuer="http://127.0.0.1:8080")
assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
print(claims["sub"])
"#;

#[test]
fn tessera_tokens_verify_in_pyjwt() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(tessera(d, &["keys", "generate", "--alg", alg]).0);
        let (ok, token, err) = tessera(d, &["token", "issue", "--sub", "alice", "--aud", "api"]);
        assert!(ok, "{err}");
        let (_, jwks, _) = tessera(d, &["keys", "jwks"]);
        std::fs::write(d.join("jwks.json"), jwks).unwrap();
        let sub = python(PYJWT_VERIFIES, &[token.trim(), d.join("jwks.json").to_str().unwrap(), alg]);
        assert_eq!(sub.trim(), "alice", "{alg}");
    }
}

const PYJWT_SIGNS: &str = r#"
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
alg = sys.argv[1]
if alg == "RS256":
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
elif alg == "ES256":
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
else:
    key = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "pyjwt-" + alg, "alg": alg, "use": "sig"})
now = int(time.time())
claims = {"iss": "https://pyjwt.test", "sub": "bob", "aud": "api", "exp": now + 300, "iat": now, "jti": "p1", "client_id": "py"}
token = jwt.encode(claims, key, algorithm=alg, headers={"kid": jwk["kid"], "typ": "at+jwt"})
print(json.dumps({"token": token, "jwks": {"keys": [jwk]}}))
"#;

#[test]
fn pyjwt_tokens_verify_in_tessera_through_a_served_jwks() {
    for alg in ["EdDSA", "ES256", "RS256"] {
        let made: serde_json::Value = serde_json::from_str(&python(PYJWT_SIGNS, &[alg])).unwrap();
        let jwks = made["jwks"].to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request).unwrap();
            write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}", jwks.len()).unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let token = made["token"].as_str().unwrap();
        let (ok, claims, err) = tessera(
            dir.path(),
            &["token", "verify", token, "--jwks", &url, "--iss", "https://pyjwt.test", "--aud", "api"],
        );
        assert!(ok, "{alg}: {err}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&claims).unwrap()["sub"], "bob", "{alg}");
        server.join().unwrap();
    }
}
