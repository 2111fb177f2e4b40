//! What a report's reader does next: one recommendation per kind of finding, with the risk it removes and its
//! effort, phased (immediate / short term / medium term) and ordered by risk removed per hour; and what the
//! findings mean for PCI DSS, ISO/IEC 27001 and personal-data protection, worded as risk, not legal advice.

use crate::risk::profile_of;
use crate::{Finding, Report};

/// A finding's risk score: likelihood × impact, 1 to 25.
#[must_use]
pub fn score(finding: &Finding) -> u32 {
    u32::from(finding.likelihood) * u32::from(finding.impact)
}

/// One recommendation: fixing every finding of one id.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The finding id it removes.
    pub id: &'static str,
    /// What to do.
    pub fix: &'static str,
    /// How many findings it removes.
    pub findings: usize,
    /// The risk it removes: the sum of the findings' scores.
    pub risk: u32,
    /// The worst single score among them, which sets the phase.
    pub worst: u32,
    /// Hours of work: the usual fix once, and a quarter of it again for each further place.
    pub effort_hours: u32,
}

impl Recommendation {
    /// Risk removed per hour of work.
    #[must_use]
    pub fn value(&self) -> f64 {
        f64::from(self.risk) / f64::from(self.effort_hours.max(1))
    }
}

/// When to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// A finding scoring 15 or more (likely and severe): now.
    Immediate,
    /// Scoring 8 to 14: within the next weeks.
    ShortTerm,
    /// Below 8: with regular work.
    MediumTerm,
}

impl Phase {
    /// The phase of a recommendation whose worst finding scores `worst`.
    #[must_use]
    pub fn of(worst: u32) -> Self {
        match worst {
            15.. => Self::Immediate,
            8.. => Self::ShortTerm,
            _ => Self::MediumTerm,
        }
    }

    /// How a report names it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "Immediate",
            Self::ShortTerm => "Short term",
            Self::MediumTerm => "Medium term",
        }
    }
}

/// The phased plan: every phase with its recommendations, most risk removed per hour first, and the phase's share
/// of the report's total risk (0–1). Findings that give nothing (impact 1) are not in it.
#[must_use]
pub fn plan(report: &Report) -> Vec<(Phase, Vec<Recommendation>, f64)> {
    let mut recommendations: Vec<Recommendation> = Vec::new();
    for finding in report.findings.iter().filter(|finding| finding.impact > 1) {
        let effort = profile_of(finding.id).map_or(4, |profile| u32::from(profile.effort_hours.max(1)));
        match recommendations.iter_mut().find(|recommendation| recommendation.id == finding.id) {
            Some(recommendation) => {
                recommendation.findings += 1;
                recommendation.risk += score(finding);
                recommendation.worst = recommendation.worst.max(score(finding));
                recommendation.effort_hours += effort.div_ceil(4);
            }
            None => recommendations.push(Recommendation {
                id: finding.id,
                fix: finding.fix,
                findings: 1,
                risk: score(finding),
                worst: score(finding),
                effort_hours: effort,
            }),
        }
    }
    let total: u32 = recommendations.iter().map(|recommendation| recommendation.risk).sum();
    [Phase::Immediate, Phase::ShortTerm, Phase::MediumTerm]
        .into_iter()
        .map(|phase| {
            let mut items: Vec<Recommendation> =
                recommendations.iter().filter(|r| Phase::of(r.worst) == phase).cloned().collect();
            items.sort_by(|a, b| b.value().total_cmp(&a.value()).then(a.id.cmp(b.id)));
            let risk: u32 = items.iter().map(|item| item.risk).sum();
            let share = if total == 0 { 0.0 } else { f64::from(risk) / f64::from(total) };
            (phase, items, share)
        })
        .collect()
}

/// A control of a standard that findings put at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// The standard: `PCI DSS v4.0.1`, `ISO/IEC 27001:2022`, `GDPR`.
    pub standard: &'static str,
    /// The requirement or control: `6.2.4`, `A.8.24`, `Art. 32`.
    pub id: &'static str,
    /// Its subject, in a few words.
    pub subject: &'static str,
    /// What the findings mean for it, as risk.
    pub risk: &'static str,
}

/// What a control is about; a finding puts the controls of the areas it touches at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    /// Keys, secrets and algorithms.
    Cryptography,
    /// Whether authentication holds: findings that give forgery, escalation or takeover (impact 4 or more).
    Authentication,
    /// Flaws in code or in a live service.
    Code,
    /// Vulnerable third-party components.
    Components,
    /// Personal or sensitive data in tokens.
    PersonalData,
}

fn touches(finding: &Finding, area: Area) -> bool {
    let id = finding.id;
    match area {
        Area::Cryptography => {
            ["SECRET", "KEY", "ALG", "RSA", "SIGN", "HMAC", "PSYCHIC", "JWKS-"].iter().any(|part| id.contains(part))
        }
        Area::Authentication => finding.impact >= 4,
        Area::Code => id.starts_with("CODE-") || id.starts_with("ENDPOINT-"),
        Area::Components => id.starts_with("DEP-"),
        Area::PersonalData => id == "JWT-PERSONAL-DATA" || id == "JWT-SENSITIVE-DATA",
    }
}

