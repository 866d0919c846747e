//! What the server sends: the greeting, replies and events.
//!
//! Routing decodes a borrowed [`Envelope`] whose members are raw JSON slices of the frame, so
//! no `serde_json::Value` tree is built for a reply; the payload is copied once into a
//! `Box<RawValue>` for the application, whose typed `Deserialize` then runs straight from
//! those bytes.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Deserialises a member as raw JSON, keeping `null` (which `Option` would turn into
/// `None`): `"id": null` is a real id, distinct from no id.
fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// As [`some_raw`], the raw JSON text.
fn some_raw_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    <&RawValue>::deserialize(d).map(|raw| Some(raw.get()))
}

/// The members of a server message that routing looks at, borrowed from the frame. Other
/// members are ignored (forward compatibility). A message that arrives whole is read by
/// [`whole::envelope`](crate::whole::envelope) instead, with the same result.
#[derive(Deserialize, Default)]
pub(crate) struct Envelope<'a> {
    #[serde(rename = "QMP", borrow, default, deserialize_with = "some_raw")]
    pub(crate) qmp: Option<&'a RawValue>,
    #[serde(rename = "return", borrow, default, deserialize_with = "some_raw")]
    pub(crate) ret: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) error: Option<&'a RawValue>,
    /// Raw JSON text.
    #[serde(borrow, default, deserialize_with = "some_raw_text")]
    pub(crate) id: Option<&'a str>,
    /// Raw JSON text.
    #[serde(borrow, default, deserialize_with = "some_raw_text")]
    pub(crate) event: Option<&'a str>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "some_raw")]
    pub(crate) timestamp: Option<&'a RawValue>,
    /// The member `timestamp` in QEMU's form, read along with the envelope (then
    /// `timestamp` is `None`).
    #[serde(skip)]
    pub(crate) qemu_timestamp: Option<Timestamp>,
}

/// The body of an error reply.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) class: String,
    pub(crate) desc: String,
}

/// QEMU's version, from the greeting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Micro version.
    pub micro: u64,
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The server's greeting:
/// `{"QMP": {"version": {"qemu": {"major", "minor", "micro"}, "package"}, "capabilities": [...]}}`.
///
/// Validated strictly: the version numbers must be non-negative integers, `package` a
/// string and `capabilities` an array of strings. Unknown capabilities and extra members are
/// accepted.
///
/// The `Default` greeting (version 0.0.0, empty package, no capabilities) stands for a peer
/// that sends none: the adapters report it for a guest agent session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Greeting {
    /// QEMU's version.
    pub version: QemuVersion,
    /// The package string (distribution build information; often empty).
    pub package: String,
    /// The capabilities offered, such as `"oob"`.
    pub capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct GreetingBody {
    version: GreetingVersion,
    capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct GreetingVersion {
    qemu: QemuVersion,
    package: String,
}

impl Greeting {
    /// Parses the value of the `QMP` member.
    pub(crate) fn from_body(body: &RawValue) -> Result<Greeting, String> {
        let body: GreetingBody = serde_json::from_str(body.get()).map_err(|e| e.to_string())?;
        Ok(Greeting {
            version: body.version.qemu,
            package: body.version.package,
            capabilities: body.capabilities,
        })
    }

    /// Whether the server offers a capability.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }
}

/// The time at which QEMU emitted an event, from the host clock. Both members are `-1` when
/// QEMU could not read its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// `{"seconds": N, "microseconds": M}` with `N` and `M` integers in range, any JSON
/// whitespace between tokens; `None` for anything else.
pub(crate) fn qemu_timestamp(text: &str) -> Option<Timestamp> {
    let (timestamp, len) = qemu_timestamp_prefix(text)?;
    Cursor(&text[len..]).at_end().then_some(timestamp)
}

/// QEMU's form of a timestamp (as [`qemu_timestamp`] reads it) at the start of `text`, and
/// its length: valid JSON, an object one level deep.
pub(crate) fn qemu_timestamp_prefix(text: &str) -> Option<(Timestamp, usize)> {
    let mut c = Cursor(text);
    c.token("{")?;
    c.token("\"seconds\"")?;
    c.token(":")?;
    let seconds = c.integer()?;
    c.token(",")?;
    c.token("\"microseconds\"")?;
    c.token(":")?;
    let microseconds = c.integer()?;
    c.token("}")?;
    let timestamp = Timestamp {
        seconds,
        microseconds,
    };
    Some((timestamp, text.len() - c.0.len()))
}

/// Reads JSON tokens from the start of a text.
struct Cursor<'a>(&'a str);

