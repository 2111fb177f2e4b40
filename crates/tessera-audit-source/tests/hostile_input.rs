//! Whatever a file holds, the audit ends without a panic: every lockfile reader and every language's rules over
//! arbitrary text and over the corpus files cut, spliced and garbled at random.
#![allow(clippy::unwrap_used, clippy::panic)] // a panic here is a failed test

use std::path::Path;

use proptest::prelude::*;
use std::time::Duration;
use tessera_audit::Report;

use tessera_audit_source::code::{audit_code, CodeError, Language, Options, TestCode};
use tessera_audit_source::deps::{audit_lockfile, Advisories, Lockfile};

const LOCKFILES: [&str; 13] = [
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "requirements.txt",
    "poetry.lock",
    "uv.lock",
    "go.mod",
    "go.sum",
    "Cargo.lock",
    "pom.xml",
    "composer.lock",
    "packages.lock.json",
];

/// Every corpus file's text, code and lockfiles alike.
fn corpus() -> Vec<String> {
    let mut texts = Vec::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                texts.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    texts
}

fn audit_everything(text: &str) {
    let mut report = Report::new("source", "fuzz");
    for language in Language::ALL {
        // A parse over budget is an error the caller reports, never a hang or a panic.
        let options =
            Options { tests: TestCode::Include, parse_budget: Some(Duration::from_secs(1)), ..Options::default() };
        match audit_code("f", language, text, &options, &mut report) {
            Ok(_) | Err(CodeError::TooSlow(_)) => {}
            Err(err) => panic!("{language:?}: {err}"),
        }
    }
    let advisories = Advisories::shipped();
    for name in LOCKFILES {
        audit_lockfile(name, Lockfile::from_file_name(name).unwrap(), text, &advisories, &mut report);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        audit_everything(&text);
    }

    #[test]
    fn garbled_corpus_files_never_panic(file in 0usize..1000, cut in 0usize..4000, splice in 0usize..4000, junk in "[\\[\\](){}\"'`$\\\\:=,.@/#\\n ]{0,12}") {
        let texts = corpus();
        let text = &texts[file % texts.len()];
        let chars: Vec<char> = text.chars().collect();
        let (cut, splice) = (cut % (chars.len() + 1), splice % (chars.len() + 1));
        let (low, high) = (cut.min(splice), cut.max(splice));
        let garbled: String = chars[..low].iter().chain(junk.chars().collect::<Vec<_>>().iter()).chain(chars[high..].iter()).collect();
        audit_everything(&garbled);
    }
}
