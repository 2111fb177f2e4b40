//! The rules for Java: jjwt (`io.jsonwebtoken`), java-jwt (`com.auth0.jwt`) and Nimbus JOSE+JWT
//! (`com.nimbusds`) as the file imports them, read as the call chains these builders are written in; cookies;
//! and header values flowing into sinks. Kotlin code uses the same libraries: `kotlin.rs` builds the same chains
//! from Kotlin's syntax and judges them with [`chain_rules`].

use std::collections::HashMap;

use tree_sitter::Node;

use super::syntax::{arguments, declared_once, descendants, fields, literal_or_text, string_value, File};
use super::{
    header_flow_finding, leeway_unbounded, looks_like_token, report_cookie_flags, report_secret, Rule, Secret, Sink,
    HEADER_PARAMETERS,
};
use tessera_audit::Finding;

/// The libraries recognised, by the package prefix they are imported from.
const LIBRARIES: [(&str, &str); 3] =
    [("io.jsonwebtoken", "jjwt"), ("com.auth0.jwt", "java-jwt"), ("com.nimbusds", "Nimbus")];

/// One call of a chain: its method name, arguments and node.
pub(super) struct Link<'t> {
    pub(super) name: &'t str,
    pub(super) args: Vec<Node<'t>>,
    pub(super) node: Node<'t>,
}

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let libraries: Vec<&str> = imported_libraries(file);
    let constants = constants(file);
    let tainted = tainted_names(file);
    // Android code ships to devices: whoever has the app has what it signs with.
    let client = file.text.contains("import android.");
    for invocation in descendants(file.root, &["method_invocation", "object_creation_expression"]) {
        let args = invocation.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        let callee = match invocation.kind() {
            "object_creation_expression" => {
                invocation.child_by_field_name("type").map(|t| format!("new {}", file.text(t)))
            }
            _ => invocation.child_by_field_name("name").map(|name| {
                let object = invocation.child_by_field_name("object").map(|o| file.text(o)).unwrap_or_default();
                if object.is_empty() {
                    file.text(name).to_owned()
                } else {
                    format!("{object}.{}", file.text(name))
                }
            }),
        };
        let Some(callee) = callee else { continue };
        if let Some(sink) = Sink::of_callee(&callee) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, invocation, sink, &parameter));
            }
        }
        // Each chain is judged once, from its outermost call.
        let outermost = invocation.kind() == "method_invocation"
            && !invocation.parent().is_some_and(|parent| {
                parent.kind() == "method_invocation" && parent.child_by_field_name("object") == Some(invocation)
            });
        if outermost {
            let chain = chain(file, invocation);
            if !libraries.is_empty() {
                chain_rules(file, &constants, &libraries, &chain, client, findings);
            }
            response_cookie(file, &chain, findings);
        } else if invocation.kind() == "object_creation_expression" && !libraries.is_empty() {
            constructor_rules(file, &constants, invocation, &callee, &args, findings);
        }
    }
    servlet_cookies(file, findings);
}

/// The JWT libraries the file imports (Java's `import_declaration`, Kotlin's `import`).
pub(super) fn imported_libraries(file: &File<'_>) -> Vec<&'static str> {
    let mut found = Vec::new();
    for import in descendants(file.root, &["import_declaration", "import"]) {
        let text = file.text(import);
        for (prefix, library) in LIBRARIES {
            if text.contains(prefix) && !found.contains(&library) {
                found.push(library);
            }
        }
    }
    found
}

/// Fields and local variables declared once, with their initial value.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(
        descendants(file.root, &["variable_declarator"])
            .into_iter()
            .filter_map(|declarator| fields(declarator, "name", "value").map(|(name, value)| (file.text(name), value))),
    )
}

/// The calls of the chain ending at `outermost`, from its root: `Jwts.parser().setSigningKey(k).parse(t)` →
/// [parser, setSigningKey, parse], with the root object's text first as a link without arguments.
fn chain<'t>(file: &File<'t>, outermost: Node<'t>) -> Vec<Link<'t>> {
    let mut links = Vec::new();
    let mut current = Some(outermost);
    while let Some(node) = current {
        if node.kind() != "method_invocation" {
            links.push(Link { name: file.text(node), args: Vec::new(), node });
            break;
        }
        let name = node.child_by_field_name("name").map_or("", |name| file.text(name));
        let args = node.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        links.push(Link { name, args, node });
        current = node.child_by_field_name("object");
    }
    links.reverse();
    links
}

