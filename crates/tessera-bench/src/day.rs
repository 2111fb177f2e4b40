//! `day`: a compressed day of revocations. Millions of token revocations are written through the store library
//! (as a busy cluster's other nodes would write them) while a real `tessera serve` follows the log, drops what
//! has expired from its index and forgets old log entries in the background — with token lifetimes and a log
//! retention of minutes, so that a day's worth of the reference design's revocations (50 million) passes in a
//! run of minutes and most of it expires during the run. Sampled as it goes: the store's size, the server's index
//! and memory, and the time from a revocation written to the server refusing the token. Once the windows are
//! full, every one of them should stay flat.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tessera_jose::Algorithm;
use tessera_server::clock::{Clock as _, SystemClock};
use tessera_store::{Provenance, Revocation, Store};

use crate::cli::DayArgs;
use crate::sandbox::{store_name, Sandbox};
use crate::until_stopped;
use crate::wire::Wire;

/// Writes in flight at once.
const IN_FLIGHT: usize = 256;
/// Between one probe's refusal and the next probe.
const PROBE_PAUSE: Duration = Duration::from_millis(100);
/// How long the server has to refuse a revoked token before the probe counts it as never refused.
const REFUSED_WITHIN: Duration = Duration::from_secs(30);

/// One look at the run.
#[derive(Debug, Clone)]
struct Sample {
    elapsed_s: f64,
    written: u64,
    writes_per_s: f64,
    store_bytes: Option<u64>,
    server_rss_bytes: Option<u64>,
    index_entries: Option<f64>,
    index_memory_bytes: Option<f64>,
    log_forgotten: Option<f64>,
    /// Revocation written to token refused, over the probes since the previous sample: how many, median, max.
    probes: usize,
    revoked_to_refused_p50_ms: f64,
    revoked_to_refused_max_ms: f64,
}

impl Sample {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "elapsed_s": self.elapsed_s, "written": self.written, "writes_per_s": self.writes_per_s,
            "store_bytes": self.store_bytes, "server_rss_bytes": self.server_rss_bytes,
            "index_entries": self.index_entries, "index_memory_bytes": self.index_memory_bytes,
            "log_forgotten": self.log_forgotten, "probes": self.probes,
            "revoked_to_refused_p50_ms": self.revoked_to_refused_p50_ms,
            "revoked_to_refused_max_ms": self.revoked_to_refused_max_ms,
        })
    }
}

