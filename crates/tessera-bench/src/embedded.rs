//! `tessera-bench embedded`: `tessera-verify` inside a service, against a real `tessera serve`.
//!
//! - **Verification through the layer**: requests with a bearer token through `RequireToken` around a service
//!   that does nothing, on one core, next to raw verifications of the same token's signature (aws-lc-rs, the key
//!   already parsed) on the same core, in alternating rounds of a tenth of a second in the same run. The layer
//!   remembers no verification here (`remembered = 0`), so each request pays the whole check: header, signature,
//!   claims, revocation index. The same with the default memo is shown beside it.
//! - **Revocation to refusal**: a user logs in, the embedded verifier accepts the token, the user logs out; the
//!   time from sending the logout until the verifier refuses the token, for each of `rounds` sessions.

use std::convert::Infallible;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tessera_verify::{Refusal, RequireToken, TokenVerifier, VerifierConfig};
use tower::{Layer as _, Service as _, ServiceExt as _};

use crate::cli::EmbeddedArgs;
use crate::sandbox::{ServerProcess, PASSWORD, USER};
use crate::wire::Wire;

/// How long each throughput round runs, and how many rounds of each, alternating; the ratio is the median of the
/// rounds' ratios. Short rounds, many of them: this host's speed changes within seconds, and when it slows it slows
/// the parsing and allocation around a signature check more than the check itself, so only a raw round and a layer
/// round a tenth of a second apart see the same machine.
const ROUND: Duration = Duration::from_millis(100);
const ROUNDS: usize = 60;
/// How long the verifier may take to fetch the keys and catch up with the feed before the run gives up.
const READY_WITHIN: Duration = Duration::from_secs(10);

pub(crate) fn run(tessera: &Path, args: &EmbeddedArgs) -> anyhow::Result<ExitCode> {
    let server = ServerProcess::start_for_a_service(tessera, args.alg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(crate::until_stopped(measure(&server, args)))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let get = |name: &str| result.get(name).and_then(serde_json::Value::as_f64).unwrap_or_default();
        println!("tessera-verify in process, {} tokens, on one core:", args.alg);
        println!("  raw signature verify/s:              {:>10.0}", get("raw_verify_per_second"));
        println!(
            "  through the layer, nothing remembered: {:>9.0}  ({:.3} of raw)",
            get("layer_per_second"),
            get("ratio_to_raw")
        );
        println!("  through the layer, default memo:      {:>10.0}", get("layer_remembered_per_second"));
        println!(
            "revocation to refusal over {} sessions: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.rounds,
            get("propagation_p50_ms"),
            get("propagation_p99_ms"),
            get("propagation_max_ms")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(server: &ServerProcess, args: &EmbeddedArgs) -> anyhow::Result<serde_json::Value> {
    let secret = server.credential.clone().context("no service client")?;
    let url = format!("http://{}", server.addr);
    let verifier = |memo: bool| {
        let mut config = VerifierConfig::new(&url, "tessera", crate::sandbox::SERVICE_CLIENT, &secret);
        if !memo {
            config.remembered = 0;
        }
        TokenVerifier::start(config).map(Arc::new)
    };
    let (cold, warm) = (verifier(false)?, verifier(true)?);
    let mut wire = Wire::connect(server.addr).await?;
    let token = login(&mut wire).await?;
    for verifier in [&cold, &warm] {
        until(READY_WITHIN, || verifier.verify(&token).is_ok()).await.context("the verifier never got ready")?;
    }

    // The server's public key for the token, from its JWKS: raw verification checks the same signature over the
    // same signing input.
    let (status, body) = wire.get("/.well-known/jwks.json", None).await?;
    if status != 200 {
        bail!("the JWKS answered {status}");
    }
    let jwks: tessera_jose::Jwks = serde_json::from_slice(body)?;
    let kid = tessera_jose::decode_unverified(&token, tessera_jose::DEFAULT_MAX_TOKEN_LEN)?.header.kid;
    let jwk = jwks.keys.into_iter().find(|key| key.kid == kid).context("the token's key is not in the JWKS")?;
    // Both on one thread of their own, alternating: the raw reference, then the layer (the feed idles in its
    // long poll meanwhile).
    let rounds = std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<_> {
                let runtime = tokio::runtime::Builder::new_current_thread().build()?;
                let (mut raws, mut layers, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..ROUNDS {
                    let raw = crate::raw::raw_verify_rate_of(&token, &jwk, args.alg, ROUND)?;
                    let layer = runtime.block_on(layer_rate(Arc::clone(&cold), &token))?;
                    raws.push(raw);
                    layers.push(layer);
                    ratios.push(layer / raw);
                }
                let remembered = runtime.block_on(layer_rate(Arc::clone(&warm), &token))?;
                Ok((median(raws), median(layers), median(ratios), remembered))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?
    });
    let (raw, layer, ratio, remembered) = rounds?;

    // A fresh connection: the first one idled past the server's keep-alive during the throughput rounds.
    let mut wire = Wire::connect(server.addr).await?;
    let mut delays = Vec::with_capacity(args.rounds as usize);
    for _ in 0..args.rounds {
        let token = login(&mut wire).await?;
        until(READY_WITHIN, || warm.verify(&token).is_ok()).await.context("a new session was never accepted")?;
        let sent = Instant::now();
        wire.bearer = Some(token.clone());
        let (status, _) = wire.post("/auth/logout", "application/json", "").await?;
        wire.bearer = None;
        if status != 204 {
            bail!("logout answered {status}");
        }
        until(READY_WITHIN, || warm.verify(&token) == Err(Refusal::Revoked)).await.context("never refused")?;
        delays.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| delays.get(((delays.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    Ok(serde_json::json!({
        "scenario": "embedded",
        "alg": args.alg.as_str(),
        "raw_verify_per_second": raw,
        "layer_per_second": layer,
        "ratio_to_raw": ratio,
        "layer_remembered_per_second": remembered,
        "rounds": args.rounds,
        "propagation_p50_ms": at(0.50),
        "propagation_p99_ms": at(0.99),
        "propagation_max_ms": delays.last().copied().unwrap_or(0.0),
    }))
}

/// Requests per second through `RequireToken` around a service that answers at once, for one [`ROUND`].
async fn layer_rate(verifier: Arc<TokenVerifier>, token: &str) -> anyhow::Result<f64> {
    let inner = tower::service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) });
    let mut service = RequireToken::new(verifier).layer(inner);
    let authorization = http::HeaderValue::try_from(format!("Bearer {token}"))?;
    let started = Instant::now();
    let mut count = 0_u32;
    while started.elapsed() < ROUND {
        let mut request = http::Request::new(());
        request.headers_mut().insert(http::header::AUTHORIZATION, authorization.clone());
        let response = service.ready().await?.call(request).await?;
        if response.status() != http::StatusCode::OK {
            bail!("the layer refused the token: {}", response.status());
        }
        count += 1;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

async fn login(wire: &mut Wire) -> anyhow::Result<String> {
    let body = serde_json::json!({"username": USER, "password": PASSWORD}).to_string();
    let (status, answer) = wire.post("/auth/login", "application/json", &body).await?;
    if status != 200 {
        bail!("login answered {status}");
    }
    let answer: serde_json::Value = serde_json::from_slice(answer)?;
    Ok(answer.get("access_token").and_then(serde_json::Value::as_str).context("no access token")?.to_owned())
}

/// Polls `condition` every 100 µs until it holds; an error after `within`.
async fn until(within: Duration, condition: impl Fn() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > within {
            bail!("not within {within:?}");
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    Ok(())
}
