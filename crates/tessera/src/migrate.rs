//! `tessera migrate status|set|rollback`: a client of a running server's `/admin/v1/migration`. The server, not
//! this command, checks gates (it has the measurements), writes the rollout to the store for every node, and
//! records the change with the actor named here.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{json, Value};

use crate::cli::{MigrateCommand, MigrateTarget};
use crate::config::Config;

pub(crate) fn run(config: &Config, command: MigrateCommand) -> anyhow::Result<ExitCode> {
    match command {
        MigrateCommand::Status { json, target } => {
            let status = call(config, &target, reqwest::Method::GET, "", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        MigrateCommand::Set {
            phase,
            percent,
            canary_users,
            segment_roles,
            segment_attributes,
            force,
            reason,
            target,
        } => {
            let mut body = json!({
                "phase": phase,
                "percent": percent,
                "force": force,
                "reason": reason,
                "actor": actor(&target),
            });
            if let Some(fields) = body.as_object_mut() {
                if !canary_users.is_empty() {
                    fields.insert("canary_users".into(), json!(canary_users));
                }
                let mut segments: Vec<Value> = segment_roles.iter().map(|role| json!({ "role": role })).collect();
                for pair in &segment_attributes {
                    let Some((name, value)) = pair.split_once('=') else {
                        bail!("--segment-attribute {pair:?}: expected NAME=VALUE");
                    };
                    segments.push(json!({ "attribute": name, "equals": value }));
                }
                if !segments.is_empty() {
                    fields.insert("segments".into(), Value::Array(segments));
                }
            }
            let status = call(config, &target, reqwest::Method::PUT, "", Some(body))?;
            print_status(&status);
        }
        MigrateCommand::Rollback { reason, target } => {
            let body = json!({ "reason": reason, "actor": actor(&target) });
            let status = call(config, &target, reqwest::Method::POST, "/rollback", Some(body))?;
            print_status(&status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn actor(target: &MigrateTarget) -> String {
    target.actor.clone().unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{user}@{} (tessera migrate)", host.trim())
    })
}

fn call(
    config: &Config,
    target: &MigrateTarget,
    method: reqwest::Method,
    suffix: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    crate::admin_api::call(config, target.url.as_deref(), method, &format!("/admin/v1/migration{suffix}"), body)
}

/// The value at JSON pointer `path` of `value`, `null` when there is none.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    value.pointer(path).unwrap_or(&Value::Null)
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

fn print_status(status: &Value) {
    let phase = text(at(status, "/phase"));
    if phase == "rollout" {
        println!("phase: rollout {}%", at(status, "/percent"));
    } else {
        println!("phase: {phase}");
    }
    println!("since: {} (Unix seconds), version {}", at(status, "/since"), at(status, "/version"));
    let listed = at(status, "/canary_users").as_array().map_or(0, Vec::len);
    println!("canary users: {listed}, segments: {}", at(status, "/segments"));
    println!(
        "token path (this node, last {} s): {} requests, {} server errors, p95 {}..{} ms",
        at(status, "/health/window_secs"),
        at(status, "/health/requests"),
        at(status, "/health/errors"),
        at(status, "/health/p95_ms/0"),
        at(status, "/health/p95_ms/1"),
    );
    match at(status, "/gate/closed_because").as_str() {
        Some("") => println!("gate: holds (the rollout may advance)"),
        Some(why) => println!("gate: closed: {why}"),
        None => {}
    }
    let last = at(status, "/last_auto_rollback");
    if !last.is_null() {
        println!(
            "last automatic rollback: at {} ms by {}: {}",
            at(last, "/at_ms"),
            text(at(last, "/actor")),
            text(at(last, "/reason"))
        );
    }
    let history = at(status, "/history").as_array().map(Vec::as_slice).unwrap_or_default();
    for change in history.iter().skip(history.len().saturating_sub(5)) {
        println!(
            "  {} ms  {:<13} {} -> {}  by {}  {}",
            at(change, "/at_ms"),
            text(at(change, "/kind")),
            describe(at(change, "/from")),
            describe(at(change, "/to")),
            text(at(change, "/actor")),
            text(at(change, "/reason"))
        );
    }
}

fn describe(rollout: &Value) -> String {
    match at(rollout, "/phase").as_str() {
        Some("rollout") => format!("rollout {}%", at(rollout, "/percent")),
        Some(phase) => phase.to_owned(),
        None => "?".into(),
    }
}