pub(super) fn chain_rules(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    libraries: &[&str],
    chain: &[Link<'_>],
    client: bool,
    findings: &mut Vec<Finding>,
) {
    let (Some(root), Some(last)) = (chain.first(), chain.last()) else { return };
    let at = |rule: Rule, title: String| rule.at(file, last.node, title);
    let has = |name: &str| chain.iter().any(|link| link.name == name);
    let link = |name: &str| chain.iter().find(|link| link.name == name);
    let first_arg = |name: &str| link(name).and_then(|link| link.args.first().copied());
    let uses = |library: &str| libraries.contains(&library);
    // Keys and secrets, wherever the chain takes one.
    for name in ["setSigningKey", "verifyWith", "signWith", "HMAC256", "HMAC384", "HMAC512", "hmacShaKeyFor"] {
        if let Some(link) = link(name) {
            if let Some(key) = link.args.iter().rev().find(|arg| !file.text(**arg).starts_with("SignatureAlgorithm.")) {
                secret_findings(file, constants, last.node, *key, findings);
            }
        }
    }
    if uses("jjwt") && root.name == "Jwts" {
        const PARSES: [&str; 6] = [
            "parse",
            "parseClaimsJws",
            "parseClaimsJwt",
            "parsePlaintextJwt",
            "parseSignedClaims",
            "parseUnsecuredClaims",
        ];
        // The parse is followed by getters (`.parseClaimsJws(t).getBody()`): find it anywhere in the chain.
        if let Some(parse) = chain.iter().skip(1).find(|link| PARSES.contains(&link.name)) {
            match parse.name {
                "parseClaimsJwt" | "parsePlaintextJwt" | "parseUnsecuredClaims" => {
                    findings
                        .push(at(Rule::SignatureCheckOff, format!("jjwt's {} accepts unsigned tokens", parse.name)));
                }
                "parse" if !has("verifyWith") || has("unsecured") => {
                    findings.push(at(Rule::AlgNoneAllowed, "jjwt's parse() also accepts unsigned tokens".to_owned()));
                }
                _ => {}
            }
            if !has("requireAudience") {
                findings.push(at(Rule::MissingAudience, "jjwt parsing does not require the audience".to_owned()));
            }
            if !has("requireIssuer") {
                findings.push(at(Rule::MissingIssuer, "jjwt parsing does not require the issuer".to_owned()));
            }
            for name in ["setAllowedClockSkewSeconds", "clockSkewSeconds"] {
                leeway(file, first_arg(name), "jjwt", &at, findings);
            }
        }
        if client && has("builder") && has("signWith") {
            findings.push(at(Rule::ClientSideSigning, "jjwt signs tokens in an app that ships to devices".to_owned()));
        }
    }
    if uses("java-jwt") {
        match (root.name, chain.get(1).map(|link| link.name)) {
            // Reading the header to choose the key (`JWT.decode(t).getKeyId()`) is what decode is for.
            ("JWT", Some("decode"))
                if !chain.get(2).is_some_and(|link| {
                    ["getKeyId", "keyId", "getAlgorithm", "algorithm", "getHeaderClaim", "getType", "type"]
                        .contains(&link.name)
                }) =>
            {
                findings
                    .push(at(Rule::DecodeWithoutVerify, "java-jwt decodes a token without verifying it".to_owned()));
            }
            ("Algorithm", Some("none")) => {
                findings
                    .push(at(Rule::AlgNoneAllowed, "java-jwt's Algorithm.none() accepts unsigned tokens".to_owned()));
            }
            ("JWT", Some("require")) if has("build") => {
                if !has("withAudience") {
                    findings.push(at(
                        Rule::MissingAudience,
                        "java-jwt verification does not require the audience".to_owned(),
                    ));
                }
                if !has("withIssuer") {
                    findings
                        .push(at(Rule::MissingIssuer, "java-jwt verification does not require the issuer".to_owned()));
                }
                for name in ["acceptLeeway", "acceptExpiresAt"] {
                    leeway(file, first_arg(name), "java-jwt", &at, findings);
                }
            }
            ("JWT", Some("create")) if client && has("sign") => {
                findings.push(at(
                    Rule::ClientSideSigning,
                    "java-jwt signs tokens in an app that ships to devices".to_owned(),
                ));
            }
            _ => {}
        }
    }
    if uses("Nimbus") && root.name == "PlainJWT" && chain.get(1).is_some_and(|link| link.name == "parse") {
        findings.push(at(Rule::AlgNoneAllowed, "Nimbus parses an unsigned (plain) JWT".to_owned()));
    }
}

/// `new MACVerifier(secret)`, `new MACSigner(secret)`: Nimbus's HMAC keys.
fn constructor_rules(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    creation: Node<'_>,
    callee: &str,
    args: &[Node<'_>],
    findings: &mut Vec<Finding>,
) {
    if matches!(callee, "new MACVerifier" | "new MACSigner") {
        if let Some(key) = args.first() {
            secret_findings(file, constants, creation, *key, findings);
        }
    }
}

fn leeway(
    file: &File<'_>,
    value: Option<Node<'_>>,
    library: &str,
    at: &dyn Fn(Rule, String) -> Finding,
    findings: &mut Vec<Finding>,
) {
    let seconds = value.and_then(|value| file.text(value).trim_end_matches(['L', 'l']).parse::<f64>().ok());
    if let Some(seconds) = seconds.filter(|seconds| leeway_unbounded(*seconds)) {
        findings.push(at(Rule::UnboundedLeeway, format!("{library} verification allows {seconds} s of leeway")));
    }
}

/// A secret written in the code: `"s"`, `"s".getBytes(...)`, `Keys.hmacShaKeyFor("s".getBytes())`, a field or
/// variable holding one.
fn literal_secret(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    node: Node<'_>,
    depth: u8,
) -> Option<(String, Option<String>)> {
    if depth > 3 {
        return None;
    }
    match node.kind() {
        "string_literal" => string_value(file, node).map(|value| (value, None)),
        "identifier" => {
            let value = constants.get(file.text(node))?;
            literal_secret(file, constants, *value, depth + 1)
                .map(|(secret, _)| (secret, Some(file.text(node).to_owned())))
        }
        // Java's `x.m(args)`, and Kotlin's `x.m(args)` (a call of a navigation).
        "method_invocation" | "call_expression" => {
            let (name, receiver, first) = match node.kind() {
                "method_invocation" => (
                    file.text(node.child_by_field_name("name")?),
                    node.child_by_field_name("object"),
                    node.child_by_field_name("arguments").map(arguments).and_then(|args| args.first().copied()),
                ),
                _ => {
                    let callee = node.named_child(0).filter(|callee| callee.kind() == "navigation_expression")?;
                    (
                        file.text(callee.named_child(callee.named_child_count().checked_sub(1)?)?),
                        callee.named_child(0),
                        super::kotlin::call_arguments(node).first().copied(),
                    )
                }
            };
            match name {
                // `"s".getBytes(UTF_8)`, Kotlin's `"s".toByteArray()`: the receiver is the secret.
                "getBytes" | "toByteArray" | "encodeToByteArray" => {
                    literal_secret(file, constants, receiver?, depth + 1)
                }
                // `Keys.hmacShaKeyFor(bytes)`, `Base64.getDecoder().decode("...")`: the argument is.
                "hmacShaKeyFor" | "decode" => literal_secret(file, constants, first?, depth + 1),
                _ => None,
            }
        }
        _ => None,
    }
}

pub(super) fn secret_findings(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    at_node: Node<'_>,
    key: Node<'_>,
    findings: &mut Vec<Finding>,
) {
    if let Some((secret, named)) = literal_secret(file, constants, key, 0) {
        report_secret(file, at_node, Secret::Written(&secret), named.as_deref(), findings);
    }
}

/// Variables initialised from a header getter: `String kid = jwt.getKeyId();`.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for declarator in descendants(file.root, &["variable_declarator"]) {
        let Some((name, value)) = fields(declarator, "name", "value") else { continue };
        if let Some(parameter) = header_parameter_in(file, value, &HashMap::new()) {
            tainted.insert(file.text(name), parameter);
        }
    }
    tainted
}

