//! Who is steered to tokens: the phase, the canary users, the role segments and the percentage.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How many buckets users are spread over: the percentage has a resolution of 0.0001%.
pub const BUCKETS: u32 = 1_000_000;

/// Most canary users and segments a rollout may name: the rollout is read on every steering decision and kept in
/// one stored document.
const MAX_CANARY_USERS: usize = 10_000;
const MAX_SEGMENTS: usize = 100;
/// Longest user id (the same bound as the legacy adapters').
const MAX_USER_ID: usize = 256;

/// Where the migration stands, in the order it advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Nobody is steered to tokens: everyone logs in and stays on legacy sessions (tokens already issued still
    /// verify until they expire).
    #[default]
    Off,
    /// Only the canary users and the segments are steered to tokens.
    Canary,
    /// The canary users, the segments and a percentage of all users.
    Rollout,
    /// Everyone is steered to tokens; legacy sessions are still accepted, answered with a deprecation notice.
    TokensOnly,
    /// Legacy sessions are refused.
    Done,
}

impl Phase {
    /// The phase's name, as configuration, the CLI and the admin API spell it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Canary => "canary",
            Self::Rollout => "rollout",
            Self::TokensOnly => "tokens-only",
            Self::Done => "done",
        }
    }

    /// 0 (`off`) to 4 (`done`), for the phase gauge.
    #[must_use]
    pub const fn ordinal(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Off, Self::Canary, Self::Rollout, Self::TokensOnly, Self::Done]
            .into_iter()
            .find(|phase| phase.as_str() == text)
            .ok_or_else(|| format!("unknown phase {text:?}: expected off, canary, rollout, tokens-only or done"))
    }
}

/// How a request was, or a user is to be, authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A Tessera access token.
    Token,
    /// A legacy session cookie.
    Session,
}

impl Method {
    /// `token` or `session`: the `X-Auth-Method` header and the metrics' `method` label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Session => "session",
        }
    }
}

/// Users steered to tokens by a role they hold (`{"role": "staff"}`), or by an attribute of their legacy session
/// (`{"attribute": "plan", "equals": "beta"}`; the adapters' `attribute_fields` name what a session offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Segment {
    /// The role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The attribute's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// The value the attribute must have, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
}

impl Segment {
    /// Holders of `role`.
    #[must_use]
    pub fn role(role: &str) -> Self {
        Self { role: Some(role.to_owned()), ..Self::default() }
    }

    /// Users whose attribute `name` is `value`.
    #[must_use]
    pub fn attribute(name: &str, value: &str) -> Self {
        Self { attribute: Some(name.to_owned()), equals: Some(value.to_owned()), ..Self::default() }
    }

    fn matches<R: AsRef<str>>(&self, roles: &[R], attributes: &BTreeMap<String, String>) -> bool {
        match (&self.role, &self.attribute, &self.equals) {
            (Some(wanted), None, None) => roles.iter().any(|role| role.as_ref() == wanted),
            (None, Some(name), Some(value)) => attributes.get(name) == Some(value),
            // Refused by `validate`; matches nobody if it ever got this far.
            _ => false,
        }
    }

    fn problem(&self) -> Option<String> {
        match (&self.role, &self.attribute, &self.equals) {
            (Some(role), None, None) if tessera_model::is_safe_role(role) => None,
            (Some(role), None, None) => {
                Some(format!("segment role {role:?} is not a role (1 to 64 of A-Z a-z 0-9 . _ : -)"))
            }
            (None, Some(name), Some(value)) if !name.is_empty() && name.len() <= 64 && value.len() <= 256 => None,
            _ => Some(format!(
                "a segment is {{\"role\": R}} or {{\"attribute\": NAME, \"equals\": VALUE}}, not {}",
                serde_json::to_string(self).unwrap_or_default()
            )),
        }
    }
}

