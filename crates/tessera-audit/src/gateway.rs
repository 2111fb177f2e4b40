//! `audit endpoint` against a forward-authentication endpoint (nginx `auth_request`, Traefik ForwardAuth, Envoy
//! `ext_authz`): the requests that try to make it judge a route other than the one the gateway asked about — a
//! competing method/URI header the client added, another spelling of a protected path — and the verdict on its
//! answers. As in [`crate::probe`], no I/O here: the caller sends each request with the valid token.

use std::fmt::Write as _;

use crate::probe::Answer;
use crate::{AuditError, Finding, Report, Severity};

/// How a gateway tells the endpoint which request it is asking about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI`, as nginx's documentation sets them.
    Nginx,
    /// Traefik ForwardAuth: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Traefik,
    /// Envoy HTTP `ext_authz` with a `path_prefix`: the original method, and the original path behind the
    /// endpoint's own path.
    Envoy,
}

impl Style {
    /// Every style, in the order `auto` tries them.
    pub const ALL: [Self; 3] = [Self::Nginx, Self::Traefik, Self::Envoy];

    /// Lower-case name, as on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Traefik => "traefik",
            Self::Envoy => "envoy",
        }
    }

    /// The (method, URI) headers this style's gateway sets; none for Envoy, which uses the request line.
    fn headers(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Nginx => Some(("X-Original-Method", "X-Original-URI")),
            Self::Traefik => Some(("X-Forwarded-Method", "X-Forwarded-Uri")),
            Self::Envoy => None,
        }
    }
}

/// An original request: its method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path, starting with `/`.
    pub path: String,
}

/// The two routes the probes rest on: one the valid token must be refused on, one it must be allowed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Refused (401 or 403) for the valid token.
    pub protected: Route,
    /// Allowed (2xx) for the valid token.
    pub allowed: Route,
}

/// One request to the forward-authentication endpoint; the caller adds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// To the endpoint's URL with the caller's method, and these headers in this order (a name may repeat).
    Headers(Vec<(&'static str, String)>),
    /// Envoy style: this method, to this path appended byte for byte to the endpoint URL's path, with these
    /// headers.
    Behind {
        /// The original request's method.
        method: String,
        /// The original request's path, exactly as it must be sent (no normalisation on the way).
        path: String,
        /// Extra headers, in this order.
        headers: Vec<(&'static str, String)>,
    },
}

/// What an accepted probe means: a finding id with its severity, weakness and fix.
#[derive(Debug)]
struct Weakness {
    id: &'static str,
    severity: Severity,
    cwe: &'static [&'static str],
    title: &'static str,
    fix: &'static str,
}

const HEADER_INJECTION: Weakness = Weakness {
    id: "ENDPOINT-FWD-HEADER-INJECTION",
    severity: Severity::Critical,
    cwe: &["CWE-290", "CWE-863"],
    title: "The endpoint judged a route named by a header the client can add, not the one the gateway asked about",
    fix: "Read the original method and URI only from the headers your gateway sets, refuse (400) a request in \
          which two of them disagree (X-Original-* against X-Forwarded-*, or one header twice), and have the \
          gateway set the headers the endpoint reads and clear the others.",
};

const HEADER_MISSING: Weakness = Weakness {
    id: "ENDPOINT-FWD-HEADER-MISSING",
    severity: Severity::Medium,
    cwe: &["CWE-636"],
    title: "A request naming no original route is allowed, as if it were for /",
    fix: "Refuse a request that carries none of the headers naming the original method and URI: a gateway that \
          does not set them must not open every route.",
};

const PATH_SPELLING: Weakness = Weakness {
    id: "ENDPOINT-PATH-SPELLING",
    severity: Severity::Critical,
    cwe: &["CWE-22", "CWE-41"],
    title: "Another spelling of the protected path, which an upstream decodes to it, is allowed",
    fix: "Normalise the path exactly as the upstream will see it before matching rules: decode percent-encoded \
          unreserved characters, remove dot segments, collapse repeated slashes.",
};

const PATH_AMBIGUOUS: Weakness = Weakness {
    id: "ENDPOINT-PATH-AMBIGUOUS",
    severity: Severity::High,
    cwe: &["CWE-41"],
    title: "An ambiguous spelling of the protected path (an encoded separator) is allowed",
    fix: "Refuse (400) a path that stays ambiguous after normalisation: an encoded / or \\, invalid \
          percent-encoding, a NUL, a .. above the root. Upstreams disagree on what it means.",
};

const PATH_CASE: Weakness = Weakness {
    id: "ENDPOINT-PATH-CASE",
    severity: Severity::Info,
    cwe: &["CWE-178"],
    title: "An upper-case spelling of the protected path is allowed",
    fix: "Nothing if the upstream matches paths case-sensitively; if it does not (Windows, some frameworks), \
          match this route case-insensitively too.",
};

/// The finding id when the baseline held for no style, so that none of the gateway probes could run.
pub const NOT_PROBED: &str = "ENDPOINT-GATEWAY-NOT-PROBED";

/// One probe: a request that names the protected route in a way the endpoint must still refuse.
#[derive(Debug, Clone)]
pub struct GatewayProbe {
    /// The style it probes (`None` for the style-independent probe without any route header).
    pub style: Option<Style>,
    /// What it tries, e.g. `X-Forwarded-Uri: /public added before X-Original-URI`.
    pub name: String,
    /// The request to send with the valid token.
    pub request: Request,
    weakness: &'static Weakness,
}

impl GatewayProbe {
    /// The finding id if the endpoint allows it.
    #[must_use]
    pub fn id(&self) -> &'static str {
        self.weakness.id
    }

    fn label(&self) -> String {
        match self.style {
            Some(style) => format!("{} style, {}", style.name(), self.name),
            None => self.name.clone(),
        }
    }
}

