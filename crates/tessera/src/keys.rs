//! `tessera keys`: the signing keys, in the data directory or, with a shared store, in the store.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
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
            add(config, &key, now, &activation, output.json)
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
            add(config, &key, now, &activation, output.json)
        }
        KeysCommand::Rotate { rs256, activation, output } => {
            let store = open_for_writing(config)?;
            let (store, policy) = if rs256 {
                let Some(rs256_policy) = policy.rs256() else {
                    bail!("no RS256 keys are kept beside the signing keys: keys.algorithm is RS256, or keys.rs256_id_tokens is off")
                };
                (store.rs256(), rs256_policy)
            } else {
                (store, policy)
            };
            let change = store.update(|ring| ring.rotate(now, &policy, activation_of(&activation)))?;
            report(&[change], output.json, now)
        }
        KeysCommand::List { output } => {
            let store = crate::store::keyring(config)?;
            let mut rows: Vec<Listed> = store
                .load()?
                .status(now, &policy)
                .into_iter()
                .map(|status| Listed { keyring: "signing", status })
                .collect();
            if let Some(rs256_policy) = policy.rs256() {
                let statuses = store.rs256().load()?.status(now, &rs256_policy);
                rows.extend(statuses.into_iter().map(|status| Listed { keyring: "rs256-id-tokens", status }));
            }
            if output.json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                println!("no keys yet: `tessera keys generate --alg EdDSA` creates one");
            } else {
                println!("{:<44} {:<6} {:<8} {:<15} SCHEDULE", "KID", "ALG", "PHASE", "KEYRING");
                for Listed { keyring, status: s } in rows {
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
                    println!("{:<44} {:<6} {:<8} {keyring:<15} {schedule}", s.kid, s.alg.as_str(), phase);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Jwks => {
            // What the server publishes: the signing keys and the RS256 keys of ID tokens.
            let store = crate::store::keyring(config)?;
            let mut jwks = store.load()?.jwks(now, &policy);
            if let Some(rs256_policy) = policy.rs256() {
                jwks.keys.extend(store.rs256().load()?.jwks(now, &rs256_policy).keys);
            }
            print_json(&jwks)?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::MasterKey => {
            let (_, text) = MasterKey::generate()?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::RotateSecrets { now: at_once, output } => {
            let activation = if at_once { Activation::Immediate } else { Activation::Scheduled };
            let changes = open_for_writing(config)?.rotate_secrets(now, &policy, activation)?;
            if changes.is_empty() && !output.json {
                println!("no server secrets yet: `tessera serve` makes them when it first starts");
                return Ok(ExitCode::SUCCESS);
            }
            report(&changes, output.json, now)
        }
        KeysCommand::Seal => {
            let store = crate::store::keyring(config)?;
            anyhow::ensure!(
                store.seals(),
                "no master key: make one with `tessera keys master-key` and set {MASTER_KEY_ENV} (or \
                 keys.master_key_file) to seal the keys with it"
            );
            let sealed = store.seal()?;
            if sealed.is_empty() {
                println!("nothing to seal: every key and secret is already sealed");
            }
            for place in sealed {
                println!("sealed {}", place.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One key of `tessera keys list`: which keyring it is in, and its schedule.
#[derive(serde::Serialize)]
struct Listed {
    keyring: &'static str,
    #[serde(flatten)]
    status: tessera_keys::KeyStatus,
}

/// Adds `key` to the keyring. (With a shared store the change may be made again on a newer keyring, so each
/// attempt adds its own copy of the key.)
fn add(
    config: &Config,
    key: &SigningKey,
    now: i64,
    activation: &ActivationArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (alg, der) = (key.algorithm(), key.to_pkcs8()?);
    let policy = config.rotation_policy();
    let store = open_for_writing(config)?;
    let change = store.update(|ring| {
        let copy = SigningKey::from_pkcs8(alg, &der, None)?;
        ring.add(copy, now, &policy, activation_of(activation))
    })?;
    report(&[change], json, now)
}

fn activation_of(args: &ActivationArgs) -> Activation {
    if args.now {
        Activation::Immediate
    } else {
        Activation::Scheduled
    }
}

/// Like [`crate::store::keyring`], and says loudly when keys will be written unencrypted.
pub(crate) fn open_for_writing(config: &Config) -> anyhow::Result<KeyStore> {
    let store = crate::store::keyring(config)?;
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
                    println!("created key {kid}, in use now")
                }
                Change::Created { kid, activates_at } => println!(
                    "created key {kid}: published now, in use from {} ({})",
                    timestamp(*activates_at),
                    relative(*activates_at, now)
                ),
                Change::ActivatedNow { kid } => println!("key {kid} in use from now on"),
                Change::Removed { kid } => println!("removed expired key {kid}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
