//! `tessera bench`: a bounded load generator against a real `tessera serve` child process, with the raw crypto
//! limits measured in the same run so results compare as ratios across machines.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaKeyPair};
use tessera_jose::Algorithm;
use tessera_store::{Millis, NewFamily, Provenance, Revocation, Store};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::cli::{BenchCommand, BenchStore, LoadArgs};
use crate::config::{Config, StoreBackend, StoreConfig};

const USER: &str = "bench";
const PASSWORD: &str = "bench password 0123456789";

pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let (alg, load, scenario) = match command {
        BenchCommand::Restart { entries, json, already_filled, store } => {
            return restart(entries, json, already_filled, store)
        }
        BenchCommand::Refresh { alg, load } => (alg, load, Scenario::Refresh),
        BenchCommand::Login { load } => (Algorithm::EdDSA, load, Scenario::Login),
        BenchCommand::Verify { alg, tokens, load } => {
            let tokens = tokens.map_or(usize::from(load.concurrency), |n| n as usize);
            (alg, load, Scenario::Verify { tokens })
        }
        BenchCommand::ClientCredentials { alg, load } => (alg, load, Scenario::ClientCredentials),
        BenchCommand::Revoke { load } => (Algorithm::EdDSA, load, Scenario::Revoke),
    };
    // The reference is measured before the server starts and again after it stops, and the two averaged: the
    // host's speed drifts (shared VMs: ±10% within minutes), and the mean of both sides tracks what the load saw.
    let raw_before = raw_reference(scenario, alg)?;
    let server = ServerProcess::start(alg, scenario, &load.store)?;
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // A response arriving must not preempt the server it measures in the middle of a request (on the
                // same two cores each such preemption is a context switch the server pays for): the generator
                // runs when a core is free and then reads every response that arrived meanwhile.
                if let Err(why) = tessera_store::sched_batch_for_this_thread() {
                    eprintln!("load generator: SCHED_BATCH refused ({why}); it runs under the default policy");
                }
                // The load generator runs on one thread; the server has the machine's cores (the generator shares
                // them).
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(until_stopped(drive(server.addr, scenario, server.credential.as_deref(), &load)))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))
    })?;
    let tokens = match scenario {
        Scenario::Verify { tokens } => Some(tokens),
        _ => None,
    };
    drop(server);
    let result = result?;
    let raw_after = raw_reference(scenario, alg)?;
    // (name, before, after, mean)
    let raw =
        raw_before.zip(raw_after).map(|((name, before), (_, after))| (name, before, after, (before + after) / 2.0));
    // The issue's reference is twice one core's rate; signing on both cores at once shows what two cores really
    // sustain (on this kind of VM about 94% of twice one core), measured after it so the two do not compete.
    let both_cores = match scenario {
        Scenario::Refresh if alg == Algorithm::RS256 => Some(raw_rsa_sign_rate_on_both_cores(Duration::from_secs(2))?),
        _ => None,
    };
    let report = serde_json::json!({
        "scenario": scenario.name(), "alg": alg.as_str(), "concurrency": load.concurrency, "tokens": tokens,
        "store": store_name(&load.store),
        "duration_s": load.duration.as_secs_f64(), "requests": result.count, "errors": result.errors,
        "per_second": result.per_second, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
        "raw_reference": raw.map(|(name, ..)| name), "raw_per_second": raw.map(|(.., rate)| rate),
        "raw_per_second_before_and_after": raw.map(|(_, before, after, _)| [before, after]),
        "ratio_to_raw": raw.map(|(.., rate)| result.per_second / rate),
        "raw_rsa_sign_both_cores_per_second": both_cores,
        "ratio_to_both_cores": both_cores.map(|rate| result.per_second / rate),
        "rsa_avx512_ifma": both_cores.map(|_| rsa_avx512_ifma()),
    });
    if load.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut reference = raw.map_or_else(String::new, |(name, before, after, rate)| {
            format!(
                " | {name}: {rate:.0} (before {before:.0}, after {after:.0}; ratio {:.2})",
                result.per_second / rate
            )
        });
        if let Some(rate) = both_cores {
            reference.push_str(&format!(
                " | raw RSA-2048 sign on both cores at once: {rate:.0}/s (ratio {:.2}) | aws-lc AVX-512 IFMA RSA: {}",
                result.per_second / rate,
                if rsa_avx512_ifma() { "yes" } else { "no" }
            ));
        }
        let tokens = tokens.map_or_else(String::new, |n| format!(", {n} distinct tokens"));
        println!(
            "{} {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} errors, concurrency {}{tokens}{reference}",
            scenario.name(),
            alg,
            result.per_second,
            result.p50_ms,
            result.p99_ms,
            result.count,
            result.errors,
            load.concurrency,
        );
    }
    Ok(if result.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Refresh,
    Login,
    /// `tokens` distinct access tokens, each of its own user, presented in turn.
    Verify {
        tokens: usize,
    },
    ClientCredentials,
    Revoke,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Login => "login",
            Self::Verify { .. } => "verify",
            Self::ClientCredentials => "client_credentials",
            Self::Revoke => "revoke",
        }
    }
}