/// Longest path accepted: route paths are short, and every probe repeats one.
const MAX_PATH: usize = 1024;

fn check_path(what: &str, path: &str) -> Result<(), AuditError> {
    let bad = |why: &str| Err(AuditError::Probe(format!("{what} {path:?} {why}")));
    if !path.starts_with('/') {
        return bad("must start with /");
    }
    if path.len() > MAX_PATH {
        return bad("is too long");
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains(['?', '#']) {
        return bad("must be a path only: printable ASCII, no space, query or fragment");
    }
    Ok(())
}

impl Routes {
    /// The protected route (`method` `path`) and the allowed one (`GET` `allowed_path`). The protected path
    /// must be in normal form (no empty, `.` or `..` segment, no percent-encoding, no `\`): the probes spell it
    /// differently, and need to start from the one spelling the rule is written for.
    ///
    /// # Errors
    /// [`AuditError::Probe`] naming what is wrong with a method or path.
    pub fn new(method: &str, path: &str, allowed_path: &str) -> Result<Self, AuditError> {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(AuditError::Probe(format!(
                "the protected method {method:?} must be an upper-case HTTP method such as DELETE"
            )));
        }
        check_path("the protected path", path)?;
        check_path("the allowed path", allowed_path)?;
        let segments = path.get(1..).unwrap_or_default().split('/');
        if path.contains(['%', '\\']) || segments.clone().any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(AuditError::Probe(format!(
                "the protected path {path:?} must be in normal form: no empty, . or .. segment, no % or \\"
            )));
        }
        Ok(Self {
            protected: Route { method: method.to_owned(), path: path.to_owned() },
            allowed: Route { method: "GET".to_owned(), path: allowed_path.to_owned() },
        })
    }

    /// The request asking the endpoint about `route`, as a gateway of `style` asks.
    #[must_use]
    pub fn request(style: Style, route: &Route) -> Request {
        match style.headers() {
            Some((method, uri)) => Request::Headers(vec![(method, route.method.clone()), (uri, route.path.clone())]),
            None => Request::Behind { method: route.method.clone(), path: route.path.clone(), headers: Vec::new() },
        }
    }

    /// The two baseline requests for `style`: (protected, allowed).
    #[must_use]
    pub fn baseline(&self, style: Style) -> (Request, Request) {
        (Self::request(style, &self.protected), Self::request(style, &self.allowed))
    }
}

/// One style's baseline answers for the valid token.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The style asked in.
    pub style: Style,
    /// The protected route: must be refused with 401 or 403.
    pub protected: Answer,
    /// The allowed route: must be accepted.
    pub allowed: Answer,
}

impl Baseline {
    /// Whether the endpoint understands this style: it refuses the protected route for lack of authorization
    /// and allows the other, so a probe's acceptance can be told from its refusal.
    #[must_use]
    pub fn holds(&self) -> bool {
        matches!(self.protected, Answer::Refused(401 | 403)) && matches!(self.allowed, Answer::Accepted(_))
    }
}

