//! A server message parsed where it lies, in one validating pass that also finds its end.
//!
//! The framer offers each message that begins in the input it is fed (see
//! [`FrameSink::whole`](crate::framer::FrameSink::whole)); [`envelope`] reads the envelope of
//! the JSON object at the start of that input and says where the object ends, or gives up
//! (`None`) whenever its answer could differ from the framer's scan followed by the parse of
//! the frame (the reference, which then runs instead): anything that is not valid JSON, a key
//! with an escape, a known member given twice (an error for the reference), an object that
//! does not end within the input, or nesting it cannot prove within the depth limit.
//!
//! The envelope's own structure (braces, keys, colons, commas) is read here (QEMU's form of
//! `timestamp` too, with its numbers), and so is every member's value, in one quick pass
//! ([`valid_value`]) that accepts only what serde_json accepts as a `&RawValue`, tracking
//! its nesting (up to [`MAX_QUICK_DEPTH`] levels) against the depth left to it. Whatever the
//! quick pass is unsure of (invalid JSON, deeper nesting) is left to serde_json, the
//! reference, as follows. serde_json does not limit the nesting of a raw value, so the
//! depth limit is proved from lengths: a value `n` bytes long nests at most `n / 2` levels
//! deep, as each level takes an opening and a closing bracket. A container value is
//! therefore parsed within a cut of `2 * budget + 1` bytes, where `budget` is the depth left
//! to it; one that runs past its cut is walked, one level at a time, down to [`MAX_WALK`]
//! levels. An object is walked member by member, each value parsed (or walked) the same way
//! with a budget one smaller. An array is parsed whole as a sequence of raw values: an
//! element within its cut is within its budget, and so is a longer one that holds no more
//! opening brackets (in strings or not) than its budget; any other is walked in turn. The
//! work stays linear in any case: the quick pass reads a value's bytes at most once before
//! it gives up, each level of walking parses a byte at most once more, and so does a cut
//! that fails (it parses less than the container it was cut from).

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{forward_to_deserialize_any, Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::message::{qemu_timestamp_prefix, Envelope};

/// How many container levels below the envelope may be walked (beyond, the message is left
/// to the framer's scan).
const MAX_WALK: usize = 8;

/// Reads the envelope of the JSON object at the start of `text` into `env` (which starts
/// empty) and says the object's length in bytes, or `None` if it is not a whole, valid object
/// whose nesting is proved within `max_depth` (the envelope itself counting as one level), or
/// cannot be read here for another reason (`env` then holds nothing of use). When it answers,
/// the answer is what the framer and the parse of its frame would give. The envelope is
/// filled in place: it is large, and returning it would copy it.
pub(crate) fn envelope<'a>(
    text: &'a str,
    max_depth: usize,
    env: &mut Envelope<'a>,
) -> Option<usize> {
    let mut p = Parser { text, pos: 0 };
    p.expect(b'{')?;
    let budget = max_depth.checked_sub(1)?;
    p.ws();
    if p.peek()? == b'}' {
        return Some(p.pos + 1);
    }
    loop {
        let key = p.member()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        // A known member given twice: the reference rejects the message.
        match key {
            Member::Id | Member::Event => {
                // Kept as text: a plain number or string is read here.
                let text = match p.plain_scalar() {
                    Some(text) => text,
                    None => p.value(budget, 0)?.get(),
                };
                let slot = if let Member::Id = key {
                    &mut env.id
                } else {
                    &mut env.event
                };
                if slot.replace(text).is_some() {
                    return None;
                }
            }
            Member::Timestamp if budget > 0 && p.peek() == Some(b'{') => {
                if env.timestamp.is_some() || env.qemu_timestamp.is_some() {
                    return None;
                }
                if let Some((timestamp, len)) = qemu_timestamp_prefix(&text[p.pos..]) {
                    env.qemu_timestamp = Some(timestamp);
                    p.pos += len;
                } else {
                    env.timestamp = Some(p.value(budget, 0)?);
                }
            }
            _ => {
                let value = p.value(budget, 0)?;
                let slot = match key {
                    Member::Qmp => &mut env.qmp,
                    Member::Return => &mut env.ret,
                    Member::Error => &mut env.error,
                    Member::Data => &mut env.data,
                    Member::Timestamp => &mut env.timestamp,
                    _ => &mut None,
                };
                if slot.replace(value).is_some()
                    || (matches!(key, Member::Timestamp) && env.qemu_timestamp.is_some())
                {
                    return None;
                }
            }
        }
        if !p.after_member()? {
            return Some(p.pos);
        }
    }
}

