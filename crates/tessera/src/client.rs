//! `tessera client`: service clients in the store.

use std::process::ExitCode;

use anyhow::bail;
use tessera_jose::Algorithm;
use tessera_store::model::IdTokenSigning;
use tessera_store::{Client, StoreError};

use crate::cli::ClientCommand;
use crate::config::Config;
use crate::output::{print_json, timestamp};

pub(crate) fn run(config: &Config, command: ClientCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(config, command))
}

async fn run_async(config: &Config, command: ClientCommand) -> anyhow::Result<ExitCode> {
    let store = crate::store::open(config).await?;
    match command {
        ClientCommand::Add {
            id,
            scope,
            audiences,
            grant,
            jwks,
            redirect_uris,
            post_logout_redirect_uris,
            public,
            confidential,
            require_par,
            first_party,
            id_token_alg,
            output,
        } => {
            if id.is_empty()
                || id.len() > 128
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                bail!("client id must be 1-128 characters of letters, digits, '.', '_' and '-'");
            }
            if audiences.iter().any(|a| a.is_empty() || a.chars().any(char::is_whitespace)) {
                bail!("audiences must be non-empty and without spaces");
            }
            let scopes: Vec<String> = scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let code_flow = if redirect_uris.is_empty() {
                None
            } else {
                if !public && !confidential {
                    bail!("a client with --redirect-uri is --public (a browser or native app) or --confidential (a server-side app)");
                }
                let problems: Vec<String> = redirect_uris
                    .iter()
                    .chain(&post_logout_redirect_uris)
                    .filter_map(|uri| tessera_server::check_redirect_uri(uri).err().map(|why| format!("{uri}: {why}")))
                    .collect();
                if !problems.is_empty() {
                    bail!("{}", problems.join("\n"));
                }
                Some(tessera_store::model::CodeFlow {
                    redirect_uris,
                    post_logout_redirect_uris,
                    require_par,
                    first_party,
                    id_token_signing: id_token_signing(config, id_token_alg)?,
                })
            };
            let (secret, jwks) = match (jwks, public) {
                (_, true) => (None, None),
                (Some(file), false) => (None, Some(read_jwks(&file)?)),
                (None, false) => (Some(new_secret()?), None),
            };
            let mut grant = grant;
            if code_flow.is_some() {
                // A public client holds no credential: the credential-only grants are not for it.
                if public {
                    grant.clear();
                }
                grant.push("authorization_code".to_owned());
            }
            let client = Client {
                client_id: id.clone(),
                secret_hash: secret.as_deref().map(tessera_server::client_secret_hash).unwrap_or_default(),
                scopes,
                audiences,
                grants: grant,
                disabled: false,
                created_at: crate::now_ms(),
                jwks,
                code_flow,
            };
            match store.create_client(client).await {
                Err(StoreError::AlreadyExists(_)) => bail!("client {id:?} already exists"),
                other => other?,
            }
            match secret {
                Some(secret) => print_secret(&id, &secret, output.json)?,
                None if public && output.json => {
                    print_json(&serde_json::json!({"client_id": id, "token_endpoint_auth_method": "none"}))?;
                }
                None if public => println!("added public client {id} (no secret: PKCE binds its codes)"),
                None if output.json => {
                    print_json(&serde_json::json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt"}))?;
                }
                None => println!("added client {id} (private_key_jwt)"),
            }
        }
        ClientCommand::List { output } => {
            let clients = store.clients().await?;
            if output.json {
                let rows: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        let mut row = serde_json::json!({"client_id": c.client_id, "scopes": c.scopes, "audiences": c.audiences, "grants": c.grants, "disabled": c.disabled, "created_at": c.created_at / 1000, "token_endpoint_auth_method": auth_method(c)});
                        if let (Some(flow), Some(fields)) = (&c.code_flow, row.as_object_mut()) {
                            fields.insert("redirect_uris".into(), flow.redirect_uris.clone().into());
                            fields.insert("post_logout_redirect_uris".into(), flow.post_logout_redirect_uris.clone().into());
                            fields.insert("require_par".into(), flow.require_par.into());
                            fields.insert("first_party".into(), flow.first_party.into());
                            let alg = match flow.id_token_signing {
                                IdTokenSigning::SigningKey => config.keys.algorithm,
                                IdTokenSigning::Rs256 => Algorithm::RS256,
                            };
                            fields.insert("id_token_signed_response_alg".into(), alg.as_str().into());
                        }
                        row
                    })
                    .collect();
                print_json(&rows)?;
            } else if clients.is_empty() {
                println!("no clients yet: `tessera client add ID --audience AUD` adds one");
            } else {
                println!(
                    "{:<24} {:<9} {:<21} {:<24} {:<20} SCOPES",
                    "CLIENT", "STATE", "CREATED", "AUDIENCES", "GRANTS"
                );
                for c in clients {
                    let state = if c.disabled { "disabled" } else { "active" };
                    println!(
                        "{:<24} {:<9} {:<21} {:<24} {:<20} {}",
                        c.client_id,
                        state,
                        timestamp(c.created_at / 1000),
                        c.audiences.join(","),
                        c.grants.join(","),
                        c.scopes.join(" ")
                    );
                }
            }
        }
        ClientCommand::Disable { id } => {
            match store.set_client_disabled(&id, true, crate::now_ms()).await {
                Err(StoreError::NotFound(_)) => bail!("no client {id:?}"),
                other => other?,
            }
            println!("disabled client {id}");
        }
        ClientCommand::RotateSecret { id, output } => {
            let secret = new_secret()?;
            match store.set_client_secret(&id, tessera_server::client_secret_hash(&secret), crate::now_ms()).await {
                Err(StoreError::NotFound(_)) => bail!("no client {id:?} with a secret"),
                other => other?,
            }
            print_secret(&id, &secret, output.json)?;
        }
        ClientCommand::SetJwks { id, file } => {
            match store.set_client_jwks(&id, read_jwks(&file)?, crate::now_ms()).await {
                Err(StoreError::NotFound(_)) => bail!("no client {id:?} with keys (private_key_jwt)"),
                other => other?,
            }
            println!("replaced the keys of client {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn new_secret() -> anyhow::Result<String> {
    tessera_server::secrets::random_b64::<32>().map_err(|_| anyhow::anyhow!("the OS random number generator failed"))
}

/// A JWKS file of public keys, checked as the server will use it.
fn read_jwks(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
    tessera_server::client_assertion_keys(&text).map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
    Ok(text)
}

/// How the client authenticates at the token endpoint, by RFC 7591's names.
fn auth_method(client: &Client) -> &'static str {
    match (client.secret_hash.is_empty(), client.jwks.is_some()) {
        (_, true) => "private_key_jwt",
        (false, false) => "client_secret_basic",
        (true, false) => "none",
    }
}

