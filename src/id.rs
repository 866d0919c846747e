//! What identifies a command and what it resolves to.

use std::fmt;

use serde_json::value::RawValue;

use crate::error::CommandError;

/// Identifies one command issued through a [`Client`](crate::Client). Opaque, `Copy`, unique
/// for the lifetime of the client (across reconnections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub(crate) u64);

impl CommandId {
    /// The number behind the id (for logs). For commands whose id the engine assigns, it is
    /// also the `"id"` on the wire.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The result of a command: its `return` value as raw JSON, or why there is none.
///
/// Decode the value with `serde_json::from_str::<T>(raw.get())`: it runs once, straight from
/// the bytes that arrived.
pub type CommandResult = Result<Box<RawValue>, CommandError>;
