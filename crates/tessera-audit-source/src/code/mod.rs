//! JWT misuse in application code, found on the syntax tree of a real parser.
//!
//! Each file is parsed with its language's tree-sitter grammar; the rules look at calls to the JWT libraries the
//! file imports (so `x.sign(...)` is a JWT signing only where `x` is `jsonwebtoken`, `jws` or `jose`), at their
//! arguments as syntax (a string literal, an options object and its properties, a constant declared in the same
//! file), and at what flows into a few sinks inside one function. Comments and strings are never read as code.
//!
//! Where heuristics remain, they are named in `docs/audit.md`: which files ship to browsers, which names look
//! like tokens, and the one-step data flow from a `kid` to a sink.

mod csharp;
mod go;
mod java;
mod javascript;
mod kotlin;
mod php;
mod python;
mod rust;
mod syntax;

use tessera_audit::crack::BUILTIN_SECRETS;
use tessera_audit::{Finding, Report, Severity};

/// The languages whose code is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// JavaScript, including JSX and minified bundles (`.js`, `.mjs`, `.cjs`, `.jsx`).
    JavaScript,
    /// TypeScript (`.ts`, `.mts`, `.cts`).
    TypeScript,
    /// TypeScript with JSX (`.tsx`).
    Tsx,
    /// Python (`.py`).
    Python,
    /// Go (`.go`).
    Go,
    /// Java (`.java`).
    Java,
    /// Rust (`.rs`).
    Rust,
    /// PHP (`.php`).
    Php,
    /// C# (`.cs`).
    CSharp,
    /// Kotlin (`.kt`, `.kts`).
    Kotlin,
}

impl Language {
    /// Every language analysed.
    pub const ALL: [Self; 10] = [
        Self::JavaScript,
        Self::TypeScript,
        Self::Tsx,
        Self::Python,
        Self::Go,
        Self::Java,
        Self::Rust,
        Self::Php,
        Self::CSharp,
        Self::Kotlin,
    ];

    /// The language a file name says, if it is one analysed.
    #[must_use]
    pub fn from_file_name(name: &str) -> Option<Self> {
        let extension = name.rsplit_once('.')?.1;
        Some(match extension {
            "js" | "mjs" | "cjs" | "jsx" => Self::JavaScript,
            "ts" | "mts" | "cts" if !name.ends_with(".d.ts") => Self::TypeScript,
            "tsx" => Self::Tsx,
            "py" => Self::Python,
            "go" => Self::Go,
            "java" => Self::Java,
            "rs" => Self::Rust,
            "php" => Self::Php,
            "cs" => Self::CSharp,
            "kt" | "kts" => Self::Kotlin,
            _ => return None,
        })
    }

    fn grammar(self) -> tree_sitter::Language {
        match self {
            Self::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Self::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Self::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Self::Python => tree_sitter_python::LANGUAGE.into(),
            Self::Go => tree_sitter_go::LANGUAGE.into(),
            Self::Java => tree_sitter_java::LANGUAGE.into(),
            Self::Rust => tree_sitter_rust::LANGUAGE.into(),
            Self::Php => tree_sitter_php::LANGUAGE_PHP.into(),
            Self::CSharp => tree_sitter_c_sharp::LANGUAGE.into(),
            Self::Kotlin => tree_sitter_kotlin_ng::LANGUAGE.into(),
        }
    }
}

/// Why a file could not be analysed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The grammar could not be loaded (a build problem, not the file's).
    #[error("the {0:?} parser could not be loaded")]
    Grammar(Language),
    /// The parser gave up (it stops on nothing but cancellation, so this is not expected).
    #[error("the parser gave up")]
    Parse,
    /// Parsing took longer than its budget and was stopped.
    #[error("parsing took longer than {0:?} and was stopped")]
    TooSlow(std::time::Duration),
}

