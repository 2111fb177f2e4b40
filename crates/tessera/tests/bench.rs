//! The load generator (`tessera-bench`, its own crate) against this binary: it still drives a real `tessera serve`
//! from a store it filled itself, so BENCHMARKS.md's restart figures stay reproducible.

use std::path::Path;

use tessera_bench::cli::{BenchStore, RestartArgs};

/// `tessera-bench restart` fills a store through the store library, starts `tessera serve` on it and reads the
/// index size from /metrics once /readyz answers; it fails unless every entry was loaded.
#[test]
fn the_restart_benchmark_finds_every_revocation_it_stored_in_the_restarted_servers_index() {
    let restart = RestartArgs { entries: 200, already_filled: false, store: BenchStore::default() };
    let restarted = tessera_bench::restart::measure(Path::new(env!("CARGO_BIN_EXE_tessera")), &restart).unwrap();
    let report = restarted.to_json();
    assert_eq!(report["store"], "sqlite");
    assert_eq!(report["index_entries"], 200, "70% token ids, 20% sessions, 10% subjects: {report}");
}

/// `tessera-bench code-exchange` logs in through the login page, makes its codes at the authorization endpoint and
/// exchanges each once: a run without a single refused exchange (a reused or expired code would be one). The app is
/// registered for RS256 ID tokens, so each exchange signs with both keyrings.
#[test]
fn the_code_exchange_benchmark_exchanges_every_code_once_without_an_error() {
    use clap::Parser as _;
    let exe = env!("CARGO_BIN_EXE_tessera");
    let cli = tessera_bench::cli::Cli::try_parse_from([
        "tessera-bench",
        "--tessera",
        exe,
        "code-exchange",
        "--alg",
        "EdDSA",
        "--rs256-id-tokens",
        "--duration",
        "1s",
        "--concurrency",
        "2",
    ])
    .unwrap();
    assert_eq!(tessera_bench::run(cli).unwrap(), std::process::ExitCode::SUCCESS);
}
