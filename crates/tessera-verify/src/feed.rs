//! Following Tessera's revocation feed (`/gateway/v1/revocations`) into the in-process index: a cold start reads
//! the entries within retention page by page, then long polls carry each new revocation as soon as Tessera's node
//! has it. A log that went back (`409 log_rewound`, or a `next` behind the position already applied) is read again
//! from the start, in each partition where it went back when it has several; an unreachable Tessera or an answer
//! that makes no sense is retried with bounded, jittered backoff, and the index's last sync — what the stale
//! policy looks at — only moves on a good answer.

use std::time::Duration;

use serde::Deserialize;
use tessera_client::{Backoff, Credentials};
use tessera_model::clock::Clock;
use tessera_model::{LogCursor, Millis, Provenance, Revocation, RevocationEntry, MAX_LOG_PARTITIONS};
use tessera_revocation::RevocationIndex;

/// The feed's path under Tessera's base URL.
pub const FEED_PATH: &str = "/gateway/v1/revocations";
/// The waits after failures: from 200 ms, doubling up to 10 s, less up to a quarter at random.
const BACKOFF: Backoff = Backoff { first: Duration::from_millis(200), max: Duration::from_secs(10) };
/// Largest answer read (1000 entries of the longest kind fit many times over).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why a feed request brought nothing to apply. Never contains the client's secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// Tessera could not be reached, timed out or broke off.
    #[error("revocation feed unreachable: {0}")]
    Unreachable(String),
    /// The client's assertion (`private_key_jwt`) could not be signed.
    #[error("revocation feed credentials unusable: {0}")]
    Credentials(String),
    /// Tessera refused the request (wrong credentials, no `revocations:read` scope, over budget, ...).
    #[error("revocation feed refused the request: HTTP {status} {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code of the answer, if it had one.
        error: String,
    },
    /// The log went back (restored from an older backup): read it again from the start where it did. Its head,
    /// when the answer gave one that reads.
    #[error("the revocation log went back")]
    Rewound(Option<LogCursor>),
    /// The answer was not a feed page.
    #[error("revocation feed answered something else: {0}")]
    Garbage(String),
}

/// A page of the feed, as Tessera sends it.
#[derive(Debug, Deserialize)]
struct Page {
    entries: Vec<Entry>,
    next: LogCursor,
    more: bool,
}

#[derive(Debug, Deserialize)]
struct Entry {
    /// Absent in a log of one partition.
    #[serde(default)]
    partition: usize,
    position: i64,
    at: Millis,
    #[serde(flatten)]
    revocation: Revocation,
}

/// Where the feed is and how to ask it.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    pub(crate) client: reqwest::Client,
    /// The feed's URL.
    pub(crate) url: String,
    /// Tessera's token endpoint: the audience of a `private_key_jwt` assertion, which the feed accepts too.
    pub(crate) token_endpoint: String,
    /// Who the service is to Tessera.
    pub(crate) credentials: Credentials,
    /// How long a request waits for news once caught up.
    pub(crate) wait: Duration,
}

impl Feed {
    /// One page after `after`, waiting up to `wait` for news. A POST with a form: a `private_key_jwt` assertion
    /// can only travel in one (a secret goes in the `Authorization` header either way).
    async fn page(&self, after: &LogCursor, wait: Duration, clock: &dyn Clock) -> Result<Page, FeedError> {
        let unreachable = |err: reqwest::Error| FeedError::Unreachable(err.without_url().to_string());
        let mut form = vec![("after", after.to_string()), ("wait", wait.as_secs().to_string())];
        let request = self
            .client
            .post(&self.url)
            // The request may wait for news that long, plus the time to answer.
            .timeout(wait + Duration::from_secs(10));
        let request = self
            .credentials
            .authenticate(request, &mut form, &self.token_endpoint, clock)
            .map_err(|err| FeedError::Credentials(err.to_string()))?;
        let mut response = request.form(&form).send().await.map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(FeedError::Garbage("answer larger than 4 MiB".into()));
            }
        }
        if status == reqwest::StatusCode::CONFLICT {
            let head = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|mut answer| serde_json::from_value(answer.get_mut("head")?.take()).ok());
            return Err(FeedError::Rewound(head));
        }
        if status != reqwest::StatusCode::OK {
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|answer| answer.get("error")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(FeedError::Refused { status: status.as_u16(), error });
        }
        let page: Page = serde_json::from_slice(&body).map_err(|err| FeedError::Garbage(err.to_string()))?;
        if page.entries.iter().any(|entry| entry.partition >= MAX_LOG_PARTITIONS) {
            return Err(FeedError::Garbage("an entry of a partition no log has".into()));
        }
        Ok(page)
    }
}

