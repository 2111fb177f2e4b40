//! The load scenarios: a bounded run of one kind of request against a fresh server, with its report.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tessera_jose::Algorithm;

use crate::cli::LoadArgs;
use crate::raw::{raw_reference, raw_rsa_sign_rate_on_both_cores, rsa_avx512_ifma};
use crate::sandbox::{store_name, ServerProcess, BENCH_APP, BENCH_REDIRECT_URI, PASSWORD, USER};
use crate::until_stopped;
use crate::wire::Wire;

/// Runs `scenario` against a fresh server signing with `alg`, prints the report, and fails when any request did.
pub(crate) fn run(tessera: &Path, scenario: Scenario, alg: Algorithm, load: &LoadArgs) -> anyhow::Result<ExitCode> {
    // The reference is measured before the server starts and again after it stops, and the two averaged: the
    // host's speed drifts (shared VMs: ±10% within minutes), and the mean of both sides tracks what the load saw.
    let raw_before = raw_reference(scenario, alg)?;
    let scenario = match (scenario, raw_before) {
        // Codes for the whole run at the raw limit, spread over the workers: a worker never runs out first.
        (Scenario::CodeExchange { rs256_id_tokens, .. }, Some((_, limit))) => {
            let run = load.duration.as_secs_f64() + WARMUP.as_secs_f64();
            let total = (limit * run * 1.2).ceil().min(MAX_CODES as f64) as usize;
            let codes_per_worker = total.div_ceil(usize::from(load.concurrency).max(1));
            Scenario::CodeExchange { codes_per_worker, rs256_id_tokens }
        }
        _ => scenario,
    };
    let server = ServerProcess::start(tessera, alg, scenario, &load.store)?;
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // A response arriving must not preempt the server it measures in the middle of a request (on the
                // same two cores each such preemption is a context switch the server pays for): the generator
                // runs when a core is free and then reads every response that arrived meanwhile.
                if let Err(why) = tessera_store::sched_batch_for_this_thread() {
                    eprintln!("load generator: SCHED_BATCH refused ({why}); it runs under the default policy");
                }
                // The load generator runs on one thread; the server has the machine's cores (the generator shares
                // them).
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(until_stopped(drive(server.addr, scenario, server.credential.as_deref(), load)))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))
    })?;
    let tokens = match scenario {
        Scenario::Verify { tokens } => Some(tokens),
        _ => None,
    };
    drop(server);
    let result = result?;
    let raw_after = raw_reference(scenario, alg)?;
    // (name, before, after, mean)
    let raw =
        raw_before.zip(raw_after).map(|((name, before), (_, after))| (name, before, after, (before + after) / 2.0));
    // The issue's reference is twice one core's rate; signing on both cores at once shows what two cores really
    // sustain (on this kind of VM about 94% of twice one core), measured after it so the two do not compete.
    let both_cores = match scenario {
        Scenario::Refresh if alg == Algorithm::RS256 => Some(raw_rsa_sign_rate_on_both_cores(Duration::from_secs(2))?),
        _ => None,
    };
    let report = serde_json::json!({
        "scenario": scenario.name(), "alg": alg.as_str(), "concurrency": load.concurrency, "tokens": tokens,
        "store": store_name(&load.store),
        "duration_s": load.duration.as_secs_f64(), "requests": result.count, "errors": result.errors,
        "per_second": result.per_second, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
        "raw_reference": raw.map(|(name, ..)| name), "raw_per_second": raw.map(|(.., rate)| rate),
        "raw_per_second_before_and_after": raw.map(|(_, before, after, _)| [before, after]),
        "ratio_to_raw": raw.map(|(.., rate)| result.per_second / rate),
        "raw_rsa_sign_both_cores_per_second": both_cores,
        "ratio_to_both_cores": both_cores.map(|rate| result.per_second / rate),
        "rsa_avx512_ifma": both_cores.map(|_| rsa_avx512_ifma()),
    });
    if load.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut reference = raw.map_or_else(String::new, |(name, before, after, rate)| {
            format!(
                " | {name}: {rate:.0} (before {before:.0}, after {after:.0}; ratio {:.2})",
                result.per_second / rate
            )
        });
        if let Some(rate) = both_cores {
            reference.push_str(&format!(
                " | raw RSA-2048 sign on both cores at once: {rate:.0}/s (ratio {:.2}) | aws-lc AVX-512 IFMA RSA: {}",
                result.per_second / rate,
                if rsa_avx512_ifma() { "yes" } else { "no" }
            ));
        }
        let tokens = tokens.map_or_else(String::new, |n| format!(", {n} distinct tokens"));
        println!(
            "{} {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} errors, concurrency {}{tokens}{reference}",
            scenario.name(),
            alg,
            result.per_second,
            result.p50_ms,
            result.p99_ms,
            result.count,
            result.errors,
            load.concurrency,
        );
    }
    Ok(if result.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What a load run sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    Refresh,
    Login,
    /// The login page's form, posted again and again with its sealed request and the browser's form cookie.
    LoginPage,
    /// `tokens` distinct access tokens, each of its own user, presented in turn.
    Verify {
        tokens: usize,
    },
    ClientCredentials,
    /// Each worker exchanges its own codes, made beforehand, each once.
    CodeExchange {
        codes_per_worker: usize,
        /// The app's ID tokens are RS256 (signed with the RS256 keys when the server's algorithm is another).
        rs256_id_tokens: bool,
    },
    Revoke,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Login => "login",
            Self::LoginPage => "login_page",
            Self::Verify { .. } => "verify",
            Self::ClientCredentials => "client_credentials",
            Self::CodeExchange { .. } => "code_exchange",
            Self::Revoke => "revoke",
        }
    }
}

