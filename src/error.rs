//! Errors: local misuse ([`CallError`]), the outcome of one command ([`CommandError`]),
//! and why a session ended ([`DisconnectReason`], [`ProtocolError`]).
//!
//! Local misuse and remote misbehaviour are different types. A method called at the wrong
//! time or with bad arguments returns a [`CallError`] and changes nothing. Whatever the peer
//! sends never produces an error return: it becomes data, either a
//! [`Diagnostic`](crate::Diagnostic) (the session goes on) or a [`DisconnectReason`] (the
//! session ends, every pending command is resolved with it).
//!
//! All of these are `Clone`, so the same cause can resolve every pending command.

use std::fmt;
use std::io;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::RunState;

/// How many bytes of offending input an [`Excerpt`] keeps at most.
pub const EXCERPT_LIMIT: usize = 256;

/// A bounded copy of offending bytes, for error messages.
///
/// Keeps at most [`EXCERPT_LIMIT`] bytes and remembers how long the original was. Its
/// `Display` escapes anything that is not printable ASCII, so it is safe to log on one line.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt {
    bytes: Vec<u8>,
    total_len: usize,
}

impl Excerpt {
    /// Copies at most [`EXCERPT_LIMIT`] bytes of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        Self::with_total(bytes, bytes.len())
    }

    /// Copies at most [`EXCERPT_LIMIT`] bytes of `bytes`, which are the start of something
    /// `total_len` bytes long.
    pub fn with_total(bytes: &[u8], total_len: usize) -> Self {
        let keep = bytes.len().min(EXCERPT_LIMIT);
        Excerpt {
            bytes: bytes[..keep].to_vec(),
            total_len: total_len.max(keep),
        }
    }

    /// The bytes kept (at most [`EXCERPT_LIMIT`]).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The length of the original input, of which [`bytes`](Self::bytes) is the start.
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// Whether the original was longer than what was kept.
    pub fn is_truncated(&self) -> bool {
        self.total_len > self.bytes.len()
    }
}

impl fmt::Display for Excerpt {
    /// Printable ASCII as it is; `\r`, `\n` and `\t` escaped; other bytes as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.bytes {
            match b {
                b'\r' => f.write_str("\\r")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        if self.is_truncated() {
            write!(f, "... ({} bytes in all)", self.total_len)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Excerpt(\"{self}\")")
    }
}

/// Displays a string with control characters escaped.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// Local misuse: a call that is not allowed now or whose arguments are unusable.
///
/// Returned by application calls; the engine's state is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The call is not allowed in the current connection runstate.
    #[error("cannot {operation} while the connection is {state}")]
    InvalidState {
        /// What was attempted.
        operation: &'static str,
        /// The runstate at the time of the call.
        state: RunState,
    },
    /// An out-of-band call ([`CallOptions::oob`](crate::CallOptions::oob)) but out-of-band
    /// execution was not negotiated (the server did not offer it, the configuration did not
    /// ask for it, or negotiation is not done yet).
    #[error("out-of-band execution was not negotiated on this connection")]
    OobNotNegotiated,
    /// The command arguments did not serialise to a JSON object (or to `null`/`()` for none).
    #[error("command arguments must serialise to a JSON object, got {0}")]
    ArgumentsNotObject(String),
    /// Serialising the command failed.
    #[error("cannot serialise the command: {0}")]
    Serialize(String),
    /// A raw message was not a JSON object.
    #[error("a raw QMP message must be a JSON object")]
    RawNotObject,
    /// A raw message carries an id that a pending command already uses.
    #[error("the id {0} is already used by a pending command")]
    DuplicateId(String),
    /// A raw request meant to be sent without an id
    /// ([`CallOptions::without_id`](crate::CallOptions::without_id)) carries one.
    #[error("the message has an \"id\" member; use execute_raw to route by it")]
    UnexpectedId,
    /// A command without an id ([`CallOptions::without_id`](crate::CallOptions::without_id))
    /// is already pending; only one may be, so that the id-less reply can be attributed.
    #[error("an id-less raw command is already pending")]
    IdlessPending,
    /// A guest agent operation ([`Client::resync`](crate::Client::resync)) on a client that
    /// is not in [guest agent mode](crate::ClientConfig::guest_agent).
    #[error("only a guest agent session can resynchronise")]
    NotGuestAgent,
    /// A typed out-of-band call ([`Client::call`](crate::Client::call) with
    /// [`CallOptions::oob`](crate::CallOptions::oob)) of a command whose
    /// [`ALLOW_OOB`](crate::Command::ALLOW_OOB) is false: QEMU would refuse it.
    #[error("the command {0} does not allow out-of-band execution")]
    OobNotAllowed(&'static str),
    /// A raw request sent with [`CallOptions::oob`](crate::CallOptions::oob) that is not an
    /// `exec-oob` request.
    #[error("an out-of-band raw request must use \"exec-oob\", not \"execute\"")]
    RawOobNotExecOob,
}

/// A QMP error reply: `{"error": {"class": ..., "desc": ...}, "id": ...}`.
///
/// `Display` shows `class: desc` with control characters escaped (QEMU's parse errors quote
/// the offending byte, such as `stray '\u0001'`); the fields hold the exact text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", Escaped(class), Escaped(desc))]
pub struct QmpError {
    /// The error class, such as `GenericError` or `CommandNotFound`.
    pub class: String,
    /// The human-readable description. Do not match on it: QEMU may change it.
    pub desc: String,
}

/// Why one command did not produce a return value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The server answered with an error reply.
    #[error("QMP error {0}")]
    Qmp(QmpError),
    /// The command's deadline passed before its reply arrived. The command keeps its id:
    /// a late reply is reported as [`Diagnostic::LateReply`](crate::Diagnostic::LateReply),
    /// then delivered as [`Event::LateReply`](crate::Event::LateReply).
    #[error("the command timed out")]
    Timeout,
    /// The application cancelled the command ([`Client::cancel`](crate::Client::cancel)).
    #[error("the command was cancelled")]
    Cancelled,
    /// The session ended before the reply arrived.
    #[error("the session ended before the reply: {0}")]
    Interrupted(DisconnectReason),
    /// A guest agent answered a later resynchronisation without answering this command, so
    /// no answer will come (guest agent mode).
    #[error("the guest agent answered a later guest-sync-delimited but not this command")]
    NoReply,
    /// A reply with this command's id was not a valid reply (both or neither of `return` and
    /// `error`, or an `error` that is not `{"class": string, "desc": string}`).
    #[error("malformed reply: {0}")]
    MalformedReply(Excerpt),
    /// The reply arrived and was valid, but its `return` value did not decode into the
    /// command's [`Returns`](crate::Command::Returns) type (from
    /// [`Pending::decode_result`](crate::Pending::decode_result)). Only this command is
    /// affected; the error carries the raw value.
    #[error("{0}")]
    Decode(crate::DecodeError),
}