/// The envelope's members, by key.
#[derive(Clone, Copy)]
enum Member {
    Qmp,
    Return,
    Error,
    Id,
    Event,
    Data,
    Timestamp,
    /// Any other key (ignored, as the reference ignores it).
    Other,
}

impl Member {
    /// The envelope's keys, each with its closing quote, the most frequent first.
    const KEYS: [(&'static [u8], Member); 7] = [
        (b"return\"", Member::Return),
        (b"id\"", Member::Id),
        (b"timestamp\"", Member::Timestamp),
        (b"event\"", Member::Event),
        (b"data\"", Member::Data),
        (b"error\"", Member::Error),
        (b"QMP\"", Member::Qmp),
    ];
}

/// Where the plain run of string bytes from `i` ends: the first `"`, `\` or control
/// character (which JSON does not allow in a string) at or after `i`, or `None` if there is
/// none. Eight bytes at a time: in each, a byte equal to `"` or `\` or below 0x20 sets its
/// top bit in a mask, the lowest set bit marking the first such byte (a borrow only ever
/// sets bits above a true one).
#[inline(always)]
fn plain_run(bytes: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & TOPS;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
        let stops = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if stops != 0 {
            return Some(i + (stops.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = bytes.get(i..)?;
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| i + at)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// After a member of the envelope: whether another follows (`,`) or the envelope ends
    /// (`}`); `None` for anything else.
    fn after_member(&mut self) -> Option<bool> {
        self.ws();
        match self.next()? {
            b',' => {
                self.ws();
                Some(true)
            }
            b'}' => Some(false),
            _ => None,
        }
    }

    /// Skips JSON whitespace (what serde_json skips); a run of spaces (padding, a
    /// pretty-printed peer's indentation) eight bytes at a time.
    fn ws(&mut self) {
        const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.pos) {
                Some(b' ') => {
                    let eight = bytes.get(self.pos..self.pos + 8);
                    match eight.and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                        Some(b) if u64::from_ne_bytes(b) == SPACES => self.pos += 8,
                        _ => self.pos += 1,
                    }
                }
                Some(b'\n' | b'\t' | b'\r') => self.pos += 1,
                _ => return,
            }
        }
    }

    /// The member whose key is at the current position ([`Member::Other`] for a key that is
    /// not the envelope's), `None` if no key without escapes or control characters is there.
    /// The envelope's own keys are matched as they lie, before any other is scanned.
    fn member(&mut self) -> Option<Member> {
        let rest = self.text.as_bytes().get(self.pos + 1..)?;
        for (key, member) in Member::KEYS {
            if rest.starts_with(key) && self.peek() == Some(b'"') {
                self.pos += 1 + key.len();
                return Some(member);
            }
        }
        self.key().map(|_| Member::Other)
    }

    /// A key without escapes or control characters (its text), `None` for any other.
    fn key(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = plain_run(self.text.as_bytes(), start)?;
        if self.text.as_bytes()[end] != b'"' {
            return None;
        }
        self.pos = end + 1;
        self.text.get(start..end)
    }

