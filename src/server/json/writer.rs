//! `qobject/json-writer.c` and `qdict.c`: a [`QValue`] out as QEMU prints it.

use super::unicode::mod_utf8_codepoint;
use super::QValue;

/// `qdict.c`'s `tdb_hash`, modulo its 512 buckets.
fn bucket(key: &str) -> u32 {
    let b = key.as_bytes();
    let mut value: u32 = 0x238F_13AFu32.wrapping_mul(b.len() as u32);
    for (i, &c) in b.iter().enumerate() {
        value = value.wrapping_add(u32::from(c) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % 512
}

/// The members of a dict in QEMU's iteration order: by bucket, and within a bucket the last
/// inserted first.
pub(crate) fn qdict_order(members: &[(String, QValue)]) -> Vec<&(String, QValue)> {
    let mut order: Vec<(u32, usize, &(String, QValue))> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (bucket(&m.0), usize::MAX - i, m))
        .collect();
    order.sort_by_key(|(b, rev, _)| (*b, *rev));
    order.into_iter().map(|(_, _, m)| m).collect()
}

/// C's `%.17g`.
pub(crate) fn format_g17(v: f64) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{v:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = (16 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

fn quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let (cp, len) = if s[i] == 0 {
            (0, 1)
        } else {
            mod_utf8_codepoint(&s[i..])
        };
        i += len.max(1);
        match cp {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5C => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            0x0A => out.extend_from_slice(b"\\n"),
            0x0D => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            _ => {
                let cp = if cp < 0 { 0xFFFD } else { cp };
                if cp > 0xFFFF {
                    let c = cp - 0x10000;
                    let hi = 0xD800 + (c >> 10);
                    let lo = 0xDC00 + (c & 0x3FF);
                    out.extend_from_slice(format!("\\u{hi:04X}\\u{lo:04X}").as_bytes());
                } else if !(0x20..0x7F).contains(&cp) {
                    out.extend_from_slice(format!("\\u{cp:04X}").as_bytes());
                } else {
                    out.push(cp as u8);
                }
            }
        }
    }
    out.push(b'"');
}

fn newline(out: &mut Vec<u8>, pretty: bool, depth: usize) {
    if pretty {
        out.push(b'\n');
        out.resize(out.len() + 4 * depth, b' ');
    }
}

/// Writes `v` as QEMU's `qobject_to_json_pretty` would, with `\n` line ends (the monitor
/// turns them into `\r\n`).
pub(crate) fn write(out: &mut Vec<u8>, v: &QValue, pretty: bool) {
    write_impl(out, v, pretty, true);
}

/// Writes `v` compactly with members in insertion order.
pub(crate) fn write_as_is(out: &mut Vec<u8>, v: &QValue) {
    write_impl(out, v, false, false);
}

/// Reverses the members of every object in `v`. A value read back from QEMU's output has
/// members that share a hash bucket in reverse insertion order; reversing makes inserting
/// them again reproduce that output.
pub(crate) fn reverse_members(v: &mut QValue) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            QValue::Dict(m) => {
                m.reverse();
                stack.extend(m.iter_mut().map(|(_, v)| v));
            }
            QValue::List(l) => stack.extend(l.iter_mut()),
            _ => {}
        }
    }
}

fn write_impl(out: &mut Vec<u8>, v: &QValue, pretty: bool, hash_order: bool) {
    // An explicit stack: output depth is the caller's, but keep the writer flat anyway.
    enum Item<'a> {
        Value(&'a QValue, usize),
        Raw(&'static [u8]),
        Newline(usize),
        Key(&'a str),
    }
    let mut stack = vec![Item::Value(v, 0)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Raw(b) => out.extend_from_slice(b),
            Item::Newline(d) => newline(out, pretty, d),
            Item::Key(k) => {
                quoted(out, k.as_bytes());
                out.extend_from_slice(b": ");
            }
            Item::Value(v, depth) => match v {
                QValue::Null => out.extend_from_slice(b"null"),
                QValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                QValue::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
                QValue::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
                QValue::Double(d) => out.extend_from_slice(format_g17(*d).as_bytes()),
                QValue::Str(s) => quoted(out, s),
                QValue::List(items) => {
                    out.push(b'[');
                    stack.push(Item::Raw(b"]"));
                    stack.push(Item::Newline(depth));
                    for (i, item) in items.iter().enumerate().rev() {
                        stack.push(Item::Value(item, depth + 1));
                        stack.push(Item::Newline(depth + 1));
                        if i > 0 {
                            stack.push(Item::Raw(if pretty { b"," } else { b", " }));
                        }
                    }
                }
                QValue::Dict(members) => {
                    out.push(b'{');
                    stack.push(Item::Raw(b"}"));
                    stack.push(Item::Newline(depth));
                    let ordered = if hash_order {
                        qdict_order(members)
                    } else {
                        members.iter().collect()
                    };
                    for (i, (k, v)) in ordered.iter().enumerate().rev() {
                        stack.push(Item::Value(v, depth + 1));
                        stack.push(Item::Key(k));
                        stack.push(Item::Newline(depth + 1));
                        if i > 0 {
                            stack.push(Item::Raw(if pretty { b"," } else { b", " }));
                        }
                    }
                }
            },
        }
    }
}
