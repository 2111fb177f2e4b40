//! Dependencies: JWT and JOSE libraries pinned by a project's lockfiles, against a table of published advisories.
//!
//! The table ships in the binary (`advisories.tsv`, dated) and a newer one in the same format can replace it.
//! Its format, one advisory per line, tab-separated, `#` starting a comment:
//!
//! ```text
//! # as of: 2026-12-07
//! ecosystem  package  severity  ids  affected  fixed  published  impact
//! ```
//!
//! `ecosystem` is one of `npm`, `pypi`, `go`, `maven`, `cargo`, `packagist`, `nuget`; `severity` one of `low`,
//! `medium`, `high`, `critical`; `ids` space-separated (CVE, GHSA, ...); `affected` a [`Range`]; `fixed` the
//! first fixed versions, or `none`; `published` a date.

mod lockfile;
mod version;

pub use lockfile::{Dependency, Ecosystem, Lockfile};
pub use version::{Range, Version};

use tessera_audit::{Finding, Report, Severity};

/// The table shipped with this build.
const SHIPPED: &str = include_str!("advisories.tsv");

/// One published advisory.
#[derive(Debug, Clone)]
pub struct Advisory {
    /// The ecosystem of the package.
    pub ecosystem: Ecosystem,
    /// The package, as its ecosystem normalises names.
    pub package: String,
    /// How bad it is.
    pub severity: Severity,
    /// CVE, GHSA and other identifiers.
    pub ids: String,
    /// The affected versions, as written.
    pub affected_text: String,
    affected: Range,
    /// The first fixed versions, or `none`.
    pub fixed: String,
    /// When it was published.
    pub published: String,
    /// What it allows, in one line.
    pub impact: String,
}

/// A table of advisories and the date it was compiled.
#[derive(Debug, Clone)]
pub struct Advisories {
    /// The date of the table (its `# as of:` line).
    pub as_of: String,
    entries: Vec<Advisory>,
}

impl Advisories {
    /// The table shipped with this build.
    ///
    /// # Panics
    /// Never at run time: the shipped table is parsed by a unit test.
    #[must_use]
    pub fn shipped() -> Self {
        #[allow(clippy::expect_used, reason = "the shipped table is a constant checked by a unit test")]
        Self::parse(SHIPPED).expect("the shipped advisory table parses")
    }

    /// Parses a table in the format above.
    ///
    /// # Errors
    /// Every line that does not parse, with its number and why, at once.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let (mut as_of, mut entries, mut problems) = (None, Vec::new(), Vec::new());
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(date) = comment.trim().strip_prefix("as of:") {
                    as_of = Some(date.trim().to_owned());
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            match advisory(line) {
                Ok(entry) => entries.push(entry),
                Err(why) => problems.push(format!("line {}: {why}", number + 1)),
            }
        }
        if as_of.is_none() {
            problems.push("no \"# as of: DATE\" line saying when the table was compiled".to_owned());
        }
        match (as_of, problems.is_empty()) {
            (Some(as_of), true) => Ok(Self { as_of, entries }),
            _ => Err(problems),
        }
    }

    /// How many advisories the table holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The advisories that apply to `dependency`.
    pub fn affecting<'a>(&'a self, dependency: &'a Dependency) -> impl Iterator<Item = &'a Advisory> {
        let name = dependency.ecosystem.normalise(&dependency.name);
        let version = Version::parse(&dependency.version);
        self.entries.iter().filter(move |advisory| {
            advisory.ecosystem == dependency.ecosystem
                && advisory.package == name
                && version.as_ref().is_some_and(|version| advisory.affected.contains(version))
        })
    }
}

