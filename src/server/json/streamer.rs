//! `qobject/json-streamer.c`: counts brackets and braces over the lexer's tokens, enforces
//! QEMU's limits, and hands each complete value's tokens to the parser.

use std::collections::VecDeque;

use super::lexer::{Kind, Lexer, Token};
use super::parser::parse;
use super::QValue;

/// QEMU's limit on the bytes of one message's tokens.
pub(crate) const MAX_TOKEN_SIZE: usize = 64 << 20;
/// QEMU's limit on the tokens of one message.
pub(crate) const MAX_TOKEN_COUNT: usize = 2 << 20;
/// QEMU's limit on nesting.
pub(crate) const MAX_NESTING: i64 = 1 << 10;

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
    lexer: Lexer,
    streamer: Streamer,
}

impl JsonStream {
    pub(crate) fn new(limits: Limits) -> Self {
        JsonStream {
            lexer: Lexer::new(limits.max_token_size),
            streamer: Streamer {
                tokens: Vec::new(),
                token_size: 0,
                brace: 0,
                bracket: 0,
                limits,
            },
        }
    }

    /// Feeds one byte; complete values and errors go to `out`, in order.
    pub(crate) fn feed(&mut self, ch: u8, out: &mut VecDeque<Parsed>) {
        let streamer = &mut self.streamer;
        self.lexer
            .feed(ch, |kind, token| streamer.process(kind, token, out));
    }
}

/// The tokens of the value being read, and its depth.
#[derive(Debug)]
struct Streamer {
    tokens: Vec<Token>,
    token_size: usize,
    brace: i64,
    bracket: i64,
    limits: Limits,
}

impl Streamer {
    /// Forgets the value being read.
    fn reset(&mut self) {
        self.brace = 0;
        self.bracket = 0;
        self.tokens.clear();
        self.token_size = 0;
    }

    /// Takes one token: counts depth, enforces the limits, and parses the value it
    /// completes.
    fn process(&mut self, kind: Kind, token: Vec<u8>, out: &mut VecDeque<Parsed>) {
        match kind {
            Kind::LCurly => self.brace += 1,
            Kind::RCurly => self.brace -= 1,
            Kind::LSquare => self.bracket += 1,
            Kind::RSquare => self.bracket -= 1,
            Kind::Error => {
                // QEMU formats the token as a C string: the text stops at a NUL byte.
                let mut msg = b"JSON parse error, stray '".to_vec();
                msg.extend_from_slice(c_string(&token));
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

/// `bytes` up to its first NUL byte, as C's `%s` prints it.
pub(super) fn c_string(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}
