//! The whole QMP and QEMU guest agent vocabulary as Rust types, generated from the QAPI
//! schema of QEMU 10.0.2 by `qapi-gen` (the workspace's `gen/`).
//!
//! - [`qmp`]: every command, event, struct, union, alternate and enum of
//!   qemu-system-x86_64's schema (qemu-storage-daemon's is a subset), one cargo feature per
//!   QAPI module (`block-core`, `machine`, `migration`, ...; `full` for all).
//! - `qga` (feature `qga`): the guest agent's.
//!
//! Commands implement [`qmp_proto::Command`], so every adapter's typed `call` takes them;
//! events implement [`qmp_proto::events::TypedEvent`].
//!
//! # Compatibility
//! - Enums keep values they do not know (`Other(String)`); structs ignore members they do
//!   not know; a union whose discriminator this crate does not know decodes to its
//!   `Other { tag, data }` case with the raw JSON; an alternate's unexpected JSON type to
//!   `Other(Value)`.
//! - Every struct is `#[non_exhaustive]`. Argument types are built with `new(required...)`
//!   and `with_*` setters for the optional members, so a member QEMU adds later is not a
//!   breaking change.
//! - Backward compatible with QEMU 7.2 and later: a member QEMU added to a received type after
//!   the type itself (and after 7.2) is an `Option`, `None` from an older QEMU; a union
//!   whose discriminator is missing decodes to its `Other` case with an empty tag.
//! - `device_add` takes a device's properties beyond its schema's members
//!   (`with_property`).
//! - Items deprecated in QEMU's schema are `#[deprecated]`; unstable ones say so.
//!
//! The run state and job types convert to and from the core's tracked ones
//! ([`qmp_proto::status`]: `VmStatus`, `JobStatus`, `JobType`, and `Job` from a `JobInfo`), by
//! wire name.
//!
//! Types that commands send implement `Serialize`, types that replies and events carry
//! implement `Deserialize`; the features `serialize-all` and `deserialize-all` give every
//! type both (for a fake QEMU, say).
//!
//! Conditions in the schema (`'if'`) are evaluated for x86_64 Linux system emulation with
//! Debian's build options (see the crate's README); items only built on other targets or
//! hosts (Windows, macOS, s390x, ...) are left out.
//!
//! ```
//! # #[cfg(feature = "run-state")] {
//! use qmp_types::qmp::{QueryStatus, RunState};
//! let reply = r#"{"status": "running", "running": true, "singlestep": false}"#;
//! let status: <QueryStatus as qmp_proto::Command>::Returns = serde_json::from_str(reply).unwrap();
//! assert_eq!(status.status, RunState::Running);
//! # }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The generated modules are not rustfmt's to format: the generator writes them.
#[rustfmt::skip]
pub mod qmp;

#[cfg(feature = "qga")]
#[rustfmt::skip]
pub mod qga;

// Some helpers go unused when only a few modules are enabled.
#[allow(dead_code, unused_macros, unused_imports)]
mod support;

/// Conversions between the generated types and the core's tracked ones
/// ([`qmp_proto::status`]): by wire name, so a value either side does not know is kept.
mod status {
    #[cfg(feature = "run-state")]
    mod run_state {
        use crate::qmp::RunState;
        use qmp_proto::status::VmStatus;

        impl From<&RunState> for VmStatus {
            fn from(s: &RunState) -> Self {
                VmStatus::from_name(s.as_str())
            }
        }

        impl From<&VmStatus> for RunState {
            fn from(s: &VmStatus) -> Self {
                RunState::from_name(s.as_str())
            }
        }
    }

    #[cfg(feature = "job")]
    mod job {
        use crate::qmp::{JobInfo, JobStatus, JobType};
        use qmp_proto::status;

        impl From<&JobStatus> for status::JobStatus {
            fn from(s: &JobStatus) -> Self {
                status::JobStatus::from_name(s.as_str())
            }
        }

        impl From<&status::JobStatus> for JobStatus {
            fn from(s: &status::JobStatus) -> Self {
                JobStatus::from_name(s.as_str())
            }
        }

        impl From<&JobType> for status::JobType {
            fn from(t: &JobType) -> Self {
                status::JobType::from_name(t.as_str())
            }
        }

        impl From<&status::JobType> for JobType {
            fn from(t: &status::JobType) -> Self {
                JobType::from_name(t.as_str())
            }
        }

        /// An entry of `query-jobs` as the tracker holds it, every member known.
        impl From<&JobInfo> for status::Job {
            fn from(info: &JobInfo) -> Self {
                let mut job = status::Job::new(info.id.clone(), (&info.status).into());
                job.kind = Some((&info.r#type).into());
                job.current_progress = Some(info.current_progress);
                job.total_progress = Some(info.total_progress);
                job.error = info.error.clone();
                job
            }
        }
    }
}
