//! The rules for Python: PyJWT, python-jose and Authlib as the file imports them, cookies, and header values
//! flowing into sinks.

use std::collections::HashMap;

use tree_sitter::Node;

use super::syntax::{arguments, declared_once, descendants, fields, literal_or_text, string_value, File};
use super::{
    algorithm_list_problems, header_flow_finding, leeway_unbounded, looks_like_token, refresh_rotation,
    report_cookie_flags, report_secret, Rule, Secret, Sink, HEADER_PARAMETERS,
};
use tessera_audit::Finding;

/// The JWT library a local name refers to, and the export when it names one function.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    library: &'static str,
    member: Option<String>,
}

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let bindings = imports(file);
    let constants = constants(file);
    let tainted = tainted_names(file);
    for call in descendants(file.root, &["call"]) {
        let Some(callee) = call.child_by_field_name("function") else { continue };
        let args = call.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        let call_args = CallArguments { file, args: &args };
        if let Some((library, member)) = resolve(file, &bindings, callee) {
            library_call(file, &constants, call, library, &member, &call_args, findings);
        }
        if let Some(sink) = Sink::of_callee(file.text(callee)) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
        cookie(file, call, callee, &call_args, findings);
    }
    for function in descendants(file.root, &["function_definition"]) {
        // Its name, or the route of its decorator (`@router.post("/token/refresh")`).
        let route = function
            .parent()
            .filter(|parent| parent.kind() == "decorated_definition")
            .map(|decorated| {
                file.text(decorated).lines().filter(|line| line.trim_start().starts_with('@')).collect::<String>()
            })
            .unwrap_or_default();
        let name = function.child_by_field_name("name").map_or("", |name| file.text(name));
        let label =
            if route.to_ascii_lowercase().contains("refresh") { route.trim().to_owned() } else { name.to_owned() };
        let (mut signs, mut verifies) = (0, false);
        for call in descendants(function, &["call"]) {
            let Some(callee) = call.child_by_field_name("function") else { continue };
            match resolve(file, &bindings, callee).as_ref().map(|(_, member)| member.as_str()) {
                Some("encode") => signs += 1,
                Some("decode" | "get_unverified_claims") => verifies = true,
                _ => {}
            }
        }
        refresh_rotation(file, function, &label, signs, verifies, findings);
    }
}

/// `import jwt`, `import jwt as pyjwt`, `from jose import jwt`, `from jwt import decode`,
/// `from authlib.jose import jwt`.
fn imports<'a>(file: &File<'a>) -> HashMap<&'a str, Binding> {
    let mut bindings = HashMap::new();
    let library_of_module = |module: &str| match module {
        "jwt" => Some("PyJWT"),
        "jose.jwt" => Some("python-jose"),
        "authlib.jose.jwt" => Some("Authlib"),
        _ => None,
    };
    for import in descendants(file.root, &["import_statement", "import_from_statement"]) {
        let module = import.child_by_field_name("module_name").map(|node| file.text(node));
        let mut cursor = import.walk();
        let names: Vec<Node<'_>> = import.children_by_field_name("name", &mut cursor).collect();
        for name in names {
            let (imported, local) = match name.kind() {
                "aliased_import" => match (name.child_by_field_name("name"), name.child_by_field_name("alias")) {
                    (Some(imported), Some(alias)) => (file.text(imported), file.text(alias)),
                    _ => continue,
                },
                _ => (file.text(name), file.text(name)),
            };
            let binding = match module {
                // `import jwt`: the module.
                None => library_of_module(imported).map(|library| Binding { library, member: None }),
                // `from jose import jwt`: a module; `from jwt import decode`: a function.
                Some(module) => match library_of_module(&format!("{module}.{imported}")) {
                    Some(library) => Some(Binding { library, member: None }),
                    None => {
                        library_of_module(module).map(|library| Binding { library, member: Some(imported.to_owned()) })
                    }
                },
            };
            if let Some(binding) = binding {
                bindings.insert(local, binding);
            }
        }
    }
    bindings
}

fn resolve(file: &File<'_>, bindings: &HashMap<&str, Binding>, callee: Node<'_>) -> Option<(&'static str, String)> {
    match callee.kind() {
        "identifier" => {
            let binding = bindings.get(file.text(callee))?;
            Some((binding.library, binding.member.clone()?))
        }
        "attribute" => {
            let object = callee.child_by_field_name("object")?;
            let binding = bindings.get(file.text(object)).filter(|binding| binding.member.is_none())?;
            Some((binding.library, file.text(callee.child_by_field_name("attribute")?).to_owned()))
        }
        _ => None,
    }
}

