//! Which shards can acknowledge writes now. Every write waits for `wait_replicas` replicas (`WAIT`): a master with
//! fewer replicas online fails every write to its slots — the safe direction, nothing is acknowledged that one
//! node's loss could take back — until a replica comes back. After a failover in a cluster with one replica per
//! master, the promoted replica has none of its own, so that shard stops taking writes until an operator adds one.
//! A background probe asks Redis every [`PROBE_INTERVAL`] how many replicas each master has online, so that
//! `/readyz` and a metric can say which shards are in that state before a user's write fails on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::Value;

use super::connection::Connection;
use super::CONNECTION_TIMEOUT;

/// How often the probe asks Redis for its replication layout.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// One shard as the probe last saw it: its slots (the whole keyspace on a single Redis), its master and how many
/// of its replicas were online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shard {
    /// `0-5460`, ranges joined by `,`; `all` on a single Redis.
    pub(super) slots: String,
    /// `host:port` of the master online, if any.
    pub(super) master: Option<String>,
    pub(super) replicas_online: u32,
}

impl Shard {
    /// Why writes to this shard cannot be acknowledged now, if they cannot.
    pub(super) fn unwritable_because(&self, wait_replicas: u32) -> Option<String> {
        match &self.master {
            None => Some(format!("Redis slots {}: no master online", self.slots)),
            Some(master) if self.replicas_online < wait_replicas => Some(format!(
                "Redis slots {} (master {master}): {} of the {wait_replicas} replicas writes wait for are online",
                self.slots, self.replicas_online
            )),
            Some(_) => None,
        }
    }
}

/// The shards as last seen; empty until the first probe answers.
pub(super) type Shards = Arc<Mutex<Vec<Shard>>>;

