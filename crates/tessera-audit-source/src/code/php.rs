//! The rules for PHP: `firebase/php-jwt` (`JWT::decode`, `JWT::encode`, `Key`, `JWT::$leeway`) where the file
//! uses it, `setcookie`, and header values flowing into sinks.

use std::collections::HashMap;

use tree_sitter::Node;

use super::syntax::{
    arguments, declared_once, descendants, fields, literal_or_text, named_constant, string_value, File,
};
use super::{
    algorithm_list_problems, header_flow_finding, leeway_unbounded, looks_like_token, report_cookie_flags,
    report_secret, Rule, Secret, Sink, HEADER_PARAMETERS,
};
use tessera_audit::Finding;

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let uses_php_jwt = file.text.contains("Firebase\\JWT");
    let constants = constants(file);
    let tainted = tainted_names(file);
    for call in
        descendants(file.root, &["function_call_expression", "scoped_call_expression", "member_call_expression"])
    {
        let args = call_arguments(call);
        let callee = callee_text(file, call);
        if let Some(sink) = Sink::of_callee(&callee) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
        if uses_php_jwt && call.kind() == "scoped_call_expression" {
            php_jwt_call(file, &constants, call, &callee, &args, findings);
        }
        if callee == "setcookie" || callee == "setrawcookie" {
            set_cookie(file, call, &args, findings);
        }
    }
    if uses_php_jwt {
        for creation in descendants(file.root, &["object_creation_expression"]) {
            // `new Key($secret, 'HS256')`: the key material is the first argument.
            let class = arguments(creation).into_iter().find(|node| matches!(node.kind(), "name" | "qualified_name"));
            if class.is_some_and(|class| file.text(class).ends_with("Key")) {
                if let Some(secret) = call_arguments(creation).first() {
                    secret_findings(file, &constants, creation, *secret, findings);
                }
            }
        }
        for assignment in descendants(file.root, &["assignment_expression"]) {
            let Some((left, right)) = fields(assignment, "left", "right") else { continue };
            let seconds = file.text(right).parse::<f64>().ok().filter(|seconds| leeway_unbounded(*seconds));
            if let (true, Some(seconds)) = (file.text(left).ends_with("JWT::$leeway"), seconds) {
                findings.push(Rule::UnboundedLeeway.at(
                    file,
                    assignment,
                    format!("php-jwt allows {seconds} s of leeway"),
                ));
            }
        }
    }
}

/// The argument expressions of a call or `new` (PHP wraps each in an `argument` node).
fn call_arguments(call: Node<'_>) -> Vec<Node<'_>> {
    let list = call
        .child_by_field_name("arguments")
        .or_else(|| arguments(call).into_iter().find(|node| node.kind() == "arguments"));
    list.map(arguments)
        .unwrap_or_default()
        .into_iter()
        .filter_map(
            |argument| if argument.kind() == "argument" { arguments(argument).last().copied() } else { Some(argument) },
        )
        .collect()
}

/// `JWT::decode`, `$pdo->query`, `file_get_contents` as written, with `.` between object and method.
fn callee_text(file: &File<'_>, call: Node<'_>) -> String {
    let name = call.child_by_field_name("name").map(|name| file.text(name));
    match call.kind() {
        "scoped_call_expression" => {
            format!("{}.{}", call.child_by_field_name("scope").map_or("", |s| file.text(s)), name.unwrap_or_default())
        }
        "member_call_expression" => {
            format!("{}.{}", call.child_by_field_name("object").map_or("", |o| file.text(o)), name.unwrap_or_default())
        }
        _ => call.child_by_field_name("function").map_or_else(String::new, |f| file.text(f).to_owned()),
    }
}

/// `const X = '...'`, `define('X', '...')` and `$x = ...` assigned once in the file, by name (`X`, `$x`).
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    let consts = descendants(file.root, &["const_element"]).into_iter().filter_map(|element| {
        match arguments(element).as_slice() {
            [name, value] => Some((file.text(*name), *value)),
            _ => None,
        }
    });
    let variables = descendants(file.root, &["assignment_expression"]).into_iter().filter_map(|assignment| {
        let (left, right) = fields(assignment, "left", "right")?;
        (left.kind() == "variable_name").then(|| (file.text(left), right))
    });
    let defines = descendants(file.root, &["function_call_expression"]).into_iter().filter_map(|call| {
        call.child_by_field_name("function").filter(|f| file.text(*f) == "define")?;
        match call_arguments(call).as_slice() {
            [name, value] if matches!(name.kind(), "string" | "encapsed_string") => {
                Some((file.text(*name).trim_matches(['\'', '"']), *value))
            }
            _ => None,
        }
    });
    declared_once(consts.chain(variables).chain(defines))
}

fn through_constant<'t>(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'t>>,
    node: Node<'t>,
) -> (Node<'t>, Option<String>) {
    match node.kind() {
        "name" | "variable_name" => match named_constant(file, constants, node) {
            Some((value, name)) => (value, Some(name)),
            None => (node, None),
        },
        _ => (node, None),
    }
}

