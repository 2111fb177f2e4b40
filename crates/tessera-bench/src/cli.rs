//! The command line: every scenario, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tessera_jose::Algorithm;

/// Load-test a real `tessera serve` (started by this command on a free loopback port, with a throwaway data
/// directory) and print throughput and latency next to the raw crypto limits measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench", version, about)]
pub struct Cli {
    /// The `tessera` binary to measure [default: `tessera` beside this program, e.g. target/release/tessera].
    #[arg(long, global = true, env = "TESSERA", value_name = "FILE")]
    pub tessera: Option<PathBuf>,
    /// What to measure.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Refresh rotations per second through POST /oauth2/token, each worker rotating its own session.
    Refresh {
        /// Signing algorithm of the server's key.
        #[arg(long, default_value = "EdDSA", value_parser = signing_algorithm)]
        alg: Algorithm,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Password logins per second through POST /auth/login.
    Login {
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Password logins per second through the login page (POST /oauth2/authorize/login, answered with a code).
    LoginPage {
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Forward-auth checks per second through GET /verify (signature, claims, revocation index).
    Verify {
        /// Signing algorithm of the server's key.
        #[arg(long, default_value = "RS256", value_parser = signing_algorithm)]
        alg: Algorithm,
        /// Distinct access tokens (of distinct users) presented in turn, spread over the connections
        /// [default: one per connection].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        tokens: Option<u32>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Authorization codes exchanged per second through POST /oauth2/token grant_type=authorization_code (an
    /// access and an ID token signed each, a session started). The codes are made beforehand through the login
    /// page and the authorization endpoint, enough for the run at the raw signing limit.
    CodeExchange {
        /// Signing algorithm of the server's key.
        #[arg(long, default_value = "RS256", value_parser = signing_algorithm)]
        alg: Algorithm,
        /// The app is registered for RS256 ID tokens (`--id-token-alg RS256`): with another --alg, the ID token is
        /// signed with the server's RS256 keys, the access token with its signing key.
        #[arg(long)]
        rs256_id_tokens: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Service tokens per second through POST /oauth2/token grant_type=client_credentials.
    ClientCredentials {
        /// Signing algorithm of the server's key.
        #[arg(long, default_value = "ES256", value_parser = signing_algorithm)]
        alg: Algorithm,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Revocations per second through POST /admin/v1/revocations, each a new token id (a durable write each).
    Revoke {
        #[command(flatten)]
        load: LoadArgs,
    },
    /// `tessera-verify` inside a service: requests per second through its tower layer next to raw signature
    /// verification (one core each), and the time from a logout at Tessera to the embedded verifier refusing the
    /// session's token (p50, p99, max).
    Embedded(EmbeddedArgs),
    /// A compressed day: millions of token revocations written through the store library, with token lifetimes
    /// and a log retention of minutes so that most expire during the run, while a real `tessera serve` follows
    /// the log; samples of the store's size, the server's index and memory, and revocation-to-refusal time show
    /// whether they stay flat once the windows are full.
    Day(DayArgs),
    /// How soon a restarted node is ready: fills a store with live revocation entries (70% token ids, 20%
    /// sessions, 10% subjects), then starts `tessera serve` on it and times it until /readyz answers with every
    /// entry in its index.
    Restart {
        #[command(flatten)]
        restart: RestartArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `embedded` measures.
#[derive(Debug, Clone, Args)]
pub struct EmbeddedArgs {
    /// Signing algorithm of the server's key.
    #[arg(long, default_value = "EdDSA", value_parser = signing_algorithm)]
    pub alg: Algorithm,
    /// Sessions logged out, one after another, for the revocation-to-refusal times.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rounds: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `day` writes and how it samples. Bounded: it stops after `--revocations` or `--max-duration`.
#[derive(Debug, Clone, Args)]
pub struct DayArgs {
    /// Token revocations to write (the reference design's day is 50 million).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    pub revocations: u64,
    /// Revocations written per second at most: the pace that spreads them over several token lifetimes and
    /// retentions, so the run shows the windows full (the reference design's day is 580 a second on average).
    #[arg(long, default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    pub rate: u32,
    /// Lifetime of the tokens revoked (and the server's access and service token lifetimes).
    #[arg(long, default_value = "1m", value_parser = minutes_at_most_an_hour)]
    pub token_lifetime: std::time::Duration,
    /// The server's `revocation.log_retention`.
    #[arg(long, default_value = "2m", value_parser = minutes_at_most_an_hour)]
    pub log_retention: std::time::Duration,
    /// Time between samples.
    #[arg(long, default_value = "15s", value_parser = bench_duration)]
    pub sample_every: std::time::Duration,
    /// Give up (an error) when the revocations are not all written by then.
    #[arg(long, default_value = "30m", value_parser = minutes_at_most_two_hours)]
    pub max_duration: std::time::Duration,
    /// Print the samples as JSON at the end.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: BenchStore,
}

fn minutes_at_most_an_hour(text: &str) -> Result<std::time::Duration, String> {
    minutes_between(text, 1, 60)
}

fn minutes_at_most_two_hours(text: &str) -> Result<std::time::Duration, String> {
    minutes_between(text, 1, 120)
}

fn minutes_between(text: &str, least: u64, most: u64) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if !(std::time::Duration::from_secs(60 * least)..=std::time::Duration::from_secs(60 * most)).contains(&duration) {
        return Err(format!("between {least}m and {most}m"));
    }
    Ok(duration)
}

/// What `restart` measures.
#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// Live revocation entries in the store.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub entries: u64,
    /// The store already holds the entries (filled by other means, e.g. SQL): only restart and check.
    #[arg(long)]
    pub already_filled: bool,
    #[command(flatten)]
    pub store: BenchStore,
}

/// The store a benchmark's server runs on: the embedded SQLite unless a shared one is named. Use an empty,
/// throwaway database: the benchmark's user, client and sessions are created in it.
#[derive(Debug, Clone, Default, Args)]
pub struct BenchStore {
    /// Run the server on this PostgreSQL database (with --redis-url too: tiered, Redis in front of it).
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// Run the server on this Redis (repeat for several nodes of a Redis Cluster).
    #[arg(long, value_name = "URL")]
    pub redis_url: Vec<String>,
    /// The Redis URLs are nodes of a Redis Cluster (writes then wait for one replica).
    #[arg(long, requires = "redis_url")]
    pub redis_cluster: bool,
    /// Partitions of the Redis revocation log (`store.redis_log_partitions`) on a Redis-only store; the Redis must
    /// not hold a log written with another number.
    #[arg(long, default_value_t = 1, requires = "redis_url", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub redis_log_partitions: u16,
}

/// How much load, for how long. Bounded: the run stops by itself.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Requests in flight (one connection each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// How long to measure (after a 1 s warm-up), at most 5 minutes.
    #[arg(long, default_value = "10s", value_parser = bench_duration)]
    pub duration: std::time::Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: BenchStore,
}

fn bench_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration.is_zero() || duration > std::time::Duration::from_secs(300) {
        return Err("between 1s and 5m".into());
    }
    Ok(duration)
}

/// An algorithm `tessera serve` can sign with (the server's key is made by `tessera keys generate`).
fn signing_algorithm(text: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = text.parse()?;
    if alg.can_sign() {
        Ok(alg)
    } else {
        Err(format!("{alg} is verify-only; Tessera signs with EdDSA, ES256 or RS256"))
    }
}
