//! Typed forms of the common QMP events.
//!
//! Each type is the `data` of one event, with QEMU's member names; [`TypedEvent`] ties it
//! to the event name. Decode one event with [`QmpEvent::decode`], or any of them with
//! [`KnownEvent::decode`]:
//!
//! ```
//! use qmp_proto::events::{KnownEvent, ShutdownCause};
//! # use qmp_proto::QmpEvent;
//! # fn handle(event: &QmpEvent) {
//! match KnownEvent::decode(event) {
//!     Ok(KnownEvent::Shutdown(s)) if s.reason == ShutdownCause::GuestShutdown => println!("guest shut down"),
//!     Ok(KnownEvent::Stop(_)) => println!("paused"),
//!     Ok(KnownEvent::Other(other)) => println!("{} (not typed here)", other.name),
//!     Ok(_) => {}
//!     // A known event whose data this crate cannot decode (a newer QEMU's enum value):
//!     // only this event is affected, the raw JSON is in the error.
//!     Err(e) => println!("{e}: {}", e.raw()),
//! }
//! # }
//! ```
//!
//! Forward compatibility: an event this crate does not type is not an error, it is
//! [`KnownEvent::Other`]. Enums are strict: an enum value this crate does not know fails the
//! decode of that event alone, with a [`DecodeError`] carrying the whole event.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::DecodeTarget;
use crate::{DecodeError, QmpEvent};

/// The `data` of a QMP event as a Rust type.
pub trait TypedEvent: DeserializeOwned {
    /// The event name, such as `SHUTDOWN`.
    const NAME: &'static str;
}

impl QmpEvent {
    /// Decodes this event as `E`: `None` when it is another event, else `E` or the
    /// [`DecodeError`] (which carries the whole event). A missing `data` decodes as `{}`.
    pub fn decode<E: TypedEvent>(&self) -> Option<Result<E, DecodeError>> {
        (self.name == E::NAME).then(|| self.decode_data())
    }

    fn decode_data<E: DeserializeOwned>(&self) -> Result<E, DecodeError> {
        serde_json::from_str(self.data.as_deref().map_or("{}", RawValue::get)).map_err(|e| {
            let raw = self.to_raw();
            DecodeError::new(DecodeTarget::Event, &self.name, &raw, e)
        })
    }

    /// The event as JSON: `{"event": ..., "data": ..., "timestamp": ...}` (members that
    /// were missing are left out).
    fn to_raw(&self) -> Box<RawValue> {
        #[derive(Serialize)]
        struct Wire<'a> {
            event: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "Option::is_none")]
            timestamp: Option<Stamp>,
        }
        #[derive(Serialize)]
        struct Stamp {
            seconds: i64,
            microseconds: i64,
        }
        let wire = Wire {
            event: &self.name,
            data: self.data.as_deref(),
            timestamp: self.timestamp.map(|t| Stamp {
                seconds: t.seconds,
                microseconds: t.microseconds,
            }),
        };
        // Serialising strings, integers and valid raw JSON cannot fail; keep `null` rather
        // than panic if it ever did.
        serde_json::value::to_raw_value(&wire).unwrap_or_default()
    }
}

/// Declares an event type without data members.
macro_rules! no_data {
    ($($(#[$doc:meta])* $ty:ident = $name:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $ty {}

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                serde::de::IgnoredAny::deserialize(d).map(|_| $ty {})
            }
        }

        impl TypedEvent for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

no_data! {
    /// `STOP`: the VM paused (`stop`, an error, a debugger). QEMU sends no `data`.
    Stop = "STOP";
    /// `RESUME`: the VM runs again (`cont`, the end of a migration). QEMU sends no `data`.
    Resume = "RESUME";
    /// `POWERDOWN`: `system_powerdown` asked the guest to power down.
    Powerdown = "POWERDOWN";
    /// `SUSPEND`: the guest entered ACPI S3.
    Suspend = "SUSPEND";
    /// `WAKEUP`: the guest woke from suspension.
    Wakeup = "WAKEUP";
}

/// `SHUTDOWN`: the VM shut down (it exits, unless QEMU runs with `-no-shutdown`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Shutdown {
    /// Whether the guest caused it (`false` for a host request such as `quit`).
    pub guest: bool,
    /// Why.
    pub reason: ShutdownCause,
}

impl TypedEvent for Shutdown {
    const NAME: &'static str = "SHUTDOWN";
}

/// `RESET`: the VM was reset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reset {
    /// Whether the guest caused it.
    pub guest: bool,
    /// Why.
    pub reason: ShutdownCause,
}