/// Each control with the findings that put it at risk.
const CONTROLS: [(Control, Area); 10] = [
    (
        Control {
            standard: "PCI DSS v4.0.1",
            id: "6.2.4",
            subject: "software engineering techniques that prevent common attacks",
            risk: "bespoke code or a live service shows a known class of token attack that this requirement expects to be prevented",
        },
        Area::Code,
    ),
    (
        Control {
            standard: "PCI DSS v4.0.1",
            id: "6.3.3",
            subject: "known vulnerabilities patched",
            risk: "a component with a published vulnerability is in use; critical ones are expected patched within a month, \
                   others on a risk-based schedule",
        },
        Area::Components,
    ),
    (
        Control {
            standard: "PCI DSS v4.0.1",
            id: "8.3.1",
            subject: "all access authenticated",
            risk: "tokens can be forged or misused, so access may be granted without a genuine authentication",
        },
        Area::Authentication,
    ),
    (
        Control {
            standard: "ISO/IEC 27001:2022",
            id: "A.8.24",
            subject: "use of cryptography",
            risk: "signing keys, secrets or algorithms are not managed as the cryptography policy would require",
        },
        Area::Cryptography,
    ),
    (
        Control {
            standard: "ISO/IEC 27001:2022",
            id: "A.8.5",
            subject: "secure authentication",
            risk: "the token-based authentication can be bypassed or its sessions taken over",
        },
        Area::Authentication,
    ),
    (
        Control {
            standard: "ISO/IEC 27001:2022",
            id: "A.8.28",
            subject: "secure coding",
            risk: "the code or the service it runs has a token-handling flaw that secure-coding practice excludes",
        },
        Area::Code,
    ),
    (
        Control {
            standard: "ISO/IEC 27001:2022",
            id: "A.8.8",
            subject: "management of technical vulnerabilities",
            risk: "a published vulnerability in a dependency is not yet remediated",
        },
        Area::Components,
    ),
    (
        Control {
            standard: "ISO/IEC 27001:2022",
            id: "A.5.34",
            subject: "privacy and protection of PII",
            risk: "personal or sensitive data travels in tokens that anyone holding them can read",
        },
        Area::PersonalData,
    ),
    (
        Control {
            standard: "GDPR",
            id: "Art. 32",
            subject: "security of processing",
            risk: "where the service processes personal data, a flaw giving access to other users' accounts weakens the \
                   appropriate technical measures expected, and its exploitation may be a notifiable breach (Art. 33)",
        },
        Area::Authentication,
    ),
    (
        Control {
            standard: "GDPR",
            id: "Art. 5(1)(c)",
            subject: "data minimisation",
            risk: "tokens carry personal data beyond what their recipients need",
        },
        Area::PersonalData,
    ),
];

/// The controls the report's findings put at risk, each with the ids that do.
#[must_use]
pub fn compliance(report: &Report) -> Vec<(Control, Vec<&'static str>)> {
    CONTROLS
        .iter()
        .filter_map(|(control, area)| {
            let mut ids: Vec<&'static str> = report
                .findings
                .iter()
                .filter(|finding| finding.impact > 1 && touches(finding, *area))
                .map(|finding| finding.id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            (!ids.is_empty()).then_some((*control, ids))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    fn report(ids: &[(&'static str, Severity)]) -> Report {
        let mut report = Report::new("source", "x");
        for (id, severity) in ids {
            report.add(Finding::new(id, *severity, "t", "e", "fix it"));
        }
        report
    }

    #[test]
    fn the_plan_phases_by_worst_score_and_orders_by_risk_per_hour() {
        let report = report(&[
            ("CODE-CLIENT-SIDE-SIGNING", Severity::Critical), // 25, 40 h
            ("CODE-ALG-NONE-ALLOWED", Severity::Critical),    // 20, 1 h
            ("CODE-ALG-NONE-ALLOWED", Severity::Critical),    // 20, +1 h
            ("CODE-TOKEN-COOKIE-FLAGS", Severity::Medium),    // 2 × 4 = 8, 2 h
            ("CODE-HARD-CODED-SECRET", Severity::High),       // 1 × 5 = 5, 8 h
            ("JWT-EXPIRED", Severity::Info),                  // gives nothing: not in the plan
        ]);
        let plan = plan(&report);
        let ids = |phase: usize| plan[phase].1.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(0), ["CODE-ALG-NONE-ALLOWED", "CODE-CLIENT-SIDE-SIGNING"]);
        assert_eq!(ids(1), ["CODE-TOKEN-COOKIE-FLAGS"]);
        assert_eq!(ids(2), ["CODE-HARD-CODED-SECRET"]);
        let none = &plan[0].1[0];
        assert_eq!((none.findings, none.risk, none.effort_hours), (2, 40, 2));
        let total = 25.0 + 40.0 + 8.0 + 5.0;
        for (phase, share) in [(0, 65.0 / total), (1, 8.0 / total), (2, 5.0 / total)] {
            assert!((plan[phase].2 - share).abs() < 1e-9, "phase {phase}: {}", plan[phase].2);
        }
    }

    #[test]
    fn controls_follow_what_the_findings_touch() {
        let named = |report: &Report| compliance(report).into_iter().map(|(control, _)| control.id).collect::<Vec<_>>();
        assert_eq!(
            named(&report(&[("DEP-VULNERABLE-JWT-LIBRARY", Severity::High)])),
            ["6.3.3", "8.3.1", "A.8.5", "A.8.8", "Art. 32"]
        );
        assert_eq!(named(&report(&[("JWT-PERSONAL-DATA", Severity::Medium)])), ["A.5.34", "Art. 5(1)(c)"]);
        assert!(named(&report(&[("JWT-EXPIRED", Severity::Info)])).is_empty());
    }
}