/// Why a session ended. Carried by [`Event::Disconnected`](crate::Event::Disconnected) and by
/// [`CommandError::Interrupted`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The application called [`Client::close`](crate::Client::close).
    #[error("closed locally")]
    Closed,
    /// The peer closed the connection. `after_quit` is true when a `quit` command was sent
    /// in this session, so the EOF was expected; a `quit` still in flight is resolved by it as
    /// a success.
    #[error("{}", if *after_quit { "the server closed the connection after quit" } else { "the server closed the connection" })]
    Eof {
        /// Whether a `quit` command was sent in this session.
        after_quit: bool,
    },
    /// The transport failed (reported through
    /// [`Client::handle_io_error`](crate::Client::handle_io_error)).
    #[error("transport error ({kind:?}): {message}")]
    Transport {
        /// The kind of the IO error.
        kind: io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// No greeting arrived within the greeting timeout. A QMP monitor serves one client at a
    /// time: a second client is accepted by the socket but greeted only when the first leaves.
    #[error("no greeting within {0:?} (is another client connected to this monitor?)")]
    GreetingTimeout(std::time::Duration),
    /// No answer to `qmp_capabilities` within the negotiation timeout.
    #[error("no answer to qmp_capabilities within {0:?}")]
    NegotiationTimeout(std::time::Duration),
    /// The server refused `qmp_capabilities`.
    #[error("capabilities negotiation failed: {0}")]
    NegotiationFailed(QmpError),
    /// A guest agent did not answer a resynchronisation (`guest-sync-delimited`) within
    /// [`ClientConfig::sync_timeout`](crate::ClientConfig::sync_timeout): the agent is
    /// probably not running in the guest.
    #[error("the guest agent did not answer guest-sync-delimited within {0:?} (is it running in the guest?)")]
    SyncTimeout(std::time::Duration),
    /// The peer broke the protocol in a way that makes the stream unusable.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
}

