//! `tessera audit`: the JWT security audit from the command line.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use tessera_audit::crack::Candidates;
use tessera_audit::gateway::{Routes, Style, NOT_PROBED};
use tessera_audit::{audit_jwks, audit_token, render, Report, Severity, TokenAudit};
use tessera_audit_source::code::{Options, TestCode, Wordlist};
use tessera_audit_source::deps::Advisories;
use tessera_jose::KeySet;

use crate::cli::{AuditCommand, GatewayStyle, ReportFormat};
use crate::config::secs;

pub(crate) fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let endpoint = matches!(command, AuditCommand::Endpoint { .. });
    let (report, format) = match command {
        AuditCommand::Token { token, jwks, wordlist, brute_force_length, max_lifetime, at, format } => {
            let token = crate::token::read_token(&token)?;
            let wordlist = match wordlist {
                Some(path) => Candidates::parse_wordlist(
                    &std::fs::read(&path).with_context(|| format!("reading wordlist {}", path.display()))?,
                ),
                None => Vec::new(),
            };
            let mut not_tested = Vec::new();
            let keys = match jwks {
                Some(source) => {
                    let fetched = crate::fetch::fetch(&source)?;
                    match KeySet::from_jwks_json(&fetched.body) {
                        Ok(keys) => Some(keys),
                        Err(err) => {
                            not_tested.push(format!("signature against {source}: the key set was refused ({err}); run `tessera audit jwks` on it"));
                            None
                        }
                    }
                }
                None => None,
            };
            let audit = TokenAudit {
                now: at.unwrap_or_else(crate::now),
                max_lifetime_secs: secs(max_lifetime),
                keys,
                candidates: Candidates { wordlist, brute_force_max_len: usize::from(brute_force_length) },
                threads: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            };
            let interactive = std::io::stderr().is_terminal();
            let mut progress = |p: tessera_audit::crack::Progress| {
                if interactive {
                    let rate = p.tried as f64 / p.elapsed.as_secs_f64().max(1e-3);
                    eprint!(
                        "\rtrying secrets: {}/{} ({:.0}%), {:.0} keys/s   ",
                        p.tried,
                        p.total,
                        100.0 * p.tried as f64 / p.total.max(1) as f64,
                        rate
                    );
                    let _ = std::io::stderr().flush();
                }
            };
            let mut report = audit_token(&token, &audit, &mut progress)?;
            if interactive {
                eprintln!();
            }
            if !not_tested.is_empty() {
                // The key set was given but refused: say that, not "no --jwks given".
                report.not_tested.retain(|gap| !gap.contains("no --jwks"));
                report.not_tested.extend(not_tested);
            }
            (report, format.format)
        }
        AuditCommand::Endpoint {
            url, authorize_client: Some(client_id), redirect_uri, scope, timeout, format, ..
        } => {
            let client = tessera_audit::authorize::Client::new(
                &client_id,
                redirect_uri.as_deref().unwrap_or_default(),
                Some(&scope),
            )?;
            (crate::probe::run_authorize(&url, &client, timeout)?, format.format)
        }
        AuditCommand::Endpoint {
            url,
            token: Some(token),
            header,
            method,
            jwks,
            reject,
            timeout,
            introspect_as,
            client_secret,
            protected_path,
            protected_method,
            allowed_path,
            style,
            format,
            ..
        } => {
            let introspection = introspect_as.zip(client_secret);
            let gateway = match protected_path {
                Some(path) => Some(crate::probe::Gateway {
                    routes: Routes::new(&protected_method, &path, &allowed_path)?,
                    styles: match style {
                        GatewayStyle::Auto => Style::ALL.to_vec(),
                        GatewayStyle::Nginx => vec![Style::Nginx],
                        GatewayStyle::Traefik => vec![Style::Traefik],
                        GatewayStyle::Envoy => vec![Style::Envoy],
                    },
                }),
                None => None,
            };
            let target = crate::probe::Target { url, header, method, timeout, introspection, gateway };
            (crate::probe::run(&target, &token, jwks.as_deref(), &reject)?, format.format)
        }
        AuditCommand::Endpoint { token: None, .. } => anyhow::bail!("--token is required (or --authorize-client)"),
        AuditCommand::Source { path, advisories, include_tests, wordlist, format } => {
            let advisories = match advisories {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading the advisory table {}", file.display()))?;
                    Advisories::parse(&text).map_err(|problems| {
                        anyhow::anyhow!(
                            "the advisory table {} is refused:\n  {}",
                            file.display(),
                            problems.join("\n  ")
                        )
                    })?
                }
                None => Advisories::shipped(),
            };
            let wordlist = match wordlist {
                Some(path) => Wordlist::parse(
                    &std::fs::read(&path).with_context(|| format!("reading wordlist {}", path.display()))?,
                ),
                None => Wordlist::default(),
            };
            let tests = if include_tests { TestCode::Include } else { TestCode::Skip };
            (
                crate::audit_source::audit(&path, &advisories, &Options { tests, wordlist, parse_budget: None })?,
                format.format,
            )
        }
        AuditCommand::Jwks { source, format } => {
            let fetched = crate::fetch::fetch(&source)?;
            let cache_control = fetched.cache_control.as_ref().map(|value| value.as_deref());
            (audit_jwks(&source, &fetched.body, cache_control)?, format.format)
        }
    };
    print(&report, format);
    Ok(match (endpoint, report.worst()) {
        // Every endpoint finding above INFO is a forged token or a route that got through (or a header URL the
        // target fetched), or an authorization request a strict server refuses.
        (true, Some(worst)) if worst > Severity::Info => ExitCode::FAILURE,
        // A baseline failed: nothing could be concluded, which must not read as "no findings".
        (true, _)
            if !["probes_sent", "authorize_probes_sent"].iter().any(|sent| report.stats.contains_key(*sent))
                || report.has(NOT_PROBED)
                || report.has(tessera_audit::authorize::NOT_PROBED) =>
        {
            ExitCode::from(2)
        }
        (false, Some(worst)) if worst >= Severity::High => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

fn print(report: &Report, format: ReportFormat) {
    let text = match format {
        ReportFormat::Table => render::table(report),
        ReportFormat::Json => render::json(report),
        ReportFormat::Sarif => render::sarif(report),
        ReportFormat::Markdown => render::markdown(report),
    };
    println!("{}", text.trim_end());
}