    /// A string without escapes or control characters, or an integer without fraction or
    /// exponent, at the current position (valid JSON, as its text); `None` (having read
    /// nothing) for any other value.
    fn plain_scalar(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let end = match *bytes.get(start)? {
            b'"' => {
                let end = plain_run(bytes, start + 1)?;
                (bytes[end] == b'"').then_some(end + 1)?
            }
            b'-' | b'0'..=b'9' => {
                let digits = start + usize::from(bytes[start] == b'-');
                let len = bytes[digits..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let end = digits + len;
                // At least one digit, no leading zero, and no fraction or exponent.
                let plain = len > 0
                    && (len == 1 || bytes[digits] != b'0')
                    && !matches!(bytes.get(end), Some(b'.' | b'e' | b'E'));
                plain.then_some(end)?
            }
            _ => return None,
        };
        self.pos = end;
        self.text.get(start..end)
    }

    /// The value at the current position (no whitespace before it), validated, whose
    /// nesting is within `budget` levels; `walked` containers enclose it below the envelope.
    fn value(&mut self, budget: usize, walked: usize) -> Option<&'a RawValue> {
        let start = self.pos;
        // An empty object or array (most commands return `{}`) needs no pass.
        if let Some(b"{}" | b"[]") = self.text.as_bytes().get(start..start + 2) {
            if budget == 0 {
                return None;
            }
            let raw = validated_raw(self.text.get(start..start + 2)?)?;
            self.pos = start + 2;
            return Some(raw);
        }
        // Most values are validated here, in one quick pass; serde_json decides the rest.
        if let Some(end) = valid_value(self.text.as_bytes(), start, budget) {
            let raw = validated_raw(self.text.get(start..end)?)?;
            self.pos = end;
            return Some(raw);
        }
        let container = matches!(self.peek()?, b'{' | b'[');
        let mut end = self.text.len();
        if container {
            if budget == 0 {
                return None;
            }
            // Within the cut, the value cannot nest deeper than its budget.
            end = end.min(start.saturating_add(budget.saturating_mul(2).saturating_add(1)));
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
        }
        let mut de = serde_json::Deserializer::from_str(&self.text[start..end]);
        match <&RawValue>::deserialize(&mut de) {
            Ok(raw) => {
                self.pos = start + raw.get().len();
                Some(raw)
            }
            Err(e) if container && e.is_eof() && end < self.text.len() => self.walk(budget, walked),
            Err(_) => None,
        }
    }

    /// The container at the current position, longer than its cut. An array is validated
    /// in one parse that measures its elements; those longer than their own cut are then
    /// walked in turn with a budget one smaller (parsed a second time, which only an element
    /// at least `2 * budget` bytes long costs, and only if it holds more brackets than its
    /// budget). An object is read here member by member (few members, one of them long, is
    /// its usual shape: `{"return": {"list": [...]}}`).
    fn walk(&mut self, budget: usize, walked: usize) -> Option<&'a RawValue> {
        if walked >= MAX_WALK {
            return None;
        }
        let start = self.pos;
        if self.peek()? == b'{' {
            return self.walk_object(budget, walked);
        }
        let text = &self.text[start..];
        let mut de = serde_json::Deserializer::from_str(text);
        let inner = budget - 1;
        let long = Members {
            limit: inner.saturating_mul(2).saturating_add(1),
        }
        .deserialize(&mut de)
        .ok()?;
        let len = de.into_iter::<IgnoredAny>().byte_offset();
        for member in long {
            // A member holding no more opening brackets than its budget, counted strings
            // and all, nests within it.
            if matches!(member.as_bytes().first(), Some(b'{' | b'['))
                && opening_brackets(member) > inner
            {
                let mut sub = Parser {
                    text: self.text,
                    pos: member.as_ptr() as usize - self.text.as_ptr() as usize,
                };
                if inner == 0 || sub.walk(inner, walked + 1)?.get().len() != member.len() {
                    return None;
                }
            }
        }
        self.pos = start + len;
        validated_raw(text.get(..len)?)
    }
}

