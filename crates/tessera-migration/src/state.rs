//! The rollout as persisted — one document in the store that every node reads — and the changes made to it.

use serde::{Deserialize, Serialize};

use crate::rollout::{Phase, Rollout, RolloutError};

/// The store document holding the [`MigrationState`].
pub const DOCUMENT: &str = "migration";

/// Changes kept in the history; older ones are dropped (they are also in the server logs).
pub const HISTORY_KEPT: usize = 1_000;

/// One change of the rollout: who, when, from what to what, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When, milliseconds since the epoch.
    pub at_ms: i64,
    /// Who: the operator the CLI or admin API names, or the node whose trigger fired.
    pub actor: String,
    /// `set`, `forced` (past a closed gate), `rollback` (the kill switch) or `auto-rollback`.
    pub kind: String,
    /// The rollout before.
    pub from: Rollout,
    /// The rollout after.
    pub to: Rollout,
    /// Why, as given (or the trigger that fired).
    pub reason: String,
}

/// The migration's persisted state.
// Unknown fields are ignored, not refused: during a rolling upgrade a newer node may write fields an older one does
// not know yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MigrationState {
    /// Who is steered where now.
    pub rollout: Rollout,
    /// When the current rollout took effect (the `Deprecation` date of phase `tokens-only`).
    pub since_ms: i64,
    /// The changes, oldest first, at most [`HISTORY_KEPT`].
    pub history: Vec<Change>,
    /// The last rollback a trigger made, kept when the history has long moved on.
    pub last_auto_rollback: Option<Change>,
}

/// Why a change was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The new rollout is invalid.
    #[error(transparent)]
    Invalid(#[from] RolloutError),
    /// The rollout would advance while the current phase's gate does not hold.
    #[error("the gate of {current} does not hold: {why} (force to advance anyway)")]
    GateClosed {
        /// The current rollout.
        current: String,
        /// What the gate found.
        why: String,
    },
}

impl MigrationState {
    /// The state stored as `text`.
    ///
    /// # Errors
    /// Text that is not a migration state (the document is refused whole; the running state stays).
    pub fn from_document(text: &str) -> Result<Self, String> {
        let state: Self = serde_json::from_str(text).map_err(|err| format!("migration document: {err}"))?;
        state.rollout.validate().map_err(|err| format!("migration document: {err}"))?;
        Ok(state)
    }