impl TypedEvent for Reset {
    const NAME: &'static str = "RESET";
}

/// Why a VM shut down or reset (QEMU's `ShutdownCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ShutdownCause {
    /// No shutdown or reset requested.
    None,
    /// An error prevents further use of the guest.
    HostError,
    /// `quit`.
    HostQmpQuit,
    /// `system_reset`.
    HostQmpSystemReset,
    /// A signal such as SIGINT.
    HostSignal,
    /// The user interface (closing the window, ...).
    HostUi,
    /// The guest shut down.
    GuestShutdown,
    /// The guest reset.
    GuestReset,
    /// The guest panicked and the panic action shut it down.
    GuestPanic,
    /// A partial guest reset that does not trigger QMP events or the `-no-reboot` action.
    SubsystemReset,
    /// A snapshot is being loaded.
    SnapshotLoad,
}

/// `GUEST_PANICKED`: the guest reported a panic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GuestPanicked {
    /// What QEMU does about it.
    pub action: GuestPanicAction,
    /// Details from the panic device, if any, undecoded.
    #[serde(default)]
    pub info: Option<serde_json::Value>,
}

impl TypedEvent for GuestPanicked {
    const NAME: &'static str = "GUEST_PANICKED";
}

/// What QEMU does when the guest panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GuestPanicAction {
    /// The VM is paused.
    Pause,
    /// The VM is powered off.
    Poweroff,
    /// The VM keeps running.
    Run,
}

/// `JOB_STATUS_CHANGE`: a background job (backup, mirror, stream, ...) changed status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobStatusChange {
    /// The job id.
    pub id: String,
    /// Its new status.
    pub status: JobStatus,
}

impl TypedEvent for JobStatusChange {
    const NAME: &'static str = "JOB_STATUS_CHANGE";
}

/// A job's status (QEMU's `JobStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Erroneous, never visible.
    Undefined,
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Ready to be completed (mirror).
    Ready,
    /// Ready and paused.
    Standby,
    /// Done, waiting for the other jobs of its transaction.
    Waiting,
    /// Done, waiting to be finalized.
    Pending,
    /// Cancelled or failed, cleaning up.
    Aborting,
    /// Finished; waiting to be dismissed.
    Concluded,
    /// Dismissed: the job is gone.
    Null,
}

/// The kind of a job (QEMU's `JobType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum JobType {
    /// `block-commit`.
    Commit,
    /// `block-stream`.
    Stream,
    /// `drive-mirror`, `blockdev-mirror`.
    Mirror,
    /// `drive-backup`, `blockdev-backup`.
    Backup,
    /// `blockdev-create`.
    Create,
    /// `x-blockdev-amend`.
    Amend,
    /// `snapshot-load`.
    SnapshotLoad,
    /// `snapshot-save`.
    SnapshotSave,
    /// `snapshot-delete`.
    SnapshotDelete,
}

/// The members of the `BLOCK_JOB_COMPLETED`, `BLOCK_JOB_CANCELLED` and `BLOCK_JOB_READY`
/// events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockJobInfo {
    /// The kind of job.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The job id (named `device` for compatibility).
    pub device: String,
    /// The amount of work to do, in arbitrary units.
    pub len: i64,
    /// How much of it was done.
    pub offset: i64,
    /// The speed limit, in bytes per second (0: none).
    pub speed: i64,
    /// Why it failed (`BLOCK_JOB_COMPLETED` only).
    #[serde(default)]
    pub error: Option<String>,
}