impl<'a> Parser<'a> {
    /// The object at the current position, its members' values parsed (or walked) with a
    /// budget one smaller.
    fn walk_object(&mut self, budget: usize, walked: usize) -> Option<&'a RawValue> {
        let start = self.pos;
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.key()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
                self.value(budget - 1, walked + 1)?;
                self.ws();
                match self.next()? {
                    b',' => self.ws(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        validated_raw(&self.text[start..self.pos])
    }
}

/// The deepest nesting [`valid_value`] follows (one bit per level).
const MAX_QUICK_DEPTH: usize = 64;

/// The end of the JSON value at `bytes[start]` (no whitespace before it), if it is valid
/// JSON nested within `budget` levels (and [`MAX_QUICK_DEPTH`]); `None` if it is not, or
/// anything here is unsure: serde_json, the reference, then decides. It accepts only what
/// serde_json accepts as a raw value, with the same end, and takes `bytes` as valid UTF-8
/// (they come from a `&str`): whitespace between tokens, strings of any bytes but control
/// characters, `"` and `\` (or one of JSON's escapes, `\u` with four hex digits), numbers in
/// JSON's grammar, `true`, `false`, `null`.
fn valid_value(bytes: &[u8], start: usize, budget: usize) -> Option<usize> {
    let mut i = start;
    // One bit per open container, the innermost lowest: 1 for an object.
    let mut objects = 0u64;
    let mut depth = 0;
    loop {
        // A value at `i`.
        match *bytes.get(i)? {
            open @ (b'{' | b'[') => {
                depth += 1;
                if depth > budget || depth > MAX_QUICK_DEPTH {
                    return None;
                }
                let object = open == b'{';
                objects = objects << 1 | u64::from(object);
                i = skip_ws(bytes, i + 1);
                if *bytes.get(i)? != open + 2 {
                    // Not empty (`}` and `]` are two after `{` and `[`): its first member.
                    if object {
                        i = member_key(bytes, i)?;
                    }
                    continue;
                }
                i += 1;
                depth -= 1;
                objects >>= 1;
            }
            b'"' => i = string_end(bytes, i)?,
            b'-' | b'0'..=b'9' => i = number_end(bytes, i)?,
            b't' => i = literal_end(bytes, i, b"true")?,
            b'f' => i = literal_end(bytes, i, b"false")?,
            b'n' => i = literal_end(bytes, i, b"null")?,
            _ => return None,
        }
        // After a value: the containers it closes, up to the next value.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = skip_ws(bytes, i);
            let object = objects & 1 == 1;
            match *bytes.get(i)? {
                b',' => {
                    i = skip_ws(bytes, i + 1);
                    if object {
                        i = member_key(bytes, i)?;
                    }
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            i += 1;
            depth -= 1;
            objects >>= 1;
        }
    }
}

/// Past JSON whitespace from `i`.
#[inline(always)]
fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Past an object member's key, its colon and the whitespace after it, from `i` (at the
/// key's opening quote).
#[inline(always)]
fn member_key(bytes: &[u8], i: usize) -> Option<usize> {
    if *bytes.get(i)? != b'"' {
        return None;
    }
    let i = skip_ws(bytes, string_end(bytes, i)?);
    (*bytes.get(i)? == b':').then(|| skip_ws(bytes, i + 1))
}

/// Past the string whose opening quote is at `i`.
#[inline(always)]
fn string_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i = plain_run(bytes, i)?;
        match bytes[i] {
            b'"' => return Some(i + 1),
            b'\\' => match *bytes.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = bytes.get(i + 2..i + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            // A control character.
            _ => return None,
        }
    }
}

/// Past the number that starts at `i`: `-`, then `0` or a digit run not starting with `0`,
/// then optionally a fraction, then optionally an exponent, each with at least one digit.
fn number_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    let digits = |i: usize| {
        bytes
            .get(i..)
            .map_or(0, |b| b.iter().take_while(|b| b.is_ascii_digit()).count())
    };
    i += usize::from(bytes[i] == b'-');
    match bytes.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i += digits(i),
        _ => return None,
    }
    if bytes.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if let Some(b'e' | b'E') = bytes.get(i) {
        i += 1;
        i += usize::from(matches!(bytes.get(i), Some(b'+' | b'-')));
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    // serde_json rejects a digit after a leading zero.
    (!bytes.get(i).is_some_and(u8::is_ascii_digit)).then_some(i)
}