/// A call's positional and keyword arguments.
struct CallArguments<'a, 't> {
    file: &'a File<'a>,
    args: &'a [Node<'t>],
}

impl<'t> CallArguments<'_, 't> {
    fn positional(&self, index: usize) -> Option<Node<'t>> {
        self.args.iter().filter(|arg| arg.kind() != "keyword_argument").nth(index).copied()
    }

    fn keyword(&self, name: &str) -> Option<Node<'t>> {
        self.args.iter().find_map(|arg| {
            (arg.kind() == "keyword_argument"
                && arg.child_by_field_name("name").is_some_and(|key| self.file.text(key) == name))
            .then(|| arg.child_by_field_name("value"))
            .flatten()
        })
    }

    /// A keyword argument, or the positional one at `index`.
    fn either(&self, name: &str, index: usize) -> Option<Node<'t>> {
        self.keyword(name).or_else(|| self.positional(index))
    }
}

fn library_call(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    call: Node<'_>,
    library: &str,
    member: &str,
    args: &CallArguments<'_, '_>,
    findings: &mut Vec<Finding>,
) {
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    match member {
        "encode" => {
            if let Some(secret) = args.either("key", 1) {
                secret_findings(file, constants, call, secret, findings);
            }
        }
        "decode" => {
            let options = args.keyword("options").map(|node| through_constant(file, constants, node));
            let option_off = |name: &str| {
                options
                    .and_then(|options| dict_value(file, options, name))
                    .is_some_and(|value| file.text(value) == "False")
            };
            if option_off("verify_signature") || args.keyword("verify").is_some_and(|value| file.text(value) == "False")
            {
                findings
                    .push(at(Rule::SignatureCheckOff, format!("{library} decodes with signature verification off")));
                return;
            }
            if let Some(secret) = args.either("key", 1) {
                secret_findings(file, constants, call, secret, findings);
            }
            match args.either("algorithms", 2).map(|node| through_constant(file, constants, node)) {
                None => findings.push(at(
                    Rule::AlgorithmFromToken,
                    format!("{library} decodes with whatever algorithm the token names"),
                )),
                Some(list) if matches!(list.kind(), "list" | "tuple" | "set") => {
                    let names: Vec<String> =
                        arguments(list).into_iter().filter_map(|item| string_value(file, item)).collect();
                    for rule in algorithm_list_problems(&names) {
                        findings.push(at(rule, format!("{library} accepts the algorithms {names:?}")));
                    }
                }
                Some(_) => {}
            }
            if option_off("verify_exp") {
                findings.push(at(Rule::ExpiryCheckOff, format!("{library} decodes with the expiry check off")));
            }
            if let Some(seconds) = args.keyword("leeway").and_then(|value| file.text(value).parse::<f64>().ok()) {
                if leeway_unbounded(seconds) {
                    findings.push(at(Rule::UnboundedLeeway, format!("{library} decodes with {seconds} s of leeway")));
                }
            }
            if args.keyword("audience").is_none() && !option_off("verify_aud") {
                findings.push(at(Rule::MissingAudience, format!("{library} decodes without checking the audience")));
            } else if option_off("verify_aud") {
                findings.push(at(Rule::MissingAudience, format!("{library} decodes with the audience check off")));
            }
            if args.keyword("issuer").is_none() {
                findings.push(at(Rule::MissingIssuer, format!("{library} decodes without checking the issuer")));
            }
        }
        "get_unverified_claims" => {
            findings.push(at(Rule::DecodeWithoutVerify, format!("{library} reads claims without verifying the token")));
        }
        _ => {}
    }
}

/// `name`, or the value of the module-level constant of that name.
fn through_constant<'t>(file: &File<'_>, constants: &HashMap<&str, Node<'t>>, node: Node<'t>) -> Node<'t> {
    match node.kind() {
        "identifier" => constants.get(file.text(node)).copied().unwrap_or(node),
        _ => node,
    }
}

/// Names assigned exactly once anywhere in the file, with their value.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(descendants(file.root, &["assignment"]).into_iter().filter_map(|assignment| {
        let (left, right) = fields(assignment, "left", "right")?;
        (left.kind() == "identifier").then(|| (file.text(left), right))
    }))
}

