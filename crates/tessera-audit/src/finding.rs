//! What an audit reports: findings with a severity, evidence and a concrete fix.

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Worth knowing; no action needed.
    Info,
    /// Hardening.
    Low,
    /// A weakness that needs other conditions to be exploited.
    Medium,
    /// Exploitable under realistic conditions.
    High,
    /// Forgery or full bypass.
    Critical,
}

impl Severity {
    /// Upper-case name, as in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }

    /// The severity as a level from 1 (INFO) to 5 (CRITICAL): how ids without a risk profile are rated.
    #[must_use]
    pub fn likelihood(self) -> u8 {
        match self {
            Self::Info => 1,
            Self::Low => 2,
            Self::Medium => 3,
            Self::High => 4,
            Self::Critical => 5,
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `JWT-ALG-NONE`.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub title: String,
    /// What was observed (never a full token or secret unless it is the finding itself).
    pub evidence: String,
    /// What to do about it.
    pub fix: &'static str,
    /// How likely exploitation is, 1 (rare) to 5 (almost certain), from the exposure (see [`crate::risk`]).
    pub likelihood: u8,
    /// What exploitation gives, 1 (nothing) to 5 (forging any identity), rated apart from the likelihood.
    pub impact: u8,
    /// The OWASP ASVS 5.0 requirements it breaks (omitted when none is named).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub asvs: &'static [&'static str],
    /// The weakness in the CWE catalogue, e.g. `CWE-290` (omitted when none is named).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub cwe: &'static [&'static str],
    /// Where in a source tree it was found (findings on files: lockfiles, code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// A place in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file, relative to what was audited, with `/` separators.
    pub path: String,
    /// The 1-based line (0 when unknown).
    pub line: usize,
}

impl Finding {
    /// A finding, rated by its id's risk profile ([`crate::risk`]).
    #[must_use]
    pub fn new(
        id: &'static str,
        severity: Severity,
        title: impl Into<String>,
        evidence: impl Into<String>,
        fix: &'static str,
    ) -> Self {
        let (likelihood, impact) = crate::risk::rate(id, severity);
        Self {
            id,
            severity,
            title: title.into(),
            evidence: evidence.into(),
            fix,
            likelihood,
            impact,
            asvs: crate::risk::profile_of(id).map_or(&[], |profile| profile.asvs),
            cwe: &[],
            location: None,
        }
    }

    /// The same finding, naming its weakness in the CWE catalogue.
    #[must_use]
    pub fn with_cwe(self, cwe: &'static [&'static str]) -> Self {
        Self { cwe, ..self }
    }

    /// The same finding, placed in a file.
    #[must_use]
    pub fn at(self, path: impl Into<String>, line: usize) -> Self {
        Self { location: Some(Location { path: path.into(), line }), ..self }
    }
}

/// The result of one audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was audited: `token`, `jwks`.
    pub kind: &'static str,
    /// Which one (a file, a URL, or a short fingerprint of a token).
    pub target: String,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// What could not be tested, and why: a report with entries here is partial, never "all clear".
    pub not_tested: Vec<String>,
    /// Facts about the run (e.g. keys tried per second by the secret cracker).
    pub stats: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// An empty report.
    #[must_use]
    pub fn new(kind: &'static str, target: impl Into<String>) -> Self {
        Self {
            kind,
            target: target.into(),
            findings: Vec::new(),
            not_tested: Vec::new(),
            stats: serde_json::Map::new(),
        }
    }

    /// Adds a finding.
    pub fn add(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Sorts findings, most severe first (stable within a severity).
    pub fn finish(&mut self) {
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }

    /// The most severe finding's severity.
    #[must_use]
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether a finding with this id is present.
    #[must_use]
    pub fn has(&self, id: &str) -> bool {
        self.findings.iter().any(|f| f.id == id)
    }
}
