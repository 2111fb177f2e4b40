//! `tessera bench`: a bounded load generator against a real `tessera serve` child process, with the raw crypto
//! limits measured in the same run so results compare as ratios across machines.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::Request;
use tessera_jose::Algorithm;

use crate::cli::{BenchCommand, LoadArgs};

const USER: &str = "bench";
const PASSWORD: &str = "bench password 0123456789";

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let (alg, load, scenario) = match command {
        BenchCommand::Refresh { alg, load } => (alg, load, Scenario::Refresh),
        BenchCommand::Login { load } => (Algorithm::EdDSA, load, Scenario::Login),
        BenchCommand::Verify { alg, load } => (alg, load, Scenario::Verify),
        BenchCommand::ClientCredentials { alg, load } => (alg, load, Scenario::ClientCredentials),
    };
    let server = ServerProcess::start(alg, scenario, load.postgres_url.as_deref())?;
    // The load generator runs on one thread; the server has the machine's cores (the generator shares them).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(drive(server.addr, scenario, server.client_secret.as_deref(), &load));
    drop(server);
    let result = result?;
    let (raw_name, raw_rate) = match scenario {
        Scenario::Refresh => ("2 × raw RSA-2048 sign/s", 2.0 * raw_rsa_sign_rate(Duration::from_secs(2))?),
        Scenario::Login => ("2 × raw argon2id hash/s", 2.0 * raw_argon2_rate(Duration::from_secs(3))),
        Scenario::Verify => ("2 × raw signature verify/s", 2.0 * raw_verify_rate(alg, Duration::from_secs(2))?),
        Scenario::ClientCredentials => ("2 × raw signing/s", 2.0 * raw_sign_rate(alg, Duration::from_secs(2))?),
    };
    let report = serde_json::json!({
        "scenario": scenario.name(), "alg": alg.as_str(), "concurrency": load.concurrency,
        "store": if load.postgres_url.is_some() { "postgres" } else { "sqlite" },
        "duration_s": load.duration.as_secs_f64(), "requests": result.count, "errors": result.errors,
        "per_second": result.per_second, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
        "raw_reference": raw_name, "raw_per_second": raw_rate, "ratio_to_raw": result.per_second / raw_rate,
    });
    if load.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} errors, concurrency {} | {raw_name}: {raw_rate:.0} (ratio {:.2})",
            scenario.name(), alg, result.per_second, result.p50_ms, result.p99_ms, result.count, result.errors, load.concurrency,
            result.per_second / raw_rate
        );
    }
    Ok(if result.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Refresh,
    Login,
    Verify,
    ClientCredentials,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Login => "login",
            Self::Verify => "verify",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    /// The benchmark client's secret (client-credentials scenario).
    client_secret: Option<String>,
}

