//! How the tool prints JSON and times: QEMU's own member order is kept, and pretty output
//! indents it without building a `serde_json::Value` tree (which would sort the members).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qmp_proto::{QmpEvent, Timestamp};

/// Re-indents a JSON text with four spaces per level, keeping its member order and its
/// tokens as they are (numbers are not re-serialised). Text that is not JSON comes back
/// re-indented as far as its brackets go, never lost.
///
/// ```
/// assert_eq!(
///     qmp_cli::format::pretty(r#"{"return": {"b": 1, "a": [1, 2], "e": {}}}"#),
///     "{\n    \"return\": {\n        \"b\": 1,\n        \"a\": [\n            1,\n            2\n        ],\n        \"e\": {}\n    }\n}"
/// );
/// ```
pub fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                // Skip whitespace to see whether the container is empty.
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    depth += 1;
                    out.push(c);
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("    ");
    }
}

/// `json` as it is, or [`pretty`].
pub fn json(json: &str, pretty_print: bool) -> String {
    if pretty_print {
        pretty(json)
    } else {
        json.to_owned()
    }
}

/// A successful reply as QEMU sent it, without its id: `{"return": ...}`.
pub fn reply(ret: &str) -> String {
    format!("{{\"return\": {ret}}}")
}

/// An error reply without its id, laid out as QEMU writes it:
/// `{"error": {"class": ..., "desc": ...}}`.
///
/// ```
/// assert_eq!(
///     qmp_cli::format::error_reply("GenericError", "no \"x\""),
///     r#"{"error": {"class": "GenericError", "desc": "no \"x\""}}"#
/// );
/// ```
pub fn error_reply(class: &str, desc: &str) -> String {
    let s = |t: &str| serde_json::Value::String(t.to_owned());
    format!(
        "{{\"error\": {{\"class\": {}, \"desc\": {}}}}}",
        s(class),
        s(desc)
    )
}

/// An event as one line of JSON, as QEMU sends it (`event`, `data` when there is some,
/// `timestamp` when it had one).
pub fn event_json(event: &QmpEvent) -> String {
    let mut s = String::new();
    let name = serde_json::Value::String(event.name.clone());
    let _ = write!(s, "{{\"event\": {name}");
    if let Some(data) = &event.data {
        let _ = write!(s, ", \"data\": {}", data.get());
    }
    if let Some(ts) = event.timestamp {
        let _ = write!(
            s,
            ", \"timestamp\": {{\"seconds\": {}, \"microseconds\": {}}}",
            ts.seconds, ts.microseconds
        );
    }
    s.push('}');
    s
}

/// An event for the shell: its QEMU timestamp, its name and its data.
///
/// ```
/// use qmp_proto::{QmpEvent, Timestamp};
///
/// let event = QmpEvent {
///     name: "STOP".into(),
///     data: None,
///     timestamp: Some(Timestamp { seconds: 1764624600, microseconds: 5 }),
/// };
/// assert_eq!(qmp_cli::format::event_line(&event, false), "[2025-12-01 21:30:00.000005] STOP");
/// ```
pub fn event_line(event: &QmpEvent, pretty_print: bool) -> String {
    let time = event
        .timestamp
        .map_or_else(|| "no time".to_owned(), timestamp);
    let mut s = format!("[{time}] {}", event.name);
    if let Some(data) = &event.data {
        s.push(' ');
        s.push_str(&json(data.get(), pretty_print));
    }
    s
}

/// QEMU's event timestamp as UTC date and time with microseconds, or `no time` when QEMU
/// could not read its clock (both members -1).
pub fn timestamp(ts: Timestamp) -> String {
    if ts.seconds < 0 || ts.microseconds < 0 {
        return "no time".to_owned();
    }
    let micros = u32::try_from(ts.microseconds.min(999_999)).unwrap_or(0);
    utc(ts.seconds, micros)
}

/// The wall clock now, as [`timestamp`] prints it.
pub fn now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    utc(
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        since.subsec_micros(),
    )
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS.uuuuuu` (UTC).
fn utc(seconds: i64, micros: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0, 0), "1970-01-01 00:00:00.000000");
        assert_eq!(utc(951_782_400, 1), "2000-02-29 00:00:00.000001");
        assert_eq!(utc(4_102_444_799, 999_999), "2099-12-31 23:59:59.999999");
        assert_eq!(utc(-1, 0), "1969-12-31 23:59:59.000000");
        assert_eq!(
            timestamp(Timestamp {
                seconds: -1,
                microseconds: -1
            }),
            "no time"
        );
    }

    #[test]
    fn pretty_keeps_order_strings_and_numbers() {
        let text = r#"{"z": "a, {b}: [c]\"", "n": 1.50e3, "l": [ ], "o": {"k": null}}"#;
        assert_eq!(
            pretty(text),
            "{\n    \"z\": \"a, {b}: [c]\\\"\",\n    \"n\": 1.50e3,\n    \"l\": [],\n    \"o\": {\n        \"k\": null\n    }\n}"
        );
        // Pretty output parses to the same value.
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty(text)).unwrap();
        assert_eq!(a, b);
        // Unbalanced input is not lost.
        assert_eq!(pretty("}}x"), "\n}\n}x");
    }

    #[test]
    fn events() {
        let e = QmpEvent {
            name: "SHUTDOWN".into(),
            data: Some(
                serde_json::value::RawValue::from_string(
                    r#"{"guest": false, "reason": "host-qmp-quit"}"#.into(),
                )
                .unwrap(),
            ),
            timestamp: Some(Timestamp {
                seconds: 1,
                microseconds: 2,
            }),
        };
        assert_eq!(
            event_json(&e),
            r#"{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}, "timestamp": {"seconds": 1, "microseconds": 2}}"#
        );
        assert_eq!(
            event_line(&e, false),
            r#"[1970-01-01 00:00:01.000002] SHUTDOWN {"guest": false, "reason": "host-qmp-quit"}"#
        );
    }
}