    /// The document's text.
    #[must_use]
    pub fn to_document(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Sets the rollout to `to`. Advancing (see [`Rollout::progress`]) needs `gate` to hold, unless `force`;
    /// going back or sideways never does. `Ok(false)`: `to` is the current rollout, nothing changed.
    ///
    /// # Errors
    /// An invalid rollout, or a closed gate; nothing is changed.
    pub fn set(
        &mut self,
        to: Rollout,
        gate: Result<(), String>,
        force: bool,
        actor: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<bool, SetError> {
        to.validate()?;
        if to == self.rollout {
            return Ok(false);
        }
        let advancing = to.progress() > self.rollout.progress();
        let kind = match gate {
            Err(why) if advancing && !force => {
                return Err(SetError::GateClosed { current: self.rollout.describe(), why });
            }
            Err(_) if advancing => "forced",
            _ => "set",
        };
        self.change(to, kind, actor, reason, at_ms);
        Ok(true)
    }

    /// The kill switch: phase `off`, everyone steered back to legacy sessions (the canary users and segments are
    /// kept for the next advance). `false` when already off.
    pub fn rollback(&mut self, actor: &str, reason: &str, at_ms: i64) -> bool {
        if self.rollout.phase == Phase::Off {
            return false;
        }
        self.change(self.rollout.at(Phase::Off, 0.0), "rollback", actor, reason, at_ms);
        true
    }

    /// A trigger fired: back to the previous phase (see [`previous`](Self::previous)). `false` when already off.
    pub fn auto_rollback(&mut self, node: &str, trigger: &str, at_ms: i64) -> bool {
        if self.rollout.phase == Phase::Off {
            return false;
        }
        let to = self.previous();
        self.change(to, "auto-rollback", node, trigger, at_ms);
        self.last_auto_rollback = self.history.last().cloned();
        true
    }

    /// The rollout the current one was advanced from: the `from` of the latest change that advanced to exactly
    /// the current rollout, or `off` when none is on record (a state older than the history kept).
    #[must_use]
    pub fn previous(&self) -> Rollout {
        self.history
            .iter()
            .rev()
            .find(|change| change.to == self.rollout && change.from.progress() < change.to.progress())
            .map_or_else(|| self.rollout.at(Phase::Off, 0.0), |change| change.from.clone())
    }

    fn change(&mut self, to: Rollout, kind: &str, actor: &str, reason: &str, at_ms: i64) {
        let from = std::mem::replace(&mut self.rollout, to.clone());
        self.since_ms = at_ms;
        self.history.push(Change { at_ms, actor: actor.into(), kind: kind.into(), from, to, reason: reason.into() });
        if self.history.len() > HISTORY_KEPT {
            let excess = self.history.len() - HISTORY_KEPT;
            self.history.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::sample as at;

    fn advanced_to_20() -> MigrationState {
        let mut state = MigrationState::default();
        for (step, to) in
            [at(Phase::Canary, 0.0), at(Phase::Rollout, 5.0), at(Phase::Rollout, 20.0)].into_iter().enumerate()
        {
            assert_eq!(state.set(to, Ok(()), false, "ops@example", "plan", i64::try_from(step).unwrap()), Ok(true));
        }
        state
    }

    #[test]
    fn every_change_is_recorded_with_who_when_from_and_to() {
        let state = advanced_to_20();
        assert_eq!(state.history.len(), 3);
        let last = state.history.last().unwrap();
        assert_eq!((last.actor.as_str(), last.kind.as_str(), last.at_ms), ("ops@example", "set", 2));
        assert_eq!((last.from.describe(), last.to.describe()), ("rollout 5%".into(), "rollout 20%".into()));
        assert_eq!(state.since_ms, 2);
        let reread = MigrationState::from_document(&state.to_document()).unwrap();
        assert_eq!(reread, state);
    }

    #[test]
    fn a_closed_gate_stops_an_advance_but_not_a_step_back_and_force_is_recorded() {
        let mut state = advanced_to_20();
        let closed = || Err("p95 80 ms above 50 ms".to_owned());
        let refused = state.set(at(Phase::Rollout, 50.0), closed(), false, "ops", "", 9).unwrap_err();
        assert!(refused.to_string().contains("rollout 20%") && refused.to_string().contains("80 ms"), "{refused}");
        assert_eq!(state.rollout, at(Phase::Rollout, 20.0));
        assert_eq!(state.set(at(Phase::Rollout, 5.0), closed(), false, "ops", "back", 10), Ok(true));
        assert_eq!(state.set(at(Phase::Rollout, 20.0), closed(), true, "ops", "urgent", 11), Ok(true));
        assert_eq!(state.history.last().unwrap().kind, "forced");
        assert_eq!(state.set(at(Phase::Rollout, 20.0), Ok(()), false, "ops", "again", 12), Ok(false));
    }

    #[test]
    fn an_invalid_rollout_changes_nothing() {
        let mut state = advanced_to_20();
        let before = state.clone();
        assert!(matches!(state.set(at(Phase::Rollout, 150.0), Ok(()), true, "ops", "", 9), Err(SetError::Invalid(_))));
        assert_eq!(state, before);
        assert!(MigrationState::from_document(r#"{"rollout":{"phase":"rollout","percent":-3}}"#).is_err());
        assert!(MigrationState::from_document("{").is_err());
    }

    #[test]
    fn an_automatic_rollback_returns_to_the_phase_advanced_from() {
        let mut state = advanced_to_20();
        assert!(state.auto_rollback("node-a", "error rate 4% above 1%", 20));
        assert_eq!(state.rollout, at(Phase::Rollout, 5.0));
        let recorded = state.last_auto_rollback.clone().unwrap();
        assert_eq!((recorded.kind.as_str(), recorded.actor.as_str()), ("auto-rollback", "node-a"));
        // Firing again goes one further step back, to where 5% was advanced from.
        assert!(state.auto_rollback("node-b", "p95", 21));
        assert_eq!(state.rollout.phase, Phase::Canary);
        assert!(state.auto_rollback("node-b", "p95", 22));
        assert_eq!(state.rollout.phase, Phase::Off);
        assert!(!state.auto_rollback("node-b", "p95", 23));
    }

    #[test]
    fn the_kill_switch_turns_everything_off_and_keeps_the_plan() {
        let mut state = advanced_to_20();
        assert!(state.rollback("ops", "incident 42", 30));
        assert_eq!(state.rollout.phase, Phase::Off);
        assert_eq!(state.rollout.canary_users, ["staff-1"]);
        assert!(!state.rollback("ops", "again", 31));
        assert_eq!(state.history.last().unwrap().kind, "rollback");
    }

    #[test]
    fn the_history_is_bounded() {
        let mut state = MigrationState::default();
        for n in 0..(HISTORY_KEPT + 10) {
            let percent = if n % 2 == 0 { 5.0 } else { 10.0 };
            state.set(at(Phase::Rollout, percent), Ok(()), false, "ops", "", i64::try_from(n).unwrap()).unwrap();
        }
        assert_eq!(state.history.len(), HISTORY_KEPT);
        assert_eq!(state.history[0].at_ms, 10);
    }
}