impl ServerProcess {
    fn start(alg: Algorithm, scenario: Scenario, postgres_url: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = std::env::temp_dir().join(format!("tessera-bench-{}-{}", std::process::id(), crate::now()));
        std::fs::create_dir_all(&dir)?;
        let configure = |command: &mut Command| {
            command
                .current_dir(&dir)
                .env("TESSERA_DATA_DIR", dir.join("data"))
                .env("TESSERA_KEYS__ALGORITHM", alg.as_str())
                .env("TESSERA_RATE_LIMITS__LOGIN_PER_IP", "100000000")
                .env("TESSERA_RATE_LIMITS__LOGIN_PER_USER", "100000000")
                .env("RUST_LOG", "warn")
                .env_remove("TESSERA_CONFIG");
            if let Some(url) = postgres_url {
                command.env("TESSERA_STORE__BACKEND", "postgres").env("TESSERA_STORE__POSTGRES_URL", url);
            }
        };
        let mut add = Command::new(&exe);
        configure(&mut add);
        let mut adding =
            add.args(["user", "add", USER, "--password-stdin"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
        adding.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
        if !adding.wait()?.success() {
            bail!("could not add the benchmark user");
        }
        let client_secret = if scenario == Scenario::ClientCredentials {
            let mut add = Command::new(&exe);
            configure(&mut add);
            let output =
                add.args(["client", "add", "bench", "--audience", "api", "--scope", "read", "--json"]).output()?;
            let added: serde_json::Value =
                serde_json::from_slice(&output.stdout).context("could not add the benchmark client")?;
            Some(added.get("client_secret").and_then(serde_json::Value::as_str).context("no client secret")?.to_owned())
        } else {
            None
        };
        let mut serve = Command::new(&exe);
        configure(&mut serve);
        let mut child =
            serve.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening on http://").context("the server did not start")?.parse()?;
        Ok(Self { child, addr, dir, client_secret })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Outcome {
    count: usize,
    errors: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn post(
    sender: &mut Sender,
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: String,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

fn login_body(delivery: &str) -> String {
    serde_json::json!({"username": USER, "password": PASSWORD, "refresh_token_delivery": delivery}).to_string()
}

/// The `refresh_token` of a token response. A byte search rather than a JSON parse: the generator shares the
/// machine with the server, so every microsecond it spends is taken from the server being measured. (Refresh
/// tokens are base64url: no escapes.)
fn refresh_token_of(body: &[u8]) -> anyhow::Result<String> {
    const FIELD: &[u8] = br#""refresh_token":""#;
    let start =
        body.windows(FIELD.len()).position(|w| w == FIELD).context("no refresh_token in the response")? + FIELD.len();
    let rest = body.get(start..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == b'"').context("unterminated refresh_token")?;
    Ok(String::from_utf8(rest.get(..end).unwrap_or_default().to_vec())?)
}

async fn get_bearer(sender: &mut Sender, addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = Request::get(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// What a worker holds between requests: a refresh token, an access token, or the client form.
async fn prepare(
    sender: &mut Sender,
    addr: SocketAddr,
    scenario: Scenario,
    client_secret: Option<&str>,
) -> anyhow::Result<String> {
    if matches!(scenario, Scenario::Refresh | Scenario::Verify) {
        let (status, body) = post(sender, addr, "/auth/login", "application/json", login_body("body")).await?;
        if status != 200 {
            bail!("login for the benchmark failed: {status}");
        }
        if scenario == Scenario::Refresh {
            return refresh_token_of(&body);
        }
        let login: serde_json::Value = serde_json::from_slice(&body)?;
        return Ok(login
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .context("no access token")?
            .to_owned());
    }
    Ok(match scenario {
        Scenario::Login | Scenario::Refresh | Scenario::Verify => String::new(),
        Scenario::ClientCredentials => {
            format!(
                "grant_type=client_credentials&client_id=bench&client_secret={}",
                client_secret.context("no client")?
            )
        }
    })
}

/// One request; `Ok(true)` when it succeeded.
async fn one(sender: &mut Sender, addr: SocketAddr, scenario: Scenario, state: &mut String) -> bool {
    const FORM: &str = "application/x-www-form-urlencoded";
    let result = match scenario {
        Scenario::Refresh => {
            post(sender, addr, "/oauth2/token", FORM, format!("grant_type=refresh_token&refresh_token={state}")).await
        }
        Scenario::Login => post(sender, addr, "/auth/login", "application/json", login_body("body")).await,
        Scenario::Verify => get_bearer(sender, addr, "/verify", state).await,
        Scenario::ClientCredentials => post(sender, addr, "/oauth2/token", FORM, state.clone()).await,
    };
    match (result, scenario) {
        (Ok((200, body)), Scenario::Refresh) => refresh_token_of(&body).map(|next| *state = next).is_ok(),
        (Ok((200, _)), _) => true,
        _ => false,
    }
}

async fn drive(
    addr: SocketAddr,
    scenario: Scenario,
    client_secret: Option<&str>,
    load: &LoadArgs,
) -> anyhow::Result<Outcome> {
    // Every connection is set up (a login each, for some scenarios) before the clock starts: measuring while
    // connections still open would count fewer requests in flight than the concurrency asked for.
    let mut ready = Vec::new();
    for _ in 0..load.concurrency {
        let mut sender = connect(addr).await?;
        let state = prepare(&mut sender, addr, scenario, client_secret).await?;
        ready.push((sender, state));
    }
    let warmup = Duration::from_secs(1);
    let start = Instant::now() + warmup;
    let end = start + load.duration;
    let mut workers = Vec::new();
    for (mut sender, mut state) in ready {
        let client_secret = client_secret.map(str::to_owned);
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::<u32>::new(), 0usize);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = one(&mut sender, addr, scenario, &mut state).await;
                if sent >= start {
                    if ok {
                        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    // A broken connection or session would otherwise spin: reconnect and start over.
                    if let Ok(fresh) = connect(addr).await {
                        sender = fresh;
                    }
                    if let Ok(fresh) = prepare(&mut sender, addr, scenario, client_secret.as_deref()).await {
                        state = fresh;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        f64::from(latencies.get(index).copied().unwrap_or(0)) / 1000.0
    };
    Ok(Outcome {
        count: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / load.duration.as_secs_f64(),
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
    })
}

/// Signatures per second on one core with a key of `alg` (through the token core's key type).
fn raw_sign_rate(alg: Algorithm, budget: Duration) -> anyhow::Result<f64> {
    let key = tessera_jose::SigningKey::generate(alg, tessera_jose::RsaBits::Bits2048)?;
    let message = [0x5au8; 400];
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        key.sign(&message)?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// Signature verifications per second on one core with a key of `alg`: a token-core verify of a one-key set with
/// the bare JWS policy, whose cost is the signature check.
fn raw_verify_rate(alg: Algorithm, budget: Duration) -> anyhow::Result<f64> {
    let key = tessera_jose::SigningKey::generate(alg, tessera_jose::RsaBits::Bits2048)?;
    let token = tessera_jose::sign_compact(&key, br#"{"alg":"x"}"#, b"payload")?;
    let input = token.rsplit_once('.').map(|(i, _)| i.to_owned()).unwrap_or_default();
    let signature =
        tessera_jose::base64url::decode(token.rsplit_once('.').map(|(_, s)| s).unwrap_or_default()).unwrap_or_default();
    let jwk = key.verifying_key().public_jwk().context("no public JWK")?;
    let decode = |v: &Option<String>| v.as_deref().and_then(tessera_jose::base64url::decode).unwrap_or_default();
    let public = match alg {
        Algorithm::RS256 => aws_lc_rs::rsa::PublicKeyComponents { n: decode(&jwk.n), e: decode(&jwk.e) }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| anyhow::anyhow!("bad key"))?,
        Algorithm::ES256 => signature::ParsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            [vec![4], decode(&jwk.x), decode(&jwk.y)].concat(),
        )
        .map_err(|_| anyhow::anyhow!("bad key"))?,
        _ => signature::ParsedPublicKey::new(&signature::ED25519, decode(&jwk.x))
            .map_err(|_| anyhow::anyhow!("bad key"))?,
    };
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        public.verify_sig(input.as_bytes(), &signature).map_err(|_| anyhow::anyhow!("verify failed"))?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on one core.
fn raw_rsa_sign_rate(budget: Duration) -> anyhow::Result<f64> {
    let key =
        RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA keygen failed"))?;
    let rng = SystemRandom::new();
    let message = [0x5au8; 400];
    let mut signature = vec![0u8; key.public_modulus_len()];
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        key.sign(&signature::RSA_PKCS1_SHA256, &rng, &message, &mut signature)
            .map_err(|_| anyhow::anyhow!("sign failed"))?;
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

/// argon2id hashes per second on one core, at the parameters the server uses.
fn raw_argon2_rate(budget: Duration) -> f64 {
    let started = Instant::now();
    let mut count = 0u32;
    while started.elapsed() < budget {
        if tessera_server::password::hash_password("raw argon2 rate").is_ok() {
            count += 1;
        }
    }
    f64::from(count) / started.elapsed().as_secs_f64()
}
