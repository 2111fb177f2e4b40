//! Version ordering across the ecosystems whose lockfiles are read, and the affected ranges of advisories.
//!
//! One ordering serves npm, crates.io, Go, PyPI, Maven, Packagist and NuGet: a release of dotted numbers
//! (missing parts count as 0), then an optional qualifier. A pre-release qualifier (`-rc.1`, `a1`, `b2`, `rc1`,
//! `.dev0`, `-SNAPSHOT`, `-M1`, `alpha`, `beta`, `pre`, or a Go pseudo-version's timestamp) orders before the
//! release; a post-release one (`.post1`, `-sp1`, `-final`, `-ga`, `-release`) orders after it. Build metadata
//! (`+...`, Go's `+incompatible`) and a leading `v` are ignored. This is a heuristic where the ecosystems differ
//! (PEP 440 epochs and local versions, Maven's full qualifier table); the advisory table's boundaries are plain
//! releases, where every scheme agrees.

use std::cmp::Ordering;

/// A parsed version. Equality is the ordering's: `1.0` equals `1.0.0`.
#[derive(Debug, Clone)]
pub struct Version {
    release: Vec<u64>,
    /// Before (`Less`), at (`Equal`) or after (`Greater`) the plain release, and the qualifier to order within.
    stage: Ordering,
    qualifier: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Number(u64),
    Word(String),
}

const POST_RELEASE: [&str; 6] = ["post", "sp", "final", "ga", "release", "r"];

impl Version {
    /// Parses a version; `None` for what has no leading release number (`latest`, `*`, a git URL).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let text = text.split('+').next().unwrap_or_default();
        let digits_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (release_text, rest) = text.split_at(digits_end);
        let release_text = release_text.trim_end_matches('.');
        if release_text.is_empty() {
            return None;
        }
        let release = release_text.split('.').map(|part| part.parse().ok()).collect::<Option<Vec<u64>>>()?;
        let qualifier = parts(rest);
        let stage = match qualifier.first() {
            None => Ordering::Equal,
            Some(Part::Word(word)) if POST_RELEASE.contains(&word.as_str()) => Ordering::Greater,
            Some(_) => Ordering::Less,
        };
        Some(Self { release, stage, qualifier })
    }
}

/// The qualifier split into numbers and lower-case words: `-rc.10` → [rc, 10], `a1` → [a, 1].
fn parts(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, parts: &mut Vec<Part>| {
        if !current.is_empty() {
            parts.push(match current.parse() {
                Ok(number) => Part::Number(number),
                Err(_) => Part::Word(current.to_ascii_lowercase()),
            });
            current.clear();
        }
    };
    for c in text.chars() {
        let boundary = !c.is_ascii_alphanumeric()
            || current.chars().last().is_some_and(|last| last.is_ascii_digit() != c.is_ascii_digit());
        if boundary {
            flush(&mut current, &mut parts);
        }
        if c.is_ascii_alphanumeric() {
            current.push(c);
        }
    }
    flush(&mut current, &mut parts);
    parts
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.release.len().max(other.release.len());
        let at = |release: &[u64], i: usize| release.get(i).copied().unwrap_or(0);
        (0..len)
            .map(|i| at(&self.release, i).cmp(&at(&other.release, i)))
            .find(|order| order.is_ne())
            .unwrap_or(Ordering::Equal)
            .then(self.stage.cmp(&other.stage))
            .then_with(|| self.qualifier.cmp(&other.qualifier))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An advisory's affected versions: alternatives (`||`) of bounds joined by `,`, e.g. `>=1.5.0, <2.4.0 || <1.0`;
/// `*` for every version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    alternatives: Vec<Vec<(Op, Version)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
}

impl Range {
    /// Parses a range; the error names the part that is not understood.
    ///
    /// # Errors
    /// A bound without an operator or with a version that does not parse.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let mut bounds = Vec::new();
            for bound in alternative.split(',').map(str::trim).filter(|bound| !bound.is_empty() && *bound != "*") {
                let (op, rest) = [
                    ("<=", Op::LessOrEqual),
                    (">=", Op::GreaterOrEqual),
                    ("<", Op::Less),
                    (">", Op::Greater),
                    ("=", Op::Equal),
                ]
                .into_iter()
                .find_map(|(symbol, op)| bound.strip_prefix(symbol).map(|rest| (op, rest)))
                .ok_or_else(|| format!("{bound:?} has no comparison operator (<, <=, >, >=, =)"))?;
                let version = Version::parse(rest).ok_or_else(|| format!("{rest:?} is not a version"))?;
                bounds.push((op, version));
            }
            alternatives.push(bounds);
        }
        Ok(Self { alternatives })
    }

    /// Whether `version` is in the range.
    #[must_use]
    pub fn contains(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|bounds| {
            bounds.iter().all(|(op, bound)| match op {
                Op::Less => version < bound,
                Op::LessOrEqual => version <= bound,
                Op::Greater => version > bound,
                Op::GreaterOrEqual => version >= bound,
                Op::Equal => version == bound,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn versions_order_across_ecosystems() {
        let ascending = [
            "0.0.0-20210101000000-abcdef123456", // a Go pseudo-version: before any release
            "0.9",
            "1.0.0-alpha.1",
            "1.0.0-alpha.2",
            "1.0.0-beta",
            "1.0.0rc1",
            "1.0",
            "1.0.0.post1",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.4.0.dev0",
            "2.4.0",
            "v4.5.1",
            "9.37.2",
            "10.0.0-SNAPSHOT",
            "10.0.0",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("v3.2.0+incompatible"), v("3.2.0"));
        for not_a_version in ["", "latest", "*", "git+https://example/x.git", "x1.0"] {
            assert_eq!(Version::parse(not_a_version), None, "{not_a_version}");
        }
    }

    #[test]
    fn ranges_hold_exactly_their_versions() {
        let range = Range::parse(">=1.5.0, <2.4.0 || <1.0").unwrap();
        for inside in ["1.5.0", "2.3.9", "2.4.0rc1", "0.9.9"] {
            assert!(range.contains(&v(inside)), "{inside}");
        }
        for outside in ["2.4.0", "1.4.9", "1.0.0", "3.0.0"] {
            assert!(!range.contains(&v(outside)), "{outside}");
        }
        assert!(Range::parse("*").unwrap().contains(&v("0.1")));
        assert!(Range::parse("<=8.5.1").unwrap().contains(&v("8.5.1")));
        assert!(Range::parse("=1.2.3").unwrap().contains(&v("1.2.3")));
        assert!(Range::parse("1.2.3").is_err());
        assert!(Range::parse("<abc").is_err());
    }
}
