//! # tessera-migration
//!
//! The rules of moving users from a legacy application's session cookies to Tessera's tokens, with no I/O:
//!
//! - [`Rollout`]: the phase (`off` → `canary` → `rollout(p%)` → `tokens-only` → `done`), the canary users, the
//!   role segments, and [`Rollout::steer`], which says whether a user is steered to tokens. The percentage picks
//!   users by a stable hash of their id ([`bucket`]), so a user steered at 5% stays steered at 20%.
//! - [`MigrationState`]: the rollout as persisted in the store (one document all nodes read), with every change
//!   recorded — who, when, from what to what — and the transitions an operator or a trigger makes: [`set`],
//!   [`rollback`] (the kill switch), [`auto_rollback`] (back to the previous phase).
//! - [`HealthWindow`]: the token path's requests, server errors and latency per second, lock-free, and
//!   [`Triggers`] / [`Gates`] judged against it: a trigger returns the rollout to its previous phase, a gate must
//!   hold before the rollout may advance.
//! - [`DistinctUsers`]: how many users each method saw, in bounded memory: the progress in users.
//!
//! [`set`]: MigrationState::set
//! [`rollback`]: MigrationState::rollback
//! [`auto_rollback`]: MigrationState::auto_rollback
#![warn(missing_docs)]

mod health;
mod rollout;
mod state;
mod users;

pub use health::{Gates, Health, HealthWindow, Trigger, Triggers};
pub use rollout::{bucket, Method, Phase, Rollout, RolloutError, Segment, BUCKETS};
pub use state::{Change, MigrationState, SetError, DOCUMENT, HISTORY_KEPT};
pub use users::DistinctUsers;
