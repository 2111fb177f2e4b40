//! Security events for people, not only logs: each one is recorded in the store — where `GET
//! /admin/v1/security-events` and `tessera events` read it — and handed to the webhook, if one is configured.
//! Emitting never waits and never fails the request that caused it: recording and delivery happen in the
//! background; an event the store could not record is logged (and still delivered, without an id).
//!
//! The wording of every event is here, one method per occasion, so callers stay one line long and no event can
//! carry a token, a cookie, a secret or a password: they are given none.

mod webhook;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use serde::Serialize;
use tessera_model::{
    Millis, NewSecurityEvent, Provenance, Revocation, SecurityEvent, SecurityEventKind, SecurityEventQuery, Session,
};
use tessera_store::Store;

use crate::clock::Clock;
pub use webhook::{check_webhook_url, WebhookSettings};

/// Records security events and sends them to the webhook (see the module documentation).
#[derive(Clone)]
pub(crate) struct SecurityEvents(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    webhook: Option<webhook::Queue>,
}

impl SecurityEvents {
    /// Events recorded in `store`, dated by `clock`, and delivered to `webhook` when given (its delivery task
    /// starts now, on the current runtime).
    pub(crate) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, webhook: Option<&WebhookSettings>) -> Self {
        let webhook = webhook.and_then(|settings| webhook::Queue::start(settings.clone(), Arc::clone(&clock)));
        Self(Arc::new(Inner { store, clock, webhook }))
    }

    /// Refresh-token reuse, which the store recorded with the session's revocation: only counted and delivered.
    pub(crate) fn reuse_detected(&self, session: &Session) {
        count(SecurityEventKind::RefreshTokenReuse);
        let at = session.revoked_at().unwrap_or_else(|| self.0.clock.now_ms());
        let (this, sub, sid) = (self.clone(), session.sub.clone(), session.sid.clone());
        let raised_in = self.raised_in();
        self.spawn(async move {
            let query = SecurityEventQuery {
                kind: Some(SecurityEventKind::RefreshTokenReuse),
                sub: Some(sub.clone()),
                ..SecurityEventQuery::latest(16)
            };
            let stored = this.0.store.security_events(&query).await.map(|events| {
                events.into_iter().find(|event| event.sid.as_deref() == Some(sid.as_str()))
            });
            match stored {
                Ok(Some(event)) => this.send(Some(event.id), &EventView::of(&event), raised_in),
                outcome => {
                    let why = outcome.err().map_or_else(|| "not found".to_owned(), |err| err.to_string());
                    tracing::error!(error = %why, "the stored refresh-token reuse event could not be read: delivered without its id");
                    let event = NewSecurityEvent::new(SecurityEventKind::RefreshTokenReuse, at, "session revoked")
                        .about(sub)
                        .in_session(sid);
                    this.send(None, &EventView::unrecorded(&event), raised_in);
                }
            }
        });
    }

    /// A revocation that changed something: a session's (logout, a user ending a session, a client, an admin) or
    /// everything of a subject's (logout everywhere, an admin). Token and client revocations are not events of
    /// their own (an admin's is an [`admin_revocation`](Self::admin_revocation)).
    pub(crate) fn revoked(&self, revocation: &Revocation, provenance: &Provenance) {
        let by = provenance.actor.clone();
        match revocation {
            Revocation::Session { sid } => {
                let event = self.now(SecurityEventKind::SessionRevoked, &provenance.reason).in_session(sid).by(by);
                // Whose it was, for the filter by subject: one read, in the background (the request's trace context
                // is taken now, while the request is served).
                let (this, sid, raised_in) = (self.clone(), sid.clone(), self.raised_in());
                self.spawn(async move {
                    match this.0.store.session(&sid).await {
                        Ok(Some(session)) => this.emit_raised_in(event.about(session.sub), raised_in),
                        _ => this.emit_raised_in(event, raised_in),
                    }
                });
            }
            Revocation::Subject { sub, not_before } => {
                let detail = format!("{}: everything issued up to {}", provenance.reason, rfc3339(*not_before));
                self.emit(self.now(SecurityEventKind::SessionsRevokedAll, detail).about(sub).by(by));
            }
            Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => {}
        }
    }

    /// A failed-login limit (`limit`, its setting's name) started refusing `user` from `address`.
    pub(crate) fn login_locked(&self, user: &str, address: IpAddr, limit: &str, retry_after_secs: u64) {
        let detail = format!("failed logins from {address} over rate_limits.{limit}: refused for {retry_after_secs} s");
        self.emit(self.now(SecurityEventKind::LoginLocked, detail).about(user));
    }

    /// This node started signing with key `kid` (after `previous`).
    pub(crate) fn key_rotated(&self, kid: &str, previous: &str) {
        let detail = format!("now signing with key {kid} (was {previous})");
        self.emit(self.now(SecurityEventKind::KeyRotated, detail).by("tessera"));
    }

    /// A keyring or secrets entry failed the master key's integrity check (`why` names the entry, never a value).
    pub(crate) fn key_entry_refused(&self, why: &str) {
        let detail = format!("{why}; the keys in service are kept");
        self.emit(self.now(SecurityEventKind::KeyEntryRefused, detail).by("tessera"));
    }

    /// An admin asked for `revocation` (with `reason`); whether it `changed` anything.
    pub(crate) fn admin_revocation(&self, revocation: &Revocation, reason: &str, changed: bool) {
        let (kind, value, _) = revocation.to_columns();
        let outcome = if changed { "revoked" } else { "already revoked" };
        let mut event = self.now(SecurityEventKind::AdminChange, format!("{kind} {value} {outcome}: {reason}"));
        match revocation {
            Revocation::Session { sid } => event = event.in_session(sid),
            Revocation::Subject { sub, .. } => event = event.about(sub),
            Revocation::Token { .. } | Revocation::TokenById { .. } | Revocation::Client { .. } => {}
        }
        self.emit(event.by("admin"));
    }

    /// An admin changed the migration's rollout (`what` happened, by the `actor` they named, for `reason`).
    pub(crate) fn admin_migration_change(&self, what: &str, actor: &str, reason: &str) {
        let detail = format!("migration {what} by {actor}: {reason}");
        self.emit(self.now(SecurityEventKind::AdminChange, detail).by("admin"));
    }

    /// The migration's triggers returned the rollout from `from` to `to` (why: `reason`).
    pub(crate) fn migration_auto_rollback(&self, from: &str, to: &str, reason: &str) {
        let detail = format!("{reason}; rollout returned from {from} to {to}");
        self.emit(self.now(SecurityEventKind::MigrationAutoRollback, detail).by("tessera"));
    }

    /// An event of `kind` happening now.
    fn now(&self, kind: SecurityEventKind, detail: impl Into<String>) -> NewSecurityEvent {
        NewSecurityEvent::new(kind, self.0.clock.now_ms(), detail)
    }

    /// Counts `event`, then records and delivers it in the background.
    fn emit(&self, event: NewSecurityEvent) {
        self.emit_raised_in(event, self.raised_in());
    }

    /// [`emit`](Self::emit), with the headers of the request that raised it taken earlier.
    fn emit_raised_in(&self, event: NewSecurityEvent, raised_in: HeaderMap) {
        count(event.kind);
        let this = self.clone();
        self.spawn(async move {
            match this.0.store.record_security_event(event.clone()).await {
                Ok(recorded) => this.send(Some(recorded.id), &EventView::of(&recorded), raised_in),
                Err(err) => {
                    tracing::error!(
                        security_event = event.kind.as_str(),
                        error = %err,
                        "a security event could not be recorded: delivered without an id"
                    );
                    this.send(None, &EventView::unrecorded(&event), raised_in);
                }
            }
        });
    }

    /// What the webhook delivery passes on of the request raising an event: its id and trace context.
    fn raised_in(&self) -> HeaderMap {
        if self.0.webhook.is_some() {
            crate::trace::outgoing_headers()
        } else {
            HeaderMap::new()
        }
    }

    /// Hands an event to the webhook, if any, with the headers of the request that raised it.
    fn send(&self, id: Option<u64>, view: &EventView<'_>, raised_in: HeaderMap) {
        let Some(queue) = &self.0.webhook else { return };
        match serde_json::to_vec(view) {
            Ok(body) => queue.send(webhook::Delivery { id, body, raised_in }),
            Err(err) => tracing::error!(error = %err, "a security event could not be written as JSON"),
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(task)),
            Err(_) => tracing::error!("a security event was lost: no async runtime to record it on"),
        }
    }
}

