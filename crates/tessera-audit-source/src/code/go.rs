//! The rules for Go: `github.com/golang-jwt/jwt` (v3 to v5), `github.com/dgrijalva/jwt-go` and
//! `github.com/form3tech-oss/jwt-go` as the file imports them (with their `request` packages); go-jose and
//! lestrat-go/jwx's switches that turn checks off; cookies; and header values flowing into sinks.

use std::collections::HashMap;

use tree_sitter::Node;

use super::syntax::{arguments, declared_once, descendants, fields, literal_or_text, string_value, File};
use super::{
    header_flow_finding, leeway_unbounded, looks_like_token, report_cookie_flags, report_secret, Rule, Secret, Sink,
    HEADER_PARAMETERS,
};
use tessera_audit::Finding;

/// The JWT modules recognised, by import path prefix.
const MODULES: [&str; 3] =
    ["github.com/golang-jwt/jwt", "github.com/dgrijalva/jwt-go", "github.com/form3tech-oss/jwt-go"];

/// What a package name in the file refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Package {
    /// The JWT package itself.
    Jwt,
    /// Its `request` package (`ParseFromRequest`).
    Request,
}

pub(super) fn audit(file: &File<'_>, findings: &mut Vec<Finding>) {
    jose_and_jwx(file, findings);
    let packages = imports(file);
    let context = Context { file, constants: constants(file), functions: functions(file) };
    let tainted = tainted_names(file);
    for call in descendants(file.root, &["call_expression"]) {
        let Some(callee) = call.child_by_field_name("function") else { continue };
        let args = call.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        if !packages.is_empty() {
            jwt_call(&context, &packages, call, callee, &args, findings);
        }
        if let Some(sink) = Sink::of_callee(file.text(callee)) {
            if let Some(parameter) = args.iter().find_map(|arg| header_parameter_in(file, *arg, &tainted)) {
                findings.push(header_flow_finding(file, call, sink, &parameter));
            }
        }
        gin_cookie(file, call, callee, &args, findings);
    }
    if packages.is_empty() {
        cookies(file, findings);
        return;
    }
    for selector in descendants(file.root, &["selector_expression"]) {
        let package = selector.child_by_field_name("operand").and_then(|operand| packages.get(file.text(operand)));
        let field = selector.child_by_field_name("field").map(|field| file.text(field));
        if package == Some(&Package::Jwt) && field == Some("UnsafeAllowNoneSignatureType") {
            findings.push(Rule::AlgNoneAllowed.at(
                file,
                selector,
                "jwt accepts unsigned tokens (UnsafeAllowNoneSignatureType)".to_owned(),
            ));
        }
    }
    for element in descendants(file.root, &["keyed_element", "assignment_statement"]) {
        // `SkipClaimsValidation: true` in a parser literal, or `parser.SkipClaimsValidation = true`.
        let text = file.text(element);
        if text.contains("SkipClaimsValidation") && text.trim_end().ends_with("true") {
            findings.push(Rule::ExpiryCheckOff.at(
                file,
                element,
                "jwt parsing skips claims validation (expiry included)".to_owned(),
            ));
        }
    }
    cookies(file, findings);
}