/// Probes forever (the store aborts it on drop), keeping `shards` up to date. A probe that fails keeps what the
/// last one saw: the breaker and `/readyz`'s ping already report a Redis that does not answer.
pub(super) async fn watch(reader: Connection, cluster: bool, shards: Shards, wait_replicas: u32) {
    let mut reported = Vec::new();
    loop {
        match tokio::time::timeout(CONNECTION_TIMEOUT, probe(&reader, cluster)).await {
            Ok(Ok(now)) => {
                let unwritable: Vec<String> =
                    now.iter().filter_map(|shard| shard.unwritable_because(wait_replicas)).collect();
                if unwritable != reported {
                    for reason in &unwritable {
                        tracing::warn!(shard = %reason, "writes to this Redis shard cannot be acknowledged");
                    }
                    if unwritable.is_empty() {
                        tracing::info!("every Redis shard can acknowledge writes again");
                    }
                    reported = unwritable;
                }
                if let Ok(mut shards) = shards.lock() {
                    *shards = now;
                }
            }
            Ok(Err(err)) => tracing::debug!(error = %err, "probing Redis replication failed"),
            Err(_) => tracing::debug!("probing Redis replication timed out"),
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

async fn probe(reader: &Connection, cluster: bool) -> Result<Vec<Shard>, ::redis::RedisError> {
    if cluster {
        let reply: Value = reader.query(&::redis::cmd("CLUSTER").arg("SHARDS").clone()).await?;
        Ok(cluster_shards(&reply))
    } else {
        let reply: Value = reader.query(&::redis::cmd("ROLE")).await?;
        Ok(vec![single(&reply)])
    }
}

/// A single Redis from `ROLE`: `["master", offset, [[ip, port, offset], ...]]`, one entry per connected replica.
/// A node that answers as a replica is no master: writes to it fail.
fn single(reply: &Value) -> Shard {
    let items = array(reply);
    let role = items.first().and_then(text);
    let replicas = items.get(2).map_or(0, |list| array(list).len());
    Shard {
        slots: "all".to_owned(),
        master: (role.as_deref() == Some("master")).then(|| "the configured node".to_owned()),
        replicas_online: u32::try_from(replicas).unwrap_or(u32::MAX),
    }
}

/// Every shard that owns slots, from `CLUSTER SHARDS` (Redis 7): per shard, `slots` as a flat list of range
/// bounds and `nodes` with their `role` and `health` (`online`, `failed` or `loading`).
fn cluster_shards(reply: &Value) -> Vec<Shard> {
    let mut shards: Vec<Shard> = array(reply)
        .iter()
        .filter_map(|shard| {
            let shard = members(shard);
            let bounds: Vec<i64> = array(field(&shard, "slots")?).iter().filter_map(integer).collect();
            if bounds.is_empty() {
                return None;
            }
            let slots = bounds.chunks(2).filter_map(|range| {
                let from = range.first()?;
                Some(format!("{from}-{}", range.get(1).unwrap_or(from)))
            });
            let (mut master, mut replicas_online) = (None, 0_u32);
            for node in array(field(&shard, "nodes")?) {
                let node = members(node);
                let says = |name: &str| field(&node, name).and_then(text);
                if says("health").as_deref() != Some("online") {
                    continue;
                }
                match says("role").as_deref() {
                    Some("master") => {
                        let port = field(&node, "port").and_then(integer).unwrap_or_default();
                        master =
                            Some(format!("{}:{port}", says("endpoint").or_else(|| says("ip")).unwrap_or_default()));
                    }
                    Some("replica") => replicas_online += 1,
                    _ => {}
                }
            }
            Some(Shard { slots: slots.collect::<Vec<_>>().join(","), master, replicas_online })
        })
        .collect();
    shards.sort_by(|a, b| a.slots.cmp(&b.slots));
    shards
}

fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// A map's members, whether Redis answered a RESP3 map or a RESP2 list of alternating names and values.
fn members(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(pairs) => pairs.iter().filter_map(|(name, value)| Some((text(name)?, value))).collect(),
        Value::Array(items) => items.chunks(2).filter_map(|pair| Some((text(pair.first()?)?, pair.get(1)?))).collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(members: &[(String, &'a Value)], name: &str) -> Option<&'a Value> {
    members.iter().find(|(member, _)| member == name).map(|(_, value)| *value)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => text(value).and_then(|text| text.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)] // a panic here is a failed test

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn node(port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("port"),
            Value::Int(port),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(slots.iter().copied().map(Value::Int).collect()),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn a_promoted_replica_without_a_replica_of_its_own_cannot_acknowledge_writes() {
        let reply = Value::Array(vec![
            shard(&[5461, 10922], vec![node(7002, "master", "online"), node(7005, "replica", "online")]),
            // The old master died; its replica took over and has no replica left.
            shard(&[0, 5460], vec![node(7001, "replica", "failed"), node(7004, "master", "online")]),
            // A master that owns no slots is no shard of the keyspace.
            shard(&[], vec![node(7007, "master", "online")]),
        ]);
        let shards = cluster_shards(&reply);
        assert_eq!(
            shards,
            [
                Shard { slots: "0-5460".into(), master: Some("127.0.0.1:7004".into()), replicas_online: 0 },
                Shard { slots: "5461-10922".into(), master: Some("127.0.0.1:7002".into()), replicas_online: 1 },
            ]
        );
        let unwritable: Vec<_> = shards.iter().filter_map(|shard| shard.unwritable_because(1)).collect();
        assert_eq!(
            unwritable,
            ["Redis slots 0-5460 (master 127.0.0.1:7004): 0 of the 1 replicas writes wait for are online"]
        );
        assert!(shards.iter().all(|shard| shard.unwritable_because(0).is_none()), "nothing waits for replicas");
    }

    #[test]
    fn a_shard_whose_master_failed_before_any_promotion_has_no_master() {
        let reply = Value::Map(vec![(bulk("x"), Value::Nil)]);
        assert!(cluster_shards(&reply).is_empty(), "garbage is no shard");
        let reply = Value::Array(vec![shard(
            &[0, 100, 200, 300],
            vec![node(7001, "master", "failed"), node(7004, "replica", "online")],
        )]);
        let shards = cluster_shards(&reply);
        assert_eq!(shards[0].slots, "0-100,200-300");
        assert_eq!(shards[0].unwritable_because(1).as_deref(), Some("Redis slots 0-100,200-300: no master online"));
    }

    #[test]
    fn a_single_redis_counts_its_connected_replicas() {
        let replica = Value::Array(vec![bulk("127.0.0.1"), bulk("7001"), bulk("0")]);
        let role = |replicas: Vec<Value>| Value::Array(vec![bulk("master"), Value::Int(0), Value::Array(replicas)]);
        assert_eq!(single(&role(vec![replica.clone()])).unwritable_because(1), None);
        assert!(single(&role(vec![])).unwritable_because(1).is_some());
        let replica_role = Value::Array(vec![bulk("slave"), bulk("127.0.0.1"), Value::Int(7000)]);
        assert_eq!(single(&replica_role).unwritable_because(0).as_deref(), Some("Redis slots all: no master online"));
    }
}