/// A spelling of the protected path and what its acceptance means.
#[derive(Debug)]
struct Spelling {
    path: String,
    what: &'static str,
    weakness: &'static Weakness,
}

/// Every other spelling of `path` (in normal form, see [`Routes::new`]).
fn spellings(path: &str) -> Vec<Spelling> {
    let after_root = path.get(1..).unwrap_or_default();
    // "/admin/users" is "/" + "admin" + "/users"; "/admin" is "/" + "admin" + "".
    let (first, rest) = after_root.find('/').map_or((after_root, ""), |at| after_root.split_at(at));
    let mut out = Vec::new();
    let mut add = |path: String, what, weakness| out.push(Spelling { path, what, weakness });
    // The first unreserved character (RFC 3986 §2.3), percent-encoded: "/admin" as "/%61dmin".
    if let Some(at) = path.find(|c: char| c.is_ascii_alphanumeric() || "-._~".contains(c)) {
        let (before, after) = path.split_at(at);
        let mut chars = after.chars();
        if let Some(c) = chars.next() {
            add(
                format!("{before}%{:02X}{}", u32::from(c), chars.as_str()),
                "an unreserved character percent-encoded",
                &PATH_SPELLING,
            );
        }
    }
    add(format!("/x/..{path}"), "a dot-dot segment", &PATH_SPELLING);
    add(format!("/x/%2E%2E{path}"), "a percent-encoded dot-dot segment", &PATH_SPELLING);
    add(format!("/.{path}"), "a dot segment", &PATH_SPELLING);
    add(format!("/{path}"), "a repeated slash", &PATH_SPELLING);
    if let Some(rest) = rest.strip_prefix('/') {
        add(format!("/{first}/./{rest}"), "a dot segment inside", &PATH_SPELLING);
        add(format!("/{first}//{rest}"), "a repeated slash inside", &PATH_SPELLING);
        add(format!("/{first}%2F{rest}"), "an encoded slash", &PATH_AMBIGUOUS);
        add(format!("/{first}%5C{rest}"), "an encoded backslash", &PATH_AMBIGUOUS);
    } else {
        add(format!("/%2F{first}"), "an encoded slash", &PATH_AMBIGUOUS);
        add(format!("/%5C{first}"), "an encoded backslash", &PATH_AMBIGUOUS);
    }
    let upper = format!("/{}{rest}", first.to_ascii_uppercase());
    if upper != path {
        add(upper, "upper case", &PATH_CASE);
    }
    out
}

/// The competing headers a client adds, each pointing at the allowed route: the other style's pair, its URI
/// alone, its method alone (when the methods differ), and the rewrite headers some frameworks honour.
fn competing(own: Option<Style>, routes: &Routes) -> Vec<Vec<(&'static str, String)>> {
    let allowed = &routes.allowed;
    let mut sets = Vec::new();
    for other in Style::ALL.into_iter().filter(|style| Some(*style) != own) {
        let Some((method, uri)) = other.headers() else { continue };
        sets.push(vec![(method, allowed.method.clone()), (uri, allowed.path.clone())]);
        sets.push(vec![(uri, allowed.path.clone())]);
        if allowed.method != routes.protected.method {
            sets.push(vec![(method, allowed.method.clone())]);
        }
    }
    sets.push(vec![("X-Original-URL", allowed.path.clone()), ("X-Rewrite-URL", allowed.path.clone())]);
    sets
}

fn describe(headers: &[(&str, String)]) -> String {
    headers.iter().map(|(name, value)| format!("{name}: {value}")).collect::<Vec<_>>().join(", ")
}

