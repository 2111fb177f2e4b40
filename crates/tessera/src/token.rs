//! `tessera token`: issue, verify and inspect tokens.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use serde_json::{Map, Value};
use tessera_jose::{
    decode_unverified, encode_jwt, Audience, Claims, KeySet, Payload, Policy, Verifier, ACCESS_TOKEN_TYP,
};

use crate::cli::{ProfileArg, TokenCommand};
use crate::config::{secs, Config};
use crate::output::{print_json, relative, timestamp};

/// Claims `--claim` may not set: they are the issuer's to decide.
const RESERVED_CLAIMS: [&str; 10] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid"];
/// Longest token `inspect` will decode: it is a debugging tool, so more generous than the verifier.
const INSPECT_MAX_LEN: usize = 64 * 1024;

pub(crate) fn run(config: &Config, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Issue { sub, aud, scope, ttl, client_id, claims, output } => {
            let ttl = ttl.unwrap_or(config.tokens.access_ttl);
            if ttl.is_zero() || ttl > config.tokens.max_ttl {
                bail!(
                    "--ttl must be between 1s and tokens.max_ttl ({})",
                    humantime::format_duration(config.tokens.max_ttl)
                );
            }
            let extra = parse_extra_claims(&claims)?;
            let now = crate::now();
            let store = crate::store::keyring(config)?;
            let (ring, changes) = store.load_maintained(now, &config.rotation_policy())?;
            if !changes.is_empty() && !store.seals() {
                crate::keys::open_for_writing(config)?;
            }
            let key = ring.active(now)?;
            let claims = Claims {
                iss: Some(config.issuer()),
                sub: Some(sub),
                aud: Some(audience(aud, &config.tokens.audience)),
                exp: Some(now.saturating_add(secs(ttl))),
                iat: Some(now),
                jti: Some(random_id()?),
                client_id: Some(client_id.unwrap_or_else(|| config.tokens.cli_client_id.clone())),
                scope,
                extra,
                ..Claims::default()
            };
            let token = encode_jwt(key, Some(ACCESS_TOKEN_TYP), &claims)?;
            if output.json {
                print_json(&serde_json::json!({
                    "access_token": token, "token_type": "Bearer", "expires_in": secs(ttl), "kid": key.kid()
                }))?;
            } else {
                println!("{token}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Verify { token, jwks, iss, aud, at, profile } => {
            let token = read_token(&token)?;
            let keys = match jwks {
                Some(source) => load_jwks(&source)?,
                None => crate::store::keyring(config)?.load()?.verifying_keys(crate::now(), &config.rotation_policy()),
            };
            let mut policy = match profile {
                ProfileArg::Access => Policy::access(
                    iss.unwrap_or_else(|| config.issuer()),
                    if aud.is_empty() { vec![config.tokens.audience.clone()] } else { aud },
                ),
                ProfileArg::Jws => Policy { issuer: iss, audiences: aud, ..Policy::jws() },
            };
            policy.leeway_secs = secs(config.tokens.leeway);
            policy.max_token_len = config.tokens.max_token_bytes;
            match Verifier::new(keys, policy).verify(&token, at.unwrap_or_else(crate::now)) {
                Ok(verified) => {
                    match verified.payload {
                        Payload::Claims(claims) => print_json(&claims)?,
                        Payload::Text(text) => print_json(&text)?,
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("invalid token: {err}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        TokenCommand::Inspect { token, output } => {
            let token = read_token(&token)?;
            let decoded = decode_unverified(&token, INSPECT_MAX_LEN).context("cannot decode the token")?;
            let now = crate::now();
            let times: Vec<(&str, i64)> = decoded
                .payload
                .claims()
                .map(|c| [("iat", c.iat), ("nbf", c.nbf), ("exp", c.exp)])
                .into_iter()
                .flatten()
                .filter_map(|(name, value)| value.map(|v| (name, v)))
                .collect();
            if output.json {
                let times: Map<String, Value> = times
                    .iter()
                    .map(|(name, at)| {
                        (name.to_string(), serde_json::json!({"utc": timestamp(*at), "relative": relative(*at, now)}))
                    })
                    .collect();
                print_json(&serde_json::json!({
                    "verified": false, "header": decoded.header, "payload": decoded.payload, "times": times
                }))?;
            } else {
                println!("UNVERIFIED: the signature was not checked. Nothing below can be trusted.");
                println!("Header:\n{}", indent(&serde_json::to_string_pretty(&decoded.header)?));
                let label = if decoded.payload.claims().is_some() { "Claims" } else { "Payload" };
                println!("{label}:\n{}", indent(&serde_json::to_string_pretty(&decoded.payload)?));
                if !times.is_empty() {
                    println!("Times:");
                    for (name, at) in times {
                        let words = match name {
                            "exp" if at > now => format!("expires {}", relative(at, now)),
                            "exp" => format!("expired {}", relative(at, now)),
                            "nbf" => format!("valid from {}", relative(at, now)),
                            _ => format!("issued {}", relative(at, now)),
                        };
                        println!("  {name}  {}  ({words})", timestamp(at));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn audience(mut given: Vec<String>, default: &str) -> Audience {
    match given.len() {
        0 => Audience::One(default.to_owned()),
        1 => Audience::One(given.remove(0)),
        _ => Audience::Many(given),
    }
}

fn parse_extra_claims(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut claims = Map::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--claim {pair:?} must be NAME=VALUE");
        };
        if name.is_empty() {
            bail!("--claim {pair:?} has an empty name");
        }
        if RESERVED_CLAIMS.contains(&name) {
            bail!("--claim {name} is set by the issuer; use the dedicated flag if there is one");
        }
        if claims.contains_key(name) {
            bail!("--claim {name} is given twice");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        claims.insert(name.to_owned(), value);
    }
    Ok(claims)
}

/// 128 random bits from the OS CSPRNG, base64url: a `jti` no one can guess or repeat.
fn random_id() -> anyhow::Result<String> {
    Ok(tessera_server::secrets::random_b64::<16>()?)
}

/// The token argument, or standard input for `-` (keeps tokens out of the process list and shell history).
pub(crate) fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .take(INSPECT_MAX_LEN as u64 + 1)
        .read_to_string(&mut text)
        .context("reading the token from standard input")?;
    Ok(text.trim().to_owned())
}

fn load_jwks(source: &str) -> anyhow::Result<KeySet> {
    let fetched = crate::fetch::fetch(source)?;
    KeySet::from_jwks_json(&fetched.body).with_context(|| format!("JWKS {source}"))
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_claims_are_json_or_strings_and_never_reserved() {
        let claims =
            parse_extra_claims(&["n=1".into(), "s=hello".into(), "o={\"a\":[1]}".into(), "e=".into()]).unwrap();
        assert_eq!(claims["n"], serde_json::json!(1));
        assert_eq!(claims["s"], serde_json::json!("hello"));
        assert_eq!(claims["o"], serde_json::json!({"a": [1]}));
        assert_eq!(claims["e"], serde_json::json!(""));
        for bad in ["exp=1", "sub=x", "novalue", "=x"] {
            assert!(parse_extra_claims(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_extra_claims(&["a=1".into(), "a=2".into()]).is_err());
    }
}