/// Analyses one file: adds its findings to `report`, each placed at `path` and its line. A file with syntax
/// errors is still analysed (the parser recovers around them); how much of it did not parse is returned, so the
/// caller can say so.
///
/// # Errors
/// [`CodeError`] when the file could not be parsed at all.
pub fn audit_code(
    path: &str,
    language: Language,
    text: &str,
    options: &Options,
    report: &mut Report,
) -> Result<Outcome, CodeError> {
    let mut parser = tree_sitter::Parser::new();
    parser.set_language(&language.grammar()).map_err(|_| CodeError::Grammar(language))?;
    // Some inputs send a grammar's error recovery into a search that does not end in any useful time (a random
    // 400-character string kept one busy for over 18 minutes): parsing stops at a budget that grows with size.
    let budget = options.parse_budget.unwrap_or_else(|| parse_budget(text.len()));
    let deadline = std::time::Instant::now() + budget;
    let timed_out = std::cell::Cell::new(false);
    let mut past_deadline = |_: &tree_sitter::ParseState| {
        let late = std::time::Instant::now() >= deadline;
        timed_out.set(late);
        late
    };
    let bytes = text.as_bytes();
    let tree = parser.parse_with_options(
        &mut |offset, _| bytes.get(offset..).unwrap_or_default(),
        None,
        Some(tree_sitter::ParseOptions::new().progress_callback(&mut past_deadline)),
    );
    let tree = match tree {
        Some(tree) => tree,
        None if timed_out.get() => return Err(CodeError::TooSlow(budget)),
        None => return Err(CodeError::Parse),
    };
    let file = syntax::File { path, text, root: tree.root_node(), wordlist: &options.wordlist };
    let tests = options.tests;
    let mut findings = Vec::new();
    match language {
        Language::JavaScript | Language::TypeScript | Language::Tsx => javascript::audit(&file, &mut findings),
        Language::Python => python::audit(&file, &mut findings),
        Language::Go => go::audit(&file, &mut findings),
        Language::Java => java::audit(&file, &mut findings),
        Language::Rust => rust::audit(&file, &mut findings),
        Language::Php => php::audit(&file, &mut findings),
        Language::CSharp => csharp::audit(&file, &mut findings),
        Language::Kotlin => kotlin::audit(&file, &mut findings),
    }
    if tests == TestCode::Skip && language == Language::Rust {
        let test_lines = rust::test_module_lines(&file);
        findings.retain(|finding| {
            let line = finding.location.as_ref().map_or(0, |at| at.line);
            !test_lines.iter().any(|lines| lines.contains(&line))
        });
    }
    // One finding per rule and line: `readFileSync(path.join(dir, header.kid))` is one flaw, not two.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|finding| seen.insert((finding.id, finding.location.as_ref().map(|at| at.line))));
    report.findings.extend(findings);
    Ok(Outcome { has_syntax_errors: tree.root_node().has_error() })
}

/// How files are analysed.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether test code is analysed.
    pub tests: TestCode,
    /// Secrets known to be weak, beyond the built-in list.
    pub wordlist: Wordlist,
    /// How long parsing one file may take; `None` for the default, 5 s plus 2 s per MiB.
    pub parse_budget: Option<std::time::Duration>,
}

impl Default for Options {
    /// Test code left out; the built-in list of weak secrets only; the default parse budget.
    fn default() -> Self {
        Self { tests: TestCode::Skip, wordlist: Wordlist::default(), parse_budget: None }
    }
}

/// The default parse budget for a file of `len` bytes: 5 s, and 2 s more per MiB (a 26 MB bundle parses in
/// about 20 s here; ordinary files in milliseconds).
fn parse_budget(len: usize) -> std::time::Duration {
    let mib = u64::try_from(len / (1024 * 1024)).unwrap_or(u64::MAX);
    std::time::Duration::from_secs(5_u64.saturating_add(mib.saturating_mul(2)))
}

/// Secrets a hard-coded one is checked against, beyond the built-in list: a wordlist in the `jwt.secrets.list`
/// format (one per line, CRLF accepted), as `tessera audit token --wordlist` reads it.
#[derive(Debug, Clone, Default)]
pub struct Wordlist(std::collections::HashSet<Vec<u8>>);

impl Wordlist {
    /// The secrets of a wordlist file's contents.
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Self {
        Self(tessera_audit::crack::Candidates::parse_wordlist(bytes).into_iter().collect())
    }

    /// How many secrets it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, secret: &str) -> bool {
        self.0.contains(secret.as_bytes())
    }
}

/// Whether test code is analysed. Tests sign with throwaway secrets and switch checks off on purpose, so by
/// default they are not: test files are left to the caller ([`is_test_file`]), and Rust's `#[cfg(test)]`
/// modules inside a file are skipped here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCode {
    /// Leave test code out.
    Skip,
    /// Analyse it like the rest.
    Include,
}

