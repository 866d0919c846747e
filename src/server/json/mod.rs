//! QEMU's JSON input and output, reproduced.
//!
//! A QMP server that behaves like QEMU must read its input the way QEMU does: a streaming
//! lexer that needs no newline, a streamer that counts brackets and hands a complete value to
//! the parser, id-less errors for bad input with QEMU's own messages, and resynchronisation
//! after a lexical error at the next structural character, control byte or line end. The
//! state table, the limits (64 MiB per token, 2 Mi tokens, nesting 1024) and the messages
//! follow QEMU's `qobject/json-lexer.c`, `json-streamer.c` and `json-parser.c`; the tests in
//! `tests/server_vs_qemu.rs` compare the output with real QEMU 10.0.2 byte for byte.
//!
//! Output follows `qobject/json-writer.c` and `qdict.c`: members of an object come out in
//! QEMU's hash-table order (so `{"return": ..., "id": ...}` but `{"id": ..., "error": ...}`),
//! non-ASCII as upper-case `\uXXXX` (surrogate pairs beyond the BMP), invalid UTF-8 as
//! `\uFFFD`, doubles as C's `%.17g` (so `1.0` comes back as `1` and `1E400` as `inf`), and an
//! optional pretty mode that prints what a `pretty=on` monitor prints.

mod lexer;
mod parser;
mod streamer;
mod unicode;
mod writer;

pub(crate) use streamer::{JsonStream, Limits, Parsed};
pub(crate) use writer::{qdict_order, reverse_members, write, write_as_is};

/// A JSON value as QEMU holds it (a QObject).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum QValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A non-negative integer that fits `u64` but not `i64`.
    UInt(u64),
    /// Any other number (possibly infinite, which QEMU prints as `inf`).
    Double(f64),
    /// A string: bytes, normally UTF-8 (QEMU's own messages may quote invalid bytes).
    Str(Vec<u8>),
    /// An array.
    List(Vec<QValue>),
    /// An object, in insertion order (printed in QEMU's hash order).
    Dict(Vec<(String, QValue)>),
}

