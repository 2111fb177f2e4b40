//! `tessera`: the command line, configuration and wiring of the token service.

mod admin_api;
mod audit;
mod audit_source;
mod cli;
mod client;
mod config;
mod events;
mod fetch;
mod keys;
mod migrate;
mod output;
mod probe;
mod revoke;
mod serve;
mod store;
mod telemetry;
mod token;
mod user;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::config::{Config, FlagOverrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "tessera", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(cli.config.as_deref(), &FlagOverrides { data_dir: cli.data_dir })?;
    match cli.command {
        Command::Serve { listen } => serve::run(&config, listen),
        Command::Audit(command) => audit::run(command),
        Command::User(command) => user::run(&config, command),
        Command::Client(command) => client::run(&config, command),
        Command::Keys(command) => keys::run(&config, command),
        Command::Token(command) => token::run(&config, command),
        Command::Migrate(command) => migrate::run(&config, command),
        Command::Events(args) => events::run(&config, args),
        Command::Store(cli::StoreCommand::Repartition { partitions }) => {
            store::repartition(&config, usize::from(partitions))
        }
        Command::Revoke { jti, sid, sub, before, reason } => revoke::run(&config, jti, sid, sub, before, reason),
        Command::Completions { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// Milliseconds since the epoch, from the system clock.
pub(crate) fn now_ms() -> i64 {
    tessera_server::clock::Clock::now_ms(&tessera_server::clock::SystemClock)
}

/// Seconds since the epoch, from the system clock.
pub(crate) fn now() -> i64 {
    tessera_server::clock::Clock::now_secs(&tessera_server::clock::SystemClock)
}