struct Outcome {
    count: usize,
    errors: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn drive(
    addr: SocketAddr,
    scenario: Scenario,
    credential: Option<&str>,
    load: &LoadArgs,
) -> anyhow::Result<Outcome> {
    // Every connection is set up (a login each, for some scenarios) before the clock starts: measuring while
    // connections still open would count fewer requests in flight than the concurrency asked for.
    let mut ready = Vec::new();
    let connections = usize::from(load.concurrency);
    for worker in 0..connections {
        let mut wire = Wire::connect(addr).await?;
        let held = prepare(&mut wire, scenario, credential, (worker, connections)).await?;
        ready.push((worker, wire, held));
    }
    let start = Instant::now() + WARMUP;
    let end = start + load.duration;
    let mut workers = Vec::new();
    for (worker, mut wire, mut held) in ready {
        let credential = credential.map(str::to_owned);
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut ran_out) = (Vec::<u32>::new(), 0usize, false);
            let mut turn = 0usize;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let count = held.len();
                if matches!(scenario, Scenario::CodeExchange { .. }) && turn >= count {
                    // Each code is good once: a worker out of codes would only measure refusals.
                    ran_out = true;
                    break;
                }
                let Some(state) = held.get_mut(turn % count.max(1)) else { break };
                turn = turn.wrapping_add(1);
                let ok = one(&mut wire, scenario, state).await;
                if sent >= start {
                    if ok {
                        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    // A broken connection or session would otherwise spin: reconnect and start over.
                    if let Ok(fresh) = Wire::connect(addr).await {
                        wire = fresh;
                    }
                    if let Ok(fresh) = prepare(&mut wire, scenario, credential.as_deref(), (worker, connections)).await
                    {
                        held = fresh;
                    }
                }
            }
            (latencies, errors, ran_out)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e, ran_out) = worker.await?;
        if ran_out {
            bail!("a worker used every code made for it before the run ended: run for less time");
        }
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        f64::from(latencies.get(index).copied().unwrap_or(0)) / 1000.0
    };
    Ok(Outcome {
        count: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / load.duration.as_secs_f64(),
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
    })
}