impl QValue {
    /// A string value.
    pub(crate) fn str(s: impl Into<String>) -> QValue {
        QValue::Str(s.into().into_bytes())
    }

    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&QValue> {
        match self {
            QValue::Dict(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is a valid UTF-8 string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            QValue::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Converts to a `serde_json::Value` (non-finite doubles become `null`, invalid UTF-8
    /// is replaced).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            QValue::Null => Value::Null,
            QValue::Bool(b) => Value::Bool(*b),
            QValue::Int(i) => Value::from(*i),
            QValue::UInt(u) => Value::from(*u),
            QValue::Double(d) => {
                serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
            }
            QValue::Str(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
            QValue::List(l) => Value::Array(l.iter().map(QValue::to_json).collect()),
            QValue::Dict(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// Converts from a `serde_json::Value`.
    pub(crate) fn from_json(v: &serde_json::Value) -> QValue {
        use serde_json::Value;
        match v {
            Value::Null => QValue::Null,
            Value::Bool(b) => QValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    QValue::Int(i)
                } else if let Some(u) = n.as_u64() {
                    QValue::UInt(u)
                } else {
                    QValue::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => QValue::str(s.as_str()),
            Value::Array(a) => QValue::List(a.iter().map(QValue::from_json).collect()),
            Value::Object(m) => QValue::Dict(
                m.iter()
                    .map(|(k, v)| (k.clone(), QValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::writer::format_g17;
    use super::*;

    fn run(input: &[u8]) -> Vec<String> {
        let mut s = JsonStream::new(Limits::default());
        let mut out = VecDeque::new();
        for &b in input {
            s.feed(b, &mut out);
        }
        out.into_iter()
            .map(|r| match r {
                Ok(v) => {
                    let mut b = Vec::new();
                    write(&mut b, &v, false);
                    String::from_utf8(b).unwrap()
                }
                Err(e) => format!("ERR {}", String::from_utf8_lossy(&e)),
            })
            .collect()
    }

    #[test]
    fn values_and_qemu_member_order() {
        assert_eq!(
            run(br#"{"id": 1, "return": {"major": 10, "minor": 0, "micro": 2}}"#),
            [r#"{"return": {"micro": 2, "minor": 0, "major": 10}, "id": 1}"#]
        );
        assert_eq!(
            run(br#"{"error": {"desc": "d", "class": "c"}, "id": "x"}"#),
            [r#"{"id": "x", "error": {"class": "c", "desc": "d"}}"#]
        );
    }

    #[test]
    fn numbers_are_reserialised_like_qemu() {
        assert_eq!(
            run(b"[1.0, 1e2, 18446744073709551616, 18446744073709551615, -5, 0.1, 1E400, -0.0] "),
            ["[1, 100, 1.8446744073709552e+19, 18446744073709551615, -5, 0.10000000000000001, inf, -0]"]
        );
        // A bare number needs a delimiter.
        assert!(run(b"42").is_empty());
        assert_eq!(run(b"42\n"), ["42"]);
    }

    #[test]
    fn errors_and_recovery() {
        assert_eq!(
            run(b"{\"execute\": }"),
            ["ERR JSON parse error, expecting value"]
        );
        assert_eq!(
            run(b"\x01{\"a\": 1}"),
            ["ERR JSON parse error, stray '\x01'", r#"{"a": 1}"#]
        );
        // Recovery skips to the next structural character or line end.
        assert_eq!(
            run(b"nope xyz {\"a\": tru}\n"),
            [
                "ERR JSON parse error, invalid keyword 'nope'",
                "ERR JSON parse error, invalid keyword 'xyz'",
                "ERR JSON parse error, invalid keyword 'tru'"
            ]
        );
        assert_eq!(
            run(b"{\"a\" 1}"),
            ["ERR JSON parse error, missing : in object pair"]
        );
        assert_eq!(
            run(b"{\"a\": 1, \"a\": 2}"),
            ["ERR JSON parse error, duplicate key"]
        );
        assert_eq!(
            run(b"{1: 2}"),
            ["ERR JSON parse error, key is not a string in object"]
        );
        assert_eq!(
            run(b"[1 2]"),
            ["ERR JSON parse error, expected separator in list"]
        );
        assert_eq!(
            run(b"\"\\uD800\""),
            ["ERR JSON parse error, \\uD800 is not a valid Unicode character"]
        );
    }

    #[test]
    fn nesting_one_over_the_limit_gives_1026_errors() {
        let mut input = b"[".repeat(1025);
        input.extend(b"]".repeat(1025));
        let out = run(&input);
        assert_eq!(out.len(), 1026);
        assert_eq!(out[0], "ERR JSON nesting depth limit exceeded");
        assert!(out[1..]
            .iter()
            .all(|e| e == "ERR JSON parse error, expecting value"));
    }

    #[test]
    fn strings_are_written_as_ascii() {
        let mut b = Vec::new();
        write(&mut b, &QValue::str("é😀\u{1}\u{7f}/\"\\\n"), false);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#""\u00E9\uD83D\uDE00\u0001\u007F/\"\\\n""#
        );
        let mut b = Vec::new();
        write(&mut b, &QValue::Str(b"a\xffb".to_vec()), false);
        assert_eq!(String::from_utf8(b).unwrap(), r#""a\uFFFDb""#);
    }

    #[test]
    fn pretty_output_matches_a_pretty_monitor() {
        let v = QValue::Dict(vec![
            ("return".into(), QValue::Dict(vec![])),
            ("id".into(), QValue::Int(1)),
        ]);
        let mut b = Vec::new();
        write(&mut b, &v, true);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "{\n    \"return\": {\n    },\n    \"id\": 1\n}"
        );
    }

    #[test]
    fn format_g17_matches_printf() {
        for (v, s) in [
            (1.0, "1"),
            (100.0, "100"),
            (0.1, "0.10000000000000001"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (1.5e-5, "1.5e-05"),
            (123456.789, "123456.789"),
            (5e-324, "4.9406564584124654e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(format_g17(v), s, "{v}");
        }
    }
}
