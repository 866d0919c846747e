//! Typed forms of the commands a VM manager uses every day, for
//! [`Client::call`](crate::Client::call) and the adapters' `call`.
//!
//! Each type is one command, named after it in Rust case (`query-status` is
//! [`QueryStatus`]); its fields are the command's arguments under QEMU's names (kebab-case on
//! the wire, snake_case here), optional ones as `Option` (left out when `None`). Return types
//! follow QEMU's documentation (`docs/interop/qemu-qmp-ref`), with unknown members ignored so
//! that newer QEMU versions still decode. Enums are strict: a value this crate does not know
//! fails the decode of that one reply with a [`DecodeError`](crate::DecodeError) carrying
//! the raw JSON, and nothing else.
//!
//! For the rest of QMP, implement [`Command`] for your own types, or enable the `qapi`
//! feature to call the `qapi-qmp` crate's generated types.
//!
//! With an adapter, `qmp.call(QueryStatus {})?` returns the [`StatusInfo`] itself; with the
//! engine, the [`Pending`](crate::Pending) id that `call` returns decodes the reply:
//!
//! ```
//! use std::time::Instant;
//! use qmp_proto::commands::{Cont, QueryStatus, VmRunState};
//! use qmp_proto::{CallOptions, Client, ClientConfig, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Instant::now();
//! let mut client = Client::new(ClientConfig::default());
//! client.connect(now)?;
//! let status = client.call(now, &QueryStatus {}, CallOptions::new())?;
//! # client.handle_input(now, br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0,
//! #     "major": 10}, "package": ""}, "capabilities": []}} {"return": {}, "id": 2}"#);
//! # client.handle_input(now, br#"{"return": {"status": "prelaunch", "running": false}, "id": 1}"#);
//! let mut cont = None;
//! while let Some(event) = client.poll_event() {
//!     if let Event::Reply { id, result } = event {
//!         if status == id && status.decode_result(result)?.status == VmRunState::Prelaunch {
//!             cont = Some(client.call(now, &Cont {}, CallOptions::new())?);
//!         }
//!     }
//! }
//! assert!(cont.is_some());
//! # Ok(())
//! # }
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::{Commands, Schema};
use crate::{Command, QemuVersion};

/// The return value of commands that return nothing: QEMU sends `{}`. Decodes from any
/// value, so a command that starts returning something in a newer QEMU still succeeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Empty {})
    }
}

/// Declares argument-less commands: an empty struct that sends no `arguments` member.
macro_rules! no_arguments {
    ($($(#[$doc:meta])* $ty:ident = $name:literal -> $ret:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $ty {}

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_unit()
            }
        }

        impl Command for $ty {
            const NAME: &'static str = $name;
            type Returns = $ret;
        }
    )*};
}

no_arguments! {
    /// `query-version`: QEMU's version ([`VersionInfo`]).
    QueryVersion = "query-version" -> VersionInfo;
    /// `query-status`: the VM's run status ([`StatusInfo`]). Not on qemu-storage-daemon.
    QueryStatus = "query-status" -> StatusInfo;
    /// `query-commands`: the names of the commands this QEMU has, as a
    /// [`Commands`] set.
    QueryCommands = "query-commands" -> Commands;
    /// `query-name`: the VM's name (`-name`), if it has one ([`NameInfo`]). Not on
    /// qemu-storage-daemon.
    QueryName = "query-name" -> NameInfo;
    /// `query-qmp-schema`: the whole QMP schema of this QEMU, parsed into a
    /// [`Schema`] (100-250 KB on the wire).
    QueryQmpSchema = "query-qmp-schema" -> Schema;
    /// `stop`: pauses the VM. QEMU sends a `STOP` event (before the reply).
    Stop = "stop" -> Empty;
    /// `cont`: resumes the VM (also starts one created with `-S`). QEMU sends a `RESUME`
    /// event (before the reply).
    Cont = "cont" -> Empty;
    /// `system_reset`: resets the VM. QEMU sends a `RESET` event (before the reply).
    SystemReset = "system_reset" -> Empty;
    /// `system_powerdown`: asks the guest to power down (an ACPI power button press); QEMU
    /// sends a `POWERDOWN` event. The guest decides what happens next.
    SystemPowerdown = "system_powerdown" -> Empty;
    /// `quit`: makes QEMU exit. qemu-system sends a `SHUTDOWN` event, then (best effort) the
    /// reply, then closes the connection; the engine counts that EOF as success.
    Quit = "quit" -> Empty;
}

