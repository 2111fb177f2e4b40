//! `tessera events`: the security events a running server recorded (its `/admin/v1/security-events`), newest
//! first, one per line or as JSON.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::cli::EventsArgs;
use crate::config::Config;

/// The most the server lists per call.
const PAGE: usize = 1000;

pub(crate) fn run(config: &Config, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut filters = Vec::new();
    for (name, value) in [("kind", args.kind), ("sub", args.sub)] {
        if let Some(value) = value {
            filters.push(format!("{name}={}", encoded(&value)));
        }
    }
    for (name, value) in [("since", args.since), ("until", args.until)] {
        if let Some(value) = value {
            filters.push(format!("{name}={}", encoded(&instant(&value)?)));
        }
    }
    let mut listed = Vec::new();
    let mut before: Option<u64> = None;
    while listed.len() < args.limit {
        let mut query = filters.clone();
        query.push(format!("limit={}", (args.limit - listed.len()).min(PAGE)));
        if let Some(before) = before {
            query.push(format!("before={before}"));
        }
        let path = format!("/admin/v1/security-events?{}", query.join("&"));
        let page = crate::admin_api::call(config, args.url.as_deref(), reqwest::Method::GET, &path, None)?;
        listed.extend(page.get("events").and_then(Value::as_array).cloned().unwrap_or_default());
        match page.get("next").and_then(Value::as_u64) {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
    } else {
        for event in &listed {
            println!("{}", line(event));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An RFC 3339 instant as given, or a duration (`90m`, `7d`) before now as one.
fn instant(text: &str) -> anyhow::Result<String> {
    if humantime::parse_rfc3339(text).is_ok() {
        return Ok(text.to_owned());
    }
    let ago: Duration = humantime::parse_duration(text)
        .with_context(|| format!("{text:?} is neither an RFC 3339 time in UTC nor a duration like 1h or 7d"))?;
    let now = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(crate::now_ms()).unwrap_or(0));
    let Some(then) = now.checked_sub(ago) else { bail!("{text:?} reaches back too far") };
    Ok(humantime::format_rfc3339_seconds(then).to_string())
}

/// `text` for a query string: everything but unreserved characters percent-encoded.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `<at>  #<id>  <kind>  sub=<sub> sid=<sid> by=<actor>  <detail>`, leaving out what the event has not.
fn line(event: &Value) -> String {
    let text = |name: &str| event.get(name).and_then(Value::as_str);
    let mut about = Vec::new();
    for (label, name) in [("sub", "sub"), ("sid", "sid"), ("by", "actor")] {
        if let Some(value) = text(name) {
            about.push(format!("{label}={value}"));
        }
    }
    let id = event.get("id").and_then(Value::as_u64).map_or_else(|| "-".to_owned(), |id| id.to_string());
    let [at, kind, detail] = ["at", "kind", "detail"].map(|name| text(name).unwrap_or_default());
    format!("{at}  #{id}  {kind:<24} {}  {detail}", about.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encoded("a b&c=d+é"), "a%20b%26c%3Dd%2B%C3%A9");
        assert_eq!(encoded("2026-08-04T10:00:00Z"), "2026-08-04T10%3A00%3A00Z");
    }

    #[test]
    fn an_instant_is_rfc_3339_or_a_duration_ago() {
        assert_eq!(instant("2026-08-04T10:00:00Z").unwrap(), "2026-08-04T10:00:00Z");
        assert!(humantime::parse_rfc3339(&instant("1h").unwrap()).is_ok());
        assert!(instant("yesterday").is_err());
    }
}