fn count(kind: SecurityEventKind) {
    metrics::counter!("tessera_security_events_total", "kind" => kind.as_str()).increment(1);
}

/// An event as the admin API lists it and the webhook receives it: `at` in RFC 3339 (UTC, milliseconds); no
/// subject, session or actor is `null`, as is the id of an event the store could not record.
#[derive(Serialize)]
pub(crate) struct EventView<'a> {
    id: Option<u64>,
    at: String,
    kind: &'a str,
    sub: Option<&'a str>,
    sid: Option<&'a str>,
    actor: Option<&'a str>,
    detail: &'a str,
}

impl<'a> EventView<'a> {
    pub(crate) fn of(event: &'a SecurityEvent) -> Self {
        Self {
            id: Some(event.id),
            at: rfc3339(event.at),
            kind: &event.kind,
            sub: event.sub.as_deref(),
            sid: event.sid.as_deref(),
            actor: event.actor.as_deref(),
            detail: &event.detail,
        }
    }

    fn unrecorded(event: &'a NewSecurityEvent) -> Self {
        Self {
            id: None,
            at: rfc3339(event.at),
            kind: event.kind.as_str(),
            sub: event.sub.as_deref(),
            sid: event.sid.as_deref(),
            actor: event.actor.as_deref(),
            detail: &event.detail,
        }
    }
}

/// `at` in RFC 3339, UTC, with milliseconds (an instant before 1970 reads as 1970).
pub(crate) fn rfc3339(at: Millis) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(at).unwrap_or(0));
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + since_epoch).to_string()
}

/// An RFC 3339 instant in UTC (`2026-08-04T10:00:00Z`, fractions allowed) as milliseconds since the epoch.
///
/// # Errors
/// When it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    let instant = humantime::parse_rfc3339(text).map_err(|err| format!("{text:?}: {err}"))?;
    let since_epoch = instant.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
    Millis::try_from(since_epoch.as_millis()).map_err(|_| format!("{text:?} is too far ahead"))
}
