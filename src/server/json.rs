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

use std::collections::VecDeque;

/// QEMU's limit on the bytes of one message's tokens.
pub(crate) const MAX_TOKEN_SIZE: usize = 64 << 20;
/// QEMU's limit on the tokens of one message.
pub(crate) const MAX_TOKEN_COUNT: usize = 2 << 20;
/// QEMU's limit on nesting.
pub(crate) const MAX_NESTING: i64 = 1 << 10;
/// How deep the parser recurses before it gives up: a guard only, since the streamer
/// already refuses nesting past [`MAX_NESTING`].
const MAX_PARSE_DEPTH: usize = 1100;

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

// ----- lexer -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Recovery,
    DqEscape,
    Dq,
    SqEscape,
    Sq,
    Zero,
    ExpDigits,
    ExpSign,
    ExpE,
    Mantissa,
    MantissaDigits,
    Digits,
    Sign,
    Keyword,
    Start,
}

/// Token kinds, as `JSONTokenType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,
    Error,
}

/// What the table says for a state and a byte.
enum Next {
    State(St),
    Token(Kind),
    /// Back to the start state (whitespace, or the end of recovery).
    Start,
    Error,
}

/// QEMU's lexer table. Returns the next step and whether the byte is left for the next
/// state (lookahead).
fn table(state: St, ch: u8) -> (Next, bool) {
    use Next::*;
    let digit = ch.is_ascii_digit();
    match state {
        St::Recovery => match ch {
            b'\t' => (State(St::Recovery), false),
            0..=0x1f | 0xfe | 0xff | b'[' | b']' | b'{' | b'}' | b':' | b',' => (Start, true),
            _ => (State(St::Recovery), false),
        },
        St::DqEscape | St::SqEscape => match ch {
            0x20..=0xfd => (
                State(if state == St::DqEscape {
                    St::Dq
                } else {
                    St::Sq
                }),
                false,
            ),
            _ => (Error, false),
        },
        St::Dq | St::Sq => {
            let (quote, esc) = if state == St::Dq {
                (b'"', St::DqEscape)
            } else {
                (b'\'', St::SqEscape)
            };
            match ch {
                b'\\' => (State(esc), false),
                c if c == quote => (Token(Kind::String), false),
                0x20..=0xfd => (State(state), false),
                _ => (Error, false),
            }
        }
        St::Zero => match ch {
            b'0'..=b'9' => (Error, false),
            b'.' => (State(St::Mantissa), false),
            _ => (Token(Kind::Integer), true),
        },
        St::ExpDigits => match ch {
            b'0'..=b'9' => (State(St::ExpDigits), false),
            _ => (Token(Kind::Float), true),
        },
        St::ExpSign => {
            if digit {
                (State(St::ExpDigits), false)
            } else {
                (Error, false)
            }
        }
        St::ExpE => match ch {
            b'-' | b'+' => (State(St::ExpSign), false),
            b'0'..=b'9' => (State(St::ExpDigits), false),
            _ => (Error, false),
        },
        St::MantissaDigits => match ch {
            b'0'..=b'9' => (State(St::MantissaDigits), false),
            b'e' | b'E' => (State(St::ExpE), false),
            _ => (Token(Kind::Float), true),
        },
        St::Mantissa => {
            if digit {
                (State(St::MantissaDigits), false)
            } else {
                (Error, false)
            }
        }
        St::Digits => match ch {
            b'0'..=b'9' => (State(St::Digits), false),
            b'e' | b'E' => (State(St::ExpE), false),
            b'.' => (State(St::Mantissa), false),
            _ => (Token(Kind::Integer), true),
        },
        St::Sign => match ch {
            b'0' => (State(St::Zero), false),
            b'1'..=b'9' => (State(St::Digits), false),
            _ => (Error, false),
        },
        St::Keyword => match ch {
            b'a'..=b'z' => (State(St::Keyword), false),
            _ => (Token(Kind::Keyword), true),
        },
        St::Start => match ch {
            b'"' => (State(St::Dq), false),
            b'\'' => (State(St::Sq), false),
            b'0' => (State(St::Zero), false),
            b'1'..=b'9' => (State(St::Digits), false),
            b'-' => (State(St::Sign), false),
            b'{' => (Token(Kind::LCurly), false),
            b'}' => (Token(Kind::RCurly), false),
            b'[' => (Token(Kind::LSquare), false),
            b']' => (Token(Kind::RSquare), false),
            b',' => (Token(Kind::Comma), false),
            b':' => (Token(Kind::Colon), false),
            b'a'..=b'z' => (State(St::Keyword), false),
            b' ' | b'\t' | b'\r' | b'\n' => (Start, false),
            _ => (Error, false),
        },
    }
}

