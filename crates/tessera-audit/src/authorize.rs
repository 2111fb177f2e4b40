//! `audit endpoint --authorize-client` against an OAuth 2.0 authorization endpoint: the flaws visible from outside
//! with nothing but a registered client's id and redirect URI — redirect URIs matched loosely (a prefix, another
//! path, another host), PKCE not required or downgraded to `plain`, `state` not passed back with an error, errors
//! for an unknown client redirected anywhere (an open redirector), and no `iss` in the answer (RFC 9207). As in
//! [`crate::probe`], no I/O here: the caller sends each request (a GET, redirects not followed) and hands back the
//! status and `Location` of each answer.
//!
//! No probe logs anyone in: each is judged by whether the endpoint refuses it before a login page (a 4xx, or an
//! error sent to the registered redirect URI) or goes on with it (the login page, or a code). An endpoint that
//! goes on with an unregistered redirect URI would send the code there after the person logs in.

use url::Url;

use crate::{AuditError, Finding, Report, Severity};

/// The registered client the probes speak for.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its `client_id`.
    pub client_id: String,
    /// One redirect URI registered for it.
    pub redirect_uri: Url,
    /// The scope to ask for (`openid` by default).
    pub scope: String,
}

impl Client {
    /// The client `client_id` with its registered `redirect_uri`.
    ///
    /// # Errors
    /// [`AuditError::Probe`] for an empty id or a redirect URI that is not an absolute URI.
    pub fn new(client_id: &str, redirect_uri: &str, scope: Option<&str>) -> Result<Self, AuditError> {
        if client_id.is_empty() {
            return Err(AuditError::Probe("the client id must not be empty".into()));
        }
        let redirect_uri = Url::parse(redirect_uri).map_err(|err| {
            AuditError::Probe(format!("the redirect URI {redirect_uri:?} is not an absolute URI: {err}"))
        })?;
        Ok(Self { client_id: client_id.to_owned(), redirect_uri, scope: scope.unwrap_or("openid").to_owned() })
    }
}

/// The `state` every probe sends, so an answer can be tied to it.
pub const STATE: &str = "tessera-audit-state-7f3a";
/// A well-formed S256 challenge (of a verifier nobody holds: no code is ever exchanged).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// What a probe tests.
#[derive(Debug, Clone)]
enum Kind {
    /// A well-formed request: the endpoint must go on with it, or no other answer means anything.
    Baseline,
    /// An unregistered redirect URI (`uri`), which the endpoint must refuse without redirecting.
    Redirect { uri: String, weakness: &'static Weakness },
    /// A request the endpoint must refuse for its PKCE parameters.
    Pkce(&'static Weakness),
    /// An error the endpoint must send to the redirect URI with the request's `state` and its `iss`.
    ErrorReply,
    /// An unknown client with an attacker's redirect URI: the error must be shown, never redirected.
    UnknownClient { uri: String },
}

/// One request to the authorization endpoint: its query parameters.
#[derive(Debug, Clone)]
pub struct AuthorizeProbe {
    /// What it tries.
    pub name: String,
    /// The query string's parameters, in order.
    pub query: Vec<(String, String)>,
    kind: Kind,
}

/// An answer: its status and, for a redirect, its `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
}

#[derive(Debug)]
struct Weakness {
    id: &'static str,
    severity: Severity,
    title: &'static str,
    fix: &'static str,
}

const REDIRECT_ANY_HOST: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-REDIRECT-HOST",
    severity: Severity::Critical,
    title: "An unregistered redirect URI on another host is accepted: codes can be sent to an attacker",
    fix: "Compare the redirect URI with the registered ones as whole strings (RFC 9700 §4.1.3); only a loopback \
          URI of a native app may differ, and only in its port (RFC 8252 §7.3).",
};

const REDIRECT_NOT_EXACT: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-REDIRECT-NOT-EXACT",
    severity: Severity::High,
    title: "A redirect URI that only starts like the registered one is accepted (prefix or pattern matching)",
    fix: "Compare the redirect URI with the registered ones as whole strings (RFC 9700 §4.1.3): another path or \
          query on the same host reaches any open redirector there, and with it the code.",
};

const REDIRECT_DOWNGRADE: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-REDIRECT-DOWNGRADE",
    severity: Severity::High,
    title: "The http spelling of an https redirect URI is accepted: codes travel in the clear",
    fix: "Compare the redirect URI with the registered ones as whole strings, scheme included.",
};

