//! `tessera user`: users in the store, changed directly (no server needed; a running one sees changes at once).

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use tessera_server::password::hash_password;
use tessera_store::model::Profile;
use tessera_store::{Provenance, Revocation, StoreError, User};

use crate::cli::UserCommand;
use crate::config::Config;
use crate::output::{print_json, timestamp};

/// Shortest password accepted (NIST SP 800-63B's minimum).
const MIN_PASSWORD: usize = 8;

pub(crate) fn run(config: &Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(config, command))
}

async fn run_async(config: &Config, command: UserCommand) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(config).await?;
    let now = crate::now_ms();
    match command {
        UserCommand::Add { name, roles, password_stdin, full_name, email, email_verified } => {
            validate_name(&name)?;
            tessera_server::gateway::check_roles(&roles)?;
            let password = read_password(password_stdin, true)?;
            let password_hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
            let user = User {
                username: name.clone(),
                password_hash,
                roles,
                disabled: false,
                created_at: now,
                profile: Profile { name: full_name, email, email_verified },
            };
            match store.create_user(user).await {
                Err(StoreError::AlreadyExists(_)) => bail!("user {name:?} already exists"),
                other => other?,
            }
            println!("added user {name}");
        }
        UserCommand::List { output } => {
            let users = store.users().await?;
            if output.json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| serde_json::json!({"username": u.username, "roles": u.roles, "disabled": u.disabled, "created_at": u.created_at / 1000}))
                    .collect();
                print_json(&rows)?;
            } else if users.is_empty() {
                println!("no users yet: `tessera user add NAME` adds one");
            } else {
                println!("{:<24} {:<9} {:<21} ROLES", "USERNAME", "STATE", "CREATED");
                for u in users {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!(
                        "{:<24} {:<9} {:<21} {}",
                        u.username,
                        state,
                        timestamp(u.created_at / 1000),
                        u.roles.join(",")
                    );
                }
            }
        }
        UserCommand::Disable { name } => {
            set_disabled(&*store, &name, true, now).await?;
            println!("disabled user {name}; their sessions and tokens are revoked");
        }
        UserCommand::Enable { name } => {
            set_disabled(&*store, &name, false, now).await?;
            println!("enabled user {name}");
        }
        UserCommand::SetPassword { name, password_stdin, keep_sessions } => {
            let password = read_password(password_stdin, true)?;
            let password_hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
            match store.set_password(&name, password_hash).await {
                Err(StoreError::NotFound(_)) => bail!("no user {name:?}"),
                other => other?,
            }
            if keep_sessions {
                println!("password of {name} changed; their sessions stay");
            } else {
                let everything = Revocation::Subject { sub: name.clone(), not_before: now };
                store.revoke(everything, Provenance::new("operator", "password_changed"), now).await?;
                println!("password of {name} changed; their sessions and tokens are revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_disabled(store: &dyn tessera_store::Store, name: &str, disabled: bool, now: i64) -> anyhow::Result<()> {
    match store.set_user_disabled(name, disabled, now).await {
        Err(StoreError::NotFound(_)) => bail!("no user {name:?}"),
        other => Ok(other?),
    }
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty() && name.len() <= 256 && name.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if !ok {
        bail!("user name must be 1-256 characters without spaces or control characters");
    }
    Ok(())
}

/// The password from standard input (`--password-stdin`), or a prompt on the terminal (typed twice, not echoed).
fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        if confirm && rpassword::prompt_password("Again: ")? != first {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("standard input is not a terminal: pass --password-stdin to read the password from it");
    };
    if password.chars().count() < MIN_PASSWORD || password.len() > 1024 {
        bail!("the password must be {MIN_PASSWORD} to 1024 characters");
    }
    Ok(password)
}
