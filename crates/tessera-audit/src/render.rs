//! Reports for people and tools: a text table, JSON, SARIF 2.1.0 (code-scanning dashboards) and a Markdown audit
//! report (executive summary, findings by severity, risk matrix, remediation priorities).

use std::fmt::Write as _;

use crate::{plan, risk, Finding, Location, Report, Severity};

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
            let _ = writeln!(out, "{:41}risk: likelihood {} × impact {}{}", "", f.likelihood, f.impact, asvs_suffix(f));
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
                "properties": {"likelihood": f.likelihood, "impact": f.impact, "asvs": f.asvs},
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
            if let Some(Location { path, line }) = &f.location {
                let _ = writeln!(out, "  - Where: `{path}:{line}`");
            }
            if !f.cwe.is_empty() {
                let _ = writeln!(out, "  - Weakness: {}", f.cwe.join(", "));
            }
            let _ = writeln!(out, "  - Risk: {}", risk_line(f));
        }
    }
    out.push_str(
        "\n## Risk matrix\n\nLikelihood comes from exposure (what an attacker needs), impact from what the flaw gives; \
         each cell lists the finding ids in it, with their count.\n\n\
         | likelihood \\ impact | 1 | 2 | 3 | 4 | 5 |\n|---|---|---|---|---|---|\n",
    );
    for likelihood in (1..=5u8).rev() {
        let _ = write!(out, "| {likelihood} |");
        for impact in 1..=5u8 {
            let mut cell: Vec<(&str, usize)> = Vec::new();
            for f in report.findings.iter().filter(|f| f.likelihood == likelihood && f.impact == impact) {
                match cell.iter_mut().find(|(id, _)| *id == f.id) {
                    Some((_, count)) => *count += 1,
                    None => cell.push((f.id, 1)),
                }
            }
            let ids: Vec<String> = cell
                .iter()
                .map(|(id, count)| if *count > 1 { format!("{id} ×{count}") } else { (*id).to_owned() })
                .collect();
            let _ = write!(out, " {} |", ids.join(", "));
        }
        out.push('\n');
    }
    out.push_str("\n## Remediation plan\n\nOne recommendation per kind of finding, with the risk it removes (the sum of likelihood × impact over its findings) and its effort; phases by the worst finding's score (immediate: 15 or more; short term: 8 to 14; medium term: below 8), most risk removed per hour first.\n");
    for (phase, items, share) in plan::plan(report) {
        let _ = writeln!(out, "\n### {} — {:.0}% of the total risk\n", phase.as_str(), share * 100.0);
        if items.is_empty() {
            out.push_str("- nothing\n");
        }
        for item in items {
            let _ = writeln!(
                out,
                "- `{}` ({} finding{}; risk {}; about {} h): {}",
                item.id,
                item.findings,
                if item.findings == 1 { "" } else { "s" },
                item.risk,
                item.effort_hours,
                item.fix
            );
        }
    }
    let controls = plan::compliance(report);
    out.push_str("\n## Compliance\n\nWhat the findings mean for common frameworks, worded as risk to discuss with whoever owns compliance; this is not legal advice.\n\n");
    if controls.is_empty() {
        out.push_str("No finding bears on the controls below.\n");
    } else {
        out.push_str("| standard | control | risk | findings |\n|---|---|---|---|\n");
        for (control, ids) in controls {
            let _ = writeln!(
                out,
                "| {} | {} ({}) | {} | {} |",
                control.standard,
                control.id,
                control.subject,
                control.risk,
                ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    out
}

/// A finding's risk in words: likelihood with its exposure, impact with its gain, the ASVS requirements.
fn risk_line(f: &Finding) -> String {
    let profile = risk::profile_of(f.id);
    let exposure = profile
        .map(|p| p.exposure.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", "))
        .filter(|text| !text.is_empty())
        .map(|text| format!(" ({text})"))
        .unwrap_or_default();
    let gain = profile.map(|p| format!(" ({})", p.gain.as_str())).unwrap_or_default();
    format!("likelihood {}{exposure} × impact {}{gain}{}", f.likelihood, f.impact, asvs_suffix(f))
}

fn asvs_suffix(f: &Finding) -> String {
    if f.asvs.is_empty() {
        String::new()
    } else {
        format!("; OWASP ASVS v5.0.0: {}", f.asvs.join(", "))
    }
}
