//! Printing for people and for scripts.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

/// Prints `value` as pretty JSON on standard output.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An instant as RFC 3339 UTC, e.g. `2026-11-26T20:40:12Z`.
pub(crate) fn timestamp(unix: i64) -> String {
    match u64::try_from(unix) {
        Ok(secs) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
        Err(_) => format!("{unix} (before 1970)"),
    }
}

/// How far `unix` is from `now`, in words: "in 14 min", "3 days ago".
pub(crate) fn relative(unix: i64, now: i64) -> String {
    let delta = unix.saturating_sub(now);
    let words = span(delta.unsigned_abs());
    match delta {
        0 => "now".to_owned(),
        d if d > 0 => format!("in {words}"),
        _ => format!("{words} ago"),
    }
}

fn span(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "day"), (3_600, "h"), (60, "min"), (1, "s")];
    let (size, name) = UNITS.into_iter().find(|(size, _)| secs >= *size).unwrap_or((1, "s"));
    let count = secs / size;
    match name {
        "day" if count != 1 => format!("{count} days"),
        _ => format!("{count} {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(1_000 + 14 * 60 + 5, 1_000), "in 14 min");
        assert_eq!(relative(1_000 - 3 * 86_400, 1_000), "3 days ago");
        assert_eq!(relative(1_000 + 86_400, 1_000), "in 1 day");
        assert_eq!(relative(1_000, 1_000), "now");
        assert_eq!(relative(1_000 - 5, 1_000), "5 s ago");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }
}
