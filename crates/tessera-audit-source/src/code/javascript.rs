//! The rules for JavaScript and TypeScript: `jsonwebtoken`, `jws`, `jose`, `jwt-decode` and `express-jwt` as the
//! file imports them, web storage, cookies, and header values flowing into sinks.

use std::collections::{HashMap, HashSet};

use tree_sitter::Node;

use super::syntax::{arguments, declared_once, descendants, fields, literal_or_text, string_value, File};
use super::{
    algorithm_list_problems, header_flow_finding, leeway_unbounded, looks_like_token, refresh_rotation,
    report_cookie_flags, report_secret, Rule, Secret, Sink, HEADER_PARAMETERS,
};
use tessera_audit::Finding;

/// The JWT libraries recognised, by the module name they are imported from.
const LIBRARIES: [&str; 5] = ["jsonwebtoken", "jws", "jose", "jwt-decode", "express-jwt"];
/// Modules whose import marks a file as code for browsers or apps.
const CLIENT_FRAMEWORKS: [&str; 8] =
    ["react", "react-dom", "react-native", "vue", "svelte", "@angular/core", "preact", "solid-js"];
/// Globals only a browser has.
const BROWSER_GLOBALS: [&str; 5] = ["window", "document", "localStorage", "sessionStorage", "navigator"];
/// Directory names whose files are served to browsers as they are.
const CLIENT_DIRECTORIES: [&str; 7] = ["public", "static", "client", "frontend", "www", "assets", "browser"];

/// What a local name refers to: a JWT library (`member` `None`: the module itself) or one of its exports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    library: &'static str,
    member: Option<String>,
}

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    let bindings = imports(file);
    let client = is_client_code(file);
    let constants = constants(file);
    let tainted = tainted_names(file);
    let context = Context { file, constants: &constants };
    for call in descendants(file.root, &["call_expression", "new_expression"]) {
        let Some(callee) =
            call.child_by_field_name(if call.kind() == "new_expression" { "constructor" } else { "function" })
        else {
            continue;
        };
        let args = call.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        if let Some((library, member)) = resolve(file, &bindings, callee) {
            library_call(&context, call, library, &member, &args, client, findings);
        }
        let callee_text = file.text(callee);
        if let Some(sink) = Sink::of_callee(callee_text) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
        storage_and_cookies(&context, call, callee, &args, findings);
    }
    for assignment in descendants(file.root, &["assignment_expression"]) {
        assigned_storage_or_cookie(file, assignment, findings);
    }
    refresh_handlers(file, &bindings, findings);
}

/// Functions that handle refresh — named so, or registered at a route saying so (`router.post("/refresh", ...)`) —
/// judged by the rotation rule on the JWT calls inside them.
fn refresh_handlers(file: &File<'_>, bindings: &HashMap<&str, Binding>, findings: &mut Vec<Finding>) {
    let kinds = ["function_declaration", "function_expression", "arrow_function", "method_definition"];
    for function in descendants(file.root, &kinds) {
        let label = function
            .child_by_field_name("name")
            .or_else(|| {
                function
                    .parent()
                    .filter(|p| p.kind() == "variable_declarator")
                    .and_then(|p| p.child_by_field_name("name"))
            })
            .map(|name| file.text(name).to_owned())
            .or_else(|| {
                // A handler passed to a route registration: the route's path names it.
                let call = function.parent().filter(|p| p.kind() == "arguments")?.parent()?;
                let first = call.child_by_field_name("arguments").map(arguments)?.first().copied()?;
                string_value(file, first)
            });
        let Some(label) = label else { continue };
        let (mut signs, mut verifies) = (0, false);
        for call in descendants(function, &["call_expression", "new_expression"]) {
            let field = if call.kind() == "new_expression" { "constructor" } else { "function" };
            let Some(callee) = call.child_by_field_name(field) else { continue };
            match resolve(file, bindings, callee).as_ref().map(|(library, member)| (*library, member.as_str())) {
                Some(("jsonwebtoken" | "jws", "sign") | ("jose", "SignJWT")) => signs += 1,
                Some(("jsonwebtoken" | "jws", "verify" | "decode") | ("jose", "jwtVerify" | "decodeJwt")) => {
                    verifies = true
                }
                _ => {}
            }
        }
        refresh_rotation(file, function, &label, signs, verifies, findings);
    }
}