/// `BLOCK_JOB_COMPLETED`: a block job finished (successfully or not: see `error`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BlockJobCompleted(pub BlockJobInfo);

impl TypedEvent for BlockJobCompleted {
    const NAME: &'static str = "BLOCK_JOB_COMPLETED";
}

/// `BLOCK_JOB_CANCELLED`: a block job was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BlockJobCancelled(pub BlockJobInfo);

impl TypedEvent for BlockJobCancelled {
    const NAME: &'static str = "BLOCK_JOB_CANCELLED";
}

/// `BLOCK_JOB_READY`: a block job (mirror) can be completed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BlockJobReady(pub BlockJobInfo);

impl TypedEvent for BlockJobReady {
    const NAME: &'static str = "BLOCK_JOB_READY";
}

/// `BLOCK_JOB_PENDING`: a block job waits to be finalized.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockJobPending {
    /// The kind of job.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The job id.
    pub id: String,
}

impl TypedEvent for BlockJobPending {
    const NAME: &'static str = "BLOCK_JOB_PENDING";
}

/// `DEVICE_DELETED`: a device was removed (after `device_del`, once the guest let it go).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceDeleted {
    /// The device id, if it had one.
    #[serde(default)]
    pub device: Option<String>,
    /// Its QOM path.
    pub path: String,
}

impl TypedEvent for DeviceDeleted {
    const NAME: &'static str = "DEVICE_DELETED";
}

/// Declares [`KnownEvent`] and its decoder from the list of typed events.
macro_rules! known_events {
    ($($variant:ident($ty:ty),)*) => {
        /// A QMP event decoded into its type, or [`Other`](Self::Other) for the events this
        /// crate does not type.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum KnownEvent {
            $(
                #[doc = concat!("[`", stringify!($ty), "`]")]
                $variant($ty),
            )*
            /// An event this crate has no type for, as it arrived. Not an error: QEMU has
            /// many more events, and newer versions add some.
            Other(QmpEvent),
        }

        impl KnownEvent {
            /// Decodes an event. An event whose name this crate does not type is
            /// [`Other`](Self::Other); a typed one whose data does not decode (an unknown
            /// enum value, a missing member) is a [`DecodeError`] carrying the whole event.
            pub fn decode(event: &QmpEvent) -> Result<KnownEvent, DecodeError> {
                match event.name.as_str() {
                    $(<$ty as TypedEvent>::NAME => event.decode_data().map(KnownEvent::$variant),)*
                    _ => Ok(KnownEvent::Other(event.clone())),
                }
            }

            /// The event name.
            pub fn name(&self) -> &str {
                match self {
                    $(KnownEvent::$variant(_) => <$ty as TypedEvent>::NAME,)*
                    KnownEvent::Other(event) => &event.name,
                }
            }

            /// The names of the events this crate types.
            pub const TYPED: &'static [&'static str] = &[$(<$ty as TypedEvent>::NAME,)*];
        }
    };
}

known_events! {
    Stop(Stop),
    Resume(Resume),
    Shutdown(Shutdown),
    Reset(Reset),
    Powerdown(Powerdown),
    Suspend(Suspend),
    Wakeup(Wakeup),
    GuestPanicked(GuestPanicked),
    JobStatusChange(JobStatusChange),
    BlockJobCompleted(BlockJobCompleted),
    BlockJobCancelled(BlockJobCancelled),
    BlockJobReady(BlockJobReady),
    BlockJobPending(BlockJobPending),
    DeviceDeleted(DeviceDeleted),
}

impl TryFrom<&QmpEvent> for KnownEvent {
    type Error = DecodeError;

    fn try_from(event: &QmpEvent) -> Result<Self, Self::Error> {
        KnownEvent::decode(event)
    }
}
