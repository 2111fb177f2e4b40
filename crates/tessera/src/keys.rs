//! `tessera keys`: signing keys in the data directory.

use std::process::ExitCode;

use anyhow::Context as _;
use tessera_jose::{Jwk, RsaBits, SigningKey};
use tessera_keys::{Activation, Change, KeyStore, MasterKey};

use crate::cli::{ActivationArgs, KeysCommand};
use crate::config::{Config, MASTER_KEY_ENV};
use crate::output::{print_json, relative, timestamp};

pub(crate) fn run(config: &Config, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = crate::now();
    let policy = config.rotation_policy();
    match command {
        KeysCommand::Generate { alg, bits, activation, output } => {
            let rsa_bits = if bits == 3072 { RsaBits::Bits3072 } else { RsaBits::Bits2048 };
            let key = SigningKey::generate(alg, rsa_bits)?;
            let store = open_for_writing(config)?;
            let change = store.update(|ring| ring.add(key, now, &policy, activation_of(&activation)))?;
            report(&[change], output.json, now)
        }
        KeysCommand::Import { file, activation, output } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let key = if text.trim_start().starts_with('{') {
                let jwk: Jwk = serde_json::from_str(&text).with_context(|| format!("{}: not a JWK", file.display()))?;
                SigningKey::from_private_jwk(&jwk)
            } else {
                SigningKey::from_pem(&text)
            }
            .with_context(|| format!("{}: cannot import", file.display()))?;
            anyhow::ensure!(
                key.algorithm().can_sign(),
                "{}: Tessera does not sign with {}",
                file.display(),
                key.algorithm()
            );
            let store = open_for_writing(config)?;
            let change = store.update(|ring| ring.add(key, now, &policy, activation_of(&activation)))?;
            report(&[change], output.json, now)
        }
        KeysCommand::Rotate { activation, output } => {
            let store = open_for_writing(config)?;
            let change = store.update(|ring| ring.rotate(now, &policy, activation_of(&activation)))?;
            report(&[change], output.json, now)
        }
        KeysCommand::List { output } => {
            let statuses = open(config)?.load()?.status(now, &policy);
            if output.json {
                print_json(&statuses)?;
            } else if statuses.is_empty() {
                println!("no keys yet: `tessera keys generate --alg EdDSA` creates one");
            } else {
                println!("{:<44} {:<6} {:<8} SCHEDULE", "KID", "ALG", "PHASE");
                for s in statuses {
                    let schedule = match (s.retired_at, s.removed_at) {
                        (Some(retired), Some(removed)) => {
                            format!("retired {}, leaves the JWKS {}", relative(retired, now), relative(removed, now))
                        }
                        _ if s.activates_at > now => {
                            format!("signs from {} ({})", timestamp(s.activates_at), relative(s.activates_at, now))
                        }
                        _ => format!("signing since {}", timestamp(s.activates_at)),
                    };
                    let phase = serde_json::to_value(s.phase)?.as_str().unwrap_or_default().to_owned();
                    println!("{:<44} {:<6} {:<8} {schedule}", s.kid, s.alg.as_str(), phase);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Jwks => {
            print_json(&open(config)?.load()?.jwks(now, &policy))?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::MasterKey => {
            let (_, text) = MasterKey::generate()?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn activation_of(args: &ActivationArgs) -> Activation {
    if args.now {
        Activation::Immediate
    } else {
        Activation::Scheduled
    }
}

/// The data directory's keyring, unlocked with the master key if one is configured.
pub(crate) fn open(config: &Config) -> anyhow::Result<KeyStore> {
    Ok(KeyStore::open(&config.data_dir, config.master_key()?)?)
}

/// Like [`open`], and says loudly when keys will be written unencrypted.
pub(crate) fn open_for_writing(config: &Config) -> anyhow::Result<KeyStore> {
    let store = open(config)?;
    if !store.seals() {
        eprintln!(
            "WARNING: no master key: signing keys are stored UNENCRYPTED in {}. Set {MASTER_KEY_ENV} \
             (`tessera keys master-key` makes one) to encrypt them.",
            store.path().display()
        );
    }
    Ok(store)
}

fn report(changes: &[Change], json: bool, now: i64) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&changes)?;
    } else {
        for change in changes {
            match change {
                Change::Created { kid, activates_at } if *activates_at <= now => {
                    println!("created key {kid}, signing now")
                }
                Change::Created { kid, activates_at } => println!(
                    "created key {kid}: published now, signs from {} ({})",
                    timestamp(*activates_at),
                    relative(*activates_at, now)
                ),
                Change::ActivatedNow { kid } => println!("key {kid} signs from now on"),
                Change::Removed { kid } => println!("removed expired key {kid}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