const PKCE_NOT_REQUIRED: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-PKCE-MISSING",
    severity: Severity::High,
    title: "A request without PKCE is accepted: an intercepted code can be exchanged",
    fix: "Require code_challenge with code_challenge_method=S256 from every client (RFC 9700 §2.1.1).",
};

const PKCE_PLAIN: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-PKCE-PLAIN",
    severity: Severity::Medium,
    title: "PKCE's plain method is accepted: the challenge is the verifier, readable wherever the request is",
    fix: "Accept only code_challenge_method=S256 (RFC 9700 §2.1.1); refuse plain and a challenge without a method.",
};

const STATE_DROPPED: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-STATE-DROPPED",
    severity: Severity::Medium,
    title: "An error sent to the redirect URI does not carry the request's state",
    fix: "Send state back unchanged with every answer at the redirect URI, errors included (RFC 6749 §4.1.2.1).",
};

const NO_ISS: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-NO-ISS",
    severity: Severity::Low,
    title: "Answers at the redirect URI do not name the issuer (RFC 9207): clients of several servers can be mixed up",
    fix: "Add the iss parameter to every authorization response, and advertise \
          authorization_response_iss_parameter_supported in the metadata.",
};

const OPEN_REDIRECT: Weakness = Weakness {
    id: "ENDPOINT-AUTHZ-OPEN-REDIRECT",
    severity: Severity::High,
    title: "An error for an unknown client is redirected to the URI the request names: an open redirector",
    fix: "Show errors about the client or its redirect URI to the person and never redirect them \
          (RFC 6749 §4.1.2.1).",
};

/// The id of the finding when the baseline request was refused, so that nothing else could be judged.
pub const NOT_PROBED: &str = "ENDPOINT-AUTHZ-NOT-PROBED";

/// Another host nobody registers redirect URIs on.
const ELSEWHERE: &str = "evil.example";

