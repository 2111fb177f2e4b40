//! The rules for Rust: the `jsonwebtoken` crate (keys, `Validation` settings, the insecure decode paths), cookies
//! built with the `cookie` crate, and header values flowing into sinks.

use std::collections::HashMap;

use tree_sitter::Node;

use super::syntax::{arguments, declared_once, descendants, fields, named_constant, string_value, File};
use super::{
    algorithm_list_problems, header_flow_finding, leeway_unbounded, looks_like_token, report_cookie_flags,
    report_secret, Rule, Secret, Sink, HEADER_PARAMETERS,
};
use tessera_audit::Finding;

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let uses_jsonwebtoken = file.text.contains("jsonwebtoken");
    let constants = constants(file);
    let tainted = tainted_names(file);
    for call in descendants(file.root, &["call_expression"]) {
        let Some(function) = call.child_by_field_name("function") else { continue };
        // `decode::<Claims>(...)`: the function without its type arguments.
        let function = match function.kind() {
            "generic_function" => function.child_by_field_name("function").unwrap_or(function),
            _ => function,
        };
        let callee = file.text(function);
        let args = call.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        // Paths are written `std::fs::read`; sinks are named with dots.
        if let Some(sink) = Sink::of_callee(&callee.replace("::", ".")) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
        if uses_jsonwebtoken {
            jsonwebtoken_call(file, &constants, call, callee, &args, findings);
        }
        cookie(file, call, findings);
    }
    if uses_jsonwebtoken {
        validation_settings(file, findings);
    }
}

/// The line ranges of `#[cfg(test)]` modules: test code, which signs with throwaway secrets on purpose.
pub(super) fn test_module_lines(file: &File<'_>) -> Vec<std::ops::RangeInclusive<usize>> {
    descendants(file.root, &["mod_item"])
        .into_iter()
        .filter(|module| {
            module.prev_named_sibling().is_some_and(|attribute| {
                attribute.kind() == "attribute_item" && file.text(attribute).replace(' ', "").contains("cfg(test)")
            })
        })
        .map(|module| File::line(module)..=module.end_position().row + 1)
        .collect()
}

/// `const X: &str = "..."`, `static X: ...`, `let x = ...` declared once in the file.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(descendants(file.root, &["const_item", "static_item", "let_declaration"]).into_iter().filter_map(
        |item| {
            let name = item.child_by_field_name("name").or_else(|| item.child_by_field_name("pattern"))?;
            (name.kind() == "identifier").then(|| Some((file.text(name), item.child_by_field_name("value")?))).flatten()
        },
    ))
}

fn jsonwebtoken_call(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    call: Node<'_>,
    callee: &str,
    args: &[Node<'_>],
    findings: &mut Vec<Finding>,
) {
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    let last = callee.rsplit([':', '.']).next().unwrap_or(callee);
    match last {
        "from_secret" | "from_base64_secret" => {
            if let Some(key) = args.first() {
                secret_findings(file, constants, call, *key, findings);
            }
        }
        "insecure_disable_signature_validation" | "dangerous_insecure_decode" | "insecure_decode" => {
            findings.push(at(Rule::SignatureCheckOff, format!("jsonwebtoken: {last} skips the signature check")));
        }
        "decode" if callee == "decode" || callee.ends_with("jsonwebtoken::decode") => {
            if !file.text.contains("set_audience") && !file.text.contains("validate_aud") {
                findings
                    .push(at(Rule::MissingAudience, "jsonwebtoken decodes without an expected audience".to_owned()));
            }
            if !file.text.contains("set_issuer") {
                findings.push(at(Rule::MissingIssuer, "jsonwebtoken decodes without an expected issuer".to_owned()));
            }
        }
        _ => {}
    }
}

/// `validation.validate_exp = false`, `validation.leeway = 86400`, `validation.algorithms = vec![...]`,
/// `validation.validate_aud = false`, and the same fields in a `Validation { ... }` literal.
fn validation_settings(file: &File<'_>, findings: &mut Vec<Finding>) {
    let mut settings: Vec<(Node<'_>, &str, Node<'_>)> = Vec::new();
    for assignment in descendants(file.root, &["assignment_expression"]) {
        let Some((left, right)) = fields(assignment, "left", "right") else { continue };
        if let Some(field) = left.child_by_field_name("field").filter(|_| left.kind() == "field_expression") {
            settings.push((assignment, file.text(field), right));
        }
    }
    for literal in descendants(file.root, &["struct_expression"]) {
        let named = literal.child_by_field_name("name").is_some_and(|name| file.text(name).ends_with("Validation"));
        let Some(body) = literal.child_by_field_name("body").filter(|_| named) else { continue };
        for initializer in descendants(body, &["field_initializer"]) {
            if let Some((field, value)) = fields(initializer, "field", "value") {
                settings.push((initializer, file.text(field), value));
            }
        }
    }
    for (node, field, value) in settings {
        let at = |rule: Rule, title: String| rule.at(file, node, title);
        let value_text = file.text(value);
        match field {
            "validate_exp" if value_text == "false" => {
                findings.push(at(Rule::ExpiryCheckOff, "jsonwebtoken validation ignores expiry".to_owned()));
            }
            "validate_aud" if value_text == "false" => {
                findings.push(at(Rule::MissingAudience, "jsonwebtoken validation ignores the audience".to_owned()));
            }
            "leeway" => {
                let seconds = value_text.replace('_', "").parse::<f64>().ok();
                if let Some(seconds) = seconds.filter(|seconds| leeway_unbounded(*seconds)) {
                    findings.push(at(
                        Rule::UnboundedLeeway,
                        format!("jsonwebtoken validation allows {seconds} s of leeway"),
                    ));
                }
            }
            "algorithms" => {
                // `vec![Algorithm::HS256, ...]` is a macro: its contents are tokens, so the names are identifiers.
                let names: Vec<String> = descendants(value, &["identifier"])
                    .into_iter()
                    .map(|name| file.text(name))
                    .filter(|name| !matches!(*name, "Algorithm" | "jsonwebtoken" | "vec"))
                    .map(str::to_owned)
                    .collect();
                for rule in algorithm_list_problems(&names) {
                    findings.push(at(rule, format!("jsonwebtoken accepts the algorithms {names:?}")));
                }
            }
            _ => {}
        }
    }
}

/// A secret written in the code: `b"s"`, `"s".as_bytes()` / `.as_ref()`, a constant holding one; or a default
/// behind an environment variable (`env::var("X").unwrap_or("d".into())`).
fn secret_findings(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    call: Node<'_>,
    key: Node<'_>,
    findings: &mut Vec<Finding>,
) {
    let (value, named) = resolve(file, constants, key);
    if let Some(secret) = string_value(file, value) {
        report_secret(file, call, Secret::Written(&secret), named.as_deref(), findings);
    } else if let Some(default) = environment_default(file, value) {
        report_secret(file, call, Secret::Default(&default), named.as_deref(), findings);
    }
}

/// Through `&x`, `x.as_bytes()`, `x.as_ref()`, `x.as_str()` and a constant's name to the value underneath; the
/// constant's name if one was followed.
fn resolve<'t>(file: &File<'_>, constants: &HashMap<&str, Node<'t>>, mut node: Node<'t>) -> (Node<'t>, Option<String>) {
    let mut named = None;
    for _ in 0..6 {
        node = match node.kind() {
            "reference_expression" => match node.child_by_field_name("value") {
                Some(value) => value,
                None => break,
            },
            "call_expression" => {
                let method = node.child_by_field_name("function").filter(|f| f.kind() == "field_expression");
                let field = method.and_then(|m| m.child_by_field_name("field")).map(|f| file.text(f));
                match (field, method.and_then(|m| m.child_by_field_name("value"))) {
                    (Some("as_bytes" | "as_ref" | "as_str" | "to_vec" | "into_bytes"), Some(value)) => value,
                    _ => break,
                }
            }
            "identifier" => match named_constant(file, constants, node) {
                Some((value, name)) => {
                    named = Some(name);
                    value
                }
                None => break,
            },
            _ => break,
        };
    }
    (node, named)
}

