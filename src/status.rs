//! The VM's run status and the table of jobs, as the client tracks them.
//!
//! Both trackers are opt-in ([`ClientConfig::track_vm_status`](crate::ClientConfig::track_vm_status),
//! [`ClientConfig::track_jobs`](crate::ClientConfig::track_jobs)) and do nothing in guest
//! agent mode (the agent has no such events). What they know is read with
//! [`Client::vm_status`](crate::Client::vm_status), [`Client::jobs`](crate::Client::jobs) and
//! [`Client::job`](crate::Client::job); every change is reported, right after its cause, as
//! [`Event::VmStatusChanged`](crate::Event::VmStatusChanged) or
//! [`Event::JobChanged`](crate::Event::JobChanged).
//!
//! # Theory of operation
//!
//! A tracker never guesses. It takes a value from an event only where the event says what
//! the value is, and otherwise asks QEMU: it issues the query itself (`query-status`,
//! `query-jobs`), as an ordinary in-band command whose reply it consumes. Those commands
//! take an in-flight slot and a command id like any other, but the application never sees
//! their ids, replies or failures.
//!
//! **When it asks.** When a session becomes `Running` (the first one and every reconnection,
//! so nothing missed while the connection was down stays missed), when
//! [`Client::refresh_status`](crate::Client::refresh_status) is called, and after the events
//! below. One query per tracker is in flight at a time; a cause that comes while it is in
//! flight asks again once its reply has come.
//!
//! **Why its replies can be trusted.** QEMU writes events and replies to a monitor in the
//! order they happen, and runs in-band commands one at a time. A query sent after an event
//! was received runs after that event happened, so its reply includes it; events received
//! before the reply happened before the reply was written. A reply is therefore applied as
//! it comes, with one refinement for jobs (which QEMU may also change from its I/O threads,
//! between running a query and writing its reply): a job's status taken from an event that
//! came while the query was in flight is kept over the reply's, and so is its removal.
//!
//! **The VM status** ([`VmStatus`], the `status` of `query-status`):
//!
//! | event | effect |
//! |---|---|
//! | `RESUME` | `running` (QEMU sends it as it enters that state) |
//! | `STOP`, `RESET`, `SUSPEND`, `WAKEUP`, `MIGRATION` | asks `query-status` (`STOP` says the VM stopped, not why: `paused`, `io-error`, `shutdown`, `guest-panicked`, `watchdog`, `finish-migrate`...; `RESET` leaves a VM that is not running in `prelaunch`) |
//! | `SHUTDOWN`, `GUEST_PANICKED`, `WATCHDOG`, ... | nothing: QEMU either exits (and a query would go unread) or stops the VM, and then sends `STOP` |
//!
//! A peer that answers `query-status` with `CommandNotFound` (qemu-storage-daemon) has no VM
//! status: [`Client::vm_status`](crate::Client::vm_status) is then `None` for that session.
//! QEMU changes a few states without any event (`finish-migrate` to `postmigrate` at the end
//! of an outgoing migration): the tracker learns those at its next query.
//!
//! **The jobs** ([`Job`], an entry of `query-jobs`, block jobs included):
//!
//! | event | effect |
//! |---|---|
//! | `JOB_STATUS_CHANGE` | the job's status; a job not yet in the table is added (and `query-jobs` asked for its type and progress); `null` removes it; `concluded` and `aborting` ask `query-jobs` for the final progress and the error |
//! | `BLOCK_JOB_COMPLETED`, `BLOCK_JOB_CANCELLED`, `BLOCK_JOB_READY` | the job's type and progress (`offset` of `len`); `BLOCK_JOB_COMPLETED`'s error |
//! | `BLOCK_JOB_PENDING` | the job's type |
//!
//! A job's progress moves without events: it is as of the last event or query
//! ([`Client::refresh_status`](crate::Client::refresh_status) asks again). A peer that answers
//! `query-jobs` with `CommandNotFound` gets no queries for the rest of the session; its events
//! are still tracked. At most [`ClientConfig::max_tracked_jobs`](crate::ClientConfig::max_tracked_jobs)
//! jobs are kept; a job beyond that is not tracked, and
//! [`Diagnostic::JobNotTracked`](crate::Diagnostic::JobNotTracked) says so.
//!
//! Across sessions the trackers keep what they last knew, and the first queries of the next
//! session bring it up to date, reporting what changed meanwhile (a job that ended while the
//! connection was down is reported removed).
//!
//! Unknown values (a status or job type newer than this crate) are kept as they are, in the
//! `Other` variants, never mapped to a known one.