fn print_secret(id: &str, secret: &str, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({"client_id": id, "client_secret": secret}))?;
    } else {
        eprintln!("client {id}: its secret is shown only now; store it in your secret manager");
        println!("{secret}");
    }
    Ok(())
}

/// How a new client's ID tokens are signed, from `--id-token-alg`: the signing keys' algorithm, or RS256 when the
/// server keeps RS256 keys (or signs with RS256 anyway).
fn id_token_signing(config: &Config, alg: Option<Algorithm>) -> anyhow::Result<IdTokenSigning> {
    match alg {
        None => Ok(IdTokenSigning::SigningKey),
        Some(Algorithm::RS256) if config.keys.algorithm == Algorithm::RS256 || config.keys.rs256_id_tokens => {
            Ok(IdTokenSigning::Rs256)
        }
        Some(Algorithm::RS256) => {
            bail!("--id-token-alg RS256 needs RS256 keys: set keys.rs256_id_tokens = true (or keys.algorithm = \"RS256\")")
        }
        Some(alg) if alg == config.keys.algorithm => Ok(IdTokenSigning::SigningKey),
        Some(alg) => {
            bail!("--id-token-alg {alg}: ID tokens are signed with keys.algorithm ({}) or RS256", config.keys.algorithm)
        }
    }
}
