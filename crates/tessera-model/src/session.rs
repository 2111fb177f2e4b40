//! Sessions — one login, one family of refresh tokens — and the refresh-rotation rules every backend applies the
//! same way: [`decide`].

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{AutomaticRevocation, Millis};

/// What a caller supplies to create a session: who, for which client, with what, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
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

/// A stored session: one login, one family of refresh tokens, one `sid` — what it started with, where its
/// rotation stands, and whether it was revoked.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Session id, the `sid` claim.
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
    /// Last successful refresh (or the login).
    pub last_used_at: Millis,
    /// Generation of the live refresh token.
    pub generation: u64,
    /// When the live generation was issued.
    pub generation_issued_at: Millis,
    /// Live or revoked (sticky).
    pub state: SessionState,
}

impl Session {
    /// A session as first stored: generation 0 live.
    #[must_use]
    pub fn new(new: NewSession) -> Self {
        let NewSession { sid, sub, client_id, scope, roles, claims, user_agent, created_at, expires_at } = new;
        Self {
            sid,
            sub,
            client_id,
            scope,
            roles,
            claims,
            user_agent,
            created_at,
            expires_at,
            last_used_at: created_at,
            generation: 0,
            generation_issued_at: created_at,
            state: SessionState::Active,
        }
    }

    /// When the session was revoked, if it was.
    #[must_use]
    pub fn revoked_at(&self) -> Option<Millis> {
        match self.state {
            SessionState::Active => None,
            SessionState::Revoked { at, .. } => Some(at),
        }
    }
}

/// Whether a session can still be refreshed as far as revocation goes: one value, so the instant and the reason of
/// a revocation cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Not revoked.
    Active,
    /// Revoked at `at`, for `reason` (`logout`, an [`AutomaticRevocation`], an administrator's words, ...); the first
    /// revocation's instant and reason stay.
    Revoked {
        /// When.
        at: Millis,
        /// Why, as given by whoever revoked it.
        reason: String,
    },
}

impl SessionState {
    /// The state stored as two optional columns or fields (`revoked_at`, `revoked_reason`), which are written
    /// together: one without the other is a damaged record, not a guess.
    ///
    /// # Errors
    /// The one present without the other, naming the one that is missing.
    pub fn from_columns(revoked_at: Option<Millis>, revoked_reason: Option<String>) -> Result<Self, &'static str> {
        match (revoked_at, revoked_reason) {
            (None, None) => Ok(Self::Active),
            (Some(at), Some(reason)) => Ok(Self::Revoked { at, reason }),
            (Some(_), None) => Err("revoked_reason"),
            (None, Some(_)) => Err("revoked_at"),
        }
    }

    /// The state as the two optional columns or fields it is stored in (`revoked_at`, `revoked_reason`).
    #[must_use]
    pub fn to_columns(&self) -> (Option<Millis>, Option<&str>) {
        match self {
            Self::Active => (None, None),
            Self::Revoked { at, reason } => (Some(*at), Some(reason.as_str())),
        }
    }
}

/// Kinds of recorded [`SecurityEvent`](crate::SecurityEvent), by their stored and logged names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityEventKind {
    /// A rotated refresh token came back: the session was revoked.
    RefreshTokenReuse,
    /// A session was revoked: a logout, a user ending one of their sessions, a client (RFC 7009) or an admin.
    SessionRevoked,
    /// Everything a subject was issued was revoked: a logout everywhere, or an admin.
    SessionsRevokedAll,
    /// A failed-login limit started refusing a user from an address.
    LoginLocked,
    /// A node started signing with a new key.
    KeyRotated,
    /// A keyring or secrets entry failed the master key's integrity check and was refused.
    KeyEntryRefused,
    /// A write through the admin API: a revocation, a change of the migration's rollout, its rollback.
    AdminChange,
    /// The migration's triggers returned the rollout to its previous phase.
    MigrationAutoRollback,
}

impl SecurityEventKind {
    /// Every kind.
    pub const ALL: [Self; 8] = [
        Self::RefreshTokenReuse,
        Self::SessionRevoked,
        Self::SessionsRevokedAll,
        Self::LoginLocked,
        Self::KeyRotated,
        Self::KeyEntryRefused,
        Self::AdminChange,
        Self::MigrationAutoRollback,
    ];