fn php_jwt_call(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    call: Node<'_>,
    callee: &str,
    args: &[Node<'_>],
    findings: &mut Vec<Finding>,
) {
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    match callee.rsplit('\\').next().unwrap_or(callee) {
        "JWT.encode" => {
            if let Some(secret) = args.get(1) {
                secret_findings(file, constants, call, *secret, findings);
            }
        }
        "JWT.decode" => {
            let Some(key) = args.get(1) else { return };
            let (resolved, _) = through_constant(file, constants, *key);
            // php-jwt 6 takes `new Key($secret, $alg)` (or an array of them): the key names its algorithm.
            let keyed =
                resolved.kind() == "object_creation_expression" || resolved.kind() == "array_creation_expression";
            match args.get(2) {
                Some(list) if list.kind() == "array_creation_expression" => {
                    let names: Vec<String> = descendants(*list, &["string", "encapsed_string"])
                        .into_iter()
                        .filter_map(|item| string_value(file, item))
                        .collect();
                    for rule in algorithm_list_problems(&names) {
                        findings.push(at(rule, format!("php-jwt accepts the algorithms {names:?}")));
                    }
                }
                None if !keyed => {
                    findings.push(at(
                        Rule::AlgorithmFromToken,
                        "php-jwt decodes with a bare key: no algorithm pinned".to_owned(),
                    ));
                }
                _ => {}
            }
            if !keyed {
                secret_findings(file, constants, call, *key, findings);
            }
            // php-jwt checks neither `aud` nor `iss`: the code must.
            if !file.text.contains("->aud") && !file.text.contains("['aud']") {
                findings.push(at(
                    Rule::MissingAudience,
                    "php-jwt never checks the audience, and nothing here does".to_owned(),
                ));
            }
            if !file.text.contains("->iss") && !file.text.contains("['iss']") {
                findings
                    .push(at(Rule::MissingIssuer, "php-jwt never checks the issuer, and nothing here does".to_owned()));
            }
        }
        _ => {}
    }
}

/// Hard-coded and weak secrets, and defaults behind `getenv('X') ?: '...'` or `$_ENV['X'] ?? '...'`.
fn secret_findings(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    at_node: Node<'_>,
    key: Node<'_>,
    findings: &mut Vec<Finding>,
) {
    let (value, named) = through_constant(file, constants, key);
    let default = match value.kind() {
        "conditional_expression" => value.child_by_field_name("alternative"),
        "binary_expression" if value.child_by_field_name("operator").is_some_and(|op| file.text(op) == "??") => {
            value.child_by_field_name("right")
        }
        _ => None,
    };
    let from_environment =
        ["getenv", "$_ENV", "$_SERVER", "env("].iter().any(|source| file.text(value).contains(source));
    match (string_value(file, value), default.and_then(|d| string_value(file, d))) {
        (Some(secret), _) => report_secret(file, at_node, Secret::Written(&secret), named.as_deref(), findings),
        (None, Some(default)) if from_environment => {
            report_secret(file, at_node, Secret::Default(&default), named.as_deref(), findings);
        }
        _ => {}
    }
}

/// Variables assigned a header parameter: `$kid = $header->kid;`.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for assignment in descendants(file.root, &["assignment_expression"]) {
        let Some((left, right)) = fields(assignment, "left", "right") else { continue };
        if let (true, Some(parameter)) =
            (left.kind() == "variable_name", header_parameter_in(file, right, &HashMap::new()))
        {
            tainted.insert(file.text(left), parameter);
        }
    }
    tainted
}

/// The header parameter an expression carries: `$h->kid`, `$h['kid']`, or a variable holding one (also inside a
/// double-quoted string).
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["member_access_expression", "subscript_expression", "variable_name"]) {
        let name = match part.kind() {
            "member_access_expression" => part.child_by_field_name("name").map(|name| file.text(name).to_owned()),
            "subscript_expression" => arguments(part).get(1).and_then(|index| string_value(file, *index)),
            _ => tainted.get(file.text(part)).cloned(),
        };
        if let Some(name) = name.filter(|name| HEADER_PARAMETERS.contains(&name.as_str())) {
            return Some(name);
        }
    }
    None
}

/// `setcookie('token', $t, ...)`: flags as positional arguments (`$secure`, `$httponly`) or an options array
/// (`'secure'`, `'httponly'`, `'samesite'`).
fn set_cookie(file: &File<'_>, call: Node<'_>, args: &[Node<'_>], findings: &mut Vec<Finding>) {
    let tokenish = args.iter().take(2).any(|arg| looks_like_token(&literal_or_text(file, *arg)));
    if !tokenish {
        return;
    }
    let option = |name: &str| -> Option<String> {
        let array = args.get(2).filter(|arg| arg.kind() == "array_creation_expression")?;
        descendants(*array, &["array_element_initializer"]).into_iter().find_map(|element| {
            let parts = arguments(element);
            let (key, value) = (parts.first()?, parts.get(1)?);
            string_value(file, *key).filter(|key| key.eq_ignore_ascii_case(name)).map(|_| literal_or_text(file, *value))
        })
    };
    let positional = |index: usize| args.get(index).map(|arg| file.text(*arg).to_ascii_lowercase());
    report_cookie_flags(
        file,
        call,
        &[
            ("HttpOnly", option("httponly").or_else(|| positional(6)).is_some_and(|v| v.eq_ignore_ascii_case("true"))),
            ("Secure", option("secure").or_else(|| positional(5)).is_some_and(|v| v.eq_ignore_ascii_case("true"))),
            ("SameSite", option("samesite").is_some_and(|v| !v.eq_ignore_ascii_case("none"))),
        ],
        findings,
    );
}