/// go-jose and lestrrat-go/jwx, in files that import them: reading claims without verification, verification or
/// validation switched off, a long acceptable skew, and go-jose's `ParseSigned` without the algorithms it may
/// accept (v2 and v3 take none; v4 requires them).
fn jose_and_jwx(file: &File<'_>, findings: &mut Vec<Finding>) {
    let imported = descendants(file.root, &["import_spec"]).into_iter().any(|spec| {
        let path = file.text(spec);
        path.contains("go-jose") || path.contains("lestrrat-go/jwx")
    });
    if !imported {
        return;
    }
    for call in descendants(file.root, &["call_expression"]) {
        let Some(field) = call.child_by_field_name("function").and_then(|f| f.child_by_field_name("field")) else {
            continue;
        };
        let args = call.child_by_field_name("arguments").map(arguments).unwrap_or_default();
        let first = args.first().map(|arg| file.text(*arg));
        let finding = match (file.text(field), first) {
            ("UnsafeClaimsWithoutVerification" | "ParseInsecure", _) => {
                Some((Rule::DecodeWithoutVerify, "claims are read without verifying the signature".to_owned()))
            }
            ("WithVerify", Some("false")) => {
                Some((Rule::SignatureCheckOff, "signature verification is off".to_owned()))
            }
            ("WithValidate", Some("false")) => {
                Some((Rule::ExpiryCheckOff, "claims validation (expiry included) is off".to_owned()))
            }
            ("WithAcceptableSkew", _) => duration_seconds(file, call)
                .filter(|seconds| leeway_unbounded(*seconds))
                .map(|seconds| (Rule::UnboundedLeeway, format!("{seconds} s of clock skew are accepted"))),
            ("ParseSigned", _) if args.len() == 1 => Some((
                Rule::AlgorithmFromToken,
                "ParseSigned without the algorithms it may accept: the token's header chooses".to_owned(),
            )),
            _ => None,
        };
        if let Some((rule, title)) = finding {
            findings.push(rule.at(file, call, title));
        }
    }
}

struct Context<'a> {
    file: &'a File<'a>,
    constants: HashMap<&'a str, Node<'a>>,
    functions: HashMap<&'a str, Node<'a>>,
}

/// Package names bound to the JWT modules: the import's own name, or the default (`jwt`, `request`).
fn imports<'a>(file: &File<'a>) -> HashMap<&'a str, Package> {
    let mut packages = HashMap::new();
    for spec in descendants(file.root, &["import_spec"]) {
        let Some(path) = spec.child_by_field_name("path").and_then(|path| string_value(file, path)) else { continue };
        let Some(module) = MODULES.iter().find(|module| path.starts_with(*module)) else { continue };
        let rest = path.get(module.len()..).unwrap_or_default().trim_start_matches('/');
        // `.../jwt/v5` and `.../jwt-go` are package `jwt`; `.../request` (after an optional `/vN`) is `request`.
        let package = if rest.ends_with("request") { Package::Request } else { Package::Jwt };
        let local = match spec.child_by_field_name("name") {
            Some(name) => file.text(name),
            None if package == Package::Request => "request",
            None => "jwt",
        };
        if local != "_" {
            packages.insert(local, package);
        }
    }
    packages
}

/// `const X = "..."`, `var X = ...` and `x := ...` with one name and one value, declared once in the file.
fn constants<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    declared_once(descendants(file.root, &["const_spec", "var_spec", "short_var_declaration"]).into_iter().filter_map(
        |spec| {
            let (names, values) = match spec.kind() {
                "short_var_declaration" => {
                    fields(spec, "left", "right").map(|(left, right)| (arguments(left), right))?
                }
                _ => {
                    let mut cursor = spec.walk();
                    (spec.children_by_field_name("name", &mut cursor).collect(), spec.child_by_field_name("value")?)
                }
            };
            match (names.as_slice(), arguments(values).as_slice()) {
                ([name], [value]) => Some((file.text(*name), *value)),
                _ => None,
            }
        },
    ))
}

/// Top-level functions by name, for key functions passed by name.
fn functions<'a>(file: &File<'a>) -> HashMap<&'a str, Node<'a>> {
    descendants(file.root, &["function_declaration"])
        .into_iter()
        .filter_map(|function| Some((file.text(function.child_by_field_name("name")?), function)))
        .collect()
}

