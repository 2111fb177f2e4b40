//! Security events in Redis: a sorted set by id under the revocation log's hash tag (reuse detection records its
//! event in the same script as the log entry), read newest first a page at a time and filtered here. A filter
//! that matches few events reads through the older ones to find them: the set holds security events only, which
//! are rare next to requests.

use super::codec::EventRecord;
use super::keys::{EVENTS_KEY, EVENTS_SEQ_KEY, LEGACY_EVENTS_KEY};
use super::RedisStore;
use crate::codec::{self, from_json, to_json};
use crate::model::{NewSecurityEvent, SecurityEvent, SecurityEventQuery};
use crate::StoreError;

/// Events read per round trip at most.
const EVENTS_PAGE: usize = 500;

impl RedisStore {
    pub(super) async fn record_event(&self, event: NewSecurityEvent) -> Result<SecurityEvent, StoreError> {
        let keys = [EVENTS_SEQ_KEY, EVENTS_KEY].map(str::to_owned);
        let id: i64 = self.script(&self.scripts.event, &keys, &[to_json(&EventRecord::of(&event))?]).await?;
        Ok(event.recorded(codec::event_id(id)?))
    }

    pub(super) async fn query_events(&self, query: &SecurityEventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        let mut events = Vec::new();
        // Exclusive bounds: below the cursor, then below the last id read.
        let mut below = query.before.map_or_else(|| "+inf".to_owned(), |before| format!("({before}"));
        while events.len() < query.limit {
            let members: Vec<String> = self
                .read(
                    ::redis::cmd("ZREVRANGEBYSCORE")
                        .arg(EVENTS_KEY)
                        .arg(&below)
                        .arg("-inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(EVENTS_PAGE),
                )
                .await?;
            for member in &members {
                let event = event_from(member)?;
                below = format!("({}", event.id);
                if query.matches(&event) {
                    events.push(event);
                    if events.len() == query.limit {
                        break;
                    }
                }
            }
            if members.len() < EVENTS_PAGE {
                break;
            }
        }
        Ok(events)
    }

    /// Moves the events kept before they had ids into the sorted set (`events_upgrade.lua`), once: a store that
    /// finds none does not write. A node of an older version still running beside this one keeps adding to the
    /// old list; the next node to connect moves those too.
    pub(super) async fn upgrade_events(&self) -> Result<(), StoreError> {
        let legacy: bool = self.read(::redis::cmd("EXISTS").arg(LEGACY_EVENTS_KEY)).await?;
        if legacy {
            let keys = [LEGACY_EVENTS_KEY, EVENTS_SEQ_KEY, EVENTS_KEY].map(str::to_owned);
            let moved: i64 = self.script(&self.scripts.events_upgrade, &keys, &[]).await?;
            tracing::info!(moved, "security events given ids");
        }
        Ok(())
    }
}

/// An event as stored: `<id> <event JSON>`.
fn event_from(member: &str) -> Result<SecurityEvent, StoreError> {
    let (id, json) = member.split_once(' ').ok_or_else(|| StoreError::corrupt("security event", "no id"))?;
    let id: i64 = id.parse().map_err(|_| StoreError::corrupt("security event id", format!("{id:?}")))?;
    Ok(from_json::<EventRecord>("security event", json)?.with_id(codec::event_id(id)?))
}