/// Directory names that hold tests, fixtures and benchmarks.
const TEST_DIRECTORIES: [&str; 10] =
    ["test", "tests", "__tests__", "spec", "specs", "testdata", "benches", "e2e", "__mocks__", "fixtures"];

/// Whether `path` (relative, `/`-separated) is a test file by its directory or its name: `tests/...`,
/// `*.test.js`, `*.spec.ts`, `*_test.go`, `test_*.py`, `*_test.py`, `*Test.java`, `*Tests.cs`, ...
#[must_use]
pub fn is_test_file(path: &str) -> bool {
    let mut parts = path.rsplit('/');
    let name = parts.next().unwrap_or(path);
    if parts.any(|dir| TEST_DIRECTORIES.contains(&dir)) {
        return true;
    }
    let stem = name.split('.').next().unwrap_or(name);
    let middle = name.split('.').nth(1);
    matches!(middle, Some("test" | "spec"))
        || stem.ends_with("_test")
        || (stem.starts_with("test_") && name.ends_with(".py"))
        || ((stem.ends_with("Test") || stem.ends_with("Tests")) && (name.ends_with(".java") || name.ends_with(".cs")))
}

/// What analysing one file found out about the file itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Parts of the file did not parse (the rest was analysed).
    pub has_syntax_errors: bool,
}

/// The HMAC key length RFC 7518 §3.2 requires for HS256: a key shorter than the hash is a finding.
const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Clock leeway beyond this many seconds keeps expired tokens alive for longer than any clock skew explains.
const MAX_LEEWAY_SECS: f64 = 300.0;

/// The findings every language's rules raise, with their weakness, fix and risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    ClientSideSigning,
    AlgorithmFromToken,
    AlgNoneAllowed,
    MixedAlgorithmFamilies,
    DecodeWithoutVerify,
    SignatureCheckOff,
    ExpiryCheckOff,
    UnboundedLeeway,
    HardCodedSecret,
    WeakSecret,
    FallbackSecret,
    KidInjection,
    HeaderUrlFetched,
    MissingAudience,
    MissingIssuer,
    TokenInWebStorage,
    CookieWithoutFlags,
    RefreshNotRotated,
    RefreshReuseUndetected,
    HeaderKeyTrusted,
}

