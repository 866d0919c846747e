//! The traffic tap: every message in and out of a connection, typed.

use std::fmt;
use std::sync::Arc;

pub use qmp_proto::Direction;

/// One message sent or received on a connection, as it is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Which way it went.
    pub direction: Direction,
    /// The message (a received one may be invalid JSON; a guest agent sync request starts
    /// with the `0xFF` delimiter, which is not part of [`message`](Self::message): see
    /// [`delimited`](Self::delimited)).
    pub message: String,
    /// Whether a sent message was preceded by the guest agent's `0xFF` delimiter.
    pub delimited: bool,
    /// The connection's label ([`Settings::label`](crate::Settings::label)), if it has one.
    pub label: Option<Arc<str>>,
}

impl Traffic {
    /// `->` for a message sent, `<-` for one received (the QMP specification's notation).
    pub fn arrow(&self) -> &'static str {
        match self.direction {
            Direction::Out => "->",
            Direction::In => "<-",
        }
    }
}

impl fmt::Display for Traffic {
    /// `-> {"execute": ...}` or `<- {"return": ...}`, with the label first when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(label) = &self.label {
            write!(f, "[{label}] ")?;
        }
        write!(f, "{} {}", self.arrow(), self.message)
    }
}

/// A subscriber to a connection's traffic: called with each message in and out, in order,
/// on the thread or task that runs the connection (keep it quick).
#[derive(Clone)]
pub struct Tap(Arc<dyn Fn(&Traffic) + Send + Sync>);

impl Tap {
    /// A tap calling `f`.
    pub fn new(f: impl Fn(&Traffic) + Send + Sync + 'static) -> Self {
        Tap(Arc::new(f))
    }

    pub(crate) fn send(&self, traffic: &Traffic) {
        (self.0)(traffic)
    }
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tap(..)")
    }
}
