//! `tessera-example payments|orders|job`: one of the reference design's services, configured from the
//! environment:
//!
//! - `TESSERA_URL` — Tessera's base URL (required);
//! - `CLIENT_ID`, `CLIENT_SECRET` — this service's client at Tessera (required);
//! - `PAYMENTS_URL` — where payments listens (orders and job);
//! - `LISTEN` — the address to serve on (payments and orders; default `127.0.0.1:0`, printed once bound).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tessera_client::{Credentials, TokenClient, TokenClientConfig};
use tessera_verify::{TokenVerifier, VerifierConfig};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("set {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let role = std::env::args().nth(1).unwrap_or_default();
    let (tessera, client_id, secret) = (env("TESSERA_URL")?, env("CLIENT_ID")?, env("CLIENT_SECRET")?);
    let tokens = || TokenClient::new(TokenClientConfig::new(&tessera, Credentials::secret(&client_id, &secret)));
    let verifier = |audience: &str| {
        TokenVerifier::start(VerifierConfig::new(&tessera, audience, &client_id, &secret)).map(Arc::new)
    };
    let app = match role.as_str() {
        "payments" => tessera_example::payments(verifier("payments")?),
        "orders" => {
            let payments_url = env("PAYMENTS_URL")?;
            let payments = tessera_example::payments_client(tokens()?, &payments_url)?;
            tessera_example::orders(verifier("orders")?, payments, &payments_url)
        }
        "job" => {
            let payments_url = env("PAYMENTS_URL")?;
            let payments = tessera_example::payments_client(tokens()?, &payments_url)?;
            loop {
                match tessera_example::reconcile_once(&payments, &payments_url).await {
                    Ok((status, body)) => println!("{status} {body}"),
                    Err(error) => eprintln!("reconciliation failed: {error}"),
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
        _ => bail!("usage: tessera-example payments|orders|job"),
    };
    let listener = tokio::net::TcpListener::bind(std::env::var("LISTEN").as_deref().unwrap_or("127.0.0.1:0")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