fn login_body(delivery: &str) -> String {
    serde_json::json!({"username": USER, "password": PASSWORD, "refresh_token_delivery": delivery}).to_string()
}

/// The `refresh_token` of a token response. A byte search rather than a JSON parse: the generator shares the
/// machine with the server, so every microsecond it spends is taken from the server being measured. (Refresh
/// tokens are base64url: no escapes.)
fn refresh_token_of(body: &[u8]) -> anyhow::Result<String> {
    const FIELD: &[u8] = br#""refresh_token":""#;
    let start =
        body.windows(FIELD.len()).position(|w| w == FIELD).context("no refresh_token in the response")? + FIELD.len();
    let rest = body.get(start..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == b'"').context("unterminated refresh_token")?;
    Ok(String::from_utf8(rest.get(..end).unwrap_or_default().to_vec())?)
}

/// What worker `worker` of `workers` holds between requests, used in turn: a refresh token, its share of the
/// access tokens, the client form, or nothing.
async fn prepare(
    wire: &mut Wire,
    scenario: Scenario,
    credential: Option<&str>,
    (worker, workers): (usize, usize),
) -> anyhow::Result<Vec<String>> {
    Ok(match scenario {
        Scenario::Refresh => {
            let (status, body) = wire.post("/auth/login", "application/json", &login_body("body")).await?;
            if status != 200 {
                bail!("login for the benchmark failed: {status}");
            }
            vec![refresh_token_of(body)?]
        }
        Scenario::Verify { tokens } => {
            // Tokens of distinct users, minted through the admin API (a login each would spend minutes in
            // argon2). Worker w presents tokens w, w + workers, ...; with fewer tokens than workers, they share.
            let admin = Some(credential.context("no admin credential")?.to_owned());
            let saved = std::mem::replace(&mut wire.bearer, admin);
            let mut held = Vec::new();
            for user in (worker..tokens.max(worker + 1)).step_by(workers.max(1)) {
                let body = format!(r#"{{"sub":"bench-user-{}"}}"#, user % tokens.max(1));
                let (status, body) = wire.post("/admin/v1/sessions", "application/json", &body).await?;
                if status != 200 && status != 201 {
                    bail!("minting a token for the benchmark failed: {status}");
                }
                let minted: serde_json::Value = serde_json::from_slice(body)?;
                let token =
                    minted.get("access_token").and_then(serde_json::Value::as_str).context("no access token")?;
                held.push(token.to_owned());
            }
            wire.bearer = saved;
            held
        }
        Scenario::Login => vec![String::new()],
        Scenario::LoginPage => {
            let (headers, form) = login_form(wire).await?;
            vec![format!("{headers}\0{form}")]
        }
        Scenario::ClientCredentials => {
            vec![format!(
                "grant_type=client_credentials&client_id=bench&client_secret={}",
                credential.context("no client")?
            )]
        }
        Scenario::Revoke => {
            wire.bearer = Some(credential.context("no admin credential")?.to_owned());
            vec![String::new()]
        }
        Scenario::CodeExchange { codes_per_worker, .. } => {
            let login = sign_in(wire).await?;
            let mut forms = Vec::with_capacity(codes_per_worker);
            for _ in 0..codes_per_worker {
                let (status, headers) =
                    wire.request_with("GET", &authorize_path(), &format!("cookie: {login}\r\n"), None).await?;
                let code = header(&headers, "location")
                    .and_then(|location| location.split(['?', '&']).find_map(|pair| pair.strip_prefix("code=")))
                    .with_context(|| format!("the authorization endpoint answered {status} without a code"))?;
                forms.push(format!(
                    "grant_type=authorization_code&client_id={BENCH_APP}&redirect_uri={}&code_verifier={CODE_VERIFIER}&code={code}",
                    BENCH_REDIRECT_URI.replace(':', "%3A").replace('/', "%2F")
                ));
            }
            forms
        }
    })
}

/// The PKCE pair of the code-exchange benchmark: RFC 7636's example.
const CODE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CODE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// How long the clock runs before measuring starts.
const WARMUP: Duration = Duration::from_secs(1);
/// Codes made for one run at most: they live a minute, and making them takes a while.
const MAX_CODES: usize = 200_000;

fn authorize_path() -> String {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", BENCH_APP),
        ("redirect_uri", BENCH_REDIRECT_URI),
        ("scope", "openid"),
        ("code_challenge", CODE_CHALLENGE),
        ("code_challenge_method", "S256"),
    ])
    .unwrap_or_default();
    format!("/oauth2/authorize?{query}")
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
}

