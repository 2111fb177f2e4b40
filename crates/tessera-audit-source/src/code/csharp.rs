//! The rules for C#: `TokenValidationParameters` (Microsoft.IdentityModel, ASP.NET Core's JwtBearer), symmetric
//! keys, `JwtSecurityTokenHandler.ReadJwtToken`, cookies, and header values flowing into sinks.

use std::collections::HashMap;

use tree_sitter::Node;

use super::syntax::{
    arguments, declared_once, descendants, fields, literal_or_text, named_constant, string_value, File,
};
use super::{
    algorithm_list_problems, header_flow_finding, leeway_unbounded, looks_like_token, report_cookie_flags,
    report_secret, Rule, Secret, Sink,
};
use tessera_audit::Finding;

/// The header parameters that must never reach a sink, as .NET names their properties.
const HEADER_PROPERTIES: [(&str, &str); 5] =
    [("Kid", "kid"), ("kid", "kid"), ("Jku", "jku"), ("X5u", "x5u"), ("Jwk", "jwk")];

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let uses_identity_model = file.text.contains("IdentityModel") || file.text.contains("JwtBearer");
    let constants = constants(file);
    let tainted = tainted_names(file);
    for creation in descendants(file.root, &["object_creation_expression"]) {
        let type_name = creation.child_by_field_name("type").map_or("", |t| file.text(t));
        let type_name = type_name.rsplit('.').next().unwrap_or(type_name);
        let args = argument_values(creation);
        match type_name {
            "TokenValidationParameters" if uses_identity_model => validation_parameters(file, creation, findings),
            "SymmetricSecurityKey" if uses_identity_model => {
                if let Some(key) = args.first() {
                    secret_findings(file, &constants, creation, *key, findings);
                }
            }
            _ => {}
        }
        if let Some(sink) = Sink::of_callee(&format!("new {type_name}")) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, creation, sink, &parameter));
            }
        }
    }
    for call in descendants(file.root, &["invocation_expression"]) {
        let callee = call.child_by_field_name("function").map_or("", |f| file.text(f));
        let args = argument_values(call);
        if let Some(sink) = Sink::of_callee(callee) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
        let method = callee.rsplit('.').next().unwrap_or(callee);
        if uses_identity_model && matches!(method, "ReadJwtToken" | "ReadToken") && !reads_only_the_header(file, call) {
            findings.push(Rule::DecodeWithoutVerify.at(
                file,
                call,
                format!("{method} reads a token without validating it"),
            ));
        }
        if callee.ends_with("Cookies.Append") {
            cookie(file, call, &args, findings);
        }
    }
}

/// The expressions of a call's or creation's arguments (C# wraps each in an `argument` node).
fn argument_values(call: Node<'_>) -> Vec<Node<'_>> {
    call.child_by_field_name("arguments")
        .map(arguments)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|argument| arguments(argument).last().copied())
        .collect()
}

/// `handler.ReadJwtToken(t).Header...`: reading the header to pick the key is what reading is for.
fn reads_only_the_header(file: &File<'_>, call: Node<'_>) -> bool {
    call.parent().is_some_and(|parent| {
        parent.kind() == "member_access_expression"
            && parent.child_by_field_name("name").is_some_and(|name| ["Header", "Kid"].contains(&file.text(name)))
    })
}

/// The value a declarator gives its variable (`x = value`): its last child that is not the name.
fn declared_value(declarator: Node<'_>) -> Option<Node<'_>> {
    let name = declarator.child_by_field_name("name");
    arguments(declarator).into_iter().rev().find(|node| Some(*node) != name)
}

/// Fields, constants and locals declared once with a value, by name.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(descendants(file.root, &["variable_declarator"]).into_iter().filter_map(|declarator| {
        Some((file.text(declarator.child_by_field_name("name")?), declared_value(declarator)?))
    }))
}

/// The settings of a `new TokenValidationParameters { ... }` that switch checks off.
fn validation_parameters(file: &File<'_>, creation: Node<'_>, findings: &mut Vec<Finding>) {
    let Some(initializer) = creation.child_by_field_name("initializer") else { return };
    for setting in arguments(initializer).into_iter().filter(|node| node.kind() == "assignment_expression") {
        let Some((left, right)) = fields(setting, "left", "right") else { continue };
        let value = file.text(right);
        let at = |rule: Rule, title: &str| rule.at(file, setting, title);
        match (file.text(left), value) {
            ("RequireSignedTokens", "false") => {
                findings.push(at(Rule::SignatureCheckOff, "unsigned tokens are accepted"))
            }
            ("SignatureValidator", _) => {
                findings.push(at(Rule::SignatureCheckOff, "a custom SignatureValidator replaces the signature check"));
            }
            ("ValidateLifetime" | "RequireExpirationTime", "false") => {
                findings.push(at(Rule::ExpiryCheckOff, "token lifetime is not validated"));
            }
            ("ValidateAudience", "false") => findings.push(at(Rule::MissingAudience, "the audience is not validated")),
            ("ValidateIssuer", "false") => findings.push(at(Rule::MissingIssuer, "the issuer is not validated")),
            ("ClockSkew", _) => {
                if let Some(seconds) = timespan_seconds(file, right).filter(|seconds| leeway_unbounded(*seconds)) {
                    findings.push(at(Rule::UnboundedLeeway, &format!("{seconds} s of clock skew are allowed")));
                }
            }
            ("ValidAlgorithms", _) => {
                let names: Vec<String> = descendants(right, &["string_literal"])
                    .into_iter()
                    .filter_map(|name| string_value(file, name))
                    .collect();
                for rule in algorithm_list_problems(&names) {
                    findings.push(at(rule, &format!("the algorithms {names:?} are accepted")));
                }
            }
            _ => {}
        }
    }
}