/// Follows the feed into `index` until the task is dropped or aborted.
pub(crate) async fn follow(feed: Feed, index: &RevocationIndex, clock: &dyn Clock) {
    let mut after = LogCursor::default();
    let mut caught_up = false;
    let mut failures = 0_u32;
    loop {
        let wait = if caught_up { feed.wait } else { Duration::ZERO };
        match feed.page(&after, wait, clock).await {
            Ok(page) if after.is_past(&page.next) => {
                tracing::error!(
                    after = %after,
                    next = %page.next,
                    "the revocation feed went back: reading it again from the start where it did"
                );
                (after, caught_up) = (after.restarted_where_behind(&page.next), false);
            }
            Ok(page) => {
                failures = 0;
                let now = clock.now_ms();
                let entries: Vec<RevocationEntry> = page
                    .entries
                    .into_iter()
                    .map(|entry| RevocationEntry {
                        partition: entry.partition,
                        id: entry.position,
                        at: entry.at,
                        revocation: entry.revocation,
                        provenance: Provenance::new("tessera", "revocation feed"),
                    })
                    .collect();
                index.apply(&entries, now);
                index.prune_if_due(now);
                index.mark_synced(now);
                (after, caught_up) = (page.next, !page.more);
            }
            Err(FeedError::Rewound(head)) => {
                tracing::error!(
                    after = %after,
                    "the revocation log went back (restored or lost): reading it again from the start where it did"
                );
                let restarted = head.map_or_else(LogCursor::default, |head| after.restarted_where_behind(&head));
                (after, caught_up) = (restarted, false);
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let wait = BACKOFF.after(failures);
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %err, failures, retry_in_ms = wait.as_millis(), "following the revocation feed failed");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_each_kind_of_entry() {
        let page: Page = serde_json::from_str(
            r#"{"entries":[
                {"position":3,"at":10,"kind":"session","sid":"s1"},
                {"position":5,"at":11,"kind":"subject","sub":"alice","not_before":12},
                {"position":6,"at":12,"kind":"token","jti":"j","expires_at":99},
                {"position":7,"at":13,"kind":"token_by_id","jti":"k","expires_at":98},
                {"position":8,"at":14,"kind":"client","client_id":"c","not_before":15}
            ],"next":8,"more":false,"head":8,"retention_ms":1000}"#,
        )
        .unwrap();
        assert_eq!(page.entries.iter().map(|e| e.position).collect::<Vec<_>>(), [3, 5, 6, 7, 8]);
        assert_eq!(page.entries[1].revocation, Revocation::Subject { sub: "alice".into(), not_before: 12 });
        assert_eq!(page.entries[4].revocation, Revocation::Client { client_id: "c".into(), not_before: 15 });
        assert!(serde_json::from_str::<Page>(
            r#"{"entries":[{"position":1,"at":1,"kind":"nonsense"}],"next":1,"more":false}"#
        )
        .is_err());
    }

    #[test]
    fn a_page_of_a_partitioned_log_names_each_entrys_partition_and_a_position_per_partition() {
        let page: Page = serde_json::from_str(
            r#"{"entries":[
                {"partition":2,"position":3,"at":10,"kind":"session","sid":"s1"},
                {"partition":0,"position":9,"at":11,"kind":"session","sid":"s2"}
            ],"next":"9.0.3","more":false,"head":"9.0.3","retention_ms":1000}"#,
        )
        .unwrap();
        let read: Vec<_> = page.entries.iter().map(|e| (e.partition, e.position)).collect();
        assert_eq!(read, [(2, 3), (0, 9)]);
        assert_eq!(page.next, LogCursor::at(vec![9, 0, 3]));
    }
}
