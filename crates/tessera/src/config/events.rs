//! `[events.webhook]`: where security events are sent as they happen (docs/security-events.md). The secret comes
//! from `TESSERA_WEBHOOK_SECRET` or `events.webhook.secret_file`, never from this file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tessera_server::WebhookSettings;

use super::duration_text;

/// The environment variable holding the webhook's signing secret.
pub(crate) const WEBHOOK_SECRET_ENV: &str = "TESSERA_WEBHOOK_SECRET";

/// Security events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EventsConfig {
    /// Where they are sent as they happen.
    pub(crate) webhook: WebhookConfig,
}

/// The security-event webhook. Off unless `url` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WebhookConfig {
    /// The receiver: https, or http to a loopback address. Default none: events are only recorded. Better set as
    /// `TESSERA_EVENTS__WEBHOOK__URL` when it carries credentials. Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// A file holding the signing secret (at least 16 characters). `TESSERA_WEBHOOK_SECRET` takes precedence;
    /// one of them is required with `url`.
    pub(crate) secret_file: Option<PathBuf>,
    /// Longest one delivery attempt may take. Default 5 s.
    #[serde(with = "duration_text")]
    pub(crate) timeout: Duration,
    /// Attempts per event, the first included. Default 10.
    pub(crate) max_attempts: u32,
    /// Wait before the first retry, doubled for each next one (less up to half at random). Default 1 s.
    #[serde(with = "duration_text")]
    pub(crate) backoff_base: Duration,
    /// Longest wait between attempts. Default 60 s.
    #[serde(with = "duration_text")]
    pub(crate) backoff_cap: Duration,
    /// Events waiting for delivery at most; more are dropped (and counted), never waited for. Default 1000.
    pub(crate) queue_capacity: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        let defaults = WebhookSettings::new("", "");
        Self {
            url: None,
            secret_file: None,
            timeout: defaults.timeout,
            max_attempts: defaults.max_attempts,
            backoff_base: defaults.backoff_base,
            backoff_cap: defaults.backoff_cap,
            queue_capacity: defaults.queue_capacity,
        }
    }
}

impl EventsConfig {
    /// Every problem of this section, added to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        let w = &self.webhook;
        match &w.url {
            Some(url) => {
                if let Err(why) = tessera_server::check_webhook_url(url) {
                    problems.push(why);
                }
                if std::env::var_os(WEBHOOK_SECRET_ENV).is_none() && w.secret_file.is_none() {
                    problems.push(format!(
                        "events.webhook.url needs a signing secret: {WEBHOOK_SECRET_ENV} or events.webhook.secret_file"
                    ));
                }
            }
            None if w.secret_file.is_some() => {
                problems.push("events.webhook.secret_file is set but events.webhook.url is not".to_owned());
            }
            None => {}
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&w.timeout) {
            problems.push("events.webhook.timeout must be between 100ms and 5m".to_owned());
        }
        if !(1..=100).contains(&w.max_attempts) {
            problems.push("events.webhook.max_attempts must be between 1 and 100".to_owned());
        }
        if w.backoff_base < Duration::from_millis(10) || w.backoff_base > w.backoff_cap {
            problems.push("events.webhook.backoff_base must be at least 10ms and at most backoff_cap".to_owned());
        }
        if w.backoff_cap > Duration::from_secs(3600) {
            problems.push("events.webhook.backoff_cap must be at most 1h".to_owned());
        }
        if !(1..=1_000_000).contains(&w.queue_capacity) {
            problems.push("events.webhook.queue_capacity must be between 1 and 1000000".to_owned());
        }
    }

    /// The webhook, if one is configured, with its secret read.
    ///
    /// # Errors
    /// When the secret file cannot be read or the secret is shorter than 16 characters.
    pub(crate) fn webhook(&self) -> anyhow::Result<Option<WebhookSettings>> {
        let w = &self.webhook;
        let Some(url) = &w.url else { return Ok(None) };
        let secret = match (std::env::var(WEBHOOK_SECRET_ENV), &w.secret_file) {
            (Ok(secret), _) => secret,
            (Err(_), Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading webhook secret file {}", path.display()))?,
            (Err(_), None) => bail!("events.webhook.url needs {WEBHOOK_SECRET_ENV} or events.webhook.secret_file"),
        };
        let secret = secret.trim().to_owned();
        if secret.chars().count() < 16 {
            bail!("the webhook secret must be at least 16 characters (e.g. `tessera keys master-key` output)");
        }
        Ok(Some(WebhookSettings {
            timeout: w.timeout,
            max_attempts: w.max_attempts,
            backoff_base: w.backoff_base,
            backoff_cap: w.backoff_cap,
            queue_capacity: w.queue_capacity,
            ..WebhookSettings::new(url.clone(), secret)
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic here is a failed test

    use super::*;

    fn problems(webhook: WebhookConfig) -> Vec<String> {
        let mut problems = Vec::new();
        EventsConfig { webhook }.validate(&mut problems);
        problems
    }

    #[test]
    fn every_problem_of_the_webhook_is_reported_together() {
        assert!(problems(WebhookConfig::default()).is_empty(), "off by default");
        let bad = WebhookConfig {
            url: Some("http://siem.example.com/hook".into()),
            max_attempts: 0,
            backoff_base: Duration::from_secs(120),
            queue_capacity: 0,
            ..WebhookConfig::default()
        };
        let found = problems(bad).join("\n");
        for named in ["must be https", "max_attempts", "backoff_base", "queue_capacity"] {
            assert!(found.contains(named), "{named}: {found}");
        }
        let stray = WebhookConfig { secret_file: Some("/nowhere".into()), ..WebhookConfig::default() };
        assert_eq!(problems(stray), ["events.webhook.secret_file is set but events.webhook.url is not"]);
    }

    #[test]
    fn the_secret_is_read_from_its_file_and_must_be_long_enough() {
        assert!(std::env::var_os(WEBHOOK_SECRET_ENV).is_none(), "unset {WEBHOOK_SECRET_ENV}: it takes precedence");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let events = EventsConfig {
            webhook: WebhookConfig {
                url: Some("https://siem.example.com/hook".into()),
                secret_file: Some(path.clone()),
                ..WebhookConfig::default()
            },
        };
        std::fs::write(&path, "short\n").unwrap();
        assert!(events.webhook().unwrap_err().to_string().contains("at least 16"));
        std::fs::write(&path, "a-long-enough-webhook-secret\n").unwrap();
        let settings = events.webhook().unwrap().unwrap();
        assert_eq!((settings.secret.as_str(), settings.max_attempts), ("a-long-enough-webhook-secret", 10));
        assert!(!format!("{settings:?}").contains("a-long-enough"), "never in debug output");
    }
}
