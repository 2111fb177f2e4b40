//! The code rules over the corpus in `tests/corpus/code`: for every rule and language, a vulnerable program whose
//! flaws are each found at their line, and the same program fixed (with the flaw left in comments and strings),
//! where nothing is found.
#![allow(clippy::unwrap_used, clippy::panic)] // a panic here is a failed test

use std::path::Path;

use tessera_audit::Report;
use tessera_audit_source::code::{audit_code, Language, Options, TestCode};

/// Every file under `dir`, audited, as (path relative to `dir`, finding id, line), sorted.
fn audit(dir: &Path) -> Vec<(String, &'static str, usize)> {
    let mut report = Report::new("source", dir.display().to_string());
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let language = Language::from_file_name(&relative).unwrap_or_else(|| panic!("{relative}: no language"));
            let outcome = audit_code(
                &relative,
                language,
                &std::fs::read_to_string(&path).unwrap(),
                &Options::default(),
                &mut report,
            )
            .unwrap();
            assert!(!outcome.has_syntax_errors, "{relative} should parse cleanly");
        }
    }
    let mut found: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let at = f.location.clone().unwrap();
            (at.path, f.id, at.line)
        })
        .collect();
    found.sort();
    found
}

type Expected<'a> = &'a [(&'a str, &'a str, usize)];

