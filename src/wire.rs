//! Every byte the client writes: commands, raw requests, `qmp_capabilities` and the guest
//! agent's `guest-sync-delimited`. Each function appends one message to a buffer; on error
//! the buffer is left as it was.

use std::io::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::CallError;

/// The byte a guest agent resynchronisation starts with (and the agent's reply to it): never
/// part of valid UTF-8, so it resets a JSON parser in any state.
pub(crate) const SYNC_DELIMITER: u8 = 0xFF;

fn serialize_error(e: impl std::fmt::Display) -> CallError {
    CallError::Serialize(e.to_string())
}

fn json_kind(bytes: &[u8]) -> &'static str {
    match bytes.first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// `{"execute"|"exec-oob": name[, "arguments": args][, "id": id]}`. `args` must serialise to
/// an object, or to `null` for none.
pub(crate) fn command<A: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    oob: bool,
    name: &str,
    args: &A,
    id: Option<u64>,
) -> Result<(), CallError> {
    let start = out.len();
    let result = (|| {
        out.extend_from_slice(if oob {
            b"{\"exec-oob\":"
        } else {
            b"{\"execute\":"
        });
        string(out, name);
        let mark = out.len();
        out.extend_from_slice(b",\"arguments\":");
        let at = out.len();
        serde_json::to_writer(&mut *out, args).map_err(serialize_error)?;
        if out[at..] == *b"null" {
            out.truncate(mark);
        } else if out.get(at) != Some(&b'{') {
            return Err(CallError::ArgumentsNotObject(json_kind(&out[at..]).into()));
        }
        if let Some(id) = id {
            out.extend_from_slice(b",\"id\":");
            decimal(out, id);
        }
        out.push(b'}');
        Ok(())
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// `text` as a JSON string. A command name is plain ASCII without quotes, backslashes or
/// control characters, and is copied as it is; anything else goes through serde_json's
/// escaping.
fn string(out: &mut Vec<u8>, text: &str) {
    /// The bytes copied as they are: printable ASCII but `"` and `\`.
    const PLAIN: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0x20;
        while b < 0x7f {
            table[b] = b != b'"' as usize && b != b'\\' as usize;
            b += 1;
        }
        table
    };
    if text.bytes().all(|b| PLAIN[usize::from(b)]) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// `n` in decimal, without the formatting machinery.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A raw request, as the application gave it (an engine id already inserted if it has one).
pub(crate) fn raw(out: &mut Vec<u8>, request: &Map<String, Value>) {
    // Serialising a `Value` map to a Vec cannot fail.
    let _ = serde_json::to_writer(out, request);
}

/// `{"execute":"qmp_capabilities"[,"arguments":{"enable":["oob"]}],"id":id}`.
pub(crate) fn capabilities(out: &mut Vec<u8>, oob: bool, id: u64) {
    out.extend_from_slice(b"{\"execute\":\"qmp_capabilities\",");
    if oob {
        out.extend_from_slice(b"\"arguments\":{\"enable\":[\"oob\"]},");
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "\"id\":{id}}}");
}

/// A guest agent resynchronisation: the `0xFF` delimiter, then
/// `{"execute":"guest-sync-delimited","arguments":{"id":id}}`.
pub(crate) fn guest_sync(out: &mut Vec<u8>, id: u64) {
    out.push(SYNC_DELIMITER);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_an_object() {
        let mut out = b"xyz".to_vec();
        let e = command(&mut out, false, "x", &[1, 2], Some(3)).unwrap_err();
        assert_eq!(e, CallError::ArgumentsNotObject("an array".into()));
        assert_eq!(out, b"xyz");
        command(&mut out, false, "a\"b", &(), Some(3)).unwrap();
        assert_eq!(out, b"xyz{\"execute\":\"a\\\"b\",\"id\":3}");
    }

    /// The direct writes give what serde_json gives: names with and without characters to
    /// escape, and ids of every length.
    #[test]
    fn names_and_ids_as_serde_writes_them() {
        for name in [
            "query-status",
            "a\"b",
            "back\\slash",
            "tab\there",
            "é",
            "\u{7f}",
            "",
        ] {
            for id in [0, 7, 10, 99, 12345, u64::MAX] {
                let mut out = Vec::new();
                command(&mut out, false, name, &(), Some(id)).unwrap();
                let expected =
                    serde_json::to_vec(&serde_json::json!({"execute": name, "id": id})).unwrap();
                assert_eq!(out, expected, "{name} {id}");
            }
        }
    }

    #[test]
    fn without_id() {
        let mut out = Vec::new();
        command(&mut out, true, "x", &serde_json::json!({"a": 1}), None).unwrap();
        assert_eq!(out, br#"{"exec-oob":"x","arguments":{"a":1}}"#);
    }
}