/// Who is steered to tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Rollout {
    /// The phase.
    pub phase: Phase,
    /// In phase `rollout`, the share of all users steered to tokens (above the canary users and segments), in
    /// percent; 0 in every other phase.
    #[serde(default)]
    pub percent: f64,
    /// Users steered to tokens from phase `canary` on (internal staff).
    #[serde(default)]
    pub canary_users: Vec<String>,
    /// Roles whose holders are steered to tokens from phase `canary` on.
    #[serde(default)]
    pub segments: Vec<Segment>,
}

/// Everything wrong with a rollout, all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout: {}", .0.join("; "))]
pub struct RolloutError(pub Vec<String>);

impl Rollout {
    /// The rollout unchanged but for its phase (and percentage): the canary users and segments stay, so a phase
    /// rolled back can be advanced again as it was.
    #[must_use]
    pub fn at(&self, phase: Phase, percent: f64) -> Self {
        Self { phase, percent, ..self.clone() }
    }

    /// Every problem of the rollout.
    ///
    /// # Errors
    /// A percentage outside (0, 100] in phase `rollout`, or set in another phase; more than 10,000 canary users or
    /// 100 segments; an empty, over-long or control-character user id; a segment role that is not a role.
    pub fn validate(&self) -> Result<(), RolloutError> {
        let mut problems = Vec::new();
        if self.phase == Phase::Rollout {
            if !(self.percent.is_finite() && self.percent > 0.0 && self.percent <= 100.0) {
                problems
                    .push(format!("phase rollout needs a percentage above 0 and at most 100, not {}", self.percent));
            }
        } else if self.percent != 0.0 {
            problems.push(format!("a percentage applies to phase rollout only, not {}", self.phase));
        }
        if self.canary_users.len() > MAX_CANARY_USERS {
            problems.push(format!("at most {MAX_CANARY_USERS} canary users, not {}", self.canary_users.len()));
        }
        for user in &self.canary_users {
            if user.is_empty() || user.len() > MAX_USER_ID || user.chars().any(char::is_control) {
                problems.push(format!("canary user {user:?} is not a user id (1 to 256 bytes, no control characters)"));
            }
        }
        if self.segments.len() > MAX_SEGMENTS {
            problems.push(format!("at most {MAX_SEGMENTS} segments, not {}", self.segments.len()));
        }
        problems.extend(self.segments.iter().filter_map(Segment::problem));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RolloutError(problems))
        }
    }

    /// Where `user_id`, holding `roles` and (from a legacy session) `attributes`, is steered.
    #[must_use]
    pub fn steer<R: AsRef<str>>(&self, user_id: &str, roles: &[R], attributes: &BTreeMap<String, String>) -> Method {
        let chosen = || {
            self.canary_users.iter().any(|user| user == user_id)
                || self.segments.iter().any(|segment| segment.matches(roles, attributes))
        };
        let steered = match self.phase {
            Phase::Off => false,
            Phase::Canary => chosen(),
            Phase::Rollout => chosen() || bucket(user_id) < self.threshold(),
            Phase::TokensOnly | Phase::Done => true,
        };
        if steered {
            Method::Token
        } else {
            Method::Session
        }
    }

    /// Whether legacy sessions are still accepted.
    #[must_use]
    pub fn accepts_sessions(&self) -> bool {
        self.phase != Phase::Done
    }

    /// The buckets below which users are steered by the percentage.
    fn threshold(&self) -> u32 {
        if self.phase != Phase::Rollout {
            return 0;
        }
        // Validated to (0, 100]: the product is within 0..=BUCKETS.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let buckets = (self.percent.clamp(0.0, 100.0) * f64::from(BUCKETS / 100)).round() as u32;
        buckets
    }

    /// How far along the rollout is: a later phase, or a higher percentage in phase `rollout`, is further.
    /// Advancing is what gates guard; going back is always allowed.
    #[must_use]
    pub fn progress(&self) -> (u8, u32) {
        (self.phase.ordinal(), self.threshold())
    }

    /// The phase with its percentage where it has one: `rollout 5%`, `canary`.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.phase == Phase::Rollout {
            format!("rollout {}%", self.percent)
        } else {
            self.phase.to_string()
        }
    }
}