    /// The name stored with the event and logged as `security_event`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::SessionRevoked => "session_revoked",
            Self::SessionsRevokedAll => "sessions_revoked_all",
            Self::LoginLocked => "login_locked",
            Self::KeyRotated => "key_rotated",
            Self::KeyEntryRefused => "key_entry_refused",
            Self::AdminChange => "admin_change",
            Self::MigrationAutoRollback => "migration_auto_rollback",
        }
    }

    /// The kind stored under `name`, if it is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
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

impl Refusal {
    /// Every refusal, in declaration order.
    pub const ALL: [Self; 6] =
        [Self::Unknown, Self::Revoked, Self::Expired, Self::Idle, Self::LoggedOutEverywhere, Self::UserDisabled];

    /// Its name: the metric label, the Redis refresh script's answer, the serialized form.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Idle => "idle",
            Self::LoggedOutEverywhere => "logged_out_everywhere",
            Self::UserDisabled => "user_disabled",
        }
    }

    /// The refusal named `name` (see [`as_str`](Self::as_str)).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|refusal| refusal.as_str() == name)
    }
}

/// What presenting a refresh token does.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// The live generation was presented: the family moved to the next generation (returned).
    Rotated(Session),
    /// The previous generation was presented within the grace window: the same live generation again.
    Replayed(Session),
    /// An older generation was presented: the family is now revoked and a security event recorded.
    TheftDetected(Session),
    /// Refused; nothing changed.
    Refused(Refusal),
}

impl RefreshOutcome {
    /// Its metric label (`tessera_refresh_total{outcome=...}`): `rotated`, `grace_replay`, `reuse_detected`, or
    /// the refusal's name.
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Rotated(_) => "rotated",
            Self::Replayed(_) => "grace_replay",
            Self::TheftDetected(_) => AutomaticRevocation::ReuseDetected.as_str(),
            Self::Refused(refusal) => refusal.as_str(),
        }
    }
}

/// The decision for presenting generation `presented` of `family` at `now` — the one place the rotation state
/// machine lives, so every backend behaves alike.
#[must_use]
pub fn decide(family: &Session, presented: u64, subject: &SubjectState, now: Millis, rules: RefreshRules) -> Decision {
    if family.state != SessionState::Active {
        return Decision::Refuse(Refusal::Revoked);
    }
    if now >= family.expires_at {
        return Decision::Refuse(Refusal::Expired);
    }
    if subject.not_before.is_some_and(|not_before| family.created_at <= not_before) {
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

    fn session(generation: u64, issued_at: Millis) -> Session {
        Session {
            generation,
            generation_issued_at: issued_at,
            last_used_at: issued_at,
            ..Session::new(NewSession {
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
        let f = session(5, 100_000);
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
        let mut f = session(1, 10);
        let out = SubjectState { not_before: Some(0), disabled: false };
        assert_eq!(decide(&f, 1, &out, 11, RULES), Decision::Refuse(Refusal::LoggedOutEverywhere));
        let later = SubjectState { not_before: Some(-1), disabled: true };
        assert_eq!(decide(&f, 1, &later, 11, RULES), Decision::Refuse(Refusal::UserDisabled));
        f.state = SessionState::Revoked { at: 5, reason: "logout".into() };
        assert_eq!(decide(&f, 0, &SubjectState::default(), 11, RULES), Decision::Refuse(Refusal::Revoked));
    }

    #[test]
    fn a_revocation_is_stored_with_both_its_instant_and_its_reason_or_not_at_all() {
        let revoked = SessionState::Revoked { at: 7, reason: "logout".into() };
        assert_eq!(SessionState::from_columns(None, None), Ok(SessionState::Active));
        assert_eq!(SessionState::from_columns(Some(7), Some("logout".into())), Ok(revoked.clone()));
        assert_eq!(revoked.to_columns(), (Some(7), Some("logout")));
        assert_eq!(SessionState::Active.to_columns(), (None, None));
        assert_eq!(SessionState::from_columns(Some(7), None), Err("revoked_reason"), "an instant without a reason");
        assert_eq!(SessionState::from_columns(None, Some("logout".into())), Err("revoked_at"), "a reason alone");
    }

    #[test]
    fn each_refusal_has_one_name_used_for_labels_scripts_and_json() {
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_name(refusal.as_str()), Some(refusal));
            assert_eq!(serde_json::to_value(refusal).ok(), Some(Value::from(refusal.as_str())));
            assert_eq!(RefreshOutcome::Refused(refusal).label(), refusal.as_str());
        }
        assert_eq!(Refusal::from_name("theft"), None);
    }
}
