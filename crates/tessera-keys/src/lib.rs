//! # tessera-keys
//!
//! The life of Tessera's signing keys: `next` (published, not signing) → `active` (signing) → `retired` (verify
//! only, until every token it signed has expired) → removed; rotation on a schedule and on demand; and the
//! keyring — a file in the data directory, or a document in a shared store ([`Documents`]) — with private keys
//! sealed by AES-256-GCM under an operator-supplied master key; a second keyring of RS256 keys for ID tokens when
//! the signing keys are of another algorithm ([`KeyStore::rs256`], [`RotationPolicy::rs256`]); and the server
//! secrets (MAC keys of refresh and CSRF tokens), which rotate the same way ([`SecretRing`]).
//!
//! Phases are derived from each key's activation instant and the policy, never stored, so a clock that moves on
//! or a server that was down cannot leave a key in a stale phase. Time is passed in (`now`, seconds since the
//! epoch), so every rule is testable without waiting.
#![warn(missing_docs)]

mod error;
mod master;
mod ring;
mod secrets;
mod store;

pub use error::KeyringError;
pub use master::MasterKey;
pub use ring::{Activation, Change, KeyRing, KeyStatus, ManagedKey, Phase, RotationPolicy};
pub use secrets::{SecretRing, SecretVersion};
pub use store::{Documents, KeyStore, Revision, Sealing};