/// The header parameter an expression carries: `getKeyId()`, `getHeaderClaim("kid")`, or a variable holding one.
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["method_invocation", "identifier"]) {
        let parameter = match part.kind() {
            "method_invocation" => {
                let name = part.child_by_field_name("name").map(|name| file.text(name)).unwrap_or_default();
                match name {
                    "getKeyId" => Some("kid".to_owned()),
                    "getJWKURL" => Some("jku".to_owned()),
                    "getX509CertURL" => Some("x5u".to_owned()),
                    "getJWK" => Some("jwk".to_owned()),
                    "getHeaderClaim" | "getHeader" => part
                        .child_by_field_name("arguments")
                        .map(arguments)
                        .and_then(|args| args.first().and_then(|arg| string_value(file, *arg)))
                        .filter(|name| HEADER_PARAMETERS.contains(&name.as_str())),
                    _ => None,
                }
            }
            _ => tainted.get(file.text(part)).cloned(),
        };
        if parameter.is_some() {
            return parameter;
        }
    }
    None
}

/// Spring's `ResponseCookie.from("token", v)...build()` without `httpOnly(true)`, `secure(true)` or `sameSite`.
pub(super) fn response_cookie(file: &File<'_>, chain: &[Link<'_>], findings: &mut Vec<Finding>) {
    let Some(from) = chain.iter().position(|link| link.name == "from") else { return };
    let rooted = chain.first().is_some_and(|root| root.name == "ResponseCookie") && from == 1;
    let tokenish = chain
        .get(from)
        .is_some_and(|link| link.args.iter().take(2).any(|arg| looks_like_token(&literal_or_text(file, *arg))));
    if !rooted || !tokenish || !chain.iter().any(|link| link.name == "build") {
        return;
    }
    let set = |name: &str, wanted: fn(&str) -> bool| {
        chain
            .iter()
            .any(|link| link.name == name && link.args.first().is_some_and(|arg| wanted(&literal_or_text(file, *arg))))
    };
    let Some(last) = chain.last() else { return };
    report_cookie_flags(
        file,
        last.node,
        &[
            ("HttpOnly", set("httpOnly", |v| v == "true")),
            ("Secure", set("secure", |v| v == "true")),
            ("SameSite", set("sameSite", |v| !v.eq_ignore_ascii_case("none"))),
        ],
        findings,
    );
}