use std::fmt;

/// Whether the VM status tracker answers an event of this name with `query-status` (the
/// events that say the VM's status changed without saying what it is now; see the table
/// above). An application that waits for the tracked status to settle after such an event
/// can wait for [`Client::is_refreshing_status`](crate::Client::is_refreshing_status) to be
/// false.
///
/// ```
/// assert!(qmp_proto::status::asks_vm_status("STOP"));
/// assert!(!qmp_proto::status::asks_vm_status("RESUME")); // it says: running
/// ```
pub fn asks_vm_status(event: &str) -> bool {
    matches!(event, "STOP" | "RESET" | "SUSPEND" | "WAKEUP" | "MIGRATION")
}

/// Declares a QAPI enum of names: the variants, their names on the wire, an `Other` variant
/// for names this crate does not know, and the conversions.
macro_rules! qapi_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A name this crate does not know (a newer QEMU's), kept as it is.
            Other(String),
        }

        impl $name {
            /// The name on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )*
                    $name::Other(name) => name,
                }
            }

            /// The value that `name` designates on the wire (`Other` for an unknown name).
            pub fn from_name(name: &str) -> Self {
                match name {
                    $( $wire => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                $name::from_name(name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::from_name(&name))
            }
        }
    };
}

qapi_names! {
    /// The VM's run status: QAPI's `RunState`, as `query-status` reports it in `status`.
    ///
    /// ```
    /// use qmp_proto::status::VmStatus;
    ///
    /// assert_eq!(VmStatus::from_name("prelaunch"), VmStatus::Prelaunch);
    /// assert_eq!(VmStatus::IoError.as_str(), "io-error");
    /// assert!(VmStatus::Running.is_running());
    /// assert_eq!(VmStatus::from_name("hibernating"), VmStatus::Other("hibernating".into()));
    /// ```
    pub enum VmStatus {
        /// `debug`: stopped by a debugger (the gdbstub).
        Debug = "debug",
        /// `inmigrate`: waiting for an incoming migration.
        Inmigrate = "inmigrate",
        /// `internal-error`: stopped by an internal error (KVM, say).
        InternalError = "internal-error",
        /// `io-error`: stopped by a disk I/O error (`werror=stop`).
        IoError = "io-error",
        /// `paused`: stopped by `stop`.
        Paused = "paused",
        /// `postmigrate`: stopped after an outgoing migration completed.
        Postmigrate = "postmigrate",
        /// `prelaunch`: not started yet (`-S`), or reset while stopped.
        Prelaunch = "prelaunch",
        /// `finish-migrate`: stopped for the last stage of an outgoing migration.
        FinishMigrate = "finish-migrate",
        /// `restore-vm`: loading a snapshot.
        RestoreVm = "restore-vm",
        /// `running`: the guest runs.
        Running = "running",
        /// `save-vm`: saving a snapshot.
        SaveVm = "save-vm",
        /// `shutdown`: the guest shut down, and QEMU was told not to exit (`-no-shutdown`).
        Shutdown = "shutdown",
        /// `suspended`: the guest suspended itself (ACPI S3).
        Suspended = "suspended",
        /// `watchdog`: stopped by a watchdog action.
        Watchdog = "watchdog",
        /// `guest-panicked`: stopped after the guest panicked.
        GuestPanicked = "guest-panicked",
        /// `colo`: in COLO fault tolerance, as the secondary.
        Colo = "colo",
    }
}

impl VmStatus {
    /// Whether the guest runs (`query-status`'s `running`).
    pub fn is_running(&self) -> bool {
        *self == VmStatus::Running
    }
}

qapi_names! {
    /// A job's status: QAPI's `JobStatus`.
    pub enum JobStatus {
        /// `undefined`: not a status QEMU reports.
        Undefined = "undefined",
        /// `created`: created, not started.
        Created = "created",
        /// `running`: doing its work.
        Running = "running",
        /// `paused`: paused by the user or by an error.
        Paused = "paused",
        /// `ready`: synchronised, waiting for `job-complete` (mirror, commit of the active
        /// layer).
        Ready = "ready",
        /// `standby`: a ready job, paused.
        Standby = "standby",
        /// `waiting`: done, waiting for the other jobs of its transaction.
        Waiting = "waiting",
        /// `pending`: waiting for `job-finalize` (`auto-finalize` off).
        Pending = "pending",
        /// `aborting`: failing or cancelled, cleaning up.
        Aborting = "aborting",
        /// `concluded`: ended; waiting for `job-dismiss` (`auto-dismiss` off).
        Concluded = "concluded",
        /// `null`: dismissed, gone from the job list.
        Null = "null",
    }
}