/// What the streamer hands on: a parsed value, or the text of an error (without id), as
/// bytes: QEMU quotes a stray byte as it is, even when it is not UTF-8.
pub(crate) type Parsed = Result<QValue, Vec<u8>>;

/// Limits of one message, as QEMU's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_token_size: usize,
    pub(crate) max_token_count: usize,
    pub(crate) max_nesting: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_token_size: MAX_TOKEN_SIZE,
            max_token_count: MAX_TOKEN_COUNT,
            max_nesting: MAX_NESTING,
        }
    }
}

/// QEMU's streaming JSON reader: lexer, streamer and parser.
#[derive(Debug)]
pub(crate) struct JsonStream {
    state: St,
    token: Vec<u8>,
    tokens: Vec<(Kind, Vec<u8>)>,
    token_size: usize,
    brace: i64,
    bracket: i64,
    limits: Limits,
}

impl JsonStream {
    pub(crate) fn new(limits: Limits) -> Self {
        JsonStream {
            state: St::Start,
            token: Vec::new(),
            tokens: Vec::new(),
            token_size: 0,
            brace: 0,
            bracket: 0,
            limits,
        }
    }

    /// Feeds one byte; complete values and errors go to `out`, in order.
    pub(crate) fn feed(&mut self, ch: u8, out: &mut VecDeque<Parsed>) {
        loop {
            let (next, lookahead) = table(self.state, ch);
            if !lookahead {
                self.token.push(ch);
            }
            match next {
                Next::Token(kind) => {
                    let token = std::mem::take(&mut self.token);
                    self.process(kind, token, out);
                    self.state = St::Start;
                }
                Next::Start => {
                    self.token.clear();
                    self.state = St::Start;
                }
                Next::Error => {
                    let token = std::mem::take(&mut self.token);
                    self.process(Kind::Error, token, out);
                    self.state = St::Recovery;
                }
                Next::State(St::Recovery) => {
                    self.token.clear();
                    self.state = St::Recovery;
                }
                Next::State(s) => self.state = s,
            }
            if !lookahead {
                break;
            }
        }
        if self.token.len() > self.limits.max_token_size {
            // QEMU hands the oversized partial token on; the streamer refuses it.
            let token = std::mem::take(&mut self.token);
            self.process(Kind::String, token, out);
            self.state = St::Start;
        }
    }

    fn reset(&mut self) {
        self.brace = 0;
        self.bracket = 0;
        self.tokens.clear();
        self.token_size = 0;
    }

    fn process(&mut self, kind: Kind, token: Vec<u8>, out: &mut VecDeque<Parsed>) {
        match kind {
            Kind::LCurly => self.brace += 1,
            Kind::RCurly => self.brace -= 1,
            Kind::LSquare => self.bracket += 1,
            Kind::RSquare => self.bracket -= 1,
            Kind::Error => {
                let mut msg = b"JSON parse error, stray '".to_vec();
                msg.extend_from_slice(&token);
                msg.push(b'\'');
                self.reset();
                out.push_back(Err(msg));
                return;
            }
            _ => {}
        }
        let error = if self.token_size + token.len() + 1 > self.limits.max_token_size {
            Some("JSON token size limit exceeded")
        } else if self.tokens.len() + 1 > self.limits.max_token_count {
            Some("JSON token count limit exceeded")
        } else if self.bracket + self.brace > self.limits.max_nesting {
            Some("JSON nesting depth limit exceeded")
        } else {
            None
        };
        if let Some(e) = error {
            self.reset();
            out.push_back(Err(e.as_bytes().to_vec()));
            return;
        }
        self.token_size += token.len();
        self.tokens.push((kind, token));
        if (self.brace > 0 || self.bracket > 0) && self.brace >= 0 && self.bracket >= 0 {
            return;
        }
        let tokens = std::mem::take(&mut self.tokens);
        self.reset();
        out.push_back(parse(&tokens).map_err(|m| format!("JSON parse error, {m}").into_bytes()));
    }
}

// ----- parser -----

struct Parser<'a> {
    tokens: &'a [(Kind, Vec<u8>)],
    pos: usize,
    err: Option<String>,
}