impl Rule {
    /// Id, severity, weakness and fix (likelihood and impact come from the id's risk profile).
    fn describe(self) -> (&'static str, Severity, &'static [&'static str], &'static str) {
        match self {
            Self::ClientSideSigning => (
                "CODE-CLIENT-SIDE-SIGNING",
                Severity::Critical,
                &["CWE-602", "CWE-321"],
                "Never sign tokens in code that ships to browsers or apps: whoever has the code has the key and can mint \
                 any token. Sign on the server (Tessera issues the tokens) and give the client only tokens.",
            ),
            Self::AlgorithmFromToken => (
                "CODE-ALGORITHM-FROM-TOKEN",
                Severity::High,
                &["CWE-347", "CWE-757"],
                "Pass the exact list of accepted algorithms (`algorithms: ['RS256']`): without it the token's own `alg` \
                 header chooses how it is checked (alg none, RS/HS key confusion).",
            ),
            Self::AlgNoneAllowed => (
                "CODE-ALG-NONE-ALLOWED",
                Severity::Critical,
                &["CWE-347"],
                "Remove `none` from the accepted algorithms: an unsigned token must never verify.",
            ),
            Self::MixedAlgorithmFamilies => (
                "CODE-MIXED-ALGORITHM-FAMILIES",
                Severity::High,
                &["CWE-347"],
                "Accept one algorithm family per key: HMAC and public-key algorithms together let a public key be used \
                 as an HMAC secret (key confusion).",
            ),
            Self::DecodeWithoutVerify => (
                "CODE-DECODE-WITHOUT-VERIFY",
                Severity::Medium,
                &["CWE-345"],
                "On the server, read claims only from a verified token (`verify`, not `decode`): decoded claims are \
                 whatever the sender wrote.",
            ),
            Self::SignatureCheckOff => (
                "CODE-SIGNATURE-CHECK-OFF",
                Severity::Critical,
                &["CWE-347"],
                "Do not switch signature verification off: the claims of an unverified token are the sender's.",
            ),
            Self::ExpiryCheckOff => (
                "CODE-EXPIRY-CHECK-OFF",
                Severity::High,
                &["CWE-613"],
                "Keep the expiry check on: a stolen token must stop working when it expires.",
            ),
            Self::UnboundedLeeway => (
                "CODE-UNBOUNDED-LEEWAY",
                Severity::Medium,
                &["CWE-613"],
                "Keep clock leeway to seconds (at most a few minutes): a large leeway extends every token's life.",
            ),
            Self::HardCodedSecret => (
                "CODE-HARD-CODED-SECRET",
                Severity::High,
                &["CWE-798"],
                "Load signing keys and secrets from a secret store or the environment at start, never from source \
                 code, and rotate the one that was committed.",
            ),
            Self::WeakSecret => (
                "CODE-WEAK-SECRET",
                Severity::Critical,
                &["CWE-521", "CWE-326"],
                "Use a random HMAC secret of at least 32 bytes (or an asymmetric key): a short or well-known secret is \
                 cracked offline from any one token.",
            ),
            Self::FallbackSecret => (
                "CODE-FALLBACK-SECRET",
                Severity::High,
                &["CWE-1188", "CWE-798"],
                "Fail at start when the secret is not configured instead of falling back to a default: the default is \
                 public, and a deployment that forgot the variable signs with it.",
            ),
            Self::KidInjection => (
                "CODE-KID-INJECTION",
                Severity::High,
                &["CWE-22", "CWE-89", "CWE-78", "CWE-918"],
                "Look keys up by exact `kid` in a fixed key set; never build a file path, query, command or URL from a \
                 token header.",
            ),
            Self::HeaderUrlFetched => (
                "CODE-HEADER-URL-FETCHED",
                Severity::High,
                &["CWE-918", "CWE-345"],
                "Never fetch keys from a URL the token names (`jku`, `x5u`): configure the issuer's key set URL instead.",
            ),
            Self::MissingAudience => (
                "CODE-MISSING-AUDIENCE-CHECK",
                Severity::Medium,
                &["CWE-345"],
                "Require the audience this service is (`audience` option): otherwise a token issued for another \
                 service is accepted here.",
            ),
            Self::MissingIssuer => (
                "CODE-MISSING-ISSUER-CHECK",
                Severity::Medium,
                &["CWE-345"],
                "Require the expected issuer (`issuer` option): otherwise a token from another issuer sharing the key \
                 is accepted.",
            ),
            Self::HeaderKeyTrusted => (
                "CODE-HEADER-KEY-TRUSTED",
                Severity::Critical,
                &["CWE-347", "CWE-345"],
                "Never build the verification key from the token's own header (`jwk`): the attacker signs with their key \
                 and puts it there. Verify with the issuer's configured keys only.",
            ),
            Self::RefreshNotRotated => (
                "CODE-REFRESH-NOT-ROTATED",
                Severity::Medium,
                &["CWE-613"],
                "Issue a new refresh token with every refresh and invalidate the one presented: a refresh token that \
                 stays valid keeps a stolen session alive for as long as it lives.",
            ),
            Self::RefreshReuseUndetected => (
                "CODE-REFRESH-REUSE-UNDETECTED",
                Severity::Medium,
                &["CWE-613", "CWE-294"],
                "Record each refresh token as used when it is exchanged, and treat a second use as theft: revoke the \
                 whole session (its token family), as Tessera's refresh does.",
            ),
            Self::TokenInWebStorage => (
                "CODE-TOKEN-IN-WEB-STORAGE",
                Severity::Medium,
                &["CWE-922"],
                "Keep tokens out of localStorage and sessionStorage, which any injected script reads: hold the access \
                 token in memory and the refresh token in an HttpOnly, Secure, SameSite cookie.",
            ),
            Self::CookieWithoutFlags => (
                "CODE-TOKEN-COOKIE-FLAGS",
                Severity::Medium,
                &["CWE-1004", "CWE-614", "CWE-1275"],
                "Set token cookies HttpOnly, Secure and SameSite (Strict or Lax) so scripts cannot read them, they never \
                 travel in clear, and other sites cannot send them.",
            ),
        }
    }

    /// A finding of this rule at the first line of `node` (a whole function): its first line is the evidence.
    pub(crate) fn at_line(
        self,
        file: &syntax::File<'_>,
        node: tree_sitter::Node<'_>,
        title: impl Into<String>,
    ) -> Finding {
        let (id, severity, cwe, fix) = self.describe();
        let first_line = file.text(node).lines().next().unwrap_or_default().trim().to_owned();
        Finding::new(id, severity, title, first_line, fix).with_cwe(cwe).at(file.path, syntax::File::line(node))
    }

    /// A finding of this rule at `node` of `file`: `title` says what, the node's source is the evidence.
    pub(crate) fn at(self, file: &syntax::File<'_>, node: tree_sitter::Node<'_>, title: impl Into<String>) -> Finding {
        let (id, severity, cwe, fix) = self.describe();
        Finding::new(id, severity, title, file.excerpt(node), fix).with_cwe(cwe).at(file.path, syntax::File::line(node))
    }
}

/// A secret found in the code, by how it got there.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Secret<'s> {
    /// Written as the key itself, or in a constant the key is.
    Written(&'s str),
    /// The default used when an environment variable is not set.
    Default(&'s str),
}

/// Reports a secret found at `node`: hard-coded or a fallback default — through the constant `through` when one
/// was followed — and weak when it is short or well known. Every language's rules report secrets here.
pub(crate) fn report_secret(
    file: &syntax::File<'_>,
    node: tree_sitter::Node<'_>,
    secret: Secret<'_>,
    through: Option<&str>,
    findings: &mut Vec<Finding>,
) {
    let via = through.map(|name| format!(" (through `{name}`)")).unwrap_or_default();
    let (rule, value, what, weak) = match secret {
        Secret::Written(value) => {
            (Rule::HardCodedSecret, value, "a JWT secret is written in the code", "a weak JWT secret")
        }
        Secret::Default(value) => {
            (Rule::FallbackSecret, value, "the JWT secret falls back to a default", "a weak default JWT secret")
        }
    };
    // The evidence is the call, which may hold the secret itself: never the whole of it in a report.
    let hide = |mut finding: Finding| {
        if !value.is_empty() {
            let shown: String = value.chars().take(3).collect();
            finding.evidence = finding.evidence.replace(value, &format!("{shown}…"));
        }
        finding
    };
    findings.push(hide(rule.at(file, node, format!("{what}{via}: {}", masked(value)))));
    if let Some(weakness) = secret_weakness(value, file.wordlist) {
        findings.push(hide(Rule::WeakSecret.at(file, node, format!("{weak}{via}: {weakness}"))));
    }
}

/// Reports a token cookie set at `node` without some of its protections: `flags` pairs each flag's name with
/// whether the code sets it.
pub(crate) fn report_cookie_flags(
    file: &syntax::File<'_>,
    node: tree_sitter::Node<'_>,
    flags: &[(&str, bool)],
    findings: &mut Vec<Finding>,
) {
    let missing: Vec<&str> = flags.iter().filter_map(|(name, set)| (!set).then_some(*name)).collect();
    if !missing.is_empty() {
        findings.push(Rule::CookieWithoutFlags.at(
            file,
            node,
            format!("a token cookie is set without {}", missing.join(", ")),
        ));
    }
}

/// Words a refresh handler uses when it invalidates or tracks the token it was given.
const INVALIDATION_WORDS: [&str; 12] = [
    "revoke",
    "invalidate",
    "delete",
    "remove",
    "destroy",
    "blacklist",
    "denylist",
    "blocklist",
    "rotate",
    "used",
    "reuse",
    "family",
];

/// The refresh-rotation rule, for a function that handles refresh (named so, or routed at a path saying so):
/// signing one token only (the access token) means the refresh token never rotates; signing a new refresh token
/// too without ever invalidating or tracking the old one means reuse goes unnoticed. `signs` counts the JWT
/// signing calls in the function, `verifies` says whether it verifies or decodes a token at all.
pub(crate) fn refresh_rotation(
    file: &syntax::File<'_>,
    function: tree_sitter::Node<'_>,
    label: &str,
    signs: usize,
    verifies: bool,
    findings: &mut Vec<Finding>,
) {
    if !label.to_ascii_lowercase().contains("refresh") || !verifies || signs == 0 {
        return;
    }
    let body = file.text(function).to_ascii_lowercase();
    let invalidates = INVALIDATION_WORDS.iter().any(|word| body.contains(word));
    let node = function;
    if signs == 1 && !invalidates {
        findings.push(Rule::RefreshNotRotated.at_line(
            file,
            node,
            format!("`{label}` refreshes without issuing a new refresh token"),
        ));
    } else if signs >= 2 && !invalidates {
        findings.push(Rule::RefreshReuseUndetected.at_line(
            file,
            node,
            format!("`{label}` issues a new refresh token but never invalidates the one it was given"),
        ));
    }
}

/// What is wrong with a secret written in the code, beyond being written there.
pub(crate) fn secret_weakness(secret: &str, wordlist: &Wordlist) -> Option<String> {
    if BUILTIN_SECRETS.contains(&secret) {
        Some("it is on the list of well-known JWT secrets".to_owned())
    } else if wordlist.contains(secret) {
        Some("it is in the wordlist of known secrets".to_owned())
    } else if secret.len() < MIN_HMAC_SECRET_BYTES {
        Some(format!("{} bytes, under the {MIN_HMAC_SECRET_BYTES} HS256 needs", secret.len()))
    } else {
        None
    }
}

/// A secret as evidence: its length and first characters, never the whole of it.
pub(crate) fn masked(secret: &str) -> String {
    let shown: String = secret.chars().take(3).collect();
    format!("\"{shown}…\" ({} bytes)", secret.len())
}

/// Whether a name looks like it holds a token or a session (storage keys, cookie names, variables).
pub(crate) fn looks_like_token(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["token", "jwt", "bearer", "auth", "session", "credential"].iter().any(|word| lower.contains(word))
}

/// Whether a leeway in seconds is beyond what clock skew explains.
pub(crate) fn leeway_unbounded(seconds: f64) -> bool {
    seconds > MAX_LEEWAY_SECS
}

/// What accepting these algorithm names allows: `none`, and HMAC mixed with public-key algorithms.
pub(crate) fn algorithm_list_problems(names: &[String]) -> Vec<Rule> {
    let mut problems = Vec::new();
    if names.iter().any(|name| name.eq_ignore_ascii_case("none")) {
        problems.push(Rule::AlgNoneAllowed);
    }
    let hmac = names.iter().any(|name| name.to_ascii_uppercase().starts_with("HS"));
    let public_key = names.iter().any(|name| {
        let upper = name.to_ascii_uppercase();
        ["RS", "PS", "ES", "ED"].iter().any(|family| upper.starts_with(family))
    });
    if hmac && public_key {
        problems.push(Rule::MixedAlgorithmFamilies);
    }
    problems
}

/// Where a value from a token header must never flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    FilePath,
    Query,
    Command,
    Url,
    /// Key material built from a value: whoever controls the value controls the key.
    Key,
}

impl Sink {
    /// The sink a called function is, by its name as written (`fs.readFileSync`, `cursor.execute`, `requests.get`).
    pub(crate) fn of_callee(callee: &str) -> Option<Self> {
        // Java constructors: `new File(...)`, `new java.net.URL(...)`.
        if let Some(constructed) = callee.strip_prefix("new ") {
            return match constructed.rsplit('.').next().unwrap_or(constructed) {
                "File" | "FileInputStream" | "FileReader" | "RandomAccessFile" => Some(Self::FilePath),
                "URL" | "URI" | "Uri" => Some(Self::Url),
                "ProcessBuilder" => Some(Self::Command),
                "SqlCommand" | "NpgsqlCommand" | "MySqlCommand" => Some(Self::Query),
                "FileStream" | "StreamReader" => Some(Self::FilePath),
                _ => None,
            };
        }
        let last = callee.rsplit('.').next().unwrap_or(callee);
        let first = callee.split('.').next().unwrap_or(callee);
        let bare = callee == last;
        Some(match last {
            "readFile" | "readFileSync" | "createReadStream" | "existsSync" | "ReadFile" => Self::FilePath,
            "join" | "resolve" if first == "path" || callee.starts_with("os.path") => Self::FilePath,
            "Join" if first == "filepath" || first == "path" => Self::FilePath,
            "open" if bare || first == "io" || first == "fs" => Self::FilePath,
            "Open" | "OpenFile" if first == "os" => Self::FilePath,
            "query" | "execute" | "executemany" | "raw" => Self::Query,
            "Query" | "QueryRow" | "QueryContext" | "QueryRowContext" | "Exec" | "ExecContext" | "Raw" => Self::Query,
            "Command" | "CommandContext" if first == "exec" => Self::Command,
            "file_get_contents" | "fopen" | "readfile" | "file" if bare => Self::FilePath,
            "shell_exec" | "system" | "passthru" | "popen" | "proc_open" if bare => Self::Command,
            "mysqli_query" | "pg_query" => Self::Query,
            "curl_init" => Self::Url,
            "ReadAllText" | "ReadAllBytes" | "ReadAllLines" | "OpenRead" if first == "File" => Self::FilePath,
            "Combine" if first == "Path" => Self::FilePath,
            "ExecuteReader" | "ExecuteNonQuery" | "ExecuteScalar" | "FromSqlRaw" | "ExecuteSqlRaw" => Self::Query,
            "Start" if first == "Process" => Self::Command,
            "GetAsync" | "GetStringAsync" | "GetByteArrayAsync" | "DownloadString" => Self::Url,
            "importJWK" | "jwkToPem" | "from_jwk" | "PyJWK" | "createPublicKey" => Self::Key,
            "construct" if first == "jwk" => Self::Key,
            "ParseKey" | "FromRaw" if first == "jwk" => Self::Key,
            "parse" if first == "JWK" || first == "RSAKey" || first == "ECKey" => Self::Key,
            "read" | "read_to_string" if callee.contains("fs.") => Self::FilePath,
            "open" if callee.ends_with("File.open") => Self::FilePath,
            "query_as" | "query_scalar" => Self::Query,
            "new" if callee.ends_with("Command.new") => Self::Command,
            "readAllBytes" | "readString" | "readAllLines" | "newInputStream" if first == "Files" => Self::FilePath,
            "get" if first == "Paths" => Self::FilePath,
            "of" if first == "Path" => Self::FilePath,
            "executeQuery" | "executeUpdate" | "prepareStatement" | "createQuery" | "createNativeQuery"
            | "queryForObject" | "queryForList" => Self::Query,
            "Get" | "Post" | "Head" if first == "http" => Self::Url,
            "Fetch" if first == "jwk" => Self::Url,
            "exec" | "execSync" | "spawn" | "spawnSync" | "execFile"
                if bare || first == "child_process" || first == "Runtime" =>
            {
                Self::Command
            }
            "system" | "popen" if first == "os" => Self::Command,
            "run" | "call" | "check_output" | "check_call" | "Popen" if first == "subprocess" => Self::Command,
            "fetch" | "urlopen" | "createRemoteJWKSet" => Self::Url,
            "get" | "post" | "request"
                if ["axios", "got", "requests", "httpx", "http", "https", "reqwest"].contains(&first) =>
            {
                Self::Url
            }
            "axios" | "got" if bare => Self::Url,
            _ => return None,
        })
    }