/// Past `literal`, if it is at `i`.
fn literal_end(bytes: &[u8], i: usize, literal: &[u8]) -> Option<usize> {
    let end = i + literal.len();
    (bytes.get(i..end)? == literal).then_some(end)
}

/// How many bytes of `text` are `{` or `[` (which differ in one bit), inside strings or not.
fn opening_brackets(text: &str) -> usize {
    text.bytes().filter(|&b| b | 0x20 == b'{').count()
}

/// Validates an array, collecting its elements longer than `limit` bytes.
struct Members {
    limit: usize,
}

impl<'de> DeserializeSeed<'de> for Members {
    type Value = Vec<&'de str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Members {
    type Value = Vec<&'de str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut long = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            if raw.get().len() > self.limit {
                long.push(raw.get());
            }
        }
        Ok(long)
    }
}

/// The name by which serde_json recognises a raw value in its data model.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// `json`, which the caller has validated, as a `&RawValue` without parsing it again: the
/// text is handed to `RawValue`'s `Deserialize` as serde_json's own deserializer hands over
/// a raw value. `None` if serde_json no longer takes it that way (the caller then gives up).
fn validated_raw(json: &str) -> Option<&RawValue> {
    <&RawValue>::deserialize(Validated(json)).ok()
}

/// `json`, which the caller has validated, as a `Box<RawValue>` of exactly its length,
/// without parsing it again (see [`validated_raw`]). `None` if serde_json no longer takes it
/// that way.
pub(crate) fn validated_boxed_raw(json: &str) -> Option<Box<RawValue>> {
    <Box<RawValue>>::deserialize(Validated(json)).ok()
}

/// A deserializer presenting validated JSON text as serde_json presents a raw value: a map
/// with one entry, from [`RAW_VALUE_TOKEN`] to the text.
struct Validated<'a>(&'a str);

impl<'de> Deserializer<'de> for Validated<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(ValidatedMap(Some(self.0), true))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// The one entry of [`Validated`]: the text, and whether the key is still to be read.
struct ValidatedMap<'a>(Option<&'a str>, bool);

