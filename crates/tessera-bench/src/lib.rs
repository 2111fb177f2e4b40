//! `tessera-bench`: a bounded load generator against a real `tessera serve` child process, with the raw crypto
//! limits measured in the same run so results compare as ratios across machines (BENCHMARKS.md).
//!
//! It is kept out of the `tessera` binary: it drives the built binary as any operator would (`tessera user add`,
//! `tessera client add`, `tessera serve`), and opens the store through the store library only to fill it for
//! `restart`.

pub mod cli;
mod day;
mod embedded;
mod load;
mod raw;
pub mod restart;
mod sandbox;
mod wire;

use std::process::ExitCode;

use tessera_jose::Algorithm;

use crate::cli::{BenchCommand, Cli};
use crate::load::Scenario;

/// Runs the command `cli` names.
///
/// # Errors
/// The `tessera` binary is missing, its server cannot be started or set up, or the measurement failed.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let tessera = sandbox::tessera_binary(cli.tessera.as_deref())?;
    let (scenario, alg, load) = match cli.command {
        BenchCommand::Restart { restart, json } => return restart::run(&tessera, &restart, json),
        BenchCommand::Embedded(args) => return embedded::run(&tessera, &args),
        BenchCommand::Day(args) => return day::run(&tessera, &args),
        BenchCommand::Refresh { alg, load } => (Scenario::Refresh, alg, load),
        BenchCommand::Login { load } => (Scenario::Login, Algorithm::EdDSA, load),
        BenchCommand::LoginPage { load } => (Scenario::LoginPage, Algorithm::EdDSA, load),
        BenchCommand::Verify { alg, tokens, load } => {
            let tokens = tokens.map_or(usize::from(load.concurrency), |n| n as usize);
            (Scenario::Verify { tokens }, alg, load)
        }
        BenchCommand::ClientCredentials { alg, load } => (Scenario::ClientCredentials, alg, load),
        BenchCommand::CodeExchange { alg, rs256_id_tokens, load } => {
            (Scenario::CodeExchange { codes_per_worker: 0, rs256_id_tokens }, alg, load)
        }
        BenchCommand::Revoke { load } => (Scenario::Revoke, Algorithm::EdDSA, load),
    };
    load::run(&tessera, scenario, alg, &load)
}

/// `work`, or an error as soon as the command is interrupted (Ctrl-C, SIGTERM): returning lets the server child
/// be stopped and the throwaway data directory (with its unencrypted keys) be removed, which an exit on the
/// signal would skip.
async fn until_stopped<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        () = tessera_server::shutdown_signal() => anyhow::bail!("interrupted; the benchmark's server was stopped"),
    }
}

/// Runs `task(n)` for each `n` in `0..count` on the runtime, at most `in_flight` at once; the first failure ends
/// it (with the tasks still running dropped).
async fn spawn_bounded<F, Fut>(count: u64, in_flight: usize, task: F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    for n in 0..count {
        running.spawn(task(n));
        while running.len() >= in_flight {
            if let Some(done) = running.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}