/// `TimeSpan.FromHours(24)` and its siblings → seconds.
fn timespan_seconds(file: &File<'_>, node: Node<'_>) -> Option<f64> {
    let callee = file.text(node.child_by_field_name("function")?);
    let unit = match callee {
        "TimeSpan.FromSeconds" => 1.0,
        "TimeSpan.FromMinutes" => 60.0,
        "TimeSpan.FromHours" => 3600.0,
        "TimeSpan.FromDays" => 86_400.0,
        _ => return None,
    };
    let count = argument_values(node).first().and_then(|arg| file.text(*arg).parse::<f64>().ok())?;
    Some(count * unit)
}

/// Through `Encoding.UTF8.GetBytes(x)`, `Convert.FromBase64String(x)` and a constant's name to a string, or to a
/// default behind `Environment.GetEnvironmentVariable("X") ?? "..."` / `configuration["X"] ?? "..."`.
fn secret_findings(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    at_node: Node<'_>,
    key: Node<'_>,
    findings: &mut Vec<Finding>,
) {
    let mut node = key;
    let mut named = None;
    for _ in 0..4 {
        node = match node.kind() {
            "invocation_expression" => {
                let callee = node.child_by_field_name("function").map_or("", |f| file.text(f));
                match argument_values(node).first() {
                    Some(first) if callee.ends_with("GetBytes") || callee.ends_with("FromBase64String") => *first,
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
    let default = (node.kind() == "binary_expression")
        .then(|| node.child_by_field_name("right"))
        .flatten()
        .filter(|_| node.child_by_field_name("operator").is_some_and(|op| file.text(op) == "??"));
    match (string_value(file, node), default.and_then(|d| string_value(file, d))) {
        (Some(secret), _) => report_secret(file, at_node, Secret::Written(&secret), named.as_deref(), findings),
        (None, Some(default)) => report_secret(file, at_node, Secret::Default(&default), named.as_deref(), findings),
        (None, None) => {}
    }
}

/// Locals assigned a header parameter (`var kid = jwt.Header.Kid;`), and the `kid` parameter of a key resolver.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for declarator in descendants(file.root, &["variable_declarator"]) {
        let Some(name) = declarator.child_by_field_name("name") else { continue };
        if let Some(parameter) =
            declared_value(declarator).and_then(|value| header_parameter_in(file, value, &HashMap::new()))
        {
            tainted.insert(file.text(name), parameter);
        }
    }
    for parameter in descendants(file.root, &["parameter", "implicit_parameter"]) {
        let name = parameter.child_by_field_name("name").map_or_else(|| file.text(parameter), |name| file.text(name));
        if name == "kid" {
            tainted.insert(name, "kid".to_owned());
        }
    }
    tainted
}

/// The header parameter an expression carries: `x.Header.Kid`, `x.Kid`, or a name known to hold one.
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["member_access_expression", "identifier"]) {
        let found = match part.kind() {
            "member_access_expression" => part.child_by_field_name("name").and_then(|name| {
                HEADER_PROPERTIES
                    .iter()
                    .find(|(property, _)| *property == file.text(name))
                    .map(|(_, parameter)| (*parameter).to_owned())
            }),
            _ => tainted.get(file.text(part)).cloned(),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// `Response.Cookies.Append("token", t, new CookieOptions { ... })` without `HttpOnly = true`, `Secure = true` or a
/// `SameSite` other than `None`.
fn cookie(file: &File<'_>, call: Node<'_>, args: &[Node<'_>], findings: &mut Vec<Finding>) {
    let tokenish = args.iter().take(2).any(|arg| looks_like_token(&literal_or_text(file, *arg)));
    if !tokenish {
        return;
    }
    let settings: HashMap<&str, &str> = args
        .get(2)
        .and_then(|options| options.child_by_field_name("initializer"))
        .map(|initializer| {
            arguments(initializer)
                .into_iter()
                .filter_map(|setting| {
                    Some((
                        file.text(setting.child_by_field_name("left")?),
                        file.text(setting.child_by_field_name("right")?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    report_cookie_flags(
        file,
        call,
        &[
            ("HttpOnly", settings.get("HttpOnly") == Some(&"true")),
            ("Secure", settings.get("Secure") == Some(&"true")),
            ("SameSite", settings.get("SameSite").is_some_and(|mode| !mode.ends_with("None"))),
        ],
        findings,
    );
}