/// Peer misbehaviour that ends a session. Each carries the offending bytes, cut to
/// [`EXCERPT_LIMIT`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A message grew past [`ClientConfig::max_message_size`](crate::ClientConfig). It is
    /// rejected as soon as its size is exceeded, before it is buffered.
    #[error("message larger than the limit of {limit} bytes (raise max_message_size): {excerpt}")]
    MessageTooLarge {
        /// The configured limit.
        limit: usize,
        /// The start of the message.
        excerpt: Excerpt,
    },
    /// A message nested deeper than [`ClientConfig::max_depth`](crate::ClientConfig).
    #[error("message nested deeper than the limit of {limit}: {excerpt}")]
    TooDeep {
        /// The configured limit.
        limit: usize,
        /// The start of the message.
        excerpt: Excerpt,
    },
    /// Bytes between messages that cannot start a JSON object (garbage, a bare number or
    /// string, `inf`, the banner of an HMP monitor, ...). Reported once the line they are on
    /// ends, [`EXCERPT_LIMIT`] bytes of them arrived, the input ends, or 20 ms after they
    /// started (through [`poll_timeout`](crate::Client::poll_timeout)), whichever comes
    /// first: the excerpt shows the whole line however the input was split.
    #[error("unexpected data between messages: {0}")]
    UnexpectedData(Excerpt),
    /// A message was not valid UTF-8.
    #[error("message is not valid UTF-8: {0}")]
    InvalidUtf8(Excerpt),
    /// A message was not valid JSON (for example it holds an `inf` or `nan` token, which QEMU
    /// emits for numbers it cannot represent), or had a duplicate member.
    #[error("invalid JSON ({error}): {excerpt}")]
    InvalidJson {
        /// serde_json's description of the problem.
        error: String,
        /// The message.
        excerpt: Excerpt,
    },
    /// A message was a JSON array, not an object.
    #[error("message is not a JSON object: {0}")]
    NotAnObject(Excerpt),
    /// The first message was not a valid greeting.
    #[error("invalid greeting ({reason}): {excerpt}")]
    InvalidGreeting {
        /// What is wrong with it.
        reason: String,
        /// The message.
        excerpt: Excerpt,
    },
    /// More QMP events came before the greeting than
    /// [`ClientConfig::max_events_before_greeting`](crate::ClientConfig::max_events_before_greeting)
    /// allows.
    #[error("more than {limit} events before the greeting: {excerpt}")]
    EventsBeforeGreeting {
        /// The configured limit.
        limit: usize,
        /// The event past the limit.
        excerpt: Excerpt,
    },
    /// A reply that is not a valid reply (both or neither of `return` and `error`, or an
    /// `error` that is not `{"class": string, "desc": string}`) answered a command the
    /// session cannot go on without: `qmp_capabilities`.
    #[error("invalid reply to {to}: {excerpt}")]
    InvalidReply {
        /// The command it answered.
        to: &'static str,
        /// The reply.
        excerpt: Excerpt,
    },
    /// The server reported an error without an id: it could not parse something it was sent,
    /// and no id-less raw command was pending to take the blame.
    #[error("the server reported an error without an id (it failed to parse its input): {0}")]
    IdlessError(QmpError),
    /// The connection ended in the middle of a message.
    #[error("the connection ended inside a message: {0}")]
    Truncated(Excerpt),
}

impl From<ProtocolError> for DisconnectReason {
    fn from(e: ProtocolError) -> Self {
        DisconnectReason::Protocol(e)
    }
}

/// What a [`DecodeError`] failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeTarget {
    /// The `return` value of a command.
    Return,
    /// An event.
    Event,
}

/// A reply or an event that arrived intact but did not decode into its Rust type: a value
/// this crate's types do not know (an enum value or a member type from a newer QEMU), or a
/// type that does not match what the peer sends.
///
/// It fails only the typed decode of that one message; the session goes on. It keeps the
/// whole raw JSON ([`raw`](Self::raw)): for a command, its `return` value; for an event, the
/// event (`{"event": ..., "data": ..., "timestamp": ...}`). `Display` shows the cause and
/// the start of the JSON (at most [`EXCERPT_LIMIT`](crate::EXCERPT_LIMIT) bytes).
#[derive(Clone)]
pub struct DecodeError {
    target: DecodeTarget,
    name: String,
    raw: Box<RawValue>,
    error: Arc<serde_json::Error>,
}

impl DecodeError {
    pub(crate) fn new(
        target: DecodeTarget,
        name: &str,
        raw: &RawValue,
        error: serde_json::Error,
    ) -> Self {
        DecodeError {
            target,
            name: name.to_owned(),
            raw: raw.to_owned(),
            error: Arc::new(error),
        }
    }

    /// Whether it was a command's return value or an event.
    pub fn target(&self) -> DecodeTarget {
        self.target
    }

    /// The command or event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw JSON that did not decode: the command's `return` value, or the whole event.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// serde_json's error (with its line and column in [`raw`](Self::raw)).
    pub fn json_error(&self) -> &serde_json::Error {
        &self.error
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.target {
            DecodeTarget::Return => "the return value of",
            DecodeTarget::Event => "the event",
        };
        write!(
            f,
            "cannot decode {what} {} ({}): {}",
            self.name,
            self.error,
            Excerpt::new(self.raw.get().as_bytes())
        )
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeError")
            .field("target", &self.target)
            .field("name", &self.name)
            .field("error", &self.error)
            .field("raw", &Excerpt::new(self.raw.get().as_bytes()))
            .finish()
    }
}

impl PartialEq for DecodeError {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target
            && self.name == other.name
            && self.raw.get() == other.raw.get()
            && self.error.to_string() == other.error.to_string()
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}
