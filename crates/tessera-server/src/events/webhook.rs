//! Delivery of security events to a webhook: a bounded in-memory queue that the request path only ever adds to
//! without waiting (a full queue drops the event, counted), and one background task that POSTs each event in
//! order, signed, retrying with exponential backoff and jitter while the receiver is unreachable, times out,
//! answers 5xx or 429. A 2xx is delivered; any other answer fails the event without retry (the receiver refused
//! it, sending it again changes nothing). The secret and the signature are never logged, nor the URL (it may
//! carry credentials).
//!
//! The signature is Stripe's scheme: `Tessera-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, made afresh for every attempt, so a receiver can refuse anything older than a few minutes
//! (replay) and still accept a late retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::secrets::{OsRng, Rng};

/// Where security events go, and how hard Tessera tries. Every default is the documented default of
/// `tessera.example.toml`'s `[events.webhook]`.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The receiver: https, or http to a loopback address (see [`check_webhook_url`]).
    pub url: String,
    /// The shared secret the signature is made with.
    pub secret: String,
    /// Longest one delivery attempt may take, connecting included. Default 5 s.
    pub timeout: Duration,
    /// Attempts per event, the first included. Default 10.
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long, up to `backoff_cap`, less up to half
    /// of it at random (so nodes that failed together do not retry together). Default 1 s.
    pub backoff_base: Duration,
    /// Longest wait between two attempts. Default 60 s.
    pub backoff_cap: Duration,
    /// Events waiting for delivery at most; one more is dropped (and counted). Default 1000.
    pub queue_capacity: usize,
}

impl WebhookSettings {
    /// Delivery to `url`, signed with `secret`, with the default timeout, attempts, backoff and queue.
    #[must_use]
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            timeout: Duration::from_secs(5),
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            queue_capacity: 1000,
        }
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor the URL, which may carry credentials of its own.
        f.debug_struct("WebhookSettings")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

/// Whether `url` may receive security events: https, or plain http only to a loopback address (events name
/// subjects and sessions, and the signature proves who sent them, not that nobody read them).
///
/// # Errors
/// Why not, for the operator.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    tessera_client::check_https_or_loopback("events.webhook.url", url)
}

/// An event ready to go: its id (none when it could not be recorded), its JSON, and the trace context and request
/// id of the request that raised it (see [`crate::trace::outgoing_headers`]), so a receiver can follow an alert
/// back to its cause.
pub(super) struct Delivery {
    pub(super) id: Option<u64>,
    pub(super) body: Vec<u8>,
    pub(super) raised_in: reqwest::header::HeaderMap,
}

/// The request path's end of the queue.
pub(super) struct Queue {
    sender: mpsc::Sender<Delivery>,
}

impl Queue {
    /// Starts the delivery task (on the current Tokio runtime); `None`, said in the log, when there is none or
    /// the HTTP client cannot be made. The task ends once the queue's last sender is gone.
    pub(super) fn start(settings: WebhookSettings, clock: Arc<dyn Clock>) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| tracing::error!("security-event webhook off: no async runtime to deliver from"))
            .ok()?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("tessera-webhook")
            .build()
            .map_err(|err| tracing::error!(error = %err.without_url(), "security-event webhook off: no HTTP client"))
            .ok()?;
        let (sender, queue) = mpsc::channel(settings.queue_capacity.max(1));
        // Every outcome exists from the start at zero, so rates over them (and the alert on failures) have a
        // series to read before the first failure.
        for outcome in ["delivered", "retried", "failed", "dropped"] {
            metrics::counter!("tessera_webhook_deliveries_total", "outcome" => outcome).increment(0);
        }
        metrics::gauge!("tessera_webhook_queue_depth").set(0.0);
        runtime.spawn(deliver_all(queue, Courier { settings, client, clock }));
        Some(Self { sender })
    }

    /// Adds `delivery` to the queue without waiting: dropped (and counted) when the queue is full.
    pub(super) fn send(&self, delivery: Delivery) {
        match self.sender.try_send(delivery) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(dropped) | mpsc::error::TrySendError::Closed(dropped)) => {
                metrics::counter!("tessera_webhook_deliveries_total", "outcome" => "dropped").increment(1);
                tracing::warn!(
                    event_id = dropped.id,
                    "security-event webhook queue full: event dropped (it stays in the store)"
                );
            }
        }
        let depth = self.sender.max_capacity() - self.sender.capacity();
        #[allow(clippy::cast_precision_loss)] // a gauge
        metrics::gauge!("tessera_webhook_queue_depth").set(depth as f64);
    }
}

/// What delivers: the settings, an HTTP client, the clock signatures are dated by.
struct Courier {
    settings: WebhookSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// Worth another try: unreachable, timed out, 5xx, 429.
    Retry(String),
    /// The receiver refused it: another try would be refused too.
    Refused(reqwest::StatusCode),
}