impl<'de> MapAccess<'de> for ValidatedMap<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if !std::mem::take(&mut self.1) {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(RAW_VALUE_TOKEN))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let json = self.0.take().unwrap_or("null");
        seed.deserialize(BorrowedStrDeserializer::new(json))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::framer::{Frame, FrameSink, Framer};
    use crate::message::Timestamp;

    #[test]
    fn a_validated_text_becomes_a_raw_value_as_it_is() {
        let text = r#"[1, {"a": "b"}]"#;
        let raw = validated_raw(text).expect("serde_json takes a raw value this way");
        assert_eq!(raw.get(), text);
        assert!(std::ptr::eq(raw.get(), text));
        let boxed = validated_boxed_raw(text).expect("and a boxed one");
        assert_eq!(boxed.get(), text);
    }

    /// What routing sees of an envelope.
    fn summary(env: &Envelope<'_>) -> String {
        let raw = |r: Option<&RawValue>| r.map(|r| r.get().to_owned());
        let timestamp = env.qemu_timestamp.or_else(|| {
            env.timestamp
                .and_then(|t| serde_json::from_str::<Timestamp>(t.get()).ok())
        });
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
            raw(env.qmp),
            raw(env.ret),
            raw(env.error),
            env.id,
            env.event,
            raw(env.data),
            timestamp,
            env.timestamp.is_some() || env.qemu_timestamp.is_some()
        )
    }

    /// The framer's frames as the reference reads them (scan, then a parse of the frame),
    /// or, with `fast`, with the messages it offers whole read by [`envelope`]; and how many
    /// of them were read that way.
    fn outcomes(
        input: &[u8],
        max_size: usize,
        max_depth: usize,
        fast: bool,
    ) -> (Vec<String>, usize) {
        struct Sink<'a> {
            out: &'a mut Vec<String>,
            fast: bool,
            taken: &'a mut usize,
        }
        impl FrameSink for Sink<'_> {
            fn frame(&mut self, frame: Frame<'_>) -> ControlFlow<()> {
                let Frame::Message(frame) = frame else {
                    self.out.push("garbage".into());
                    return ControlFlow::Break(());
                };
                let parsed = std::str::from_utf8(frame)
                    .ok()
                    .filter(|t| t.starts_with('{'))
                    .and_then(|t| serde_json::from_str::<Envelope<'_>>(t).ok());
                match parsed {
                    Some(env) => {
                        self.out.push(format!("{} {}", frame.len(), summary(&env)));
                        ControlFlow::Continue(())
                    }
                    None => {
                        self.out.push("invalid".into());
                        ControlFlow::Break(())
                    }
                }
            }

            fn whole(&mut self, input: &str, max_depth: usize) -> Option<(usize, ControlFlow<()>)> {
                if !self.fast {
                    return None;
                }
                let mut env = Envelope::default();
                let len = envelope(input, max_depth, &mut env)?;
                self.out.push(format!("{len} {}", summary(&env)));
                *self.taken += 1;
                Some((len, ControlFlow::Continue(())))
            }
        }
        let (mut out, mut taken) = (Vec::new(), 0);
        let sink = Sink {
            out: &mut out,
            fast,
            taken: &mut taken,
        };
        let mut framer = Framer::new(max_size, max_depth);
        if let Err(e) = framer.feed(input, sink) {
            out.push(format!("error: {e}"));
        }
        (out, taken)
    }

    /// Checks that reading messages where they lie gives what the reference gives; returns
    /// how many were read that way.
    fn check(input: &[u8], max_size: usize, max_depth: usize) -> usize {
        let (reference, _) = outcomes(input, max_size, max_depth, false);
        let (fast, taken) = outcomes(input, max_size, max_depth, true);
        assert_eq!(
            fast,
            reference,
            "input {:?}, size {max_size}, depth {max_depth}",
            String::from_utf8_lossy(input)
        );
        taken
    }

    /// `seed` with each of `edits` inserted at, and put in place of, every byte.
    fn mutations<'a>(seed: &'a [u8], edits: &'a [&[u8]]) -> impl Iterator<Item = Vec<u8>> + 'a {
        (0..=seed.len()).flat_map(move |at| {
            edits.iter().flat_map(move |edit| {
                [false, true]
                    .into_iter()
                    .filter(move |&replace| !(replace && at == seed.len()))
                    .map(move |replace| {
                        let mut input = seed[..at].to_vec();
                        input.extend_from_slice(edit);
                        input.extend_from_slice(&seed[at + usize::from(replace)..]);
                        input
                    })
            })
        })
    }

    const SEEDS: &[&str] = &[
        r#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "v"}, "id": 42}"#,
        r#"{"timestamp": {"seconds": 1763812345, "microseconds": 678901}, "event": "SHUTDOWN", "data": {"guest": false}}"#,
        r#"{"error": {"class": "GenericError", "desc": "x\"y\u00e9"}, "id": "a"}"#,
        r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#,
        r#"{"return": [[1, [2, [3]]], {"a": {"b": {}}}, "[{", -0.5e3, true, null], "x": [], "id": null}"#,
        "{ \"id\" :\t1 ,\r\n\"return\" : { } }",
        r#"{"event": "A\u0042", "timestamp": {"seconds": -1, "microseconds": -1}}"#,
        r#"{"timestamp": {"microseconds": 1, "seconds": 2}, "timestamp2": 1, "event": "X"}"#,
        r#"{"id": 1, "idx": [2], "return": 0, "returnx": {}, "data": 3, "datax": 4}"#,
    ];

    #[test]
    fn agrees_with_the_reference_on_mutated_messages() {
        let mut taken = 0;
        let mut total = 0;
        let edits: &[&[u8]] = &[
            b"", b"{", b"}", b"[", b"]", b"\"", b"\\", b",", b":", b" ", b"0", b"-", b"e", b".",
            b"\x01", b"\xff", b"\xc3", b"x",
        ];
        for seed in SEEDS {
            for mut input in mutations(seed.as_bytes(), edits) {
                input.extend_from_slice(b"\r\n{\"id\": 7}");
                for (size, depth) in [
                    (1 << 20, 1024),
                    (1 << 20, 3),
                    (1 << 20, 2),
                    (40, 1024),
                    (1 << 20, 1),
                ] {
                    taken += check(&input, size, depth);
                    total += 1;
                }
            }
        }
        // Many inputs stay valid (one member's text changed) and are read where they lie
        // (not under the smallest limits).
        assert!(taken > total / 4, "{taken} of {total}");
    }

    #[test]
    fn plain_runs_end_at_the_first_quote_backslash_or_control_character() {
        // Every stop byte (and bytes around the thresholds) at every offset of a run, after
        // bytes of every kind that do not stop it, including non-ASCII and 0x20.
        let plain: Vec<u8> = (0x20..=0xffu8)
            .filter(|&b| b != b'"' && b != b'\\')
            .collect();
        let stops: Vec<u8> = (0..0x20).chain([b'"', b'\\']).collect();
        for len in 0..24 {
            for start in 0..3 {
                for (k, &stop) in stops.iter().enumerate() {
                    let mut bytes: Vec<u8> = (0..start + len)
                        .map(|j| plain[(j * 7 + k) % plain.len()])
                        .collect();
                    assert_eq!(plain_run(&bytes, start), None);
                    bytes.push(stop);
                    bytes.extend_from_slice(b"\x00\"ab");
                    assert_eq!(plain_run(&bytes, start), Some(start + len), "{bytes:?}");
                }
            }
        }
    }

    /// The nesting of a valid JSON value (a scalar is 0 deep).
    fn depth(json: &str) -> usize {
        let (mut depth, mut deepest, mut in_string, mut escape) = (0, 0, false, false);
        for b in json.bytes() {
            match (in_string, escape, b) {
                (true, true, _) => escape = false,
                (true, false, b'\\') => escape = true,
                (_, false, b'"') => in_string = !in_string,
                (false, _, b'[' | b'{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (false, _, b']' | b'}') => depth -= 1,
                _ => {}
            }
        }
        deepest
    }

    #[test]
    fn quick_validation_is_serde_json_within_its_depth() {
        // Values, mutated a byte at a time: the quick pass gives an end exactly when
        // serde_json takes the value as a raw value (with that end) nested within the
        // budget and the quick depth, and `None` for every other.
        let seeds = [
            r#"{"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "v"}"#,
            r#"[[1, [2, [3]]], {"a": {"b": {}}}, "[{", -0.5e3, true, null, false]"#,
            r#"{"desc": "x\"y\u00e9\/\b\f\n\r\t\\", "n": [0, -0, 1.25, 3E+7, 4e-2, 10]}"#,
            " [ { \"a\" :\t[ ] , \"b\" : { }\r\n} ] ",
            r#""é\u00E9 plain \ud800""#,
            "-12.5e10",
            "[[[[[[1]]]]]]",
        ];
        let edits: &[&[u8]] = &[
            b"",
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b"\\",
            b",",
            b":",
            b" ",
            b"0",
            b"-",
            b"+",
            b"e",
            b".",
            b"\x01",
            b"\x7f",
            b"x",
            b"u",
            b"t",
            b"n",
            b"1",
            b"\n",
            b"\xc3\xa9",
        ];
        let (mut valid, mut total) = (0, 0);
        for seed in seeds {
            for input in mutations(seed.trim_start().as_bytes(), edits) {
                // (A value is read with no whitespace before it.)
                let Ok(text) = std::str::from_utf8(&input) else {
                    continue;
                };
                if text.starts_with(|c: char| c.is_ascii_whitespace()) {
                    continue;
                }
                let serde = serde_json::from_str::<&RawValue>(text)
                    .map_err(|_| ())
                    .or_else(|()| {
                        // A value with text after it: serde_json's raw value ends where
                        // the value does.
                        let mut de = serde_json::Deserializer::from_str(text);
                        <&RawValue>::deserialize(&mut de).map_err(|_| ())
                    });
                for budget in [0, 1, 2, 3, 6, 1024] {
                    let expected = serde.ok().and_then(|raw| {
                        let d = depth(raw.get());
                        (d <= budget && d <= MAX_QUICK_DEPTH).then_some(raw.get().len())
                    });
                    let quick = valid_value(text.as_bytes(), 0, budget);
                    assert_eq!(quick, expected, "{text:?} within {budget}");
                    valid += usize::from(quick.is_some());
                    total += 1;
                }
            }
        }
        assert!(valid > total / 8, "{valid} of {total}");
        // Deeper than the quick depth: left to serde_json.
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(valid_value(deep.as_bytes(), 0, 1024), None);
        let within = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(valid_value(within.as_bytes(), 0, 1024), Some(128));
    }

    #[test]
    fn long_containers_are_walked_within_the_depth_limit() {
        // Arrays and objects longer than their cut, nested to various depths, against depth
        // limits around their depth: walked, and the walk agrees with the reference. Each
        // leaf is deeper than the quick pass goes, so that it leaves them to the walk.
        let mut taken = 0;
        let deep = MAX_QUICK_DEPTH;
        for depth in 1..7 {
            let mut leaf = format!("{}\"p\"{}", "[".repeat(deep), "]".repeat(deep));
            for level in 0..depth {
                leaf = if level % 2 == 0 {
                    format!("[{leaf}, \"{}\"]", "y".repeat(level * 7))
                } else {
                    format!("{{\"k{level}\": {leaf}, \"z\": [1, 2]}}")
                };
            }
            let list = vec![leaf.as_str(); 40].join(", ");
            for message in [
                format!("{{\"return\": [{list}], \"id\": 1}}"),
                format!(
                    "{{\"return\": {{\"a\": [{list}], \"b\": {{\"c\": [{list}]}}}}, \"id\": 1}}"
                ),
                format!("{{\"return\": [[[{list}]]], \"id\": 1}}"),
                format!("{{\"pad\": [{list}], \"return\": [{{\"x\": [{list}]}}], \"id\": 1}}"),
            ] {
                for limit in (1..12).chain(deep..deep + 12) {
                    for size in [1 << 20, message.len(), message.len() - 1] {
                        taken += check(message.as_bytes(), size, limit);
                    }
                }
                // The messages are long enough for every cut and walk.
                for cut in [message.len() / 3, message.len() / 2] {
                    check(&message.as_bytes()[..cut], 1 << 20, 1024);
                }
            }
        }
        assert!(taken > 100, "{taken}");
    }

    #[test]
    fn a_container_deeper_than_its_budget_is_left_to_the_scan() {
        // Brackets in strings count against a long member's cheap bound, not its depth.
        let strings = vec!["\"[[[[{{{{\""; 50].join(", ");
        let message = format!("{{\"return\": [[{strings}], [{strings}]], \"id\": 1}}");
        assert_eq!(check(message.as_bytes(), 1 << 20, 3), 1);
        assert_eq!(check(message.as_bytes(), 1 << 20, 2), 0);
        let deep = format!(
            "{{\"return\": {}1{}, \"id\": 1}}",
            "[".repeat(300),
            "]".repeat(300)
        );
        assert_eq!(check(deep.as_bytes(), 1 << 20, 301), 1);
        assert_eq!(check(deep.as_bytes(), 1 << 20, 300), 0);
        // Long containers nested deeper than the walk goes (around a leaf deeper than the
        // quick pass goes): left to the scan, which takes them; one level less is walked.
        let wide = vec!["\"[[[[\""; 50].join(", ");
        let leaf = format!(
            "{}1{}",
            "[".repeat(MAX_QUICK_DEPTH),
            "]".repeat(MAX_QUICK_DEPTH)
        );
        for (levels, taken) in [(MAX_WALK, 1), (MAX_WALK + 1, 0)] {
            let mut nested = format!("[{wide}, {leaf}]");
            for _ in 1..levels {
                nested = format!("[{wide}, {nested}]");
            }
            let message = format!("{{\"return\": {nested}}}");
            assert_eq!(check(message.as_bytes(), 1 << 20, 100), taken, "{levels}");
        }
    }
}
