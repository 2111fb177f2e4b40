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
    };
    let server = ServerProcess::start(alg)?;
    // The load generator runs on one thread; the server has the machine's cores (the generator shares them).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(drive(server.addr, scenario, &load));
    drop(server);
    let result = result?;
    let (raw_name, raw_rate) = match scenario {
        Scenario::Refresh => ("2 × raw RSA-2048 sign/s", 2.0 * raw_rsa_sign_rate(Duration::from_secs(2))?),
        Scenario::Login => ("2 × raw argon2id hash/s", 2.0 * raw_argon2_rate(Duration::from_secs(3))),
    };
    let report = serde_json::json!({
        "scenario": scenario.name(), "alg": alg.as_str(), "concurrency": load.concurrency,
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

#[derive(Clone, Copy)]
enum Scenario {
    Refresh,
    Login,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Login => "login",
        }
    }
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl ServerProcess {
    fn start(alg: Algorithm) -> anyhow::Result<Self> {
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
        };
        let mut add = Command::new(&exe);
        configure(&mut add);
        let mut adding =
            add.args(["user", "add", USER, "--password-stdin"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
        adding.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
        if !adding.wait()?.success() {
            bail!("could not add the benchmark user");
        }
        let mut serve = Command::new(&exe);
        configure(&mut serve);
        let mut child =
            serve.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening on http://").context("the server did not start")?.parse()?;
        Ok(Self { child, addr, dir })
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

async fn drive(addr: SocketAddr, scenario: Scenario, load: &LoadArgs) -> anyhow::Result<Outcome> {
    let warmup = Duration::from_secs(1);
    let start = Instant::now() + warmup;
    let end = start + load.duration;
    let mut workers = Vec::new();
    for _ in 0..load.concurrency {
        let mut sender = connect(addr).await?;
        let mut token = match scenario {
            Scenario::Refresh => {
                let (status, body) =
                    post(&mut sender, addr, "/auth/login", "application/json", login_body("body")).await?;
                if status != 200 {
                    bail!("login for the benchmark failed: {status}");
                }
                refresh_token_of(&body)?
            }
            Scenario::Login => String::new(),
        };
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::<u32>::new(), 0usize);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = match scenario {
                    Scenario::Refresh => {
                        let form = format!("grant_type=refresh_token&refresh_token={token}");
                        post(&mut sender, addr, "/oauth2/token", "application/x-www-form-urlencoded", form).await
                    }
                    Scenario::Login => {
                        post(&mut sender, addr, "/auth/login", "application/json", login_body("body")).await
                    }
                };
                let ok = match result {
                    Ok((200, body)) => match scenario {
                        Scenario::Refresh => refresh_token_of(&body).map(|next| token = next).is_ok(),
                        Scenario::Login => true,
                    },
                    _ => false,
                };
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
                    if let (Scenario::Refresh, Ok((200, body))) =
                        (scenario, post(&mut sender, addr, "/auth/login", "application/json", login_body("body")).await)
                    {
                        token = refresh_token_of(&body).unwrap_or_default();
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