/// Every probe for `client`, the baseline first.
#[must_use]
pub fn probes(client: &Client) -> Vec<AuthorizeProbe> {
    let registered = client.redirect_uri.as_str();
    let request = |redirect_uri: &str, changes: &[(&str, Option<&str>)]| -> Vec<(String, String)> {
        let mut query: Vec<(String, String)> = [
            ("response_type", "code"),
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", client.scope.as_str()),
            ("state", STATE),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        for (name, value) in changes {
            query.retain(|(n, _)| n != name);
            if let Some(value) = value {
                query.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        query
    };
    let mut probes = vec![AuthorizeProbe {
        name: "a well-formed request".into(),
        query: request(registered, &[]),
        kind: Kind::Baseline,
    }];
    for (uri, what, weakness) in redirect_variants(&client.redirect_uri) {
        probes.push(AuthorizeProbe {
            name: format!("redirect_uri {what}"),
            query: request(&uri, &[]),
            kind: Kind::Redirect { uri, weakness },
        });
    }
    probes.push(AuthorizeProbe {
        name: "no code_challenge".into(),
        query: request(registered, &[("code_challenge", None), ("code_challenge_method", None)]),
        kind: Kind::Pkce(&PKCE_NOT_REQUIRED),
    });
    probes.push(AuthorizeProbe {
        name: "code_challenge_method=plain".into(),
        query: request(registered, &[("code_challenge_method", Some("plain"))]),
        kind: Kind::Pkce(&PKCE_PLAIN),
    });
    probes.push(AuthorizeProbe {
        name: "an unsupported response_type, to see the error answer".into(),
        query: request(registered, &[("response_type", Some("tessera_audit_unsupported"))]),
        kind: Kind::ErrorReply,
    });
    let attacker = format!("https://{ELSEWHERE}/callback");
    probes.push(AuthorizeProbe {
        name: "an unknown client_id with an attacker's redirect_uri".into(),
        query: request(&attacker, &[("client_id", Some("tessera-audit-unknown-client"))]),
        kind: Kind::UnknownClient { uri: attacker },
    });
    probes
}

/// The unregistered spellings of `registered` a loose matcher would accept, with what each tries.
fn redirect_variants(registered: &Url) -> Vec<(String, &'static str, &'static Weakness)> {
    let text = registered.as_str();
    let mut variants = Vec::new();
    if registered.query().is_none() && registered.fragment().is_none() {
        variants.push((format!("{text}x"), "with a character appended (prefix matching)", &REDIRECT_NOT_EXACT));
        let sub = if text.ends_with('/') { format!("{text}evil") } else { format!("{text}/evil") };
        variants.push((sub, "with a path segment appended", &REDIRECT_NOT_EXACT));
        variants.push((
            format!("{text}?next=https://{ELSEWHERE}/"),
            "with a query appended (a redirector's parameter)",
            &REDIRECT_NOT_EXACT,
        ));
    }
    if let Some(host) = registered.host_str() {
        let mut suffixed = registered.clone();
        if suffixed.set_host(Some(&format!("{host}.{ELSEWHERE}"))).is_ok() {
            variants.push((
                suffixed.to_string(),
                "on a host that only starts with the registered one",
                &REDIRECT_ANY_HOST,
            ));
        }
        let mut elsewhere = registered.clone();
        if elsewhere.set_host(Some(ELSEWHERE)).is_ok() {
            variants.push((elsewhere.to_string(), "on another host", &REDIRECT_ANY_HOST));
        }
        let port = registered.port().map(|port| format!(":{port}")).unwrap_or_default();
        let query = registered.query().map(|query| format!("?{query}")).unwrap_or_default();
        let userinfo = format!("{}://{host}{port}@{ELSEWHERE}{}{query}", registered.scheme(), registered.path());
        variants.push((userinfo, "with the registered host as userinfo before another host", &REDIRECT_ANY_HOST));
        if registered.scheme() == "https" {
            variants.push((
                format!("http{}", text.strip_prefix("https").unwrap_or(text)),
                "over http",
                &REDIRECT_DOWNGRADE,
            ));
        }
    }
    variants
}

/// Whether `reply` goes on with the request: the login page (a 2xx), or a redirect that is not an error.
fn goes_on(reply: &Reply) -> bool {
    (200..300).contains(&reply.status)
        || (300..400).contains(&reply.status)
            && reply
                .location
                .as_deref()
                .and_then(|l| Url::parse(l).ok())
                .is_some_and(|location| !location.query_pairs().any(|(name, _)| name == "error"))
}

/// Whether `reply` sends the browser to `uri` (its `Location` starts with it).
fn redirects_to(reply: &Reply, uri: &str) -> bool {
    (300..400).contains(&reply.status) && reply.location.as_deref().is_some_and(|location| location.starts_with(uri))
}

fn finding(weakness: &Weakness, evidence: String) -> Finding {
    Finding::new(weakness.id, weakness.severity, weakness.title, evidence, weakness.fix)
}

/// The report on `endpoint` from the replies to `probes` (in order; `Err` for a request that got no answer).
///
/// # Errors
/// [`AuditError::Probe`] when `replies` does not match `probes`.
pub fn verdict(
    endpoint: &str,
    probes: &[AuthorizeProbe],
    replies: &[Result<Reply, String>],
) -> Result<Report, AuditError> {
    if probes.len() != replies.len() {
        return Err(AuditError::Probe("one reply per probe is needed".into()));
    }
    let mut report = Report::new("authorization endpoint", endpoint);
    report.stats.insert("authorize_probes_sent".into(), probes.len().into());
    let baseline =
        probes.iter().zip(replies).find(|(probe, _)| matches!(probe.kind, Kind::Baseline)).map(|(_, reply)| reply);
    let Some(Ok(baseline)) = baseline.filter(|reply| reply.as_ref().is_ok_and(goes_on)) else {
        let seen = match baseline {
            Some(Ok(reply)) => format!("HTTP {} {}", reply.status, reply.location.as_deref().unwrap_or_default()),
            Some(Err(why)) => why.clone(),
            None => "no baseline probe".into(),
        };
        report.findings.push(Finding::new(
            NOT_PROBED,
            Severity::Info,
            "The authorization endpoint refused a well-formed request, so no probe could be judged",
            format!("{seen}: check the client id and that the redirect URI is registered for it"),
            "Run the probe with a client registered for the authorization code flow and one of its redirect URIs.",
        ));
        return Ok(report);
    };
    report.stats.insert("authorize_baseline".into(), format!("HTTP {}", baseline.status).into());
    for (probe, reply) in probes.iter().zip(replies) {
        let reply = match reply {
            Ok(reply) => reply,
            Err(why) => {
                report.not_tested.push(format!("{}: {why}", probe.name));
                continue;
            }
        };
        let answered = format!(
            "{} → HTTP {}{}",
            probe.name,
            reply.status,
            match &reply.location {
                Some(location) => format!(", Location: {location}"),
                None => String::new(),
            }
        );
        match &probe.kind {
            Kind::Baseline => {}
            Kind::Redirect { uri, weakness } => {
                if goes_on(reply) || redirects_to(reply, uri) {
                    report.findings.push(finding(weakness, answered));
                }
            }
            Kind::Pkce(weakness) => {
                if goes_on(reply) {
                    report.findings.push(finding(weakness, answered));
                }
            }
            Kind::UnknownClient { uri } => {
                if redirects_to(reply, uri) {
                    report.findings.push(finding(&OPEN_REDIRECT, answered));
                }
            }
            Kind::ErrorReply => {
                let location = reply.location.as_deref().and_then(|l| Url::parse(l).ok());
                match location.filter(|_| (300..400).contains(&reply.status)) {
                    Some(location) => {
                        let param = |wanted: &str| {
                            location.query_pairs().find(|(name, _)| name == wanted).map(|(_, value)| value.into_owned())
                        };
                        if param("state").as_deref() != Some(STATE) {
                            report.findings.push(finding(&STATE_DROPPED, answered.clone()));
                        }
                        if param("iss").is_none() {
                            report.findings.push(finding(&NO_ISS, answered));
                        }
                    }
                    None => report.not_tested.push(format!(
                        "state and iss in error answers: {answered}, an error shown rather than redirected"
                    )),
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("app", "https://app.example/cb", None).unwrap()
    }

    fn redirect(to: &str) -> Result<Reply, String> {
        Ok(Reply { status: 303, location: Some(to.to_owned()) })
    }

    /// The replies of a correct endpoint (Tessera's), probe by probe.
    fn strict(probes: &[AuthorizeProbe]) -> Vec<Result<Reply, String>> {
        probes
            .iter()
            .map(|probe| match &probe.kind {
                Kind::Baseline => Ok(Reply { status: 200, location: None }),
                Kind::Redirect { .. } | Kind::UnknownClient { .. } => Ok(Reply { status: 400, location: None }),
                Kind::Pkce(_) => redirect(&format!("https://app.example/cb?error=invalid_request&state={STATE}&iss=x")),
                Kind::ErrorReply => {
                    redirect(&format!("https://app.example/cb?error=unsupported_response_type&state={STATE}&iss=x"))
                }
            })
            .collect()
    }

    #[test]
    fn a_strict_endpoint_has_no_finding() {
        let probes = probes(&client());
        let report = verdict("https://as.example/authorize", &probes, &strict(&probes)).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert!(report.not_tested.is_empty());
    }

    #[test]
    fn every_redirect_uri_variant_is_unregistered_and_each_loose_acceptance_is_found() {
        let probes = probes(&client());
        let variants: Vec<&AuthorizeProbe> =
            probes.iter().filter(|probe| matches!(probe.kind, Kind::Redirect { .. })).collect();
        assert!(variants.len() >= 7, "{variants:?}");
        for variant in &variants {
            let uri = &variant.query.iter().find(|(name, _)| name == "redirect_uri").unwrap().1;
            assert_ne!(uri, "https://app.example/cb");
            let mut replies = strict(&probes);
            let at = probes.iter().position(|p| p.name == variant.name).unwrap();
            // A prefix matcher shows the login page for it.
            replies[at] = Ok(Reply { status: 200, location: None });
            let report = verdict("x", &probes, &replies).unwrap();
            assert_eq!(report.findings.len(), 1, "{}", variant.name);
        }
    }

    #[test]
    fn pkce_downgrades_dropped_state_missing_iss_and_open_redirects_are_found() {
        let probes = probes(&client());
        let mut replies = strict(&probes);
        for (probe, reply) in probes.iter().zip(replies.iter_mut()) {
            *reply = match &probe.kind {
                Kind::Pkce(_) => Ok(Reply { status: 200, location: None }),
                Kind::ErrorReply => redirect("https://app.example/cb?error=unsupported_response_type"),
                Kind::UnknownClient { uri } => redirect(&format!("{uri}?error=invalid_client")),
                _ => reply.clone(),
            };
        }
        let report = verdict("x", &probes, &replies).unwrap();
        let mut ids: Vec<&str> = report.findings.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                "ENDPOINT-AUTHZ-NO-ISS",
                "ENDPOINT-AUTHZ-OPEN-REDIRECT",
                "ENDPOINT-AUTHZ-PKCE-MISSING",
                "ENDPOINT-AUTHZ-PKCE-PLAIN",
                "ENDPOINT-AUTHZ-STATE-DROPPED"
            ]
        );
    }

    #[test]
    fn a_refused_baseline_judges_nothing() {
        let probes = probes(&client());
        let mut replies = strict(&probes);
        replies[0] = Ok(Reply { status: 400, location: None });
        let report = verdict("x", &probes, &replies).unwrap();
        assert_eq!(report.findings.iter().map(|f| f.id).collect::<Vec<_>>(), [NOT_PROBED]);
    }
}