impl Cursor<'_> {
    fn skip_whitespace(&mut self) {
        let ws = self
            .0
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.0 = &self.0[ws..];
    }

    fn token(&mut self, token: &str) -> Option<()> {
        self.skip_whitespace();
        self.0 = self.0.strip_prefix(token)?;
        Some(())
    }

    fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.0.is_empty()
    }

    /// A JSON integer that serde would read into an `i64`: in range, and not `-0` (which
    /// serde reads as a float).
    fn integer(&mut self) -> Option<i64> {
        self.skip_whitespace();
        let bytes = self.0.as_bytes();
        let negative = bytes.first() == Some(&b'-');
        let first = usize::from(negative);
        // The digits' value, exact up to 19 digits (which fit a u64); more are out of an
        // i64's range and rejected below.
        let mut magnitude: u64 = 0;
        let mut end = first;
        while let Some(d) = bytes.get(end).map(|b| b.wrapping_sub(b'0')) {
            if d > 9 {
                break;
            }
            magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(d));
            end += 1;
        }
        let len = end - first;
        // No digits, more than 19, a leading zero, `-0`, or a fraction or exponent (a float).
        if len == 0
            || len > 19
            || (len > 1 && bytes[first] == b'0')
            || (negative && magnitude == 0)
            || matches!(bytes.get(end), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let value = if negative {
            0i64.checked_sub_unsigned(magnitude)?
        } else {
            i64::try_from(magnitude).ok()?
        };
        self.0 = &self.0[end..];
        Some(value)
    }
}

/// An asynchronous QMP event: `{"event": NAME, "data": {...}, "timestamp": {...}}`.
#[derive(Debug, Clone)]
pub struct QmpEvent {
    /// The event name, such as `STOP` or `JOB_STATUS_CHANGE`.
    pub name: String,
    /// The `data` member as raw JSON, if present. Decode it with
    /// [`data_as`](Self::data_as) or `serde_json::from_str(data.get())`.
    pub data: Option<Box<RawValue>>,
    /// The timestamp, or `None` if it was missing or malformed.
    pub timestamp: Option<Timestamp>,
}

impl QmpEvent {
    /// Decodes `data` into `T`; a missing `data` decodes as `{}`.
    pub fn data_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.as_deref().map_or("{}", RawValue::get))
    }
}

impl PartialEq for QmpEvent {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.data.as_deref().map(RawValue::get) == other.data.as_deref().map(RawValue::get)
            && self.timestamp == other.timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever the direct read gives a timestamp, serde gives the same one; and it reads
    /// QEMU's own form.
    #[test]
    fn the_direct_timestamp_read_agrees_with_serde() {
        let numbers = [
            "0",
            "-0",
            "1",
            "-1",
            "00",
            "01",
            "1.0",
            "1e3",
            "1E3",
            "-",
            "",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "123456789012345678901234",
            "446941",
            "1795321860",
            "- 1",
            "1 2",
            "\"1\"",
            "true",
            "null",
        ];
        let mut direct = 0;
        for s in numbers {
            for m in numbers {
                for (a, b) in [(" ", " "), ("", ""), ("\n  ", "\r\n\t")] {
                    let text =
                        format!("{{{a}\"seconds\"{a}:{a}{s}{b},{a}\"microseconds\"{b}:{b}{m}{a}}}");
                    let serde = serde_json::from_str::<Timestamp>(&text).ok();
                    if let Some(t) = qemu_timestamp(&text) {
                        direct += 1;
                        assert_eq!(Some(t), serde, "{text}");
                    } else if serde.is_some() {
                        panic!("serde reads {text} and the direct read does not");
                    }
                }
            }
        }
        assert!(direct > 50, "{direct}");
        assert_eq!(
            qemu_timestamp(r#"{"seconds": 1795321860, "microseconds": 446941}"#),
            Some(Timestamp {
                seconds: 1_795_321_860,
                microseconds: 446_941
            })
        );
        for other in [r#"{"microseconds": 1, "seconds": 2}"#, "[1, 2]", "null"] {
            assert_eq!(qemu_timestamp(other), None, "{other}");
        }
    }
}