/// A throwaway data directory, and the environment every `tessera` child of a benchmark runs with.
struct Sandbox {
    exe: PathBuf,
    dir: PathBuf,
    alg: Algorithm,
    store: BenchStore,
    /// The admin API credential of this sandbox's server (random per run).
    admin_token: String,
    /// The master key sealing this sandbox's keys (random per run; a shared store refuses to start without one).
    master_key: String,
}

/// The store configuration a benchmark runs on: SQLite; PostgreSQL; Redis (a cluster's writes wait for one
/// replica); both, tiered.
fn store_config(store: &BenchStore) -> StoreConfig {
    let backend = match (store.postgres_url.is_some(), store.redis_url.is_empty()) {
        (true, false) => StoreBackend::Tiered,
        (true, true) => StoreBackend::Postgres,
        (false, false) => StoreBackend::Redis,
        (false, true) => StoreBackend::Sqlite,
    };
    StoreConfig {
        backend,
        postgres_url: store.postgres_url.clone(),
        redis_urls: store.redis_url.clone(),
        redis_cluster: store.redis_cluster,
        redis_wait_replicas: u32::from(store.redis_cluster),
        ..StoreConfig::default()
    }
}

fn store_name(store: &BenchStore) -> &'static str {
    match store_config(store).backend {
        StoreBackend::Redis if store.redis_cluster => "redis-cluster",
        backend => backend.name(),
    }
}