impl JobStatus {
    /// Whether the job has ended (`concluded` or `null`).
    pub fn is_ended(&self) -> bool {
        matches!(self, JobStatus::Concluded | JobStatus::Null)
    }
}

qapi_names! {
    /// A job's type: QAPI's `JobType`.
    pub enum JobType {
        /// `commit`: `block-commit`.
        Commit = "commit",
        /// `stream`: `block-stream`.
        Stream = "stream",
        /// `mirror`: `blockdev-mirror`, `drive-mirror`.
        Mirror = "mirror",
        /// `backup`: `blockdev-backup`, `drive-backup`.
        Backup = "backup",
        /// `create`: `blockdev-create`.
        Create = "create",
        /// `amend`: `x-blockdev-amend`.
        Amend = "amend",
        /// `snapshot-load`.
        SnapshotLoad = "snapshot-load",
        /// `snapshot-save`.
        SnapshotSave = "snapshot-save",
        /// `snapshot-delete`.
        SnapshotDelete = "snapshot-delete",
    }
}

/// A job as the client tracks it: the members of QAPI's `JobInfo` (an entry of `query-jobs`),
/// those not known yet as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Job {
    /// The job's id (a block job's `device`).
    pub id: String,
    /// Its type: `None` until an event or `query-jobs` says it.
    pub kind: Option<JobType>,
    /// Its status.
    pub status: JobStatus,
    /// Progress made, in units of [`total_progress`](Self::total_progress) (bytes for block
    /// jobs), as of the last event or query that said it.
    pub current_progress: Option<i64>,
    /// The progress that completes the job (an estimate that may change).
    pub total_progress: Option<i64>,
    /// Why it failed, once it has: `query-jobs`' `error`, or `BLOCK_JOB_COMPLETED`'s.
    pub error: Option<String>,
}

impl Job {
    /// A job known only by its id and status.
    pub fn new(id: impl Into<String>, status: JobStatus) -> Self {
        Job {
            id: id.into(),
            kind: None,
            status,
            current_progress: None,
            total_progress: None,
            error: None,
        }
    }

    /// The progress as a fraction from 0 to 1, when both figures are known and the total is
    /// not zero.
    pub fn fraction(&self) -> Option<f64> {
        match (self.current_progress, self.total_progress) {
            (Some(c), Some(t)) if t > 0 => Some((c as f64 / t as f64).clamp(0.0, 1.0)),
            _ => None,
        }
    }
}

impl fmt::Display for Job {
    /// `id (type) status current/total: error`, the parts not known left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        if let Some(kind) = &self.kind {
            write!(f, " ({kind})")?;
        }
        write!(f, " {}", self.status)?;
        if let (Some(c), Some(t)) = (self.current_progress, self.total_progress) {
            write!(f, " {c}/{t}")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept() {
        for name in [
            "paused",
            "io-error",
            "guest-panicked",
            "colo",
            "hibernating",
        ] {
            assert_eq!(VmStatus::from_name(name).as_str(), name);
        }
        assert_eq!(JobStatus::from_name("concluded"), JobStatus::Concluded);
        assert_eq!(JobType::from_name("snapshot-save"), JobType::SnapshotSave);
        let v: JobStatus = serde_json::from_str("\"frozen\"").unwrap();
        assert_eq!(v, JobStatus::Other("frozen".into()));
        assert_eq!(
            serde_json::to_string(&VmStatus::IoError).unwrap(),
            "\"io-error\""
        );
    }

    #[test]
    fn job_display_and_fraction() {
        let mut job = Job::new("j0", JobStatus::Running);
        assert_eq!(job.to_string(), "j0 running");
        assert_eq!(job.fraction(), None);
        job.kind = Some(JobType::Mirror);
        job.current_progress = Some(512);
        job.total_progress = Some(1024);
        assert_eq!(job.to_string(), "j0 (mirror) running 512/1024");
        assert_eq!(job.fraction(), Some(0.5));
        job.error = Some("Input/output error".into());
        job.status = JobStatus::Concluded;
        assert_eq!(
            job.to_string(),
            "j0 (mirror) concluded 512/1024: Input/output error"
        );
    }
}
