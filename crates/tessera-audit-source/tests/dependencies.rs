//! The dependency audit over the corpus in `tests/corpus/deps`: for every lockfile format, a vulnerable project
//! whose JWT libraries are found at the right line with the right advisories, and the same project fixed, with
//! nothing found.
#![allow(clippy::unwrap_used, clippy::panic)] // a panic here is a failed test

use std::path::Path;

use tessera_audit::Report;
use tessera_audit_source::deps::{audit_lockfile, Advisories, Lockfile};

fn audit(dir: &Path) -> Report {
    let mut report = Report::new("source", dir.display().to_string());
    let advisories = Advisories::shipped();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = Lockfile::from_file_name(&name).unwrap_or_else(|| panic!("{name} is not a lockfile name"));
        audit_lockfile(&name, kind, &std::fs::read_to_string(&path).unwrap(), &advisories, &mut report);
    }
    report
}

#[test]
fn every_format_finds_the_vulnerable_versions_and_not_the_fixed_ones() {
    // Format → (package, advisory id, line) expected in the vulnerable project.
    type Expected<'a> = &'a [(&'a str, &'a str, usize)];
    let expected: [(&str, Expected<'_>); 16] = [
        (
            "package-lock",
            &[
                ("jsonwebtoken", "CVE-2022-23539", 19),
                ("jsonwebtoken", "CVE-2022-23540", 19),
                ("jsonwebtoken", "CVE-2022-23541", 19),
                ("jose", "CVE-2022-36083", 23),
                ("jose", "CVE-2024-28176", 23),
            ],
        ),
        (
            "package-lock-v1",
            &[
                ("express-jwt", "CVE-2020-15084", 6),
                ("jsonwebtoken", "CVE-2022-23539", 12),
                ("jsonwebtoken", "CVE-2022-23540", 12),
                ("jsonwebtoken", "CVE-2022-23541", 12),
            ],
        ),
        ("yarn-classic", &[("jws", "CVE-2016-1000223", 9)]),
        ("yarn-berry", &[("express-jwt", "CVE-2020-15084", 7)]),
        ("pnpm-lock", &[("jose", "CVE-2022-36083", 15), ("jose", "CVE-2024-28176", 15)]),
        ("pnpm-lock-v6", &[("fast-jwt", "CVE-2023-48223", 10), ("fast-jwt", "CVE-2026-44351", 10)]),
        ("requirements", &[("PyJWT", "CVE-2022-29217", 4), ("PyJWT", "CVE-2026-32597", 4)]),
        ("poetry-lock", &[("authlib", "CVE-2024-37568", 4)]),
        ("uv-lock", &[("python-jose", "CVE-2024-33663", 13), ("python-jose", "CVE-2024-33664", 13)]),
        ("bun-lock", &[("jose", "CVE-2024-28176", 14)]),
        ("go-mod", &[("github.com/golang-jwt/jwt/v5", "CVE-2025-30204", 6)]),
        (
            "go-sum",
            &[
                ("github.com/golang-jwt/jwt/v4", "CVE-2024-51744", 4),
                ("github.com/golang-jwt/jwt/v4", "CVE-2025-30204", 4),
            ],
        ),
        ("cargo-lock", &[("jsonwebtoken", "CVE-2026-25537", 6)]),
        ("pom", &[("com.nimbusds:nimbus-jose-jwt", "CVE-2023-52428", 18)]),
        ("composer-lock", &[("firebase/php-jwt", "CVE-2021-46743", 8)]),
        ("nuget-lock", &[("System.IdentityModel.Tokens.Jwt", "CVE-2024-21319", 5)]),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/deps");
    let mut formats: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    formats.sort();
    let mut named: Vec<&str> = expected.iter().map(|(format, _)| *format).collect();
    named.sort_unstable();
    assert_eq!(formats, named, "every corpus directory has expectations");
    for (format, findings) in &expected {
        let vulnerable = audit(&corpus.join(format).join("vulnerable"));
        assert!(vulnerable.not_tested.is_empty(), "{format}: {:?}", vulnerable.not_tested);
        let mut found: Vec<(String, String, usize)> = vulnerable
            .findings
            .iter()
            .map(|f| {
                let location = f.location.clone().unwrap();
                let package = f.title.split(' ').next().unwrap().to_owned();
                let id = f.title.split('(').nth(1).unwrap().split(' ').next().unwrap().trim_end_matches(')').to_owned();
                assert_eq!(f.id, "DEP-VULNERABLE-JWT-LIBRARY");
                assert_eq!(f.cwe, ["CWE-1395"]);
                (package, id, location.line)
            })
            .collect();
        found.sort();
        let mut wanted: Vec<(String, String, usize)> =
            findings.iter().map(|(package, id, line)| ((*package).to_owned(), (*id).to_owned(), *line)).collect();
        wanted.sort();
        assert_eq!(found, wanted, "{format}: vulnerable");
        let fixed = audit(&corpus.join(format).join("fixed"));
        assert!(fixed.findings.is_empty() && fixed.not_tested.is_empty(), "{format}: fixed: {:?}", fixed.findings);
    }
}

#[test]
fn a_lockfile_that_is_not_json_is_reported_not_skipped_silently() {
    let mut report = Report::new("source", "x");
    audit_lockfile("app/package-lock.json", Lockfile::PackageLock, "{ not json", &Advisories::shipped(), &mut report);
    assert!(report.findings.is_empty());
    assert_eq!(report.not_tested.len(), 1);
    assert!(
        report.not_tested[0].starts_with("dependencies in app/package-lock.json: not JSON"),
        "{:?}",
        report.not_tested
    );
}