/// Servlet cookies: `Cookie c = new Cookie("token", v);` with no `c.setHttpOnly(true)` or `c.setSecure(true)` in
/// the same method. (The Servlet `Cookie` cannot say SameSite before Servlet 6; that is not asked of it.)
fn servlet_cookies(file: &File<'_>, findings: &mut Vec<Finding>) {
    for declarator in descendants(file.root, &["variable_declarator"]) {
        let Some((name, value)) = fields(declarator, "name", "value") else { continue };
        let is_cookie = value.kind() == "object_creation_expression"
            && value.child_by_field_name("type").is_some_and(|t| file.text(t) == "Cookie");
        let args = value.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        let tokenish = args.iter().take(2).any(|arg| looks_like_token(&literal_or_text(file, *arg)));
        if !is_cookie || !tokenish {
            continue;
        }
        let scope = super::syntax::ancestor(declarator, &["method_declaration", "constructor_declaration"])
            .unwrap_or(file.root);
        let variable = file.text(name);
        let called = |setter: &str| {
            descendants(scope, &["method_invocation"]).into_iter().any(|call| {
                call.child_by_field_name("object").is_some_and(|object| file.text(object) == variable)
                    && call.child_by_field_name("name").is_some_and(|n| file.text(n) == setter)
                    && call.child_by_field_name("arguments").is_some_and(|a| file.text(a).contains("true"))
            })
        };
        report_cookie_flags(
            file,
            declarator,
            &[("HttpOnly", called("setHttpOnly")), ("Secure", called("setSecure"))],
            findings,
        );
    }
}