/// Logs the benchmark user in through the login page, as a browser would; the login cookie (`name=value`).
async fn sign_in(wire: &mut Wire) -> anyhow::Result<String> {
    let (headers, form) = login_form(wire).await?;
    let (status, headers) = wire.request_with("POST", "/oauth2/authorize/login", &headers, Some(&form)).await?;
    headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .filter_map(|(_, cookie)| cookie.split(';').next())
        .find(|pair| pair.starts_with("__Host-tessera-login="))
        .map(str::to_owned)
        .with_context(|| format!("the login page's login answered {status} without a login cookie"))
}

/// The login page's form for the benchmark user, filled in: the header lines a browser sends with it (its form
/// cookie, its origin) and the form body.
async fn login_form(wire: &mut Wire) -> anyhow::Result<(String, String)> {
    let (status, headers) = wire.request_with("GET", &authorize_path(), "", None).await?;
    let form_cookie = header(&headers, "set-cookie")
        .and_then(|cookie| cookie.split(';').next())
        .with_context(|| format!("the login page ({status}) set no form cookie"))?
        .to_owned();
    let page = String::from_utf8_lossy(wire.last_body()?).into_owned();
    const FIELD: &str = r#"name="request" value=""#;
    let request = page
        .find(FIELD)
        .and_then(|at| page.get(at + FIELD.len()..))
        .and_then(|rest| rest.split('"').next())
        .context("no login form on the login page")?;
    let form = serde_urlencoded::to_string([("request", request), ("username", USER), ("password", PASSWORD)])?;
    Ok((format!("cookie: {form_cookie}\r\norigin: http://{}\r\n", wire.addr()), form))
}

static NEXT_REVOCATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One request; `Ok(true)` when it succeeded.
async fn one(wire: &mut Wire, scenario: Scenario, state: &mut String) -> bool {
    const FORM: &str = "application/x-www-form-urlencoded";
    let result = match scenario {
        Scenario::Refresh => {
            let form = format!("grant_type=refresh_token&refresh_token={state}");
            wire.post("/oauth2/token", FORM, &form).await
        }
        Scenario::Login => wire.post("/auth/login", "application/json", &login_body("body")).await,
        Scenario::Verify { .. } => wire.get("/verify", Some(state)).await,
        Scenario::ClientCredentials | Scenario::CodeExchange { .. } => wire.post("/oauth2/token", FORM, state).await,
        Scenario::LoginPage => {
            let (headers, form) = state.split_once('\0').unwrap_or_default();
            // A login answers 303 to the application with a code.
            return wire
                .request_with("POST", "/oauth2/authorize/login", headers, Some(form))
                .await
                .is_ok_and(|(status, _)| status == 303);
        }
        Scenario::Revoke => {
            // A token id never revoked before, so that every request is a new durable write.
            let n = NEXT_REVOCATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = format!(r#"{{"jti":"bench-{n}","reason":"benchmark"}}"#);
            wire.post("/admin/v1/revocations", "application/json", &body).await
        }
    };
    match (result, scenario) {
        (Ok((200, body)), Scenario::Refresh) => refresh_token_of(body).map(|next| *state = next).is_ok(),
        (Ok((200 | 201, _)), _) => true,
        _ => false,
    }
}