#[test]
fn every_rule_finds_its_flaw_in_the_vulnerable_program_and_nothing_in_the_fixed_one() {
    let expected: [(&str, Expected<'_>); 23] = [
        (
            "js-client-side-signing",
            &[
                ("src/components/Login.jsx", "CODE-CLIENT-SIDE-SIGNING", 8),
                ("src/components/Login.jsx", "CODE-HARD-CODED-SECRET", 8),
            ],
        ),
        (
            "js-verify-options",
            &[
                ("server/auth.js", "CODE-ALGORITHM-FROM-TOKEN", 5),
                ("server/auth.js", "CODE-MISSING-AUDIENCE-CHECK", 5),
                ("server/auth.js", "CODE-MISSING-ISSUER-CHECK", 5),
                ("server/auth.js", "CODE-ALG-NONE-ALLOWED", 9),
                ("server/auth.js", "CODE-MIXED-ALGORITHM-FAMILIES", 9),
                ("server/auth.js", "CODE-EXPIRY-CHECK-OFF", 9),
                ("server/auth.js", "CODE-UNBOUNDED-LEEWAY", 9),
            ],
        ),
        (
            "js-refresh-rotation",
            &[
                ("server/refresh.js", "CODE-REFRESH-NOT-ROTATED", 8),
                ("server/refresh.js", "CODE-REFRESH-REUSE-UNDETECTED", 13),
            ],
        ),
        ("py-refresh-rotation", &[("app/refresh.py", "CODE-REFRESH-NOT-ROTATED", 11)]),
        (
            "js-secrets",
            &[
                ("server/tokens.js", "CODE-FALLBACK-SECRET", 6),
                ("server/tokens.js", "CODE-WEAK-SECRET", 6),
                ("server/tokens.js", "CODE-HARD-CODED-SECRET", 10),
            ],
        ),
        ("js-decode-without-verify", &[("server/admin.js", "CODE-DECODE-WITHOUT-VERIFY", 4)]),
        (
            "js-header-injection",
            &[
                ("server/keys.js", "CODE-KID-INJECTION", 6),
                ("server/keys.js", "CODE-KID-INJECTION", 8),
                ("server/keys.js", "CODE-HEADER-URL-FETCHED", 9),
                ("server/keys.js", "CODE-HEADER-KEY-TRUSTED", 10),
            ],
        ),
        (
            "js-storage-and-cookies",
            &[
                ("web/session.js", "CODE-TOKEN-IN-WEB-STORAGE", 2),
                ("web/session.js", "CODE-TOKEN-COOKIE-FLAGS", 3),
                ("server/login.js", "CODE-TOKEN-COOKIE-FLAGS", 2),
            ],
        ),
        (
            "ts-express-jwt",
            &[
                ("src/app.ts", "CODE-ALGORITHM-FROM-TOKEN", 5),
                ("src/app.ts", "CODE-HARD-CODED-SECRET", 5),
                ("src/app.ts", "CODE-WEAK-SECRET", 5),
            ],
        ),
        (
            "js-minified-bundle",
            &[
                ("dist/app.min.js", "CODE-CLIENT-SIDE-SIGNING", 1),
                ("dist/app.min.js", "CODE-HARD-CODED-SECRET", 1),
                ("dist/app.min.js", "CODE-WEAK-SECRET", 1),
            ],
        ),
        (
            "py-decode-options",
            &[
                ("app/auth.py", "CODE-ALGORITHM-FROM-TOKEN", 5),
                ("app/auth.py", "CODE-MISSING-AUDIENCE-CHECK", 5),
                ("app/auth.py", "CODE-MISSING-ISSUER-CHECK", 5),
                ("app/auth.py", "CODE-SIGNATURE-CHECK-OFF", 9),
                ("app/auth.py", "CODE-ALG-NONE-ALLOWED", 13),
                ("app/auth.py", "CODE-MIXED-ALGORITHM-FAMILIES", 13),
                ("app/auth.py", "CODE-EXPIRY-CHECK-OFF", 13),
                ("app/auth.py", "CODE-UNBOUNDED-LEEWAY", 13),
            ],
        ),
        (
            "py-secrets",
            &[
                ("app/tokens.py", "CODE-FALLBACK-SECRET", 9),
                ("app/tokens.py", "CODE-WEAK-SECRET", 9),
                ("app/tokens.py", "CODE-HARD-CODED-SECRET", 13),
            ],
        ),
        (
            "py-header-injection",
            &[
                ("app/keys.py", "CODE-KID-INJECTION", 8),
                ("app/keys.py", "CODE-KID-INJECTION", 10),
                ("app/keys.py", "CODE-HEADER-URL-FETCHED", 11),
                ("app/keys.py", "CODE-HEADER-KEY-TRUSTED", 12),
            ],
        ),
        (
            "csharp-token-validation",
            &[
                ("Auth/JwtSetup.cs", "CODE-MISSING-ISSUER-CHECK", 14),
                ("Auth/JwtSetup.cs", "CODE-MISSING-AUDIENCE-CHECK", 15),
                ("Auth/JwtSetup.cs", "CODE-EXPIRY-CHECK-OFF", 16),
                ("Auth/JwtSetup.cs", "CODE-UNBOUNDED-LEEWAY", 17),
                ("Auth/JwtSetup.cs", "CODE-HARD-CODED-SECRET", 18),
                ("Auth/JwtSetup.cs", "CODE-WEAK-SECRET", 18),
                ("Auth/JwtSetup.cs", "CODE-KID-INJECTION", 20),
                ("Auth/JwtSetup.cs", "CODE-DECODE-WITHOUT-VERIFY", 23),
                ("Auth/JwtSetup.cs", "CODE-TOKEN-COOKIE-FLAGS", 26),
                ("Auth/JwtSetup.cs", "CODE-FALLBACK-SECRET", 29),
                ("Auth/JwtSetup.cs", "CODE-WEAK-SECRET", 29),
            ],
        ),
        (
            "go-jose-and-jwx",
            &[
                ("keys/verify.go", "CODE-ALGORITHM-FROM-TOKEN", 11),
                ("keys/verify.go", "CODE-DECODE-WITHOUT-VERIFY", 16),
                ("keys/verify.go", "CODE-SIGNATURE-CHECK-OFF", 21),
                ("keys/verify.go", "CODE-EXPIRY-CHECK-OFF", 21),
                ("keys/verify.go", "CODE-UNBOUNDED-LEEWAY", 21),
            ],
        ),
        (
            "go-parse-and-secrets",
            &[
                ("auth/auth.go", "CODE-ALGORITHM-FROM-TOKEN", 18),
                ("auth/auth.go", "CODE-HARD-CODED-SECRET", 18),
                ("auth/auth.go", "CODE-WEAK-SECRET", 18),
                ("auth/auth.go", "CODE-UNBOUNDED-LEEWAY", 18),
                ("auth/auth.go", "CODE-MISSING-AUDIENCE-CHECK", 18),
                ("auth/auth.go", "CODE-MISSING-ISSUER-CHECK", 18),
                ("auth/auth.go", "CODE-HARD-CODED-SECRET", 23),
                ("auth/auth.go", "CODE-DECODE-WITHOUT-VERIFY", 27),
                ("auth/auth.go", "CODE-EXPIRY-CHECK-OFF", 32),
            ],
        ),
        (
            "go-header-injection-and-cookies",
            &[
                ("middleware/auth.go", "CODE-MISSING-AUDIENCE-CHECK", 14),
                ("middleware/auth.go", "CODE-MISSING-ISSUER-CHECK", 14),
                ("middleware/auth.go", "CODE-KID-INJECTION", 19),
                ("middleware/auth.go", "CODE-KID-INJECTION", 21),
                ("middleware/auth.go", "CODE-HEADER-URL-FETCHED", 24),
                ("middleware/auth.go", "CODE-TOKEN-COOKIE-FLAGS", 31),
                ("middleware/auth.go", "CODE-TOKEN-COOKIE-FLAGS", 35),
            ],
        ),
        (
            "java-jjwt",
            &[
                ("src/main/java/com/example/auth/TokenService.java", "CODE-HARD-CODED-SECRET", 12),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-WEAK-SECRET", 12),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-HARD-CODED-SECRET", 16),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-WEAK-SECRET", 16),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-MISSING-AUDIENCE-CHECK", 16),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-MISSING-ISSUER-CHECK", 16),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-UNBOUNDED-LEEWAY", 16),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-HARD-CODED-SECRET", 20),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-ALG-NONE-ALLOWED", 20),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-MISSING-AUDIENCE-CHECK", 20),
                ("src/main/java/com/example/auth/TokenService.java", "CODE-MISSING-ISSUER-CHECK", 20),
            ],
        ),
        (
            "java-jwt-sinks-and-cookies",
            &[
                ("src/main/java/com/example/auth/Verifier.java", "CODE-HARD-CODED-SECRET", 15),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-WEAK-SECRET", 15),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-MISSING-AUDIENCE-CHECK", 15),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-MISSING-ISSUER-CHECK", 15),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-UNBOUNDED-LEEWAY", 15),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-DECODE-WITHOUT-VERIFY", 19),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-KID-INJECTION", 24),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-KID-INJECTION", 25),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-TOKEN-COOKIE-FLAGS", 29),
                ("src/main/java/com/example/auth/Verifier.java", "CODE-TOKEN-COOKIE-FLAGS", 35),
            ],
        ),
        (
            "rust-jsonwebtoken",
            &[
                ("src/auth.rs", "CODE-HARD-CODED-SECRET", 13),
                ("src/auth.rs", "CODE-WEAK-SECRET", 13),
                ("src/auth.rs", "CODE-EXPIRY-CHECK-OFF", 18),
                ("src/auth.rs", "CODE-UNBOUNDED-LEEWAY", 19),
                ("src/auth.rs", "CODE-MIXED-ALGORITHM-FAMILIES", 20),
                ("src/auth.rs", "CODE-FALLBACK-SECRET", 22),
                ("src/auth.rs", "CODE-WEAK-SECRET", 22),
                ("src/auth.rs", "CODE-MISSING-AUDIENCE-CHECK", 22),
                ("src/auth.rs", "CODE-MISSING-ISSUER-CHECK", 22),
                ("src/auth.rs", "CODE-KID-INJECTION", 27),
                ("src/auth.rs", "CODE-TOKEN-COOKIE-FLAGS", 31),
            ],
        ),
        (
            "kotlin-jvm-libraries",
            &[
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-HARD-CODED-SECRET", 12),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-WEAK-SECRET", 12),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-MISSING-AUDIENCE-CHECK", 12),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-MISSING-ISSUER-CHECK", 12),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-UNBOUNDED-LEEWAY", 12),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-DECODE-WITHOUT-VERIFY", 14),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-KID-INJECTION", 18),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-ALG-NONE-ALLOWED", 21),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-MISSING-AUDIENCE-CHECK", 21),
                ("src/main/kotlin/com/example/auth/Tokens.kt", "CODE-MISSING-ISSUER-CHECK", 21),
            ],
        ),
        (
            "php-jwt",
            &[
                ("src/Auth.php", "CODE-UNBOUNDED-LEEWAY", 8),
                ("src/Auth.php", "CODE-HARD-CODED-SECRET", 12),
                ("src/Auth.php", "CODE-WEAK-SECRET", 12),
                ("src/Auth.php", "CODE-FALLBACK-SECRET", 17),
                ("src/Auth.php", "CODE-WEAK-SECRET", 17),
                ("src/Auth.php", "CODE-MISSING-AUDIENCE-CHECK", 17),
                ("src/Auth.php", "CODE-MISSING-ISSUER-CHECK", 17),
                ("src/Auth.php", "CODE-ALG-NONE-ALLOWED", 22),
                ("src/Auth.php", "CODE-MIXED-ALGORITHM-FAMILIES", 22),
                ("src/Auth.php", "CODE-MISSING-AUDIENCE-CHECK", 22),
                ("src/Auth.php", "CODE-MISSING-ISSUER-CHECK", 22),
                ("src/Auth.php", "CODE-KID-INJECTION", 28),
                ("src/Auth.php", "CODE-TOKEN-COOKIE-FLAGS", 33),
            ],
        ),
        (
            "py-cookies-and-unverified-claims",
            &[("app/views.py", "CODE-TOKEN-COOKIE-FLAGS", 7), ("app/views.py", "CODE-DECODE-WITHOUT-VERIFY", 12)],
        ),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/code");
    let mut cases: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    let mut named: Vec<&str> = expected.iter().map(|(case, _)| *case).collect();
    named.sort_unstable();
    assert_eq!(cases, named, "every corpus case has expectations");
    for (case, findings) in &expected {
        let mut wanted: Vec<(String, &str, usize)> =
            findings.iter().map(|(path, id, line)| ((*path).to_owned(), *id, *line)).collect();
        wanted.sort();
        assert_eq!(audit(&corpus.join(case).join("vulnerable")), wanted, "{case}: vulnerable");
        assert_eq!(audit(&corpus.join(case).join("fixed")), [], "{case}: fixed");
    }
}