async fn deliver_all(mut queue: mpsc::Receiver<Delivery>, courier: Courier) {
    while let Some(delivery) = queue.recv().await {
        #[allow(clippy::cast_precision_loss)] // a gauge
        metrics::gauge!("tessera_webhook_queue_depth").set(queue.len() as f64);
        courier.deliver(&delivery).await;
    }
}

impl Courier {
    /// Delivers one event, retrying as the module documentation says.
    async fn deliver(&self, delivery: &Delivery) {
        let attempts = self.settings.max_attempts.max(1);
        for attempt in 1..=attempts {
            let started = Instant::now();
            let outcome = self.attempt(delivery).await;
            metrics::histogram!("tessera_webhook_delivery_duration_seconds").record(started.elapsed().as_secs_f64());
            let outcome = match outcome {
                Attempt::Delivered => "delivered",
                Attempt::Refused(status) => {
                    tracing::warn!(event_id = delivery.id, %status, "security-event webhook refused the event; not retried");
                    "failed"
                }
                Attempt::Retry(why) if attempt == attempts => {
                    tracing::warn!(event_id = delivery.id, attempts, error = %why, "security-event webhook delivery failed; giving up");
                    "failed"
                }
                Attempt::Retry(why) => {
                    tracing::debug!(event_id = delivery.id, attempt, error = %why, "security-event webhook delivery failed; retrying");
                    metrics::counter!("tessera_webhook_deliveries_total", "outcome" => "retried").increment(1);
                    tokio::time::sleep(backoff(&self.settings, attempt, &OsRng)).await;
                    continue;
                }
            };
            metrics::counter!("tessera_webhook_deliveries_total", "outcome" => outcome).increment(1);
            return;
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> Attempt {
        let signature = signature(&self.settings.secret, self.clock.now_secs(), &delivery.body);
        let mut request = self
            .client
            .post(&self.settings.url)
            .headers(delivery.raised_in.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Tessera-Signature", signature)
            .body(delivery.body.clone());
        if let Some(id) = delivery.id {
            request = request.header("Tessera-Event-Id", id);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => {
                let status = response.status();
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Attempt::Retry(format!("answered {status}"))
                } else {
                    Attempt::Refused(status)
                }
            }
            // Without the URL, which may carry credentials.
            Err(err) => Attempt::Retry(err.without_url().to_string()),
        }
    }
}

/// `t=<at>,v1=<hex HMAC-SHA256(secret, "<at>.<body>")>`.
pub(super) fn signature(secret: &str, at: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(format!("{at}.").as_bytes());
    context.update(body);
    let tag = context.sign();
    let hex: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={at},v1={hex}")
}

/// The wait after failed attempt `attempt` (1 for the first): `backoff_base` doubled for each attempt before,
/// at most `backoff_cap`, less a random part of up to half of it.
fn backoff(settings: &WebhookSettings, attempt: u32, rng: &dyn Rng) -> Duration {
    let doubled = settings.backoff_base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let full = doubled.min(settings.backoff_cap);
    let mut bytes = [0u8; 8];
    // Without randomness, the whole wait: retrying in step with other nodes is the lesser harm.
    let random = rng.fill(&mut bytes).map_or(0, |()| u64::from_le_bytes(bytes));
    let half = u64::try_from((full / 2).as_nanos()).unwrap_or(u64::MAX);
    full.saturating_sub(Duration::from_nanos(random.checked_rem(half.saturating_add(1)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes all equal to the one given.
    struct Constant(u8);

    impl Rng for Constant {
        fn fill(&self, dest: &mut [u8]) -> Result<(), crate::secrets::RngFailed> {
            dest.fill(self.0);
            Ok(())
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_less_at_most_half_at_random() {
        let settings = WebhookSettings {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            ..WebhookSettings::new("https://example.com", "s")
        };
        let none_off = |attempt| backoff(&settings, attempt, &Constant(0));
        assert_eq!(none_off(1), Duration::from_millis(100));
        assert_eq!(none_off(2), Duration::from_millis(200));
        assert_eq!(none_off(4), Duration::from_millis(800));
        assert_eq!(none_off(5), Duration::from_secs(1), "capped");
        assert_eq!(none_off(u32::MAX), Duration::from_secs(1), "no overflow");
        for attempt in 1..8 {
            let waited = backoff(&settings, attempt, &OsRng);
            let full = none_off(attempt);
            assert!(full / 2 <= waited && waited <= full, "attempt {attempt}: {waited:?} of {full:?}");
        }
        assert!(backoff(&settings, 3, &Constant(0xff)) < none_off(3), "the random part is taken off");
    }

    #[test]
    fn the_signature_is_an_hmac_sha256_of_the_time_a_dot_and_the_body() {
        // Computed independently: python3 -c "import hmac, hashlib; print(hmac.new(b'Jefe',
        // b'1700000000.{\"id\":1}', hashlib.sha256).hexdigest())"
        assert_eq!(
            signature("Jefe", 1_700_000_000, br#"{"id":1}"#),
            "t=1700000000,v1=05b728475104591e6ba9301ccd86c0f18c79ea7330ef9b9869435607a745d2bf"
        );
    }
}
