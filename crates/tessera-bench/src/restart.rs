//! `restart`: how soon a node restarted on a store full of live revocations is ready.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tessera_jose::Algorithm;
use tessera_server::clock::{Clock as _, SystemClock};
use tessera_store::{Millis, NewSession, Provenance, Revocation};

use crate::cli::RestartArgs;
use crate::sandbox::{store_name, Sandbox};
use crate::until_stopped;
use crate::wire::Wire;

/// A restart measured.
#[derive(Debug)]
pub struct Restarted {
    /// The store's name.
    pub store: &'static str,
    /// Live revocation entries in the store.
    pub entries: u64,
    /// Entries in the server's index once it was ready (every one of the store's, or the run fails).
    pub index_entries: u64,
    /// How long filling the store took (zero with `--already-filled`).
    pub seeded_in: Duration,
    /// From the start of `tessera serve` until it listened.
    pub listening_in: Duration,
    /// From the start of `tessera serve` until `/readyz` answered 200.
    pub ready_in: Duration,
}

impl Restarted {
    /// The report `--json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": "restart", "store": self.store, "entries": self.entries, "index_entries": self.index_entries,
            "seed_s": self.seeded_in.as_secs_f64(), "listening_s": self.listening_in.as_secs_f64(),
            "ready_s": self.ready_in.as_secs_f64(),
        })
    }
}

/// Fills a store with `entries` live revocations, restarts the `tessera` binary `tessera` on it, and measures how
/// long until it is ready.
///
/// # Errors
/// The store or the server cannot be started, or the server was ready before every entry was in its index.
pub fn measure(tessera: &Path, args: &RestartArgs) -> anyhow::Result<Restarted> {
    let store_name = store_name(&args.store);
    let sandbox = Sandbox::new(tessera, Algorithm::EdDSA, args.store.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let seeding = Instant::now();
    if !args.already_filled {
        runtime.block_on(until_stopped(seed(&sandbox, args.entries, SystemClock.now_ms())))?;
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
    if loaded < args.entries {
        bail!("the server was ready with {loaded} index entries of the {} in the store", args.entries);
    }
    Ok(Restarted { store: store_name, entries: args.entries, index_entries: loaded, seeded_in, listening_in, ready_in })
}

/// [`measure`], printed.
pub(crate) fn run(tessera: &Path, args: &RestartArgs, json: bool) -> anyhow::Result<ExitCode> {
    let restarted = measure(tessera, args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&restarted.to_json())?);
    } else {
        println!(
            "restart ({}): {} index entries; listening after {:.2} s, ready after {:.2} s (store filled in {:.1} s)",
            restarted.store,
            restarted.index_entries,
            restarted.listening_in.as_secs_f64(),
            restarted.ready_in.as_secs_f64(),
            restarted.seeded_in.as_secs_f64()
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
    crate::spawn_bounded(entries, IN_FLIGHT, |n| {
        let store = Arc::clone(&store);
        let provenance = provenance.clone();
        let spread = i64::try_from(n % 600_000).unwrap_or(0);
        async move {
            let revocation = if n < sessions {
                let sid = format!("bench-session-{n}");
                store
                    .create_session(NewSession {
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
            store.revoke(revocation, provenance, now).await?;
            Ok(())
        }
    })
    .await
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
