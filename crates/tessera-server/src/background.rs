//! Work that keeps a node current without a request to prompt it: the sync loop (revocation log, clients, signing
//! keys), the fetchers of trusted issuers' key sets, and the pruning jobs (expired sessions, idle rate-limit keys).

use crate::state::AppState;
use crate::{issuers, repeated};

/// Loads the revocation log into the index (from as far back as any live token reaches) and the registered
/// clients, then keeps the keys, the index and the clients current: changes made by `tessera` commands or other
/// nodes arrive within one `reload_interval`, or at once when the store pushes log growth.
///
/// # Errors
/// When the initial load fails.
pub async fn start_background(state: &AppState) -> Result<tokio::task::JoinHandle<()>, tessera_store::StoreError> {
    // Counters of rare things exist from the start at zero, so a rate over them (and an alert on it) has a
    // series to read before the first one happens.
    for rare in [
        "tessera_revocation_propagation_gaps_total",
        "tessera_revocation_log_rewound_total",
        "tessera_token_propagation_errors_total",
        "tessera_accepted_while_stale_total",
    ] {
        metrics::counter!(rare).increment(0);
    }
    sync(state).await?;
    crate::migration::load(state).await?;
    let mut fetchers: Vec<_> = state
        .issuers()
        .iter()
        .map(|issuer| {
            tokio::spawn(issuers::keep_current(std::sync::Arc::clone(issuer), std::sync::Arc::clone(state.clock())))
        })
        .collect();
    fetchers.push(tokio::spawn(keep_forgetting(
        state.clone(),
        "expired sessions",
        "tessera_sessions_forgotten_total",
        FORGET_EVERY,
        forget_expired_sessions,
    )));
    let kept = u64::try_from(state.settings().revocation_log_kept_ms()).unwrap_or(u64::MAX);
    fetchers.push(tokio::spawn(keep_forgetting(
        state.clone(),
        "old revocation log entries",
        "tessera_revocation_log_forgotten_total",
        forget_log_every(std::time::Duration::from_millis(kept)),
        forget_old_revocations,
    )));
    fetchers.push(tokio::spawn(keep_forgetting_idle_rate_limits(state.clone())));
    fetchers.push(tokio::spawn(keep_counting_sessions(state.clone())));
    if let Some(metrics) = state.metrics() {
        fetchers.push(tokio::spawn(keep_histograms_drained(metrics.clone())));
    }
    if let Some(settings) = state.settings().migration.clone() {
        fetchers.push(tokio::spawn(crate::migration::keep_current(state.clone(), settings.poll_interval)));
        fetchers.push(tokio::spawn(crate::migration::watch_triggers(state.clone(), settings)));
    }
    let state = state.clone();
    Ok(tokio::spawn(async move {
        // The fetchers live as long as this task: aborting it aborts them.
        let _fetchers = AbortOnDrop(fetchers);
        let mut tick = tokio::time::interval(state.settings().reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A backend that pushes log growth (PostgreSQL's LISTEN/NOTIFY) makes revocations from other nodes
        // apply at once; the tick stays as the fallback and for keys.
        let mut log_changes = state.store().log_changes();
        // While the store is down every tick fails: say so once, then every so often, and when it recovers.
        let mut sync_failures = repeated::Repeated::new("revocation and client sync");
        let mut key_failures = repeated::Repeated::new("reloading signing keys (the current ones stay in service)");
        loop {
            let pushed = tokio::select! {
                _ = tick.tick() => false,
                changed = async {
                    match &mut log_changes {
                        Some(changes) => changes.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if !changed {
                        log_changes = None;
                    }
                    true
                }
            };
            sync_failures.record(sync(&state).await.map(drop));
            if pushed {
                continue;
            }
            let keys_state = state.clone();
            let now = state.clock().now_secs();
            let reloaded = tokio::task::spawn_blocking(move || keys_state.keys().refresh(now)).await;
            key_failures.record(match reloaded {
                Ok(outcome) => outcome.map(drop).map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            });
        }
    }))
}

/// How often the recorder's histogram samples are folded into their buckets.
const DRAIN_HISTOGRAMS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds the histogram samples recorded since the last time into their buckets. The recorder keeps every sample
/// until then — a scrape does it too — so without this a node nobody scrapes would grow by every request's samples.
async fn keep_histograms_drained(metrics: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(DRAIN_HISTOGRAMS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics.run_upkeep();
    }
}

/// How often a node counts the live sessions: one indexed count query a minute, whatever the scrape rate.
const COUNT_SESSIONS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps `tessera_sessions_active` current, where the store can count sessions at a bounded cost.
async fn keep_counting_sessions(state: AppState) {
    let mut tick = tokio::time::interval(COUNT_SESSIONS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store().live_session_count(state.clock().now_ms()).await {
            #[allow(clippy::cast_precision_loss)] // far below 2^52
            Ok(Some(count)) => metrics::gauge!("tessera_sessions_active").set(count as f64),
            Ok(None) => return,
            Err(err) => tracing::debug!(error = %err, "counting live sessions failed; the gauge keeps its last value"),
        }
    }
}

/// How often a node forgets expired sessions, and old revocation log entries at most.
const FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Rows forgotten per store call. Each call is one short write, and a round goes on until a batch comes back
/// short, with [`FORGET_PAUSE`] between batches so that writers get the store in between: however fast entries
/// come (the reference design's 50 million revocations a day is 580 a second, several times that at peak), a
/// round keeps up, and a backlog (the first round after an upgrade) is worked off without holding the writer.
const FORGET_BATCH: usize = 10_000;
const FORGET_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// How often old revocation log entries are forgotten when the log keeps them for `kept`: four times per
/// retention, between every 10 s and every [`FORGET_EVERY`], so the log holds at most a quarter more than its
/// retention even when the retention is short.
fn forget_log_every(kept: std::time::Duration) -> std::time::Duration {
    (kept / 4).clamp(std::time::Duration::from_secs(10), FORGET_EVERY)
}

/// Forgets sessions that expired more than [`tessera_store::EXPIRED_SESSION_KEPT_MS`] ago, in batches; how many. Without it, a
/// store would keep every session ever started. Every node runs it (each deletion is idempotent).
///
/// # Errors
/// Store failures (what was forgotten before one stays forgotten).
pub async fn forget_expired_sessions(state: AppState) -> Result<usize, tessera_store::StoreError> {
    let before = state.clock().now_ms().saturating_sub(tessera_store::EXPIRED_SESSION_KEPT_MS);
    in_batches(|limit| state.store().forget_sessions_expired_before(before, limit)).await
}

/// Forgets revocation log entries older than [`Settings::revocation_log_kept_ms`](crate::settings::Settings),
/// in batches; how many. Without it the log grows by every revocation ever made (50 million a day in the
/// reference design). Every node runs it; the store keeps the log's newest entry whatever its age.
///
/// # Errors
/// Store failures (what was forgotten before one stays forgotten).
pub async fn forget_old_revocations(state: AppState) -> Result<usize, tessera_store::StoreError> {
    let before = state.clock().now_ms().saturating_sub(state.settings().revocation_log_kept_ms());
    in_batches(|limit| state.store().forget_revocations_recorded_before(before, limit)).await
}

/// Calls `forget` with [`FORGET_BATCH`] until a batch comes back short, pausing [`FORGET_PAUSE`] between
/// batches; how many were forgotten.
async fn in_batches<F, Fut>(mut forget: F) -> Result<usize, tessera_store::StoreError>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<usize, tessera_store::StoreError>>,
{
    let mut forgotten = 0;
    loop {
        let batch = forget(FORGET_BATCH).await?;
        forgotten += batch;
        if batch < FORGET_BATCH {
            return Ok(forgotten);
        }
        tokio::time::sleep(FORGET_PAUSE).await;
    }
}

/// How often the rate limiters drop the addresses and usernames whose budget is full again: the budgets are per
/// minute, so a key idle for longer is the same as one never seen.
const FORGET_IDLE_RATE_LIMITS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

async fn keep_forgetting_idle_rate_limits(state: AppState) {
    let mut tick = tokio::time::interval(FORGET_IDLE_RATE_LIMITS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.limits().forget_idle();
    }
}

/// Every `every`, runs `forget` and counts what it forgot in the counter `metric`; failures are logged as
/// `what`'s, once per run of them.
async fn keep_forgetting<F, Fut>(
    state: AppState,
    what: &'static str,
    metric: &'static str,
    every: std::time::Duration,
    forget: F,
) where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = Result<usize, tessera_store::StoreError>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = repeated::Repeated::new(what);
    loop {
        tick.tick().await;
        let outcome = forget(state.clone()).await;
        if let Ok(forgotten) = &outcome {
            metrics::counter!(metric).increment(u64::try_from(*forgotten).unwrap_or(0));
        }
        failures.record(outcome.map(drop));
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Brings this node up to date with the store: applies new revocation log entries to the index, and reloads the
/// clients (and the audiences tokens may carry) when the log says a client changed, and on the first sync.
/// Counted: every round (`tessera_revocation_syncs_total`), failed ones (`tessera_token_propagation_errors_total`).
///
/// # Errors
/// Store failures; nothing is half-applied (the next sync resumes from the last applied log position).
pub async fn sync(state: &AppState) -> Result<(), tessera_store::StoreError> {
    let span = tracing::info_span!(target: tessera_model::SPAN_TARGET, "revocation.sync");
    let synced = tracing::Instrument::instrument(sync_once(state), span).await;
    metrics::counter!("tessera_revocation_syncs_total").increment(1);
    if synced.is_err() {
        metrics::counter!("tessera_token_propagation_errors_total").increment(1);
    }
    synced
}

async fn sync_once(state: &AppState) -> Result<(), tessera_store::StoreError> {
    let now = state.clock().now_ms();
    let index = state.revocations();
    let clients = state.clients();
    let horizon = index.retention().horizon(now);
    // The head (per partition, when the log has several) and the first page after it, read together.
    let applied = index.applied();
    let (head, mut entries) = state.store().head_and_revocations_after(&applied, horizon, 10_000).await?;
    // Reading the whole log (the first sync, or after a rewind) is a resync; its entries are old news, not
    // propagation.
    let mut resync = index.last_sync_ms() == 0;
    // A log that went back (a restore from an older backup, a Redis shard lost with its replica) would hand out
    // positions this node has passed, and their entries would be skipped for good: read it again where it did.
    if applied.is_past(&head) {
        tracing::error!(
            head = %head,
            applied = %applied,
            "the revocation log went back (restored or lost): reading it again from the start where it did"
        );
        metrics::counter!("tessera_revocation_log_rewound_total").increment(1);
        metrics::counter!("tessera_revocation_propagation_gaps_total").increment(1);
        index.rewind_to(&head);
        clients.mark_stale();
        resync = true;
        // The page read with the positions passed: read again from where the log still is.
        entries = state.store().revocations_after(&index.applied(), horizon, 10_000).await?;
    }
    if resync {
        metrics::counter!("tessera_revocation_resyncs_total").increment(1);
    }
    loop {
        if entries.iter().any(|entry| matches!(entry.revocation, tessera_model::Revocation::Client { .. })) {
            clients.mark_stale();
        }
        index.apply(&entries, now);
        if !entries.is_empty() {
            state.log_grew();
        }
        if !resync {
            record_propagation(&entries, state.clock().now_ms());
        }
        if entries.len() < 10_000 {
            break;
        }
        entries = state.store().revocations_after(&index.applied(), horizon, 10_000).await?;
    }
    if clients.take_stale() {
        reload_clients(state).await.inspect_err(|_| clients.mark_stale())?;
    }
    index.prune_if_due(now);
    index.mark_synced(now);
    Ok(())
}

/// How long each revocation took from its commit (the store's record time) to being applied here. Clocks of
/// different nodes may disagree a little: a revocation "from the future" counts as instant.
fn record_propagation(entries: &[tessera_model::RevocationEntry], applied_at: tessera_model::Millis) {
    let lag = metrics::histogram!("tessera_revocation_propagation_seconds");
    for entry in entries {
        let (kind, target, _) = entry.revocation.to_columns();
        tracing::info!(
            target: tessera_model::SPAN_TARGET,
            revocation_kind = kind,
            revocation_target = target,
            log_partition = entry.partition,
            log_position = entry.id,
            lag_ms = applied_at.saturating_sub(entry.at),
            "revocation.propagated"
        );
        #[allow(clippy::cast_precision_loss)] // milliseconds well below 2^52
        lag.record(applied_at.saturating_sub(entry.at).max(0) as f64 / 1000.0);
    }
}

/// Loads every registered client, and the audiences tokens of this server may carry: the user audience, every
/// client's and every token-exchange target.
pub(crate) async fn reload_clients(state: &AppState) -> Result<(), tessera_store::StoreError> {
    let clients = state.store().clients().await?;
    let mut audiences = vec![state.settings().audience.clone()];
    let exchanged = state.settings().exchange_rules.iter().map(|rule| rule.audience.clone());
    for audience in clients.iter().flat_map(|client| client.audiences.iter().cloned()).chain(exchanged) {
        if !audiences.contains(&audience) {
            audiences.push(audience);
        }
    }
    state.keys().set_audiences(audiences);
    state.clients().replace(clients, &state.settings().issuer, state.settings().leeway_secs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_round_of_forgetting_goes_on_until_it_has_caught_up() {
        // 25 full batches (a day's backlog at 50 million revocations a day is hundreds), then a short one.
        let mut left = 25 * FORGET_BATCH + 3;
        let forgotten = in_batches(|limit| {
            let batch = left.min(limit);
            left -= batch;
            async move { Ok(batch) }
        })
        .await
        .unwrap();
        assert_eq!((forgotten, left), (25 * FORGET_BATCH + 3, 0));
    }

    #[test]
    fn the_log_is_forgotten_four_times_per_retention_between_every_10_s_and_every_10_min() {
        assert_eq!(forget_log_every(Duration::from_secs(120)), Duration::from_secs(30));
        assert_eq!(forget_log_every(Duration::from_secs(20)), Duration::from_secs(10));
        assert_eq!(forget_log_every(Duration::from_secs(90 * 86_400)), FORGET_EVERY);
    }
}