impl Sandbox {
    fn new(alg: Algorithm, store: BenchStore) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = std::env::temp_dir().join(format!("tessera-bench-{}-{}", std::process::id(), crate::now()));
        std::fs::create_dir_all(&dir)?;
        // A shared store is configured in the sandbox's own configuration file (the children run in its
        // directory, and read ./tessera.toml).
        let config = store_config(&store);
        if config.backend != StoreBackend::Sqlite {
            let mut section = format!("[store]\nbackend = {}\n", toml_string(config.backend.name()));
            if let Some(url) = &config.postgres_url {
                section += &format!("postgres_url = {}\n", toml_string(url));
            }
            if !config.redis_urls.is_empty() {
                let urls: Vec<String> = config.redis_urls.iter().map(|url| toml_string(url)).collect();
                section += &format!(
                    "redis_urls = [{}]\nredis_cluster = {}\nredis_wait_replicas = {}\n",
                    urls.join(", "),
                    config.redis_cluster,
                    config.redis_wait_replicas
                );
            }
            std::fs::write(dir.join("tessera.toml"), section)?;
        }
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow::anyhow!("no random numbers"))?;
        let admin_token = secret.iter().map(|byte| format!("{byte:02x}")).collect();
        let (_, master_key) = tessera_keys::MasterKey::generate()?;
        Ok(Self { exe, dir, alg, store, admin_token, master_key })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `tessera` with the benchmark's configuration (nothing from the caller's environment or files).
    fn command(&self) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .current_dir(&self.dir)
            .env("TESSERA_DATA_DIR", self.data_dir())
            .env("TESSERA_KEYS__ALGORITHM", self.alg.as_str())
            .env("TESSERA_RATE_LIMITS__LOGIN_PER_IP", "100000000")
            .env("TESSERA_ADMIN_TOKEN", &self.admin_token)
            .env(crate::config::MASTER_KEY_ENV, &self.master_key)
            .env("RUST_LOG", "warn")
            .env_remove("TESSERA_CONFIG");
        command
    }

    /// The store the server will use, opened directly.
    async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let config = Config { data_dir: self.data_dir(), store: store_config(&self.store), ..Config::default() };
        crate::serve::open_store(&config).await
    }

    /// Starts `tessera serve` on a free port; returns once it listens.
    fn serve(&self) -> anyhow::Result<(Child, SocketAddr)> {
        let mut child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening on http://").context("the server did not start")?.parse();
        match addr {
            Ok(addr) => Ok((child, addr)),
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(err.into())
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `tessera serve` with the benchmark's user (and client) set up. Fields drop in order: the server is
/// stopped before its directory goes.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// What the scenario authenticates with: the benchmark client's secret (client credentials) or the admin
    /// API's credential (revocations).
    credential: Option<String>,
    _sandbox: Sandbox,
}

impl ServerProcess {
    fn start(alg: Algorithm, scenario: Scenario, store: &BenchStore) -> anyhow::Result<Self> {
        let sandbox = Sandbox::new(alg, store.clone())?;
        let mut adding = sandbox
            .command()
            .args(["user", "add", USER, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        adding.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
        if !adding.wait()?.success() {
            bail!("could not add the benchmark user");
        }
        let credential = if matches!(scenario, Scenario::Revoke | Scenario::Verify { .. }) {
            Some(sandbox.admin_token.clone())
        } else if scenario == Scenario::ClientCredentials {
            let output = sandbox
                .command()
                .args(["client", "add", "bench", "--audience", "api", "--scope", "read", "--json"])
                .output()?;
            let added: serde_json::Value =
                serde_json::from_slice(&output.stdout).context("could not add the benchmark client")?;
            Some(added.get("client_secret").and_then(serde_json::Value::as_str).context("no client secret")?.to_owned())
        } else {
            None
        };
        let (child, addr) = sandbox.serve()?;
        Ok(Self { child, addr, credential, _sandbox: sandbox })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Outcome {
    count: usize,
    errors: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One keep-alive HTTP/1.1 connection, driven by hand: a request is one write, a response one or two reads
/// parsed in place. The generator shares the machine with the server it measures, so its CPU per request is
/// taken from the server: hyper's client (a connection task, a channel hop and header maps per request) cost
/// about 25 µs of CPU per request here, which at 35,000 requests/s is most of a core.
struct Wire {
    stream: TcpStream,
    addr: SocketAddr,
    /// Sent with every POST (the admin API's credential).
    bearer: Option<String>,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, addr, bearer: None, request: Vec::with_capacity(1024), response: Vec::with_capacity(4096) })
    }

    async fn post(&mut self, path: &str, content_type: &str, body: &str) -> anyhow::Result<(u16, &[u8])> {
        self.request.clear();
        write!(self.request, "POST {path} HTTP/1.1\r\nhost: {}\r\n", self.addr)?;
        if let Some(token) = &self.bearer {
            write!(self.request, "authorization: Bearer {token}\r\n")?;
        }
        write!(self.request, "content-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}", body.len())?;
        self.exchange().await
    }

    async fn get(&mut self, path: &str, bearer: Option<&str>) -> anyhow::Result<(u16, &[u8])> {
        self.request.clear();
        write!(self.request, "GET {path} HTTP/1.1\r\nhost: {}\r\n", self.addr)?;
        if let Some(token) = bearer {
            write!(self.request, "authorization: Bearer {token}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.exchange().await
    }

    /// Sends the prepared request and reads one response: its status and body (by `content-length`; the server
    /// never chunks these small responses, and a chunked one is refused rather than misread).
    async fn exchange(&mut self) -> anyhow::Result<(u16, &[u8])> {
        self.stream.write_all(&self.request).await?;
        self.response.clear();
        loop {
            if self.stream.read_buf(&mut self.response).await? == 0 {
                bail!("the server closed the connection");
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = head.parse(&self.response)? else { continue };
            let status = head.code.context("no status")?;
            let mut body_len = 0;
            for header in head.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(header.value)?.parse::<usize>()?;
                } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("unexpected chunked response");
                }
            }
            let end = head_len + body_len;
            if self.response.len() >= end {
                return Ok((status, self.response.get(head_len..end).unwrap_or_default()));
            }
        }
    }
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

/// What worker `worker` of `workers` holds between requests, used in turn: a refresh token, its share of the
/// access tokens, the client form, or nothing.
async fn prepare(
    wire: &mut Wire,
    scenario: Scenario,
    credential: Option<&str>,
    (worker, workers): (usize, usize),
) -> anyhow::Result<Vec<String>> {
    Ok(match scenario {
        Scenario::Refresh => {
            let (status, body) = wire.post("/auth/login", "application/json", &login_body("body")).await?;
            if status != 200 {
                bail!("login for the benchmark failed: {status}");
            }
            vec![refresh_token_of(body)?]
        }
        Scenario::Verify { tokens } => {
            // Tokens of distinct users, minted through the admin API (a login each would spend minutes in
            // argon2). Worker w presents tokens w, w + workers, ...; with fewer tokens than workers, they share.
            let admin = Some(credential.context("no admin credential")?.to_owned());
            let saved = std::mem::replace(&mut wire.bearer, admin);
            let mut held = Vec::new();
            for user in (worker..tokens.max(worker + 1)).step_by(workers.max(1)) {
                let body = format!(r#"{{"sub":"bench-user-{}"}}"#, user % tokens.max(1));
                let (status, body) = wire.post("/admin/v1/sessions", "application/json", &body).await?;
                if status != 200 && status != 201 {
                    bail!("minting a token for the benchmark failed: {status}");
                }
                let minted: serde_json::Value = serde_json::from_slice(body)?;
                let token =
                    minted.get("access_token").and_then(serde_json::Value::as_str).context("no access token")?;
                held.push(token.to_owned());
            }
            wire.bearer = saved;
            held
        }
        Scenario::Login => vec![String::new()],
        Scenario::ClientCredentials => {
            vec![format!(
                "grant_type=client_credentials&client_id=bench&client_secret={}",
                credential.context("no client")?
            )]
        }
        Scenario::Revoke => {
            wire.bearer = Some(credential.context("no admin credential")?.to_owned());
            vec![String::new()]
        }
    })
}

static NEXT_REVOCATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One request; `Ok(true)` when it succeeded.
async fn one(wire: &mut Wire, scenario: Scenario, state: &mut String) -> bool {
    const FORM: &str = "application/x-www-form-urlencoded";
    let result = match scenario {
        Scenario::Refresh => {
            let form = format!("grant_type=refresh_token&refresh_token={state}");
            wire.post("/oauth2/token", FORM, &form).await
        }
        Scenario::Login => wire.post("/auth/login", "application/json", &login_body("body")).await,
        Scenario::Verify { .. } => wire.get("/verify", Some(state)).await,
        Scenario::ClientCredentials => wire.post("/oauth2/token", FORM, state).await,
        Scenario::Revoke => {
            // A token id never revoked before, so that every request is a new durable write.
            let n = NEXT_REVOCATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = format!(r#"{{"jti":"bench-{n}","reason":"benchmark"}}"#);
            wire.post("/admin/v1/revocations", "application/json", &body).await
        }
    };
    match (result, scenario) {
        (Ok((200, body)), Scenario::Refresh) => refresh_token_of(body).map(|next| *state = next).is_ok(),
        (Ok((200 | 201, _)), _) => true,
        _ => false,
    }
}

async fn drive(
    addr: SocketAddr,
    scenario: Scenario,
    credential: Option<&str>,
    load: &LoadArgs,
) -> anyhow::Result<Outcome> {
    // Every connection is set up (a login each, for some scenarios) before the clock starts: measuring while
    // connections still open would count fewer requests in flight than the concurrency asked for.
    let mut ready = Vec::new();
    let connections = usize::from(load.concurrency);
    for worker in 0..connections {
        let mut wire = Wire::connect(addr).await?;
        let held = prepare(&mut wire, scenario, credential, (worker, connections)).await?;
        ready.push((worker, wire, held));
    }
    let warmup = Duration::from_secs(1);
    let start = Instant::now() + warmup;
    let end = start + load.duration;
    let mut workers = Vec::new();
    for (worker, mut wire, mut held) in ready {
        let credential = credential.map(str::to_owned);
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::<u32>::new(), 0usize);
            let mut turn = 0usize;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let count = held.len();
                let Some(state) = held.get_mut(turn % count.max(1)) else { break };
                turn = turn.wrapping_add(1);
                let ok = one(&mut wire, scenario, state).await;
                if sent >= start {
                    if ok {
                        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    // A broken connection or session would otherwise spin: reconnect and start over.
                    if let Ok(fresh) = Wire::connect(addr).await {
                        wire = fresh;
                    }
                    if let Ok(fresh) = prepare(&mut wire, scenario, credential.as_deref(), (worker, connections)).await
                    {
                        held = fresh;
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

/// The raw rate a scenario is compared with, doubled for the 2 cores (the issue's reference), and its name.
fn raw_reference(scenario: Scenario, alg: Algorithm) -> anyhow::Result<Option<(&'static str, f64)>> {
    Ok(match scenario {
        // The issue's RS256 reference: aws-lc's RSA-2048 signing itself. Other algorithms: the token core's signing.
        Scenario::Refresh if alg == Algorithm::RS256 => {
            Some(("2 × raw RSA-2048 sign/s", 2.0 * raw_rsa_sign_rate(Duration::from_secs(2))?))
        }
        Scenario::Refresh | Scenario::ClientCredentials => {
            Some(("2 × raw signing/s", 2.0 * raw_sign_rate(alg, Duration::from_secs(2))?))
        }
        Scenario::Login => Some(("2 × raw argon2id hash/s", 2.0 * raw_argon2_rate(Duration::from_secs(3)))),
        Scenario::Verify { .. } => {
            Some(("2 × raw signature verify/s", 2.0 * raw_verify_rate(alg, Duration::from_secs(2))?))
        }
        // A revocation signs nothing: its cost is the store's durable write.
        Scenario::Revoke => None,
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

/// RSA-2048 signatures per second with both cores signing at once (one thread each).
fn raw_rsa_sign_rate_on_both_cores(budget: Duration) -> anyhow::Result<f64> {
    std::thread::scope(|scope| {
        let threads = [scope.spawn(|| raw_rsa_sign_rate(budget)), scope.spawn(|| raw_rsa_sign_rate(budget))];
        threads.into_iter().try_fold(0.0, |sum, thread| {
            Ok(sum + thread.join().map_err(|_| anyhow::anyhow!("a signing thread panicked"))??)
        })
    })
}

/// Whether aws-lc signs RSA-2048 with its AVX-512 IFMA code (the CPUID bits of `CRYPTO_is_AVX512IFMA_capable`).
/// That code signs about twice as fast, so the same server's non-signing work weighs twice as much against it:
/// refresh ratios are only comparable between hosts that agree on this.
fn rsa_avx512_ifma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512dq") && has!("avx512ifma") && has!("avx512bw") && has!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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

/// Fills a store with `entries` live revocations, restarts a server on it, and reports how long until it is ready.
fn restart(entries: u64, json: bool, already_filled: bool, store: BenchStore) -> anyhow::Result<ExitCode> {
    let store_name = store_name(&store);
    let sandbox = Sandbox::new(Algorithm::EdDSA, store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let seeding = Instant::now();
    if !already_filled {
        runtime.block_on(until_stopped(seed(&sandbox, entries, crate::now_ms())))?;
    }
    let seeded_in = seeding.elapsed();

    let starting = Instant::now();
    let (mut child, addr) = sandbox.serve()?;
    let listening_in = starting.elapsed();
    let ready = runtime.block_on(until_stopped(wait_ready(addr)));
    let ready_in = starting.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let loaded = ready?;
    if loaded < entries {
        bail!("the server was ready with {loaded} index entries of the {entries} in the store");
    }
    if json {
        let report = serde_json::json!({
            "scenario": "restart", "store": store_name, "entries": entries, "index_entries": loaded,
            "seed_s": seeded_in.as_secs_f64(), "listening_s": listening_in.as_secs_f64(),
            "ready_s": ready_in.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "restart ({store_name}): {loaded} index entries; listening after {:.2} s, ready after {:.2} s (store filled in {:.1} s)",
            listening_in.as_secs_f64(),
            ready_in.as_secs_f64(),
            seeded_in.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the revocations through the store's own API, many at a time (the writes are what a busy cluster's
/// nodes would have made): token ids expiring within the hour, revoked sessions (created first: revoking an
/// unknown session logs nothing), and subjects logged out everywhere within the last quarter hour.
async fn seed(sandbox: &Sandbox, entries: u64, now: Millis) -> anyhow::Result<()> {
    const IN_FLIGHT: usize = 512;
    let store = sandbox.store().await?;
    let sessions = entries / 5;
    let subjects = entries / 10;
    let provenance = Provenance::new("bench", "restart benchmark");
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..entries {
        let store = Arc::clone(&store);
        let provenance = provenance.clone();
        let spread = i64::try_from(n % 600_000).unwrap_or(0);
        writes.spawn(async move {
            let revocation = if n < sessions {
                let sid = format!("bench-session-{n}");
                store
                    .create_family(NewFamily {
                        sid: sid.clone(),
                        sub: format!("bench-user-{n}"),
                        client_id: "tessera".into(),
                        scope: None,
                        roles: Vec::new(),
                        claims: serde_json::Map::new(),
                        user_agent: None,
                        created_at: now - 60_000,
                        expires_at: now + 86_400_000,
                    })
                    .await?;
                Revocation::Session { sid }
            } else if n < sessions + subjects {
                Revocation::Subject { sub: format!("bench-subject-{n}"), not_before: now - spread }
            } else {
                Revocation::Token { jti: format!("bench-token-{n}"), expires_at: now + 3_600_000 - spread }
            };
            store.revoke(revocation, provenance, now).await
        });
        while writes.len() >= IN_FLIGHT {
            if let Some(done) = writes.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = writes.join_next().await {
        done??;
    }
    Ok(())
}

/// Polls /readyz until it answers 200 (at most a minute), then reads the index size from /metrics.
async fn wait_ready(addr: SocketAddr) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut wire = Wire::connect(addr).await?;
    loop {
        let (status, _) = wire.get("/readyz", None).await?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("not ready after a minute (last answer {status})");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, metrics) = wire.get("/metrics", None).await?;
    let text = std::str::from_utf8(metrics)?;
    let gauge = text
        .lines()
        .find_map(|line| line.strip_prefix("tessera_revocation_index_entries "))
        .context("no tessera_revocation_index_entries in /metrics")?;
    Ok(gauge.trim().parse::<f64>()? as u64)
}

/// `work`, or an error as soon as the command is interrupted (Ctrl-C, SIGTERM): returning lets the server child
/// be stopped and the throwaway data directory (with its unencrypted keys) be removed, which an exit on the
/// signal would skip.
async fn until_stopped<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        () = tessera_server::shutdown_signal() => bail!("interrupted; the benchmark's server was stopped"),
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