impl<'a> Context<'a> {
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

fn jwt_call(
    context: &Context<'_>,
    packages: &HashMap<&str, Package>,
    call: Node<'_>,
    callee: Node<'_>,
    args: &[Node<'_>],
    findings: &mut Vec<Finding>,
) {
    let file = context.file;
    if callee.kind() != "selector_expression" {
        return;
    }
    let Some((operand, field)) = fields(callee, "operand", "field") else { return };
    let package = packages.get(file.text(operand)).copied();
    let at = |rule: Rule, title: String| rule.at(file, call, title);
    // Where the key function sits among the arguments of each parsing entry point.
    let keyfunc_at = match (package, file.text(field)) {
        (Some(Package::Jwt), "Parse") | (None, "Parse") if package.is_some() || args.len() >= 2 => Some(1),
        (Some(Package::Jwt), "ParseWithClaims") | (None, "ParseWithClaims") => Some(2),
        (Some(Package::Request), "ParseFromRequest") => Some(2),
        (Some(Package::Request), "ParseFromRequestWithClaims") => Some(3),
        (_, "SignedString") => {
            if let Some(key) = args.first() {
                secret_findings(context, call, *key, findings);
            }
            None
        }
        (_, "ParseUnverified") => {
            findings.push(at(Rule::DecodeWithoutVerify, "jwt parses a token without verifying it".to_owned()));
            None
        }
        _ => None,
    };
    let Some(index) = keyfunc_at else { return };
    let Some(keyfunc) = args.get(index).map(|node| resolve_function(context, *node)) else { return };
    if keyfunc.kind() != "func_literal" && keyfunc.kind() != "function_declaration" {
        return; // A key function built elsewhere: not judged.
    }
    let options: Vec<Node<'_>> = args.get(index + 1..).unwrap_or_default().to_vec();
    let option_named = |name: &str| {
        options.iter().copied().find(|option| {
            option.kind() == "call_expression"
                && option
                    .child_by_field_name("function")
                    .and_then(|f| f.child_by_field_name("field"))
                    .is_some_and(|field| file.text(field) == name)
        })
    };
    let body_text = keyfunc.child_by_field_name("body").map_or("", |body| file.text(body));
    if option_named("WithValidMethods").is_none() && !body_text.contains(".Method") {
        findings.push(at(Rule::AlgorithmFromToken, "the key function never checks the token's algorithm".to_owned()));
    }
    if let Some(body) = keyfunc.child_by_field_name("body") {
        for returned in descendants(body, &["return_statement"]) {
            let first = returned.named_child(0).and_then(|list| arguments(list).first().copied());
            if let Some(key) = first {
                secret_findings(context, call, key, findings);
            }
        }
    }
    if option_named("WithoutClaimsValidation").is_some() {
        findings.push(at(Rule::ExpiryCheckOff, "jwt parsing skips claims validation (expiry included)".to_owned()));
    }
    if let Some(seconds) = option_named("WithLeeway").and_then(|option| duration_seconds(file, option)) {
        if leeway_unbounded(seconds) {
            findings.push(at(Rule::UnboundedLeeway, format!("jwt parsing allows {seconds} s of leeway")));
        }
    }
    // v5 checks `aud` and `iss` only when the call asks; older versions leave it to `VerifyAudience` and
    // `VerifyIssuer` calls, which count anywhere in the file.
    if option_named("WithAudience").is_none() && !file.text.contains("VerifyAudience") {
        findings.push(at(Rule::MissingAudience, "jwt parsing does not check the audience".to_owned()));
    }
    if option_named("WithIssuer").is_none() && !file.text.contains("VerifyIssuer") {
        findings.push(at(Rule::MissingIssuer, "jwt parsing does not check the issuer".to_owned()));
    }
}

/// A key function given by name: the file's function of that name.
fn resolve_function<'t>(context: &Context<'t>, node: Node<'t>) -> Node<'t> {
    match node.kind() {
        "identifier" => context.functions.get(context.file.text(node)).copied().unwrap_or(node),
        _ => node,
    }
}

/// `24 * time.Hour`, `time.Hour`, `90 * time.Second` → seconds; `None` for anything else.
fn duration_seconds(file: &File<'_>, option: Node<'_>) -> Option<f64> {
    let argument = option.child_by_field_name("arguments").map(arguments)?.first().copied()?;
    let text: String = file.text(argument).split_whitespace().collect();
    let (count, unit) = match text.split_once('*') {
        Some((count, unit)) => (count.parse::<f64>().ok()?, unit),
        None => (1.0, text.as_str()),
    };
    let unit = match unit {
        "time.Second" => 1.0,
        "time.Minute" => 60.0,
        "time.Hour" => 3600.0,
        _ => return None,
    };
    Some(count * unit)
}

/// `[]byte("secret")`, `[]byte(Secret)` with `const Secret = "..."`: hard-coded (and weak) secrets; a default
/// from `os.Getenv` with a fallback is not visible in one expression in Go and is not judged.
fn secret_findings(context: &Context<'_>, call: Node<'_>, key: Node<'_>, findings: &mut Vec<Finding>) {
    let file = context.file;
    let inner = match key.kind() {
        "type_conversion_expression" => key.child_by_field_name("operand").unwrap_or(key),
        _ => key,
    };
    let named = (inner.kind() == "identifier").then(|| file.text(inner));
    if let Some(literal) = string_value(file, context.through_constant(inner)) {
        report_secret(file, call, Secret::Written(&literal), named, findings);
    }
}

/// Names assigned a header parameter: `kid := token.Header["kid"].(string)`.
fn tainted_names<'a>(file: &File<'a>) -> HashMap<&'a str, String> {
    let mut tainted = HashMap::new();
    for declaration in descendants(file.root, &["short_var_declaration", "assignment_statement"]) {
        let Some((left, right)) = fields(declaration, "left", "right") else { continue };
        if let (Some(name), Some(parameter)) =
            (arguments(left).first().copied(), header_parameter_in(file, right, &HashMap::new()))
        {
            if name.kind() == "identifier" {
                tainted.insert(file.text(name), parameter);
            }
        }
    }
    tainted
}