/// `user_id`'s bucket, in `0..BUCKETS`: the first 64 bits of SHA-256 over a fixed label and the id. The same on
/// every node and every release, so a user steered to tokens at 5% is still steered at 20%.
#[must_use]
pub fn bucket(user_id: &str) -> u32 {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"tessera-migration-bucket\0");
    context.update(user_id.as_bytes());
    let digest = context.finish();
    let mut first = [0_u8; 8];
    first.copy_from_slice(digest.as_ref().get(..8).unwrap_or(&[0; 8]));
    // u64 modulo 10^6: the bias is below 10^-13.
    #[allow(clippy::cast_possible_truncation)]
    let bucket = (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u32;
    bucket
}

/// A rollout at `phase` with one canary user (`staff-1`) and one segment (`beta`), for the tests of this crate.
#[cfg(test)]
pub(crate) fn sample(phase: Phase, percent: f64) -> Rollout {
    Rollout { phase, percent, canary_users: vec!["staff-1".into()], segments: vec![Segment::role("beta")] }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ATTRIBUTES: BTreeMap<String, String> = BTreeMap::new();

    fn rollout(phase: Phase, percent: f64) -> Rollout {
        sample(phase, percent)
    }

    fn share_steered(rollout: &Rollout, users: u32) -> f64 {
        let steered = (0..users)
            .filter(|n| rollout.steer::<&str>(&format!("user-{n}"), &[], &NO_ATTRIBUTES) == Method::Token)
            .count();
        #[allow(clippy::cast_precision_loss)]
        let share = steered as f64 / f64::from(users);
        share
    }

    #[test]
    fn each_phase_steers_whom_it_says() {
        let none: [&str; 0] = [];
        let off = rollout(Phase::Off, 0.0);
        assert_eq!(off.steer("staff-1", &none, &NO_ATTRIBUTES), Method::Session);
        assert_eq!(off.steer("x", &["beta"], &NO_ATTRIBUTES), Method::Session);
        let canary = rollout(Phase::Canary, 0.0);
        assert_eq!(canary.steer("staff-1", &none, &NO_ATTRIBUTES), Method::Token);
        assert_eq!(canary.steer("someone", &["user", "beta"], &NO_ATTRIBUTES), Method::Token);
        assert_eq!(canary.steer("someone", &["user"], &NO_ATTRIBUTES), Method::Session);
        for phase in [Phase::TokensOnly, Phase::Done] {
            assert_eq!(rollout(phase, 0.0).steer("anyone", &none, &NO_ATTRIBUTES), Method::Token);
        }
        assert!(rollout(Phase::TokensOnly, 0.0).accepts_sessions());
        assert!(!rollout(Phase::Done, 0.0).accepts_sessions());
        // In a rollout the canary users and segments stay steered at any percentage.
        let small = rollout(Phase::Rollout, 0.0001);
        assert_eq!(small.steer("staff-1", &none, &NO_ATTRIBUTES), Method::Token);
        assert_eq!(small.steer("someone", &["beta"], &NO_ATTRIBUTES), Method::Token);
    }

    #[test]
    fn an_attribute_segment_steers_users_whose_legacy_session_has_that_value() {
        let none: [&str; 0] = [];
        let beta = Rollout { segments: vec![Segment::attribute("plan", "beta")], ..rollout(Phase::Canary, 0.0) };
        let attributes = |plan: &str| BTreeMap::from([("plan".to_owned(), plan.to_owned())]);
        assert_eq!(beta.steer("someone", &none, &attributes("beta")), Method::Token);
        assert_eq!(beta.steer("someone", &none, &attributes("free")), Method::Session);
        assert_eq!(beta.steer("someone", &none, &NO_ATTRIBUTES), Method::Session);
        // A role of the same name as the attribute's value is not the attribute.
        assert_eq!(beta.steer("someone", &["beta"], &NO_ATTRIBUTES), Method::Session);
        assert!(beta.validate().is_ok());
        for bad in [
            Segment::default(),
            Segment { attribute: Some("plan".into()), ..Segment::default() },
            Segment { role: Some("staff".into()), attribute: Some("plan".into()), equals: Some("beta".into()) },
        ] {
            let invalid = Rollout { segments: vec![bad.clone()], ..rollout(Phase::Canary, 0.0) };
            assert!(invalid.validate().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&Segment::attribute("plan", "beta")).unwrap();
        assert_eq!(json, r#"{"attribute":"plan","equals":"beta"}"#);
    }

    #[test]
    fn the_percentage_steers_about_that_share_of_users() {
        for percent in [0.1, 5.0, 20.0, 50.0] {
            let share = share_steered(&rollout(Phase::Rollout, percent), 40_000) * 100.0;
            let tolerance = 0.2 + percent * 0.05;
            assert!((share - percent).abs() < tolerance, "{percent}%: steered {share}%");
        }
        assert!((share_steered(&rollout(Phase::Rollout, 100.0), 1_000) - 1.0).abs() < f64::EPSILON);
    }

    proptest::proptest! {
        #[test]
        fn a_user_steered_at_a_percentage_stays_steered_at_every_higher_one(
            user in "[a-z0-9@.]{1,24}", low in 0.0001_f64..100.0, raise in 0.0_f64..100.0,
        ) {
            let high = (low + raise).min(100.0);
            let none: [&str; 0] = [];
            if rollout(Phase::Rollout, low).steer(&user, &none, &NO_ATTRIBUTES) == Method::Token {
                proptest::prop_assert_eq!(rollout(Phase::Rollout, high).steer(&user, &none, &NO_ATTRIBUTES), Method::Token);
            }
            proptest::prop_assert_eq!(bucket(&user), bucket(&user.clone()));
        }
    }

    #[test]
    fn buckets_are_fixed_across_releases() {
        // A change here would move users between groups in the middle of a rollout. Computed independently with
        // Python: int.from_bytes(sha256(b"tessera-migration-bucket\0" + user).digest()[:8], "big") % 10**6.
        assert_eq!(bucket("alice"), 849_769);
        assert_eq!(bucket("bob"), 735_154);
        assert_eq!(bucket(""), 831_547);
    }

    #[test]
    fn an_invalid_rollout_reports_every_problem() {
        let bad = Rollout {
            phase: Phase::Rollout,
            percent: 150.0,
            canary_users: vec![String::new(), "ok".into(), "a\nb".into()],
            segments: vec![Segment::role("not,a role"), Segment::role("fine")],
        };
        let RolloutError(problems) = bad.validate().unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("150"));
        for percent in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(rollout(Phase::Rollout, percent).validate().is_err(), "{percent}");
        }
        assert!(rollout(Phase::Canary, 5.0).validate().is_err());
        assert!(rollout(Phase::Rollout, 100.0).validate().is_ok());
        assert!(rollout(Phase::Off, 0.0).validate().is_ok());
    }

    #[test]
    fn progress_orders_phases_and_percentages() {
        let order = [
            rollout(Phase::Off, 0.0),
            rollout(Phase::Canary, 0.0),
            rollout(Phase::Rollout, 0.1),
            rollout(Phase::Rollout, 5.0),
            rollout(Phase::Rollout, 100.0),
            rollout(Phase::TokensOnly, 0.0),
            rollout(Phase::Done, 0.0),
        ];
        for pair in order.windows(2) {
            assert!(pair[0].progress() < pair[1].progress(), "{} < {}", pair[0].describe(), pair[1].describe());
        }
        assert_eq!("tokens-only".parse::<Phase>(), Ok(Phase::TokensOnly));
        assert!("halfway".parse::<Phase>().is_err());
        let json = serde_json::to_string(&rollout(Phase::TokensOnly, 0.0)).unwrap();
        assert!(json.contains(r#""phase":"tokens-only""#), "{json}");
    }
}