fn advisory(line: &str) -> Result<Advisory, String> {
    let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
    let [ecosystem, package, severity, ids, affected, fixed, published, impact] = fields[..] else {
        return Err(format!("{} tab-separated fields, not 8", fields.len()));
    };
    let ecosystem = Ecosystem::from_name(ecosystem).ok_or_else(|| format!("unknown ecosystem {ecosystem:?}"))?;
    let severity = match severity.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => return Err(format!("unknown severity {other:?} (low, medium, high, critical)")),
    };
    if package.is_empty() || ids.is_empty() {
        return Err("a package and at least one advisory id are required".to_owned());
    }
    Ok(Advisory {
        ecosystem,
        package: ecosystem.normalise(package),
        severity,
        ids: ids.to_owned(),
        affected_text: affected.to_owned(),
        affected: Range::parse(affected)?,
        fixed: fixed.to_owned(),
        published: published.to_owned(),
        impact: impact.to_owned(),
    })
}

/// Adds a finding to `report` for each advisory affecting a dependency `text` pins; `path` names the lockfile in
/// the findings. A lockfile that cannot be read is named in `not_tested`.
pub fn audit_lockfile(path: &str, kind: Lockfile, text: &str, advisories: &Advisories, report: &mut Report) {
    let dependencies = match kind.read(text) {
        Ok(dependencies) => dependencies,
        Err(why) => {
            report.not_tested.push(format!("dependencies in {path}: {why}"));
            return;
        }
    };
    for dependency in &dependencies {
        for advisory in advisories.affecting(dependency) {
            let fixed = match advisory.fixed.as_str() {
                "none" => "no fixed version".to_owned(),
                fixed => format!("fixed in {fixed}"),
            };
            report.add(
                Finding::new(
                    "DEP-VULNERABLE-JWT-LIBRARY",
                    advisory.severity,
                    format!(
                        "{} {} has a published vulnerability ({})",
                        dependency.name, dependency.version, advisory.ids
                    ),
                    format!(
                        "{path}:{}: {} {} is in the affected range {} ({fixed}; published {}): {}",
                        dependency.line,
                        dependency.name,
                        dependency.version,
                        advisory.affected_text,
                        advisory.published,
                        advisory.impact
                    ),
                    "Upgrade the library to a fixed version (or replace one that is no longer maintained), regenerate \
                     the lockfile and audit again.",
                )
                .with_cwe(&["CWE-1395"])
                .at(path, dependency.line),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_is_dated() {
        let table = Advisories::shipped();
        assert!(table.len() >= 20, "{} advisories", table.len());
        assert!(table.as_of.starts_with("20"), "{}", table.as_of);
    }

    #[test]
    fn a_table_reports_every_bad_line_at_once() {
        let problems = Advisories::parse("npm\tx\n# as of: 2026-01-01\nnpm\tx\thuge\tCVE-1\t<1\t1\t2020-01-01\ti\nzz\tx\thigh\tCVE-1\t<1\t1\t2020-01-01\ti\nnpm\tx\thigh\tCVE-1\t1.0\t1\t2020-01-01\ti\n")
            .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (problem, says) in problems.iter().zip([
            "line 1: 2 tab",
            "line 3: unknown severity",
            "line 4: unknown ecosystem",
            "line 5: \"1.0\" has no",
        ]) {
            assert!(problem.starts_with(says), "{problem}");
        }
        assert!(Advisories::parse("npm\tx\thigh\tCVE-1\t<1\t1\t2020-01-01\ti\n").unwrap_err()[0].contains("as of"));
    }

    #[test]
    fn names_match_as_their_ecosystem_spells_them() {
        let table =
            Advisories::parse("# as of: 2026-01-01\npypi\tPyJWT\thigh\tCVE-X\t<2.4.0\t2.4.0\t2022-05-24\tconfusion\n")
                .unwrap();
        let dependency = |ecosystem, name: &str, version: &str| Dependency {
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            line: 1,
        };
        assert_eq!(table.affecting(&dependency(Ecosystem::PyPi, "pyjwt", "2.3.0")).count(), 1);
        assert_eq!(table.affecting(&dependency(Ecosystem::PyPi, "PyJWT", "2.4.0")).count(), 0);
        assert_eq!(table.affecting(&dependency(Ecosystem::Npm, "PyJWT", "2.3.0")).count(), 0);
        assert_eq!(table.affecting(&dependency(Ecosystem::PyPi, "pyjwt", "not-a-version")).count(), 0);
    }
}
