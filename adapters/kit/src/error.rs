//! The one error type of the adapters.

use std::io;
use std::sync::Arc;

use qmp_proto::{
    CallError, CommandError, CommandId, DecodeError, DisconnectReason, Excerpt, QmpError,
};

use crate::late::Late;

/// Why a call failed, in every adapter (`qmp-blocking`, `qmp-async`).
///
/// `Clone`, so one cause can fail every pending call and be reported more than once. Match
/// on the variants:
///
/// ```
/// use qmp_kit::Error;
///
/// fn explain(result: Result<serde_json::Value, Error>) -> String {
///     match result {
///         Ok(v) => format!("ok: {v}"),
///         Err(Error::Qmp(e)) if e.class == "GenericError" => format!("refused: {}", e.desc),
///         Err(Error::Disconnected(reason)) => format!("QEMU went away: {reason}"),
///         Err(other) => format!("failed: {other}"),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// QEMU answered the command with an error reply, carrying its class (such as
    /// `GenericError` or `CommandNotFound`) and description.
    #[error("QMP error {0}")]
    Qmp(QmpError),
    /// A deadline passed and nothing is left behind: the limit of a wait for an event or of
    /// an accept, or the timeout of a command that timed out before it was sent (it never
    /// will be). A command that timed out after it was sent is
    /// [`CommandTimeout`](Self::CommandTimeout). [`is_timeout`](Self::is_timeout) matches
    /// both.
    #[error("timed out")]
    Timeout,
    /// The command's timeout (per call or the default) passed after it was sent: QEMU still
    /// runs it, and its reply, when it comes, is its late outcome, which the [`Late`] handle
    /// gives (did the `blockdev-add` that timed out create its node?).
    #[error("timed out")]
    CommandTimeout(Late),
    /// The session ended before the call was answered: the peer closed the connection (or
    /// was killed), the transport failed, the peer broke the protocol, the greeting or
    /// negotiation timed out, or the connection was closed locally. Every pending call fails
    /// with it, and so does every call made while no session is up.
    #[error("the QMP session ended: {0}")]
    Disconnected(DisconnectReason),
    /// The task that runs the connection (an async adapter's driver) is not running: it was
    /// dropped (its task cancelled, its runtime shut down) before any session ended.
    #[error("the QMP driver is not running (dropped or never spawned)")]
    DriverGone,
    /// A reply carrying this command's id was not a valid reply.
    #[error("malformed reply: {0}")]
    MalformedReply(Excerpt),
    /// The result did not decode into the requested type.
    #[error("cannot decode the result: {0}")]
    Decode(Arc<serde_json::Error>),
    /// The reply of a typed call, or a typed event, did not decode into its Rust type: an
    /// enum value newer than the types, say. It carries the raw JSON ([`DecodeError::raw`]).
    /// Only that call or event failed: the session goes on.
    #[error("{0}")]
    TypedDecode(DecodeError),
    /// A socket operation failed outside a session (connect, bind, accept).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, such as `cannot connect to /run/vm/qmp.sock`.
        context: String,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Local misuse reported by the engine: arguments that are not a JSON object, an
    /// out-of-band call without OOB negotiated, ...
    #[error("invalid call: {0}")]
    Call(#[from] CallError),
    /// A wait on a command id that was not issued by this connection or whose result was
    /// already taken.
    #[error("command {0} is not pending on this connection")]
    UnknownCommand(CommandId),
    /// File descriptors were attached to a command on a connection that cannot carry them:
    /// only unix sockets opened by the adapter can (not TCP, not a wrapped stream). The
    /// descriptors were closed and nothing was sent.
    #[error("file descriptors can only be passed over a unix socket opened by the adapter (not over TCP or a wrapped stream)")]
    FdsUnsupported,
    /// Another command failure reported by the engine.
    #[error("{0}")]
    Command(CommandError),
}

impl Error {
    /// Whether a deadline passed: [`Timeout`](Self::Timeout) or
    /// [`CommandTimeout`](Self::CommandTimeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout | Error::CommandTimeout(_))
    }

    /// An [`Error::Io`]: `context` says what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Qmp(e) => Error::Qmp(e),
            CommandError::Timeout => Error::Timeout,
            CommandError::Interrupted(reason) => Error::Disconnected(reason),
            CommandError::MalformedReply(excerpt) => Error::MalformedReply(excerpt),
            CommandError::Decode(e) => Error::TypedDecode(e),
            other => Error::Command(other),
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::TypedDecode(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Decode(Arc::new(e))
    }
}
