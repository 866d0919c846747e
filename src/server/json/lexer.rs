//! `qobject/json-lexer.c`: bytes in, tokens out.
//!
//! A state table read one byte at a time, so a token may be split anywhere and no newline
//! is needed. A byte that no token can take is an error token; the lexer then skips input
//! (recovery) until a structural character, a control byte or a line end.

/// The lexer states of `json-lexer.c` (`IN_*`).
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
pub(super) enum Kind {
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

/// A token: its kind and its bytes.
pub(super) type Token = (Kind, Vec<u8>);

/// QEMU's lexer: one byte in at a time, complete tokens out.
#[derive(Debug)]
pub(super) struct Lexer {
    state: St,
    token: Vec<u8>,
    max_token_size: usize,
}

impl Lexer {
    /// A lexer that hands on a token as soon as it grows past `max_token_size` bytes.
    pub(super) fn new(max_token_size: usize) -> Self {
        Lexer {
            state: St::Start,
            token: Vec::new(),
            max_token_size,
        }
    }

    /// Feeds one byte; each token it completes goes to `emit`, in order.
    pub(super) fn feed(&mut self, ch: u8, mut emit: impl FnMut(Kind, Vec<u8>)) {
        loop {
            let (next, lookahead) = table(self.state, ch);
            if !lookahead {
                self.token.push(ch);
            }
            match next {
                Next::Token(kind) => {
                    emit(kind, std::mem::take(&mut self.token));
                    self.state = St::Start;
                }
                Next::Start => {
                    self.token.clear();
                    self.state = St::Start;
                }
                Next::Error => {
                    emit(Kind::Error, std::mem::take(&mut self.token));
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
        if self.token.len() > self.max_token_size {
            // QEMU hands the oversized partial token on; the streamer refuses it.
            emit(Kind::String, std::mem::take(&mut self.token));
            self.state = St::Start;
        }
    }
}
