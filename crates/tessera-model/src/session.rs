//! Sessions — one login, one family of refresh tokens — and the refresh-rotation rules every backend applies the
//! same way: [`decide`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Millis;

/// What a session starts with: who, for which client, with what, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFamily {
    /// Session id, the `sid` claim (random, from the caller).
    pub sid: String,
    /// Subject.
    pub sub: String,
    /// The client the session belongs to.
    pub client_id: String,
    /// Scopes granted.
    pub scope: Option<String>,
    /// Roles at login.
    pub roles: Vec<String>,
    /// Extra claims put into every access token of this session (admin-minted sessions).
    pub claims: Map<String, Value>,
    /// The login's user agent, for the sessions list.
    pub user_agent: Option<String>,
    /// Created.
    pub created_at: Millis,
    /// Absolute expiry, never extended by rotation.
    pub expires_at: Millis,
}

/// A session: one login, one family of refresh tokens, one `sid` — what it started with, and where its rotation
/// stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// What the session started with.
    pub session: NewFamily,
    /// Last successful refresh (or the login).
    pub last_used_at: Millis,
    /// Generation of the live refresh token.
    pub generation: u64,
    /// When the live generation was issued.
    pub generation_issued_at: Millis,
    /// When the family was revoked (sticky).
    pub revoked_at: Option<Millis>,
    /// Why: `logout`, `reuse_detected`, `admin`, ...
    pub revoked_reason: Option<String>,
}

impl Family {
    /// A session as first stored: generation 0 live.
    #[must_use]
    pub fn new(session: NewFamily) -> Self {
        Self {
            last_used_at: session.created_at,
            generation: 0,
            generation_issued_at: session.created_at,
            revoked_at: None,
            revoked_reason: None,
            session,
        }
    }
}

/// The rotation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRules {
    /// Re-presenting the immediately previous token within this window returns the same successor.
    pub grace_ms: Millis,
    /// A family unused for this long cannot be refreshed.
    pub idle_timeout_ms: Millis,
}

/// Why a refresh was refused without any change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No such family, or a generation never issued.
    Unknown,
    /// The family was revoked (logout, theft, admin).
    Revoked,
    /// Past the absolute lifetime.
    Expired,
    /// Unused for longer than the idle timeout.
    Idle,
    /// The subject logged out everywhere after this family was created.
    LoggedOutEverywhere,
    /// The user is disabled.
    UserDisabled,
}

/// What presenting a refresh token does.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// The live generation was presented: the family moved to the next generation (returned).
    Rotated(Family),
    /// The previous generation was presented within the grace window: the same live generation again.
    Replayed(Family),
    /// An older generation was presented: the family is now revoked and a security event recorded.
    TheftDetected(Family),
    /// Refused; nothing changed.
    Refused(Refusal),
}

/// The decision for presenting generation `presented` of `family` at `now` — the one place the rotation state
/// machine lives, so every backend behaves alike.
#[must_use]
pub fn decide(family: &Family, presented: u64, subject: &SubjectState, now: Millis, rules: RefreshRules) -> Decision {
    if family.revoked_at.is_some() {
        return Decision::Refuse(Refusal::Revoked);
    }
    if now >= family.session.expires_at {
        return Decision::Refuse(Refusal::Expired);
    }
    if subject.not_before.is_some_and(|not_before| family.session.created_at <= not_before) {
        return Decision::Refuse(Refusal::LoggedOutEverywhere);
    }
    if subject.disabled {
        return Decision::Refuse(Refusal::UserDisabled);
    }
    let live = family.generation;
    if presented == live {
        if now.saturating_sub(family.last_used_at) >= rules.idle_timeout_ms {
            return Decision::Refuse(Refusal::Idle);
        }
        return Decision::Rotate;
    }
    if presented.checked_add(1) == Some(live) && now.saturating_sub(family.generation_issued_at) < rules.grace_ms {
        return Decision::Replay;
    }
    if presented < live {
        return Decision::Theft;
    }
    Decision::Refuse(Refusal::Unknown)
}

/// The per-subject state refresh and verification consult.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// Everything issued at or before this instant is dead (logout everywhere, user disabled).
    pub not_before: Option<Millis>,
    /// The subject is a disabled user.
    pub disabled: bool,
}

/// See [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Move to the next generation.
    Rotate,
    /// Hand out the live generation again.
    Replay,
    /// Revoke the family.
    Theft,
    /// Refuse; change nothing.
    Refuse(Refusal),
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: RefreshRules = RefreshRules { grace_ms: 10_000, idle_timeout_ms: 3_600_000 };

    fn family(generation: u64, issued_at: Millis) -> Family {
        Family {
            generation,
            generation_issued_at: issued_at,
            last_used_at: issued_at,
            ..Family::new(NewFamily {
                sid: "s".into(),
                sub: "u".into(),
                client_id: "c".into(),
                scope: None,
                roles: vec![],
                claims: Map::new(),
                user_agent: None,
                created_at: 0,
                expires_at: 1_000_000_000,
            })
        }
    }

    #[test]
    fn the_rotation_state_machine() {
        let live = SubjectState::default();
        let f = family(5, 100_000);
        assert_eq!(decide(&f, 5, &live, 100_001, RULES), Decision::Rotate);
        assert_eq!(decide(&f, 4, &live, 109_999, RULES), Decision::Replay);
        assert_eq!(decide(&f, 4, &live, 110_000, RULES), Decision::Theft, "the grace window is exclusive");
        assert_eq!(decide(&f, 3, &live, 100_001, RULES), Decision::Theft, "older generations are always theft");
        assert_eq!(decide(&f, 6, &live, 100_001, RULES), Decision::Refuse(Refusal::Unknown));
        assert_eq!(decide(&f, 5, &live, 100_000 + 3_600_000, RULES), Decision::Refuse(Refusal::Idle));
        assert_eq!(decide(&f, 5, &live, 1_000_000_000, RULES), Decision::Refuse(Refusal::Expired));
        let zero_grace = RefreshRules { grace_ms: 0, ..RULES };
        assert_eq!(decide(&f, 4, &live, 100_000, zero_grace), Decision::Theft, "zero grace never replays");
    }

    #[test]
    fn revocation_and_subject_state_win_over_everything() {
        let mut f = family(1, 10);
        let out = SubjectState { not_before: Some(0), disabled: false };
        assert_eq!(decide(&f, 1, &out, 11, RULES), Decision::Refuse(Refusal::LoggedOutEverywhere));
        let later = SubjectState { not_before: Some(-1), disabled: true };
        assert_eq!(decide(&f, 1, &later, 11, RULES), Decision::Refuse(Refusal::UserDisabled));
        f.revoked_at = Some(5);
        assert_eq!(decide(&f, 0, &SubjectState::default(), 11, RULES), Decision::Refuse(Refusal::Revoked));
    }
}