/// The header parameter an expression carries: `x.Header["kid"]`, or a name known to hold one.
fn header_parameter_in(file: &File<'_>, node: Node<'_>, tainted: &HashMap<&str, String>) -> Option<String> {
    for part in descendants(node, &["index_expression", "identifier"]) {
        let name = match part.kind() {
            "index_expression" => part.child_by_field_name("index").and_then(|index| string_value(file, index)),
            _ => tainted.get(file.text(part)).cloned(),
        };
        if let Some(name) = name.filter(|name| HEADER_PARAMETERS.contains(&name.as_str())) {
            return Some(name);
        }
    }
    None
}

/// `http.Cookie{Name: "token", ...}` without `HttpOnly: true`, `Secure: true` or a `SameSite` other than none.
fn cookies(file: &File<'_>, findings: &mut Vec<Finding>) {
    for literal in descendants(file.root, &["composite_literal"]) {
        let is_cookie = literal.child_by_field_name("type").is_some_and(|t| file.text(t) == "http.Cookie");
        let Some(body) = literal.child_by_field_name("body").filter(|_| is_cookie) else { continue };
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for element in arguments(body).into_iter().filter(|e| e.kind() == "keyed_element") {
            let parts = arguments(element);
            if let [key, value] = parts.as_slice() {
                fields.insert(file.text(*key), file.text(*value));
            }
        }
        let tokenish =
            ["Name", "Value"].iter().any(|field| fields.get(field).is_some_and(|value| looks_like_token(value)));
        if !tokenish {
            continue;
        }
        report_cookie_flags(
            file,
            literal,
            &[
                ("HttpOnly", fields.get("HttpOnly") == Some(&"true")),
                ("Secure", fields.get("Secure") == Some(&"true")),
                ("SameSite", fields.get("SameSite").is_some_and(|mode| !mode.ends_with("SameSiteNoneMode"))),
            ],
            findings,
        );
    }
}

/// gin's `c.SetCookie(name, value, maxAge, path, domain, secure, httpOnly)`: SameSite cannot be set there.
fn gin_cookie(file: &File<'_>, call: Node<'_>, callee: Node<'_>, args: &[Node<'_>], findings: &mut Vec<Finding>) {
    let is_set_cookie = callee.child_by_field_name("field").is_some_and(|field| file.text(field) == "SetCookie");
    if !is_set_cookie || args.len() != 7 {
        return;
    }
    let tokenish = args.iter().take(2).any(|arg| looks_like_token(&literal_or_text(file, *arg)));
    if !tokenish {
        return;
    }
    let set = |index: usize| args.get(index).map(|arg| file.text(*arg)) == Some("true");
    report_cookie_flags(file, call, &[("Secure", set(5)), ("HttpOnly", set(6))], findings);
}