/// `qmp_capabilities`: the capabilities negotiation.
///
/// The engine negotiates on its own when a session starts; QEMU refuses a second
/// negotiation with `CommandNotFound`. This type exists for servers, tests and tools that
/// drive a monitor by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QmpCapabilities {
    /// The capabilities to enable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable: Option<Vec<QmpCapability>>,
}

impl Command for QmpCapabilities {
    const NAME: &'static str = "qmp_capabilities";
    type Returns = Empty;
}

/// A QMP capability, as `qmp_capabilities` enables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum QmpCapability {
    /// `oob`: out-of-band execution.
    Oob,
}

/// `getfd`: names the file descriptor passed with this command (as `SCM_RIGHTS`, unix
/// sockets only; the adapters attach it through their call options).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Getfd {
    /// The name to give it, for later commands (`closefd`, `-netdev fd=...`, ...).
    pub fdname: String,
}

impl Command for Getfd {
    const NAME: &'static str = "getfd";
    type Returns = Empty;
}

/// `closefd`: closes a file descriptor named with `getfd`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Closefd {
    /// Its name.
    pub fdname: String,
}

impl Command for Closefd {
    const NAME: &'static str = "closefd";
    type Returns = Empty;
}

/// `add-fd`: adds the file descriptor passed with this command to an fd set (which
/// `/dev/fdset/ID` paths name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct AddFd {
    /// The fd set to add it to; QEMU picks a new one when `None`.
    #[serde(rename = "fdset-id", skip_serializing_if = "Option::is_none")]
    pub fdset_id: Option<i64>,
    /// A free-form string stored with it (shown by `query-fdsets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opaque: Option<String>,
}

impl Command for AddFd {
    const NAME: &'static str = "add-fd";
    type Returns = AddFdInfo;
}

/// The return value of `add-fd` (QEMU's `AddfdInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub struct AddFdInfo {
    /// The fd set the descriptor was added to.
    #[serde(rename = "fdset-id")]
    pub fdset_id: i64,
    /// The descriptor's number in QEMU.
    pub fd: i64,
}

/// `remove-fd`: removes a descriptor from an fd set, or the whole set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RemoveFd {
    /// The fd set.
    #[serde(rename = "fdset-id")]
    pub fdset_id: i64,
    /// The descriptor (as `add-fd` returned it); the whole set when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
}

impl Command for RemoveFd {
    const NAME: &'static str = "remove-fd";
    type Returns = Empty;
}

/// The return value of `query-version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// The version numbers.
    pub qemu: QemuVersion,
    /// Distribution build information (often empty).
    #[serde(default)]
    pub package: String,
}

/// The return value of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// Whether the VM is running (its vCPUs are).
    pub running: bool,
    /// The run state.
    pub status: VmRunState,
}

/// The VM's run state (QEMU's `RunState` enum, not to be confused with the connection's
/// [`RunState`](crate::RunState)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum VmRunState {
    /// QEMU is being debugged (gdbstub).
    Debug,
    /// Waiting for an incoming migration.
    Inmigrate,
    /// An internal error (such as a KVM emulation failure) stopped the VM.
    InternalError,
    /// An I/O error stopped the VM.
    IoError,
    /// Paused (`stop`).
    Paused,
    /// Paused after a completed outgoing migration.
    Postmigrate,
    /// Created with `-S`, not started yet.
    Prelaunch,
    /// Finishing an outgoing migration.
    FinishMigrate,
    /// Restoring a snapshot.
    RestoreVm,
    /// Running.
    Running,
    /// Saving a snapshot.
    SaveVm,
    /// Shut down, with `-no-shutdown`.
    Shutdown,
    /// Suspended (ACPI S3).
    Suspended,
    /// The watchdog fired with `-watchdog-action pause`.
    Watchdog,
    /// The guest panicked and the panic action paused it.
    GuestPanicked,
    /// COLO fault tolerance.
    Colo,
}

/// The return value of `query-name`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NameInfo {
    /// The VM's name, if it was given one.
    #[serde(default)]
    pub name: Option<String>,
}