impl Parser<'_> {
    fn error(&mut self, msg: impl Into<String>) {
        if self.err.is_none() {
            self.err = Some(msg.into());
        }
    }

    fn peek(&self) -> Option<&(Kind, Vec<u8>)> {
        self.tokens.get(self.pos)
    }

    fn pop(&mut self) -> Option<(Kind, Vec<u8>)> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn value(&mut self, depth: usize) -> Option<QValue> {
        let Some((kind, _)) = self.peek() else {
            self.error("premature EOI");
            return None;
        };
        if depth > MAX_PARSE_DEPTH {
            self.error("expecting value");
            return None;
        }
        match kind {
            Kind::LCurly => self.object(depth),
            Kind::LSquare => self.array(depth),
            Kind::Integer | Kind::Float | Kind::String => self.literal(),
            Kind::Keyword => self.keyword(),
            _ => {
                self.error("expecting value");
                None
            }
        }
    }

    fn pair(&mut self, dict: &mut Vec<(String, QValue)>, depth: usize) -> bool {
        if self.peek().is_none() {
            self.error("premature EOI");
            return false;
        }
        let key = match self.value(depth + 1) {
            Some(QValue::Str(k)) => k,
            _ => {
                self.error("key is not a string in object");
                return false;
            }
        };
        match self.pop() {
            None => {
                self.error("premature EOI");
                return false;
            }
            Some((Kind::Colon, _)) => {}
            Some(_) => {
                self.error("missing : in object pair");
                return false;
            }
        }
        let Some(value) = self.value(depth + 1) else {
            self.error("Missing value in dict");
            return false;
        };
        let key = String::from_utf8_lossy(&key).into_owned();
        if dict.iter().any(|(k, _)| *k == key) {
            self.error("duplicate key");
            return false;
        }
        dict.push((key, value));
        true
    }

    fn object(&mut self, depth: usize) -> Option<QValue> {
        self.pop();
        let mut dict = Vec::new();
        let Some((peek, _)) = self.peek() else {
            self.error("premature EOI");
            return None;
        };
        if *peek == Kind::RCurly {
            self.pop();
            return Some(QValue::Dict(dict));
        }
        if !self.pair(&mut dict, depth) {
            return None;
        }
        loop {
            match self.pop() {
                None => {
                    self.error("premature EOI");
                    return None;
                }
                Some((Kind::RCurly, _)) => return Some(QValue::Dict(dict)),
                Some((Kind::Comma, _)) => {
                    if !self.pair(&mut dict, depth) {
                        return None;
                    }
                }
                Some(_) => {
                    self.error("expected separator in dict");
                    return None;
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<QValue> {
        self.pop();
        let mut list = Vec::new();
        let Some((peek, _)) = self.peek() else {
            self.error("premature EOI");
            return None;
        };
        if *peek == Kind::RSquare {
            self.pop();
            return Some(QValue::List(list));
        }
        let Some(first) = self.value(depth + 1) else {
            self.error("expecting value");
            return None;
        };
        list.push(first);
        loop {
            match self.pop() {
                None => {
                    self.error("premature EOI");
                    return None;
                }
                Some((Kind::RSquare, _)) => return Some(QValue::List(list)),
                Some((Kind::Comma, _)) => {
                    let Some(v) = self.value(depth + 1) else {
                        self.error("expecting value");
                        return None;
                    };
                    list.push(v);
                }
                Some(_) => {
                    self.error("expected separator in list");
                    return None;
                }
            }
        }
    }

    fn keyword(&mut self) -> Option<QValue> {
        let (_, text) = self.pop()?;
        match &text[..] {
            b"true" => Some(QValue::Bool(true)),
            b"false" => Some(QValue::Bool(false)),
            b"null" => Some(QValue::Null),
            _ => {
                let msg = format!("invalid keyword '{}'", String::from_utf8_lossy(&text));
                self.error(msg);
                None
            }
        }
    }

    fn literal(&mut self) -> Option<QValue> {
        let (kind, text) = self.pop()?;
        let s = String::from_utf8_lossy(&text);
        match kind {
            Kind::String => match parse_string(&text) {
                Ok(v) => Some(QValue::Str(v)),
                Err(e) => {
                    self.error(e);
                    None
                }
            },
            Kind::Integer => {
                if let Ok(i) = s.parse::<i64>() {
                    Some(QValue::Int(i))
                } else if let (false, Ok(u)) = (s.starts_with('-'), s.parse::<u64>()) {
                    Some(QValue::UInt(u))
                } else {
                    Some(QValue::Double(s.parse::<f64>().unwrap_or(f64::NAN)))
                }
            }
            _ => Some(QValue::Double(s.parse::<f64>().unwrap_or(f64::NAN))),
        }
    }
}

fn parse(tokens: &[(Kind, Vec<u8>)]) -> Result<QValue, String> {
    let mut p = Parser {
        tokens,
        pos: 0,
        err: None,
    };
    let v = p.value(0);
    match (v, p.err) {
        (_, Some(e)) => Err(e),
        (Some(v), None) => Ok(v),
        (None, None) => Err("expecting value".into()),
    }
}

fn cvt4hex(s: &[u8]) -> i64 {
    if s.len() < 4 {
        return -1;
    }
    let mut cp = 0i64;
    for &c in &s[..4] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => 10 + c - b'a',
            b'A'..=b'F' => 10 + c - b'A',
            _ => return -1,
        };
        cp = (cp << 4) | i64::from(d);
    }
    cp
}

fn is_valid_codepoint(cp: i64) -> bool {
    !(cp > 0x10FFFF
        || (0xFDD0..=0xFDEF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
        || (0xD800..=0xDFFF).contains(&cp))
}

fn push_utf8(out: &mut Vec<u8>, cp: i64) -> bool {
    if cp < 0 || !is_valid_codepoint(cp) {
        return false;
    }
    match char::from_u32(cp as u32) {
        Some(c) => {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            true
        }
        None => false,
    }
}

/// `json-parser.c`'s `parse_string`: the token with its quotes.
fn parse_string(tok: &[u8]) -> Result<Vec<u8>, String> {
    let quote = tok[0];
    let mut out = Vec::new();
    let mut i = 1;
    while i < tok.len() && tok[i] != quote {
        if tok[i] == b'\\' {
            let beg = i;
            i += 1;
            let c = tok.get(i).copied().unwrap_or(0);
            i += 1;
            match c {
                b'"' => out.push(b'"'),
                b'\'' => out.push(b'\''),
                b'\\' => out.push(b'\\'),
                b'/' => out.push(b'/'),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let mut cp = cvt4hex(&tok[i.min(tok.len())..]);
                    i += 4;
                    if (0xD800..=0xDBFF).contains(&cp)
                        && tok.get(i) == Some(&b'\\')
                        && tok.get(i + 1) == Some(&b'u')
                    {
                        cp = 0x10000 + ((cp & 0x3FF) << 10);
                        let trailing = cvt4hex(&tok[(i + 2).min(tok.len())..]);
                        if (0xDC00..=0xDFFF).contains(&trailing) {
                            cp |= trailing & 0x3FF;
                            i += 6;
                        } else {
                            cp = -1;
                        }
                    }
                    if !push_utf8(&mut out, cp) {
                        let end = i.min(tok.len());
                        return Err(format!(
                            "{} is not a valid Unicode character",
                            String::from_utf8_lossy(&tok[beg..end])
                        ));
                    }
                }
                _ => return Err("invalid escape sequence in string".into()),
            }
        } else {
            let (cp, len) = mod_utf8_codepoint(&tok[i..]);
            if cp < 0 {
                return Err("invalid UTF-8 sequence in string".into());
            }
            i += len;
            push_utf8(&mut out, cp);
        }
    }
    Ok(out)
}

/// `util/unicode.c`'s `mod_utf8_codepoint`: the code point at the start of `s` (or -1) and
/// how many bytes it took.
pub(crate) fn mod_utf8_codepoint(s: &[u8]) -> (i64, usize) {
    const MIN_CP: [i64; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let Some(&first) = s.first() else {
        return (-1, 0);
    };
    let byte = i64::from(first);
    if byte < 0x80 {
        return (byte, 1);
    }
    if byte >= 0xFE || byte & 0x40 == 0 {
        return (-1, 1);
    }
    let len = (first.leading_ones()) as usize;
    let mut cp = byte & ((0x80 >> len) - 1);
    let mut p = 1;
    for _ in 1..len {
        let b = s.get(p).copied().unwrap_or(0);
        if b & 0xC0 != 0x80 {
            return (-1, p);
        }
        p += 1;
        cp = (cp << 6) | i64::from(b & 0x3F);
    }
    if !is_valid_codepoint(cp) || (cp < MIN_CP[len - 2] && !(cp == 0 && len == 2)) {
        return (-1, p);
    }
    (cp, p)
}

// ----- writer -----

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

#[cfg(test)]
mod tests {
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