#[test]
fn rust_test_modules_are_skipped_unless_asked_for() {
    let source = "use jsonwebtoken::EncodingKey;\n\nfn key() -> EncodingKey {\n    EncodingKey::from_secret(b\"production-secret-that-is-long-enough-0123\")\n}\n\n#[cfg(test)]\nmod tests {\n    fn key() -> jsonwebtoken::EncodingKey {\n        jsonwebtoken::EncodingKey::from_secret(b\"secret\")\n    }\n}\n";
    let lines = |tests| {
        let mut report = Report::new("source", "x");
        audit_code("src/auth.rs", Language::Rust, source, &Options { tests, ..Options::default() }, &mut report)
            .unwrap();
        let mut lines: Vec<usize> = report.findings.iter().map(|f| f.location.clone().unwrap().line).collect();
        lines.sort_unstable();
        lines
    };
    assert_eq!(lines(TestCode::Skip), [4]);
    assert_eq!(lines(TestCode::Include), [4, 10, 10]);
}

#[test]
fn a_parse_over_its_budget_stops_with_an_error_instead_of_running_on() {
    let text = "let x = [1, 2, (3 + 4) * 5];\n".repeat(20_000);
    let options = Options { parse_budget: Some(std::time::Duration::ZERO), ..Options::default() };
    let mut report = Report::new("source", "x");
    let outcome = audit_code("big.js", Language::JavaScript, &text, &options, &mut report);
    assert!(matches!(outcome, Err(tessera_audit_source::code::CodeError::TooSlow(_))), "{outcome:?}");
    assert!(report.findings.is_empty());
    // The default budget parses it.
    assert!(audit_code("big.js", Language::JavaScript, &text, &Options::default(), &mut report).is_ok());
}

#[test]
fn a_hard_coded_secret_never_appears_whole_in_a_report() {
    let secret = "a-hard-coded-service-secret-that-is-long-enough";
    let source = format!("import jwt from 'jsonwebtoken';\nexport const t = jwt.sign({{ sub: 'x' }}, '{secret}');\n");
    let mut report = Report::new("source", "x");
    audit_code("server/t.js", Language::JavaScript, &source, &Options::default(), &mut report).unwrap();
    assert!(!report.findings.is_empty());
    for finding in &report.findings {
        assert!(!finding.evidence.contains(secret) && !finding.title.contains(secret), "{finding:?}");
        assert!(finding.evidence.contains("a-h…"), "{finding:?}");
    }
}