/// The file and the constants it declares, for the rules that look through a name to its value.
struct Context<'a> {
    file: &'a File<'a>,
    constants: &'a HashMap<&'a str, Node<'a>>,
}

/// Local names bound to the JWT libraries: `require(...)` (whole or destructured) and `import` (default,
/// namespace, named).
fn imports<'a>(file: &File<'a>) -> HashMap<&'a str, Binding> {
    let mut bindings = HashMap::new();
    let library_of =
        |node: Node<'_>| string_value(file, node).and_then(|name| LIBRARIES.iter().copied().find(|lib| *lib == name));
    for declarator in descendants(file.root, &["variable_declarator"]) {
        let Some((name, value)) = fields(declarator, "name", "value") else { continue };
        let Some(library) = required_module(file, value).and_then(library_of) else { continue };
        match name.kind() {
            "identifier" => {
                bindings.insert(file.text(name), Binding { library, member: None });
            }
            "object_pattern" => {
                for property in arguments(name) {
                    let (imported, local) = match property.kind() {
                        "shorthand_property_identifier_pattern" => (property, property),
                        "pair_pattern" => {
                            match (property.child_by_field_name("key"), property.child_by_field_name("value")) {
                                (Some(key), Some(value)) => (key, value),
                                _ => continue,
                            }
                        }
                        _ => continue,
                    };
                    bindings
                        .insert(file.text(local), Binding { library, member: Some(file.text(imported).to_owned()) });
                }
            }
            _ => {}
        }
    }
    for import in descendants(file.root, &["import_statement"]) {
        let Some(library) = import.child_by_field_name("source").and_then(library_of) else { continue };
        for clause in arguments(import).into_iter().filter(|node| node.kind() == "import_clause") {
            for part in arguments(clause) {
                match part.kind() {
                    // The default export: the module object for jsonwebtoken, the function for jwt-decode.
                    "identifier" => {
                        let member = (library == "jwt-decode").then(|| "jwtDecode".to_owned());
                        bindings.insert(file.text(part), Binding { library, member });
                    }
                    "namespace_import" => {
                        if let Some(name) = arguments(part).into_iter().find(|node| node.kind() == "identifier") {
                            bindings.insert(file.text(name), Binding { library, member: None });
                        }
                    }
                    "named_imports" => {
                        for specifier in descendants(part, &["import_specifier"]) {
                            let Some(name) = specifier.child_by_field_name("name") else { continue };
                            let local = specifier.child_by_field_name("alias").unwrap_or(name);
                            bindings.insert(
                                file.text(local),
                                Binding { library, member: Some(file.text(name).to_owned()) },
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    bindings
}

/// `require("x")` → the node of `"x"`.
fn required_module<'t>(file: &File<'_>, value: Node<'t>) -> Option<Node<'t>> {
    if value.kind() != "call_expression"
        || value.child_by_field_name("function").map(|f| file.text(f)) != Some("require")
    {
        return None;
    }
    value.child_by_field_name("arguments").map(arguments)?.first().copied()
}

/// The library export a callee names: `jwt.sign`, a destructured `sign`, `require("jsonwebtoken").sign`.
fn resolve(file: &File<'_>, bindings: &HashMap<&str, Binding>, callee: Node<'_>) -> Option<(&'static str, String)> {
    match callee.kind() {
        "identifier" => {
            let binding = bindings.get(file.text(callee))?;
            Some((binding.library, binding.member.clone().unwrap_or_else(|| "default".to_owned())))
        }
        "member_expression" => {
            let object = callee.child_by_field_name("object")?;
            let property = file.text(callee.child_by_field_name("property")?).to_owned();
            let library = match object.kind() {
                "identifier" => bindings.get(file.text(object)).filter(|binding| binding.member.is_none())?.library,
                "call_expression" => {
                    let name = string_value(file, required_module(file, object)?)?;
                    LIBRARIES.iter().copied().find(|lib| *lib == name)?
                }
                _ => return None,
            };
            Some((library, property))
        }
        _ => None,
    }
}

fn library_call(
    context: &Context<'_>,
    call: Node<'_>,
    library: &'static str,
    member: &str,
    args: &[Node<'_>],
    client: bool,
    findings: &mut Vec<Finding>,
) {
    let file = context.file;
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    match (library, member) {
        ("jsonwebtoken", "sign") | ("jws", "sign") | ("jose", "SignJWT") | ("jose", "CompactSign") => {
            if client {
                findings
                    .push(at(Rule::ClientSideSigning, format!("{library} signs tokens in code that ships to clients")));
            }
            let secret = match library {
                "jws" => args.first().and_then(|options| property(file, *options, "secret")),
                // `new SignJWT(claims).setProtectedHeader(...).sign(key)`: the key is the chain's `sign` argument.
                "jose" => chained_call(file, call, "sign").and_then(|sign| sign.first().copied()),
                _ => args.get(1).copied(),
            };
            if let Some(secret) = secret {
                secret_findings(context, call, secret, findings);
            }
        }
        ("jsonwebtoken", "verify") => {
            if let Some(secret) = args.get(1) {
                secret_findings(context, call, *secret, findings);
            }
            verify_options(context, call, library, args.get(2).copied(), true, findings);
        }
        ("jose", "jwtVerify") => {
            if let Some(secret) = args.get(1) {
                secret_findings(context, call, *secret, findings);
            }
            verify_options(context, call, library, args.get(2).copied(), false, findings);
        }
        ("express-jwt", "default" | "expressjwt") => {
            let Some(options) = args.first().copied().map(|node| context.through_constant(node)) else { return };
            if options.kind() == "object" {
                if property(file, options, "algorithms").is_none() {
                    findings.push(at(
                        Rule::AlgorithmFromToken,
                        "express-jwt accepts whatever algorithm the token names".to_owned(),
                    ));
                }
                if let Some(secret) = property(file, options, "secret") {
                    secret_findings(context, call, secret, findings);
                }
            }
        }
        ("jsonwebtoken" | "jws", "decode") | ("jose", "decodeJwt") | ("jwt-decode", "jwtDecode" | "default")
            if !client =>
        {
            findings.push(at(
                Rule::DecodeWithoutVerify,
                format!("{library} decodes a token without verifying it, on the server"),
            ));
        }
        _ => {}
    }
}

/// The arguments of the call to `method` further along the chain `node` starts (`node.a().method(x)`).
fn chained_call<'t>(file: &File<'_>, node: Node<'t>, method: &str) -> Option<Vec<Node<'t>>> {
    let mut current = node;
    while let Some(parent) = current.parent() {
        match parent.kind() {
            "member_expression" => {}
            "call_expression" => {
                let callee = parent.child_by_field_name("function")?;
                let called = callee.child_by_field_name("property").map(|p| file.text(p));
                if called == Some(method) {
                    return parent.child_by_field_name("arguments").map(arguments);
                }
            }
            "await_expression" | "parenthesized_expression" => {}
            _ => return None,
        }
        current = parent;
    }
    None
}

/// The options of a verification: pinned algorithms (jsonwebtoken), none allowed, families mixed, expiry off,
/// leeway, audience and issuer. Options given as a name declared elsewhere are not judged.
fn verify_options(
    context: &Context<'_>,
    call: Node<'_>,
    library: &str,
    options: Option<Node<'_>>,
    algorithms_required: bool,
    findings: &mut Vec<Finding>,
) {
    let file = context.file;
    let options = options.map(|node| context.through_constant(node));
    let options = match options {
        Some(node) if node.kind() == "object" => Some(node),
        // A callback in the options' place, or nothing: no options.
        Some(node) if matches!(node.kind(), "arrow_function" | "function_expression" | "function") => None,
        None => None,
        Some(_) => return,
    };
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    let get = |name: &str| options.and_then(|options| property(file, options, name));
    match get("algorithms") {
        None if algorithms_required => {
            findings.push(at(
                Rule::AlgorithmFromToken,
                format!("{library} verifies with whatever algorithm the token names"),
            ));
        }
        None => {}
        Some(list) => {
            let names: Vec<String> = arguments(list).into_iter().filter_map(|item| string_value(file, item)).collect();
            for rule in algorithm_list_problems(&names) {
                findings.push(at(rule, format!("{library} accepts the algorithms {names:?}")));
            }
        }
    }
    if get("ignoreExpiration").is_some_and(|value| value.kind() == "true") {
        findings.push(at(Rule::ExpiryCheckOff, format!("{library} verification ignores expiry")));
    }
    if let Some(seconds) = get("clockTolerance").and_then(|value| file.text(value).parse::<f64>().ok()) {
        if leeway_unbounded(seconds) {
            findings
                .push(at(Rule::UnboundedLeeway, format!("{library} verification tolerates {seconds} s of clock skew")));
        }
    }
    if get("audience").is_none() {
        findings.push(at(Rule::MissingAudience, format!("{library} verification does not check the audience")));
    }
    if get("issuer").is_none() {
        findings.push(at(Rule::MissingIssuer, format!("{library} verification does not check the issuer")));
    }
}

impl<'a> Context<'a> {
    /// `node`, or the value of the constant it names when the file declares it once.
    fn through_constant<'t>(&self, node: Node<'t>) -> Node<'t>
    where
        'a: 't,
    {
        match node.kind() {
            "identifier" => self.constants.get(self.file.text(node)).copied().unwrap_or(node),
            _ => node,
        }
    }
}

/// Hard-coded, weak and fallback secrets in a key argument.
fn secret_findings(context: &Context<'_>, call: Node<'_>, secret: Node<'_>, findings: &mut Vec<Finding>) {
    let file = context.file;
    let named = (secret.kind() == "identifier").then(|| file.text(secret));
    let value = context.through_constant(secret);
    if let Some(literal) = literal_secret(file, value) {
        report_secret(file, call, Secret::Written(&literal), named, findings);
    } else if let Some(default) = fallback_default(file, value) {
        report_secret(file, call, Secret::Default(&default), named, findings);
    }
}

/// A secret written as a string: `"s"`, `Buffer.from("s")`, `new TextEncoder().encode("s")`.
fn literal_secret(file: &File<'_>, node: Node<'_>) -> Option<String> {
    if let Some(value) = string_value(file, node) {
        return Some(value);
    }
    if node.kind() != "call_expression" {
        return None;
    }
    let callee = file.text(node.child_by_field_name("function")?);
    if !(callee.ends_with(".encode") || callee == "Buffer.from") {
        return None;
    }
    let args = arguments(node.child_by_field_name("arguments")?);
    string_value(file, *args.first()?)
}

/// `process.env.X || "default"` (or `??`) → the default.
fn fallback_default(file: &File<'_>, node: Node<'_>) -> Option<String> {
    if node.kind() != "binary_expression" {
        return None;
    }
    let operator = file.text(node.child_by_field_name("operator")?);
    let (left, right) = (node.child_by_field_name("left")?, node.child_by_field_name("right")?);
    if !matches!(operator, "||" | "??") || !file.text(left).contains("process.env") {
        return None;
    }
    string_value(file, right)
}

/// The value of `name: value` in an object literal.
fn property<'t>(file: &File<'_>, object: Node<'t>, name: &str) -> Option<Node<'t>> {
    if object.kind() != "object" {
        return None;
    }
    arguments(object).into_iter().find_map(|member| match member.kind() {
        "pair" => {
            let key = member.child_by_field_name("key")?;
            let key_name = literal_or_text(file, key);
            (key_name == name).then(|| member.child_by_field_name("value")).flatten()
        }
        // `{ secret }`: the value is the variable of that name.
        "shorthand_property_identifier" if file.text(member) == name => Some(member),
        _ => None,
    })
}

/// Constants declared once in the file (`const X = ...`, `let X = ...`), by name.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(descendants(file.root, &["variable_declarator"]).into_iter().filter_map(|declarator| {
        let (name, value) = fields(declarator, "name", "value")?;
        (name.kind() == "identifier").then(|| (file.text(name), value))
    }))
}

/// Names that hold a header parameter: `const kid = header.kid`, `const { kid } = decoded.header`, by parameter.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for declarator in descendants(file.root, &["variable_declarator"]) {
        let Some((name, value)) = fields(declarator, "name", "value") else { continue };
        match name.kind() {
            "identifier" => {
                if let Some(parameter) = header_parameter_in(file, value, &HashMap::new()) {
                    tainted.insert(file.text(name), parameter);
                }
            }
            "object_pattern" => {
                for property in descendants(name, &["shorthand_property_identifier_pattern"]) {
                    let text = file.text(property);
                    if HEADER_PARAMETERS.contains(&text) && file.text(value).contains("header") {
                        tainted.insert(text, text.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    tainted
}

/// The header parameter an expression carries: `x.kid`, `x["kid"]`, or a name known to hold one.
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    let parameters: HashSet<&str> = HEADER_PARAMETERS.into_iter().collect();
    for part in descendants(node, &["member_expression", "subscript_expression", "identifier"]) {
        let name = match part.kind() {
            "member_expression" => part.child_by_field_name("property").map(|p| file.text(p).to_owned()),
            "subscript_expression" => part.child_by_field_name("index").and_then(|index| string_value(file, index)),
            _ => {
                if let Some(parameter) = tainted.get(file.text(part)) {
                    return Some(parameter.clone());
                }
                None
            }
        };
        if let Some(name) = name.filter(|name| parameters.contains(name.as_str())) {
            return Some(name);
        }
    }
    None
}

/// Whether the file is code for browsers or apps: it uses browser globals, imports a UI framework, sits in a
/// directory served as is, or is a minified bundle.
fn is_client_code(file: &File<'_>) -> bool {
    let in_client_directory = file.path.split('/').rev().skip(1).any(|dir| CLIENT_DIRECTORIES.contains(&dir));
    let minified = file.path.ends_with(".min.js") || file.text.lines().any(|line| line.len() > 5_000);
    in_client_directory
        || minified
        || descendants(file.root, &["member_expression"]).into_iter().any(|member| {
            member
                .child_by_field_name("object")
                .is_some_and(|object| object.kind() == "identifier" && BROWSER_GLOBALS.contains(&file.text(object)))
        })
        || descendants(file.root, &["import_statement"]).into_iter().any(|import| {
            import
                .child_by_field_name("source")
                .and_then(|source| string_value(file, source))
                .is_some_and(|source| CLIENT_FRAMEWORKS.contains(&source.as_str()))
        })
}

/// `localStorage.setItem("token", ...)`, `res.cookie("token", ..., {...})`, `cookies.set(...)`.
fn storage_and_cookies(
    context: &Context<'_>,
    call: Node<'_>,
    callee: Node<'_>,
    args: &[Node<'_>],
    findings: &mut Vec<Finding>,
) {
    let file = context.file;
    if callee.kind() != "member_expression" {
        return;
    }
    let Some((object, method)) = fields(callee, "object", "property") else { return };
    let object = file.text(object);
    let method = file.text(method);
    let tokenish = |index: usize| args.get(index).is_some_and(|arg| looks_like_token(&literal_or_text(file, *arg)));
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    let storage = object.trim_start_matches("window.");
    if method == "setItem" && matches!(storage, "localStorage" | "sessionStorage") && (tokenish(0) || tokenish(1)) {
        findings.push(at(Rule::TokenInWebStorage, format!("a token is kept in {storage}")));
    }
    let cookie_setter = method == "cookie" || (method == "set" && object.to_ascii_lowercase().ends_with("cookies"));
    if cookie_setter && (tokenish(0) || tokenish(1)) {
        let options = args.get(2).map(|node| context.through_constant(*node));
        if options.is_some_and(|node| node.kind() != "object") {
            return; // Options built elsewhere: not judged.
        }
        let flag = |names: &[&str], wanted: fn(&str) -> bool| {
            options
                .and_then(|options| names.iter().find_map(|name| property(file, options, name)))
                .is_some_and(|value| wanted(&literal_or_text(file, value)))
        };
        let same_site = |v: &str| !matches!(v.to_ascii_lowercase().as_str(), "none" | "false");
        report_cookie_flags(
            file,
            call,
            &[
                ("HttpOnly", flag(&["httpOnly", "httponly"], |v| v == "true")),
                ("Secure", flag(&["secure"], |v| v == "true")),
                ("SameSite", flag(&["sameSite", "samesite"], same_site)),
            ],
            findings,
        );
    }
}

/// `localStorage.token = ...`, `localStorage["jwt"] = ...`, `document.cookie = "token=..."`.
fn assigned_storage_or_cookie(file: &File<'_>, assignment: Node<'_>, findings: &mut Vec<Finding>) {
    let Some((left, right)) = fields(assignment, "left", "right") else { return };
    let target = file.text(left).trim_start_matches("window.");
    let at = |rule: Rule, title: String| rule.at(file, assignment, title);
    if target == "document.cookie" && looks_like_token(file.text(right)) {
        findings.push(at(
            Rule::CookieWithoutFlags,
            "a token cookie is set from script, so it cannot be HttpOnly".to_owned(),
        ));
    } else if (target.starts_with("localStorage") || target.starts_with("sessionStorage")) && looks_like_token(target) {
        findings.push(at(
            Rule::TokenInWebStorage,
            format!("a token is kept in {}", target.split(['.', '[']).next().unwrap_or(target)),
        ));
    }
}