fn secret_findings(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'_>>,
    call: Node<'_>,
    secret: Node<'_>,
    findings: &mut Vec<Finding>,
) {
    let named = (secret.kind() == "identifier").then(|| file.text(secret));
    let value = through_constant(file, constants, secret);
    if let Some(literal) = string_value(file, value) {
        report_secret(file, call, Secret::Written(&literal), named, findings);
    } else if let Some(default) = fallback_default(file, value) {
        report_secret(file, call, Secret::Default(&default), named, findings);
    }
}

/// `os.environ.get("X", "d")`, `os.getenv("X", "d")`, `os.environ.get("X") or "d"` → `d`.
fn fallback_default(file: &File<'_>, node: Node<'_>) -> Option<String> {
    match node.kind() {
        "call" => {
            let callee = file.text(node.child_by_field_name("function")?);
            if !matches!(callee, "os.environ.get" | "os.getenv" | "environ.get" | "getenv") {
                return None;
            }
            let args = arguments(node.child_by_field_name("arguments")?);
            let default = args.iter().find(|arg| {
                arg.kind() == "keyword_argument"
                    && arg.child_by_field_name("name").is_some_and(|n| file.text(n) == "default")
            });
            let default = match default {
                Some(keyword) => keyword.child_by_field_name("value")?,
                None => *args.get(1)?,
            };
            string_value(file, default)
        }
        "boolean_operator" => {
            let (left, right) = (node.child_by_field_name("left")?, node.child_by_field_name("right")?);
            let from_environment = file.text(left).contains("environ") || file.text(left).contains("getenv");
            (file.text(node.child_by_field_name("operator")?) == "or" && from_environment)
                .then(|| string_value(file, right))
                .flatten()
        }
        _ => None,
    }
}

/// The value of `"name": value` in a dict literal.
fn dict_value<'t>(file: &File<'_>, dict: Node<'t>, name: &str) -> Option<Node<'t>> {
    if dict.kind() != "dictionary" {
        return None;
    }
    arguments(dict).into_iter().find_map(|pair| {
        let key = pair.child_by_field_name("key")?;
        (string_value(file, key).as_deref() == Some(name)).then(|| pair.child_by_field_name("value")).flatten()
    })
}

/// Names assigned a header parameter: `kid = header["kid"]`, `kid = headers.get("kid")`.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for assignment in descendants(file.root, &["assignment"]) {
        let Some((left, right)) = fields(assignment, "left", "right") else { continue };
        if left.kind() == "identifier" {
            if let Some(parameter) = header_parameter_in(file, right, &HashMap::new()) {
                tainted.insert(file.text(left), parameter);
            }
        }
    }
    tainted
}

/// The header parameter an expression carries: `x["kid"]`, `x.get("kid")`, or a name known to hold one.
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["subscript", "call", "identifier"]) {
        let name = match part.kind() {
            "subscript" => part.child_by_field_name("subscript").and_then(|key| string_value(file, key)),
            "call" => {
                let getter = part.child_by_field_name("function").is_some_and(|f| file.text(f).ends_with(".get"));
                let first = part.child_by_field_name("arguments").map(arguments).and_then(|args| args.first().copied());
                first.filter(|_| getter).and_then(|key| string_value(file, key))
            }
            _ => tainted.get(file.text(part)).cloned(),
        };
        if let Some(name) = name.filter(|name| HEADER_PARAMETERS.contains(&name.as_str())) {
            return Some(name);
        }
    }
    None
}

/// `response.set_cookie("token", value, ...)` without `httponly=True`, `secure=True` or `samesite`.
fn cookie(
    file: &File<'_>,
    call: Node<'_>,
    callee: Node<'_>,
    args: &CallArguments<'_, '_>,
    findings: &mut Vec<Finding>,
) {
    if callee.kind() != "attribute"
        || callee.child_by_field_name("attribute").map(|a| file.text(a)) != Some("set_cookie")
    {
        return;
    }
    let tokenish = |node: Option<Node<'_>>| node.is_some_and(|node| looks_like_token(&literal_or_text(file, node)));
    if !(tokenish(args.either("key", 0)) || tokenish(args.either("value", 1))) {
        return;
    }
    let set = |name: &str, wanted: fn(&str) -> bool| {
        args.keyword(name).is_some_and(|value| wanted(&literal_or_text(file, value)))
    };
    report_cookie_flags(
        file,
        call,
        &[
            ("HttpOnly", set("httponly", |v| v == "True")),
            ("Secure", set("secure", |v| v == "True")),
            ("SameSite", set("samesite", |v| !matches!(v.to_ascii_lowercase().as_str(), "none" | "false"))),
        ],
        findings,
    );
}
