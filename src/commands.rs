//! What typed commands share: [`Empty`], the return value of commands that return nothing.
//!
//! The command types themselves are generated from QEMU's QAPI schema in the `qmp-types`
//! crate (every command of QEMU 10.0.2 and of the guest agent, with its arguments, its
//! return type and whether it may run out of band); [`Command`](crate::Command) is
//! implemented as easily for a type of your own:
//!
//! ```
//! use qmp_proto::commands::Empty;
//!
//! /// `stop`: pauses the VM.
//! #[derive(serde::Serialize)]
//! struct Stop {}
//!
//! impl qmp_proto::Command for Stop {
//!     const NAME: &'static str = "stop";
//!     type Returns = Empty;
//! }
//! ```

use serde::{Deserialize, Deserializer};

/// The return value of commands that return nothing: QEMU sends `{}`. Decodes from any
/// value, so a command that starts returning something in a newer QEMU still succeeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Empty {})
    }
}