/// Runs the compressed day and prints its samples.
pub(crate) fn run(tessera: &Path, args: &DayArgs) -> anyhow::Result<ExitCode> {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let sandbox = Sandbox::new(tessera, Algorithm::EdDSA, args.store.clone())?.with_settings([
        ("TESSERA_TOKENS__ACCESS_TTL", duration(args.token_lifetime)),
        ("TESSERA_TOKENS__SERVICE_TTL", duration(args.token_lifetime)),
        ("TESSERA_REVOCATION__LOG_RETENTION", duration(args.log_retention)),
    ]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let store = runtime.block_on(sandbox.store())?;
    let (mut child, addr) = sandbox.serve()?;
    let measured = runtime.block_on(until_stopped(measure(&sandbox, &store, addr, child.id(), args)));
    let _ = child.kill();
    let _ = child.wait();
    let samples = measured?;
    if args.json {
        let report = serde_json::json!({
            "scenario": "day",
            "store": store_name(&args.store),
            "revocations": args.revocations,
            "token_lifetime_s": args.token_lifetime.as_secs(),
            "log_retention_s": args.log_retention.as_secs(),
            "samples": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    sandbox: &Sandbox,
    store: &Arc<dyn Store>,
    addr: SocketAddr,
    server_pid: u32,
    args: &DayArgs,
) -> anyhow::Result<Vec<Sample>> {
    let started = Instant::now();
    let written = Arc::new(AtomicU64::new(0));
    let writer =
        tokio::spawn(write_revocations(Arc::clone(store), args.revocations, args.rate, args.token_lifetime, {
            let written = Arc::clone(&written);
            move || written.fetch_add(1, Ordering::Relaxed)
        }));
    // Probes one after another, each a fresh token revoked and polled until refused, for as long as the writes go.
    let lags = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let prober = tokio::spawn(probe_forever(
        addr,
        sandbox.admin_token().to_owned(),
        Arc::clone(store),
        args.token_lifetime,
        Arc::clone(&lags),
    ));
    let mut samples = Vec::new();
    let mut last = (Duration::ZERO, 0_u64);
    eprintln!(
        "{:>7} {:>11} {:>9} {:>12} {:>11} {:>11} {:>12} {:>12} {:>7} {:>19}",
        "time",
        "written",
        "writes/s",
        "store",
        "server RSS",
        "index",
        "index mem",
        "forgotten",
        "probes",
        "refused p50 / max"
    );
    loop {
        let finished = writer.is_finished();
        if prober.is_finished() {
            prober.await??;
            bail!("the probe stopped");
        }
        let metrics = metrics(&mut Wire::connect(addr).await?).await?;
        let mut lags = std::mem::take(&mut *lags.lock().map_err(|_| anyhow::anyhow!("a probe panicked"))?);
        lags.sort();
        let ms = |lag: Option<&Duration>| lag.map_or(f64::NAN, |lag| lag.as_secs_f64() * 1000.0);
        let (elapsed, count) = (started.elapsed(), written.load(Ordering::Relaxed));
        let rate = (count - last.1) as f64 / (elapsed - last.0).as_secs_f64().max(1e-3);
        last = (elapsed, count);
        let sample = Sample {
            elapsed_s: elapsed.as_secs_f64(),
            written: count,
            writes_per_s: rate,
            store_bytes: store_bytes(sandbox, args),
            server_rss_bytes: rss_bytes(server_pid),
            index_entries: metric(&metrics, "tessera_revocation_index_entries"),
            index_memory_bytes: metric(&metrics, "tessera_revocation_index_memory_bytes"),
            log_forgotten: metric(&metrics, "tessera_revocation_log_forgotten_total"),
            probes: lags.len(),
            revoked_to_refused_p50_ms: ms(lags.get(lags.len() / 2)),
            revoked_to_refused_max_ms: ms(lags.last()),
        };
        let mb = |bytes: Option<f64>| bytes.map_or("-".to_owned(), |b| format!("{:.1} MB", b / 1e6));
        eprintln!(
            "{:>6.0}s {:>11} {:>9.0} {:>12} {:>11} {:>11} {:>12} {:>12} {:>7} {:>7.1} / {:>7.1} ms",
            sample.elapsed_s,
            sample.written,
            sample.writes_per_s,
            mb(sample.store_bytes.map(|b| b as f64)),
            mb(sample.server_rss_bytes.map(|b| b as f64)),
            sample.index_entries.map_or("-".to_owned(), |n| format!("{n:.0}")),
            mb(sample.index_memory_bytes),
            sample.log_forgotten.map_or("-".to_owned(), |n| format!("{n:.0}")),
            sample.probes,
            sample.revoked_to_refused_p50_ms,
            sample.revoked_to_refused_max_ms,
        );
        samples.push(sample);
        if finished {
            prober.abort();
            writer.await??;
            break;
        }
        if elapsed > args.max_duration {
            prober.abort();
            writer.abort();
            bail!("not all {} revocations written within {:?}", args.revocations, args.max_duration);
        }
        tokio::time::sleep(args.sample_every).await;
    }
    Ok(samples)
}

/// Probes one after another (see [`revoked_to_refused`]), [`PROBE_PAUSE`] apart, adding each time to `lags`.
async fn probe_forever(
    addr: SocketAddr,
    admin_token: String,
    store: Arc<dyn Store>,
    lifetime: Duration,
    lags: Arc<std::sync::Mutex<Vec<Duration>>>,
) -> anyhow::Result<()> {
    loop {
        // Fresh connections each time: a kept one could idle past the server's keep-alive.
        let mut admin = Wire::connect(addr).await?;
        admin.bearer = Some(admin_token.clone());
        let mut probe = Wire::connect(addr).await?;
        let lag = revoked_to_refused(&mut admin, &mut probe, &store, lifetime).await?;
        lags.lock().map_err(|_| anyhow::anyhow!("a sampler panicked"))?.push(lag);
        tokio::time::sleep(PROBE_PAUSE).await;
    }
}

/// Writes `count` revocations of distinct token ids, each expiring `lifetime` after it is written, `rate` a second
/// at most with [`IN_FLIGHT`] at once; `wrote` is called after each.
async fn write_revocations(
    store: Arc<dyn Store>,
    count: u64,
    rate: u32,
    lifetime: Duration,
    wrote: impl Fn() -> u64 + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let lifetime_ms = i64::try_from(lifetime.as_millis())?;
    let provenance = Provenance::new("bench", "compressed day");
    let wrote = Arc::new(wrote);
    let started = tokio::time::Instant::now();
    crate::spawn_bounded(count, IN_FLIGHT, |n| {
        let (store, provenance, wrote) = (Arc::clone(&store), provenance.clone(), Arc::clone(&wrote));
        // Paced: revocation n goes out no earlier than n / rate seconds in.
        let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
        async move {
            tokio::time::sleep_until(due).await;
            let now = SystemClock.now_ms();
            let revocation = Revocation::Token { jti: format!("day-{n}"), expires_at: now + lifetime_ms };
            store.revoke(revocation, provenance, now).await?;
            wrote();
            Ok(())
        }
    })
    .await
}

/// A token minted through the admin API and accepted by `/verify`, then revoked through the store like the bulk
/// writes: how long until `/verify` refuses it.
async fn revoked_to_refused(
    admin: &mut Wire,
    probe: &mut Wire,
    store: &Arc<dyn Store>,
    lifetime: Duration,
) -> anyhow::Result<Duration> {
    let body = serde_json::json!({"sub": "day-probe"}).to_string();
    let (status, answer) = admin.post("/admin/v1/sessions", "application/json", &body).await?;
    if status != 201 {
        bail!("minting the probe's token answered {status}");
    }
    let answer: serde_json::Value = serde_json::from_slice(answer)?;
    let token = answer.get("access_token").and_then(serde_json::Value::as_str).context("no access token")?.to_owned();
    let unverified = tessera_jose::decode_unverified(&token, tessera_jose::DEFAULT_MAX_TOKEN_LEN)?;
    let jti = unverified.payload.claims().and_then(|claims| claims.jti.clone()).context("no jti")?;
    if probe.get("/verify", Some(&token)).await?.0 != 200 {
        bail!("/verify refused the probe's fresh token");
    }
    let now = SystemClock.now_ms();
    let expires_at = now + i64::try_from(lifetime.as_millis())?;
    let sent = Instant::now();
    store.revoke(Revocation::Token { jti, expires_at }, Provenance::new("bench", "probe"), now).await?;
    while probe.get("/verify", Some(&token)).await?.0 != 401 {
        if sent.elapsed() > REFUSED_WITHIN {
            bail!("a revoked token was still accepted after {REFUSED_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(sent.elapsed())
}

async fn metrics(wire: &mut Wire) -> anyhow::Result<String> {
    let (status, body) = wire.get("/metrics", None).await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// The value of an unlabelled series in a Prometheus text exposition.
fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The server's resident memory, from `/proc` (Linux).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What the store takes: SQLite's files on disk, Redis's `used_memory` (summed over a cluster's masters and
/// replicas), PostgreSQL's database size. `None` when the tool to ask (`redis-cli`, `psql`) is missing.
fn store_bytes(sandbox: &Sandbox, args: &DayArgs) -> Option<u64> {
    let store = &args.store;
    if let Some(url) = &store.postgres_url {
        let out = Command::new("psql")
            .args([url.as_str(), "-Atc", "SELECT pg_database_size(current_database())"])
            .output()
            .ok()?;
        return String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    }
    if !store.redis_url.is_empty() {
        let nodes: Vec<String> = if store.redis_cluster {
            let out =
                Command::new("redis-cli").args(["-u", store.redis_url.first()?, "CLUSTER", "NODES"]).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.split(' ').nth(1)?.split('@').next().map(|addr| format!("redis://{addr}")))
                .collect()
        } else {
            store.redis_url.clone()
        };
        return nodes
            .iter()
            .map(|url| {
                let out = Command::new("redis-cli").args(["-u", url, "INFO", "memory"]).output().ok()?;
                let info = String::from_utf8_lossy(&out.stdout).into_owned();
                info.lines().find_map(|line| line.strip_prefix("used_memory:")?.trim().parse::<u64>().ok())
            })
            .sum();
    }
    let files = std::fs::read_dir(sandbox.data_dir()).ok()?;
    Some(
        files
            .filter_map(Result::ok)
            .filter_map(|file| file.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum(),
    )
}