/// Every probe of a gateway bypass for the given styles (those whose baseline holds).
#[must_use]
pub fn probes(routes: &Routes, styles: &[Style]) -> Vec<GatewayProbe> {
    let mut out = Vec::new();
    for &style in styles {
        let mut add = |name: String, request, weakness| {
            out.push(GatewayProbe { style: Some(style), name, request, weakness });
        };
        let protected = &routes.protected;
        match style.headers() {
            Some((method_header, uri_header)) => {
                let real = vec![(method_header, protected.method.clone()), (uri_header, protected.path.clone())];
                // nginx's `proxy_set_header` replaces a client's header of the same name, but passes every other
                // one on: the endpoint must not let those decide, before or after the gateway's own.
                for injected in competing(Some(style), routes) {
                    let what = describe(&injected);
                    add(
                        format!("{what} added before the gateway's headers"),
                        Request::Headers([injected.clone(), real.clone()].concat()),
                        &HEADER_INJECTION,
                    );
                    add(
                        format!("{what} added after the gateway's headers"),
                        Request::Headers([real.clone(), injected].concat()),
                        &HEADER_INJECTION,
                    );
                }
                // A gateway that appends its header rather than replacing the client's sends the name twice.
                let mut duplicated = vec![(uri_header, routes.allowed.path.clone())];
                if routes.allowed.method != protected.method {
                    duplicated.push((method_header, routes.allowed.method.clone()));
                }
                for (name, value) in duplicated {
                    let what = format!("{name}: {value} sent twice");
                    add(
                        format!("{what}, the client's first"),
                        Request::Headers([vec![(name, value.clone())], real.clone()].concat()),
                        &HEADER_INJECTION,
                    );
                    add(
                        format!("{what}, the client's last"),
                        Request::Headers([real.clone(), vec![(name, value)]].concat()),
                        &HEADER_INJECTION,
                    );
                }
            }
            None => {
                for injected in competing(None, routes) {
                    add(
                        format!("{} added", describe(&injected)),
                        Request::Behind {
                            method: protected.method.clone(),
                            path: protected.path.clone(),
                            headers: injected,
                        },
                        &HEADER_INJECTION,
                    );
                }
            }
        }
        for spelling in spellings(&routes.protected.path) {
            let route = Route { method: routes.protected.method.clone(), path: spelling.path };
            add(format!("{} ({})", route.path, spelling.what), Routes::request(style, &route), spelling.weakness);
        }
    }
    if styles.iter().any(|style| style.headers().is_some()) {
        out.push(GatewayProbe {
            style: None,
            name: "no X-Original-* or X-Forwarded-* header at all".to_owned(),
            request: Request::Headers(Vec::new()),
            weakness: &HEADER_MISSING,
        });
    }
    out
}