/// `std::env::var("X").unwrap_or("d".to_string())`, `.unwrap_or_else(|_| "d".into())` → `d`.
fn environment_default(file: &File<'_>, node: Node<'_>) -> Option<String> {
    let text = file.text(node);
    if node.kind() != "call_expression" || !text.contains("var(") || !text.contains("unwrap_or") {
        return None;
    }
    let args = arguments(node.child_by_field_name("arguments")?);
    descendants(*args.first()?, &["string_literal"]).into_iter().find_map(|literal| string_value(file, literal))
}

/// Names bound to a header parameter: `let kid = header.kid.unwrap();`.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for declaration in descendants(file.root, &["let_declaration"]) {
        let Some((pattern, value)) = fields(declaration, "pattern", "value") else { continue };
        if let Some(parameter) =
            header_parameter_in(file, value, &HashMap::new()).filter(|_| pattern.kind() == "identifier")
        {
            tainted.insert(file.text(pattern), parameter);
        }
    }
    tainted
}

/// The header parameter an expression carries: `x.kid`, or a name known to hold one — also as a `format!`
/// argument, inline (`"{kid}"`) or not.
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["field_expression", "identifier", "string_literal"]) {
        let name = match part.kind() {
            "field_expression" => part.child_by_field_name("field").map(|field| file.text(field).to_owned()),
            "string_literal" => file
                .text(part)
                .split('{')
                .skip(1)
                .filter_map(|rest| rest.split(['}', ':']).next())
                .find_map(|inline| tainted.get(inline.trim()).cloned()),
            _ => tainted.get(file.text(part)).cloned(),
        };
        if let Some(name) = name.filter(|name| HEADER_PARAMETERS.contains(&name.as_str())) {
            return Some(name);
        }
    }
    None
}

/// `Cookie::build(("token", v))...` or `Cookie::new("token", v)` (the `cookie` crate) without `http_only(true)`,
/// `secure(true)` or `same_site(...)` along the chain. Judged once, from the chain's outermost call.
fn cookie(file: &File<'_>, call: Node<'_>, findings: &mut Vec<Finding>) {
    // An inner link of a chain (`x.http_only(true)` inside `x.http_only(true).build()`): the outer call judges.
    if call.parent().is_some_and(|parent| parent.kind() == "field_expression") {
        return;
    }
    let chain = file.text(call);
    let root_args = descendants(call, &["call_expression"])
        .into_iter()
        .rev()
        .find(|inner| {
            inner
                .child_by_field_name("function")
                .is_some_and(|f| file.text(f).ends_with("Cookie::build") || file.text(f).ends_with("Cookie::new"))
        })
        .and_then(|root| root.child_by_field_name("arguments"));
    let tokenish = root_args.is_some_and(|args| {
        descendants(args, &["string_literal", "identifier"])
            .into_iter()
            .take(2)
            .any(|arg| looks_like_token(file.text(arg)))
    });
    if root_args.is_none() || !tokenish {
        return;
    }
    let compact: String = chain.split_whitespace().collect();
    report_cookie_flags(
        file,
        call,
        &[
            ("HttpOnly", compact.contains(".http_only(true)")),
            ("Secure", compact.contains(".secure(true)")),
            ("SameSite", compact.contains(".same_site(") && !compact.contains("SameSite::None")),
        ],
        findings,
    );
}
