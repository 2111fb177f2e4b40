//! The rules for Kotlin: the same JVM libraries as Java (jjwt, java-jwt, Nimbus), whose call chains Kotlin writes
//! with its own syntax (`Jwts.parser().setSigningKey(k.toByteArray()).parseClaimsJws(t).body`); the chains are
//! built here and judged by the Java rules. Also header values flowing into sinks, string templates included.

use std::collections::HashMap;

use tree_sitter::Node;

use super::java::{chain_rules, imported_libraries, response_cookie, Link};
use super::syntax::{arguments, declared_once, descendants, string_value, File};
use super::Sink;
use super::{header_flow_finding, HEADER_PARAMETERS};
use tessera_audit::Finding;

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let libraries = imported_libraries(file);
    let constants = constants(file);
    let tainted = tainted_names(file);
    let client = file.text.contains("import android.");
    for call in descendants(file.root, &["call_expression"]) {
        let args = call_arguments(call);
        if let Some(sink) = call.named_child(0).and_then(|callee| Sink::of_callee(&callee_name(file, callee))) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
    }
    for node in descendants(file.root, &["call_expression", "navigation_expression"]) {
        if !outermost(node) {
            continue;
        }
        let chain = chain(file, node);
        if !libraries.is_empty() {
            chain_rules(file, &constants, &libraries, &chain, client, findings);
        }
        response_cookie(file, &chain, findings);
    }
}

/// A callee as the sinks name it: `File(...)` is a constructor (Kotlin writes no `new`), `a.b.c(...)` keeps its
/// dots.
fn callee_name(file: &File<'_>, callee: Node<'_>) -> String {
    let text = file.text(callee);
    match callee.kind() {
        "identifier" if text.starts_with(|c: char| c.is_ascii_uppercase()) => format!("new {text}"),
        _ => text.to_owned(),
    }
}

/// The expressions of a call's arguments (Kotlin wraps each in a `value_argument`).
pub(super) fn call_arguments(call: Node<'_>) -> Vec<Node<'_>> {
    arguments(call)
        .into_iter()
        .filter(|child| child.kind() == "value_arguments")
        .flat_map(arguments)
        .filter_map(|argument| arguments(argument).last().copied())
        .collect()
}

/// Whether `node` ends a chain: no call or navigation continues from it.
fn outermost(node: Node<'_>) -> bool {
    !node.parent().is_some_and(|parent| {
        matches!(parent.kind(), "call_expression" | "navigation_expression") && parent.named_child(0) == Some(node)
    })
}

/// The links of the chain ending at `outermost`, from its root, as the Java rules read them: `Jwts.parser()
/// .setSigningKey(k).parseClaimsJws(t).body` → [Jwts, parser, setSigningKey, parseClaimsJws, body].
fn chain<'t>(file: &File<'t>, outermost: Node<'t>) -> Vec<Link<'t>> {
    let mut links = Vec::new();
    let mut current = Some(outermost);
    while let Some(node) = current {
        let (callee, args) = match node.kind() {
            "call_expression" => (node.named_child(0), call_arguments(node)),
            _ => (Some(node), Vec::new()),
        };
        match callee {
            Some(navigation) if navigation.kind() == "navigation_expression" => {
                let member = navigation.named_child(navigation.named_child_count().saturating_sub(1));
                links.push(Link { name: member.map_or("", |m| file.text(m)), args, node });
                current = navigation.named_child(0);
            }
            Some(root) => {
                links.push(Link { name: file.text(root), args, node });
                current = None;
            }
            None => current = None,
        }
    }
    links.reverse();
    links
}

/// `val X = ...`, `const val X = ...`, `var x = ...` declared once in the file.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(descendants(file.root, &["property_declaration"]).into_iter().filter_map(|property| {
        let children = arguments(property);
        let name = children.iter().find(|child| child.kind() == "variable_declaration")?.named_child(0)?;
        let value = children.last().filter(|value| !matches!(value.kind(), "variable_declaration" | "modifiers"))?;
        Some((file.text(name), *value))
    }))
}

/// Names assigned a header parameter: `val kid = JWT.decode(t).keyId`.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for property in descendants(file.root, &["property_declaration"]) {
        let children = arguments(property);
        let Some(name) =
            children.iter().find(|child| child.kind() == "variable_declaration").and_then(|v| v.named_child(0))
        else {
            continue;
        };
        let parameter = children.last().and_then(|value| header_parameter_in(file, *value, &HashMap::new()));
        if let Some(parameter) = parameter {
            tainted.insert(file.text(name), parameter);
        }
    }
    tainted
}

/// The header parameter an expression carries: `.keyId` / `.getKeyId()`, `getHeaderClaim("kid")`, a name known to
/// hold one, or a string template naming one (`"$kid"`, `"${kid}"`).
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["navigation_expression", "call_expression", "identifier", "string_literal"]) {
        let found = match part.kind() {
            "navigation_expression" => {
                match part.named_child(part.named_child_count().saturating_sub(1)).map(|m| file.text(m)) {
                    Some("keyId" | "getKeyId") => Some("kid".to_owned()),
                    Some("jwkurl" | "getJWKURL") => Some("jku".to_owned()),
                    Some("x509CertURL" | "getX509CertURL") => Some("x5u".to_owned()),
                    Some("jwk" | "getJWK") => Some("jwk".to_owned()),
                    _ => None,
                }
            }
            "call_expression" => {
                let named = part.named_child(0).map(|callee| file.text(callee)).unwrap_or_default();
                (named.ends_with("getHeaderClaim") || named.ends_with("getHeader"))
                    .then(|| call_arguments(part).first().and_then(|arg| string_value(file, *arg)))
                    .flatten()
                    .filter(|name| HEADER_PARAMETERS.contains(&name.as_str()))
            }
            "string_literal" => {
                let text = file.text(part);
                tainted
                    .iter()
                    .find(|(name, _)| text.contains(&format!("${name}")) || text.contains(&format!("${{{name}}}")))
                    .map(|(_, p)| p.clone())
            }
            _ => tainted.get(file.text(part)).cloned(),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}