    fn weakness(self) -> &'static str {
        match self {
            Self::FilePath => "a file path (CWE-22)",
            Self::Query => "a database query (CWE-89)",
            Self::Command => "a shell command (CWE-78)",
            Self::Url => "a URL that is fetched (CWE-918)",
            Self::Key => "the key that verifies it (CWE-347)",
        }
    }
}

/// The header parameters that must never reach a sink: the key id, the key URLs, and the embedded key.
pub(crate) const HEADER_PARAMETERS: [&str; 4] = ["kid", "jku", "x5u", "jwk"];

/// Which header parameter reached a sink: `kid`, a key URL, or the embedded key.
pub(crate) fn header_flow_finding(
    file: &syntax::File<'_>,
    call: tree_sitter::Node<'_>,
    sink: Sink,
    parameter: &str,
) -> Finding {
    let (rule, what) = match parameter {
        "kid" => (Rule::KidInjection, "the token's `kid`"),
        "jwk" => (Rule::HeaderKeyTrusted, "the key embedded in the token"),
        _ => (Rule::HeaderUrlFetched, "a key URL from the token header"),
    };
    rule.at(file, call, format!("{what} ({parameter}) flows into {}", sink.weakness()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_files_are_known_by_directory_and_name() {
        for test in [
            "tests/auth.rs",
            "src/__tests__/login.js",
            "web/login.test.ts",
            "web/login.spec.tsx",
            "pkg/auth_test.go",
            "app/test_tokens.py",
            "app/tokens_test.py",
            "src/test/java/AuthTest.java",
            "Auth/JwtTests.cs",
            "benches/jwt.rs",
        ] {
            assert!(is_test_file(test), "{test}");
        }
        for code in ["src/auth.rs", "web/contest.js", "app/testing_utils.py", "src/Attest.java", "server/latest.ts"] {
            assert!(!is_test_file(code), "{code}");
        }
    }
}