/// Adds the gateway verdict to `report`: a finding per weakness whose probes were allowed, listing which; the
/// probes that got no answer as not tested; and, when the baseline held for no style, an informational finding
/// saying the probes could not run (the report is then partial, never clean).
pub fn verdict(report: &mut Report, baselines: &[Baseline], answered: &[(GatewayProbe, Answer)]) {
    let mut summary = String::new();
    for b in baselines {
        let _ = write!(
            summary,
            "{}{}: protected {:?}, allowed {:?}",
            if summary.is_empty() { "" } else { "; " },
            b.style.name(),
            b.protected,
            b.allowed
        );
    }
    report.stats.insert("gateway_baseline".into(), summary.clone().into());
    let probed: Vec<&str> = baselines.iter().filter(|b| b.holds()).map(|b| b.style.name()).collect();
    if probed.is_empty() {
        report.add(Finding::new(
            NOT_PROBED,
            Severity::Info,
            "The gateway bypass probes could not run",
            format!(
                "the valid token must be refused (401/403) on the protected route and allowed on the other: {summary}"
            ),
            "Give --protected-path (and --protected-method) for a route this token is refused, --allowed-path for \
             one it is allowed, and --style for how your gateway names the original request.",
        ));
        report.not_tested.push(
            "gateway bypasses (forwarded-header injection, path spellings): the baseline held for no style".into(),
        );
        report.finish();
        return;
    }
    report.stats.insert("gateway_styles_probed".into(), probed.join(", ").into());
    report.stats.insert("gateway_probes_sent".into(), answered.len().into());
    let mut findings: Vec<Finding> = Vec::new();
    for (probe, answer) in answered {
        match answer {
            Answer::Accepted(status) => {
                let w = probe.weakness;
                let seen = format!("{} (HTTP {status})", probe.label());
                match findings.iter_mut().find(|f| f.id == w.id) {
                    Some(finding) => finding.evidence = format!("{}; {seen}", finding.evidence),
                    None => findings.push(Finding::new(w.id, w.severity, w.title, seen, w.fix).with_cwe(w.cwe)),
                }
            }
            Answer::Refused(_) => {}
            Answer::Failed(why) => report.not_tested.push(format!("gateway probe {}: {why}", probe.label())),
        }
    }
    for finding in findings {
        report.add(finding);
    }
    report.finish();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // a panic here is a failed test

    use super::*;

    fn routes() -> Routes {
        Routes::new("DELETE", "/admin/users", "/public").unwrap()
    }

    fn paths(of: &str) -> Vec<(String, &'static str)> {
        spellings(of).into_iter().map(|s| (s.path, s.weakness.id)).collect()
    }

    #[test]
    fn every_spelling_of_a_two_segment_path_is_generated_with_its_weakness() {
        let spelling = PATH_SPELLING.id;
        let ambiguous = PATH_AMBIGUOUS.id;
        assert_eq!(
            paths("/admin/users"),
            [
                ("/%61dmin/users", spelling),
                ("/x/../admin/users", spelling),
                ("/x/%2E%2E/admin/users", spelling),
                ("/./admin/users", spelling),
                ("//admin/users", spelling),
                ("/admin/./users", spelling),
                ("/admin//users", spelling),
                ("/admin%2Fusers", ambiguous),
                ("/admin%5Cusers", ambiguous),
                ("/ADMIN/users", PATH_CASE.id),
            ]
            .map(|(path, id)| (path.to_owned(), id))
        );
    }

    #[test]
    fn spellings_follow_the_given_path_not_a_fixed_example() {
        let generated = paths("/v1/Orders");
        let generated: Vec<&str> = generated.iter().map(|(path, _)| path.as_str()).collect();
        // The first unreserved character is a lower-case "v": 0x76.
        assert!(generated.contains(&"/%761/Orders"), "{generated:?}");
        assert!(generated.contains(&"/v1%2FOrders"), "{generated:?}");
        assert!(generated.contains(&"/V1/Orders"), "{generated:?}");
        // A one-segment path has no inner separator: the encoded one goes in front.
        let single = paths("/admin");
        assert!(single.contains(&("/%2Fadmin".to_owned(), PATH_AMBIGUOUS.id)), "{single:?}");
        assert!(!single.iter().any(|(path, _)| path == "/admin/./"), "{single:?}");
        // Nothing to upper-case: no case spelling.
        assert!(!paths("/42/7").iter().any(|(_, id)| *id == PATH_CASE.id));
        // Every spelling differs from the path it spells.
        for path in ["/admin/users", "/admin", "/42/7", "/a-b/c"] {
            assert!(paths(path).iter().all(|(spelled, _)| spelled != path), "{path}");
        }
    }

    #[test]
    fn header_styles_pit_the_other_styles_headers_against_their_own_in_both_orders() {
        let nginx = probes(&routes(), &[Style::Nginx]);
        let injected: Vec<&Vec<(&str, String)>> = nginx
            .iter()
            .filter(|p| p.id() == HEADER_INJECTION.id)
            .map(|p| match &p.request {
                Request::Headers(headers) => headers,
                Request::Behind { .. } => panic!("nginx asks with headers"),
            })
            .collect();
        let real = vec![("X-Original-Method", "DELETE".to_owned()), ("X-Original-URI", "/admin/users".to_owned())];
        let traefik_pair = vec![("X-Forwarded-Method", "GET".to_owned()), ("X-Forwarded-Uri", "/public".to_owned())];
        // The injected pair comes before and after the gateway's own headers.
        assert!(injected.contains(&&[traefik_pair.clone(), real.clone()].concat()), "{injected:?}");
        assert!(injected.contains(&&[real.clone(), traefik_pair].concat()), "{injected:?}");
        // The URI alone and the method alone.
        assert!(injected.contains(&&[vec![("X-Forwarded-Uri", "/public".to_owned())], real.clone()].concat()));
        assert!(injected.contains(&&[real.clone(), vec![("X-Forwarded-Method", "GET".to_owned())]].concat()));
        // The gateway's own header a second time, the client's first.
        assert!(injected.contains(&&[vec![("X-Original-URI", "/public".to_owned())], real.clone()].concat()));
        // Every injection names the protected route in the gateway's headers: a refusal is the right answer.
        assert!(injected.iter().all(|headers| real.iter().all(|h| headers.contains(h))));
        // Traefik is probed the other way round.
        let traefik = probes(&routes(), &[Style::Traefik]);
        assert!(traefik.iter().any(|p| p.request
            == Request::Headers(vec![
                ("X-Original-Method", "GET".to_owned()),
                ("X-Original-URI", "/public".to_owned()),
                ("X-Forwarded-Method", "DELETE".to_owned()),
                ("X-Forwarded-Uri", "/admin/users".to_owned()),
            ])));
    }

    #[test]
    fn envoy_style_sends_the_spellings_as_the_path_and_the_headers_as_extras() {
        let envoy = probes(&routes(), &[Style::Envoy]);
        assert!(envoy.iter().any(|p| p.request
            == Request::Behind { method: "DELETE".into(), path: "/x/../admin/users".into(), headers: Vec::new() }));
        assert!(envoy.iter().any(|p| p.request
            == Request::Behind {
                method: "DELETE".into(),
                path: "/admin/users".into(),
                headers: vec![("X-Original-Method", "GET".into()), ("X-Original-URI", "/public".into())],
            }));
        // No route headers at all is a question only for the header styles.
        assert!(!envoy.iter().any(|p| p.id() == HEADER_MISSING.id));
        assert_eq!(probes(&routes(), &[Style::Nginx, Style::Traefik]).iter().filter(|p| p.style.is_none()).count(), 1);
        assert!(probes(&routes(), &[]).is_empty());
    }

    #[test]
    fn routes_that_cannot_be_probed_are_refused_clearly() {
        for (method, path, allowed, complaint) in [
            ("delete", "/admin", "/", "upper-case"),
            ("DELETE", "admin", "/", "must start with /"),
            ("DELETE", "/admin", "public", "must start with /"),
            ("DELETE", "/admin users", "/", "printable ASCII"),
            ("DELETE", "/admin?x=1", "/", "no space, query"),
            ("DELETE", "/admin\r\nX-Injected: 1", "/", "printable ASCII"),
            ("DELETE", "/", "/public", "normal form"),
            ("DELETE", "//admin", "/public", "normal form"),
            ("DELETE", "/x/../admin", "/public", "normal form"),
            ("DELETE", "/%61dmin", "/public", "normal form"),
        ] {
            let err = Routes::new(method, path, allowed).unwrap_err().to_string();
            assert!(err.contains(complaint), "{path}: {err}");
        }
        assert!(Routes::new("GET", &format!("/{}", "a".repeat(MAX_PATH)), "/").is_err());
    }

    #[test]
    fn the_verdict_names_each_allowed_variant_under_its_weakness() {
        let routes = routes();
        let probed = probes(&routes, &[Style::Nginx]);
        let holds = Baseline { style: Style::Nginx, protected: Answer::Refused(403), allowed: Answer::Accepted(200) };
        let answered: Vec<(GatewayProbe, Answer)> = probed
            .into_iter()
            .map(|p| {
                let answer = match p.name.as_str() {
                    name if name.starts_with("//admin") || name.starts_with("/ADMIN") => Answer::Accepted(200),
                    name if name.starts_with("/x/..") => Answer::Failed("timed out".into()),
                    _ if p.id() == HEADER_INJECTION.id => Answer::Refused(400),
                    _ => Answer::Refused(403),
                };
                (p, answer)
            })
            .collect();
        let mut report = Report::new("endpoint", "http://gateway.test/verify");
        verdict(&mut report, &[holds], &answered);
        let ids: Vec<&str> = report.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, [PATH_SPELLING.id, PATH_CASE.id]);
        assert!(report.findings[0].evidence.contains("nginx style, //admin/users (a repeated slash) (HTTP 200)"));
        assert_eq!(report.findings[0].cwe, ["CWE-22", "CWE-41"]);
        assert_eq!(report.not_tested, ["gateway probe nginx style, /x/../admin/users (a dot-dot segment): timed out"]);
        assert_eq!(report.stats["gateway_styles_probed"], "nginx");
    }

    #[test]
    fn a_baseline_that_holds_for_no_style_is_reported_never_passed_over() {
        let baselines = [
            Baseline { style: Style::Nginx, protected: Answer::Accepted(200), allowed: Answer::Accepted(200) },
            Baseline { style: Style::Envoy, protected: Answer::Refused(404), allowed: Answer::Refused(404) },
        ];
        let mut report = Report::new("endpoint", "http://gateway.test/verify");
        verdict(&mut report, &baselines, &[]);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].id, NOT_PROBED);
        assert_eq!(report.findings[0].severity, Severity::Info);
        assert!(report.findings[0].evidence.contains("envoy: protected Refused(404)"), "{:?}", report.findings);
        assert_eq!(report.not_tested.len(), 1);
        // A refusal that is not about authorization (404, 400) does not make a baseline.
        assert!(
            !Baseline { style: Style::Nginx, protected: Answer::Refused(400), allowed: Answer::Accepted(200) }.holds()
        );
    }
}
