//! The one error type of the adapter.

use std::io;
use std::sync::Arc;

use qmp_proto::{
    CallError, CommandError, CommandId, DecodeError, DisconnectReason, Excerpt, QmpError,
};

/// Why a call on a [`Connection`](crate::Connection) failed.
///
/// `Clone`, so one cause can be kept and reported more than once. Match on the variants:
///
/// ```no_run
/// use qmp_blocking::{Connection, Error};
///
/// # fn main() -> Result<(), Error> {
/// let mut qmp = Connection::connect_unix("/run/vm/qmp.sock")?;
/// match qmp.execute::<serde_json::Value>("blockdev-del", &serde_json::json!({"node-name": "nope"})) {
///     Err(Error::Qmp(e)) if e.class == "GenericError" => eprintln!("refused: {}", e.desc),
///     Err(Error::Disconnected(reason)) => eprintln!("QEMU went away: {reason}"),
///     other => println!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// QEMU answered the command with an error reply, carrying its class (such as
    /// `GenericError` or `CommandNotFound`) and description.
    #[error("QMP error {0}")]
    Qmp(QmpError),
    /// A deadline passed: the command's timeout (per call or the default), or the timeout of
    /// a wait for an event or of an accept. A timed-out command's late reply is dropped.
    #[error("timed out")]
    Timeout,
    /// The session ended: the peer closed the connection, the transport failed, the peer
    /// broke the protocol, the greeting or negotiation timed out, or
    /// [`close`](crate::Connection::close) was called. Every pending call fails with it.
    #[error("the QMP session ended: {0}")]
    Disconnected(DisconnectReason),
    /// A reply carrying this command's id was not a valid reply.
    #[error("malformed reply: {0}")]
    MalformedReply(Excerpt),
    /// The result did not decode into the requested type.
    #[error("cannot decode the result: {0}")]
    Decode(Arc<serde_json::Error>),
    /// The reply of a typed call ([`call`](crate::Connection::call)), or a typed event, did
    /// not decode into its Rust type: an enum value newer than the types, say. It carries
    /// the raw JSON ([`DecodeError::raw`]). Only that call or event failed: the session goes
    /// on.
    #[error("{0}")]
    TypedDecode(DecodeError),
    /// A socket operation failed before a session existed (connect, bind, accept).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, such as `cannot bind /run/vm/qmp.sock`.
        context: String,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Local misuse reported by the engine: arguments that are not a JSON object,
    /// `execute_oob` without OOB negotiated, ...
    #[error("invalid call: {0}")]
    Call(#[from] CallError),
    /// [`wait`](crate::Connection::wait) on an id that was not issued by this connection or
    /// whose result was already taken.
    #[error("command {0} is not pending on this connection")]
    UnknownCommand(CommandId),
    /// File descriptors were attached to a command on a TCP connection.
    #[error("file descriptors can only be passed over a unix socket")]
    FdsNeedUnixSocket,
    /// Another command failure reported by the engine.
    #[error("{0}")]
    Command(CommandError),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
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
