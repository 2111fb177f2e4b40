//! Reports for people and tools: a text table, JSON, SARIF 2.1.0 (code-scanning dashboards) and a Markdown audit
//! report (executive summary, findings by severity, risk matrix, remediation priorities).

use std::fmt::Write as _;

use crate::{Finding, Location, Report, Severity};

const SEVERITIES: [Severity; 5] = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info];

fn counts(report: &Report) -> Vec<(Severity, usize)> {
    SEVERITIES.iter().map(|s| (*s, report.findings.iter().filter(|f| f.severity == *s).count())).collect()
}

/// A plain-text table.
#[must_use]
pub fn table(report: &Report) -> String {
    let mut out = format!("Audit of {} {}\n", report.kind, report.target);
    if report.findings.is_empty() {
        out.push_str("No findings.\n");
    } else {
        let _ = writeln!(out, "{:<9} {:<30} FINDING", "SEVERITY", "ID");
        for f in &report.findings {
            let _ = writeln!(
                out,
                "{:<9} {:<30} {}\n{:41}evidence: {}\n{:41}fix: {}",
                f.severity.as_str(),
                f.id,
                f.title,
                "",
                f.evidence,
                "",
                f.fix
            );
            if !f.cwe.is_empty() {
                let _ = writeln!(out, "{:41}weakness: {}", "", f.cwe.join(", "));
            }
        }
    }
    let summary: Vec<String> =
        counts(report).into_iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{n} {}", s.as_str())).collect();
    let _ = writeln!(out, "Summary: {}", if summary.is_empty() { "none".to_owned() } else { summary.join(", ") });
    for (name, value) in &report.stats {
        let _ = writeln!(out, "  {name}: {value}");
    }
    for gap in &report.not_tested {
        let _ = writeln!(out, "NOT TESTED: {gap}");
    }
    out
}

/// The report as JSON.
#[must_use]
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// SARIF 2.1.0: one rule per finding id, one result per finding.
#[must_use]
pub fn sarif(report: &Report) -> String {
    let mut rules: Vec<serde_json::Value> = Vec::new();
    for f in &report.findings {
        if !rules.iter().any(|r| r["id"] == f.id) {
            rules.push(serde_json::json!({
                "id": f.id,
                "shortDescription": {"text": f.title},
                "help": {"text": f.fix},
                "properties": {"security-severity": security_severity(f.severity), "tags": tags(f.cwe)},
            }));
        }
    }
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "ruleId": f.id,
                "level": match f.severity { Severity::Critical | Severity::High => "error", Severity::Medium => "warning", _ => "note" },
                "message": {"text": format!("{}: {}", f.title, f.evidence)},
                "locations": [location(report, f)],
            })
        })
        .collect();
    let document = serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "tessera-audit", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results,
            "properties": {"notTested": report.not_tested, "stats": report.stats},
        }],
    });
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// Where a finding is: its file and line when it has one (code-scanning tools annotate that line), otherwise
/// what was audited.
fn location(report: &Report, finding: &Finding) -> serde_json::Value {
    match &finding.location {
        Some(Location { path, line }) if *line > 0 => serde_json::json!({"physicalLocation": {
            "artifactLocation": {"uri": path, "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": line},
        }}),
        Some(Location { path, .. }) => {
            serde_json::json!({"physicalLocation": {"artifactLocation": {"uri": path, "uriBaseId": "%SRCROOT%"}}})
        }
        None => serde_json::json!({"physicalLocation": {"artifactLocation": {"uri": report.target}}}),
    }
}

/// Code-scanning tags: CWE ids in the `external/cwe/cwe-N` form dashboards link to the catalogue.
fn tags(cwe: &[&str]) -> Vec<String> {
    let mut tags = vec!["security".to_owned(), "jwt".to_owned()];
    tags.extend(cwe.iter().map(|id| format!("external/cwe/{}", id.to_ascii_lowercase())));
    tags
}

fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "7.5",
        Severity::Medium => "5.0",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// A Markdown audit report, in the structure a security team expects.
#[must_use]
pub fn markdown(report: &Report) -> String {
    let mut out = format!("# JWT security audit: {} {}\n\n## Executive summary\n\n", report.kind, report.target);
    let counts = counts(report);
    match report.worst() {
        None => out.push_str("No weaknesses were found in what could be tested.\n"),
        Some(worst) => {
            let listed: Vec<String> =
                counts.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{n} {}", s.as_str())).collect();
            let _ = writeln!(
                out,
                "{} findings ({}); the most severe is **{}**.",
                report.findings.len(),
                listed.join(", "),
                worst.as_str()
            );
            if worst >= Severity::High {
                out.push_str("Tokens from this system can likely be forged or misused: act on the immediate items below first.\n");
            }
        }
    }
    if !report.not_tested.is_empty() {
        out.push_str("\n**This report is partial.** Not tested:\n\n");
        for gap in &report.not_tested {
            let _ = writeln!(out, "- {gap}");
        }
    }
    out.push_str("\n## Findings by severity\n");
    for (severity, _) in counts.iter().filter(|(_, n)| *n > 0) {
        let _ = writeln!(out, "\n### {}\n", severity.as_str());
        for f in report.findings.iter().filter(|f| f.severity == *severity) {
            let _ = writeln!(out, "- **{}** `{}`\n  - Evidence: {}\n  - Fix: {}", f.title, f.id, f.evidence, f.fix);
            if !f.cwe.is_empty() {
                let _ = writeln!(out, "  - Weakness: {}", f.cwe.join(", "));
            }
        }
    }
    out.push_str("\n## Risk matrix (likelihood × impact)\n\n| likelihood \\ impact | 1 | 2 | 3 | 4 | 5 |\n|---|---|---|---|---|---|\n");
    for likelihood in (1..=5u8).rev() {
        let _ = write!(out, "| {likelihood} |");
        for impact in 1..=5u8 {
            let ids: Vec<&str> = report
                .findings
                .iter()
                .filter(|f| f.severity.likelihood() == likelihood && f.impact == impact)
                .map(|f| f.id)
                .collect();
            let _ = write!(out, " {} |", ids.join(", "));
        }
        out.push('\n');
    }
    out.push_str("\n## Remediation priorities\n");
    for (title, range) in [
        ("Immediate", &[Severity::Critical, Severity::High][..]),
        ("Short term", &[Severity::Medium][..]),
        ("Medium term", &[Severity::Low, Severity::Info][..]),
    ] {
        let _ = writeln!(out, "\n### {title}\n");
        let items: Vec<_> = report.findings.iter().filter(|f| range.contains(&f.severity)).collect();
        if items.is_empty() {
            out.push_str("- nothing\n");
        }
        for f in items {
            let _ = writeln!(out, "- `{}`: {}", f.id, f.fix);
        }
    }
    out
}
