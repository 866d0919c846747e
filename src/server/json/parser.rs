//! `qobject/json-parser.c`: a complete value's tokens in, a [`QValue`] or QEMU's message
//! out.

use super::lexer::{Kind, Token};
use super::unicode::{is_valid_codepoint, mod_utf8_codepoint};
use super::QValue;

/// How deep the parser recurses before it gives up: a guard only, since the streamer
/// already refuses nesting past [`MAX_NESTING`](super::streamer::MAX_NESTING).
const MAX_PARSE_DEPTH: usize = 1100;

/// A recursive descent over one value's tokens; the first error wins, as in QEMU.
struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    err: Option<String>,
}

impl Parser<'_> {
    fn error(&mut self, msg: impl Into<String>) {
        if self.err.is_none() {
            self.err = Some(msg.into());
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn pop(&mut self) -> Option<Token> {
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
                let msg = format!(
                    "invalid keyword '{}'",
                    String::from_utf8_lossy(super::streamer::c_string(&text))
                );
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

/// `json_parser_parse`: the value of `tokens`, or QEMU's message (without its
/// `JSON parse error, ` prefix).
pub(super) fn parse(tokens: &[Token]) -> Result<QValue, String> {
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
                            String::from_utf8_lossy(super::streamer::c_string(&tok[beg..end]))
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
