//! What the tests of the workspace share (not published).
//!
//! - Real QEMU peers ([`Qemu`]): qemu-storage-daemon, qemu-system-x86_64 (TCG) and qemu-ga,
//!   each started in a private temporary directory and killed on drop. A test whose QEMU
//!   binary is missing is skipped with the reason printed ([`find_qemu`]), unless
//!   `QMP_REQUIRE_QEMU=1` ([`REQUIRE_VAR`]) makes it a failure, as in CI. Of the installed
//!   QEMU (10.0) or of QEMU 7.2 unpacked beside it ([`QemuVersion`], [`QEMU72_VAR`]): the
//!   `_of` constructors take the version, the plain ones start the one `QMP_QEMU_VERSION`
//!   ([`VERSION_VAR`]) names, so that a test file runs against 7.2 unchanged.
//! - The fake QEMU on a unix socket ([`Fake`]): any [`Handler`] of the server engine, such as
//!   [`FakeQemu`] or a [`Script`](qmp_proto::server::Script), served to one client by a
//!   thread; with [`flooding_fake`] for event floods, and [`Recorded`] to see which
//!   commands a client sent.
//! - Private directories and socket paths ([`tempdir`], [`socket_path`]).
//! - [`traces::Capture`], a `tracing` subscriber that keeps every span and event.
//! - [`raw::RawPeer`], a hand-driven server for the bytes a well-behaved one never sends.
//!
//! The peers come in flavours, which decide how a client connects to them:
//! [`blocking`] (a [`qmp_blocking::Connection`]) and, with the feature `async`, the module
//! `asynchronous` (a `qmp_async::Qmp` and its driver, spawned on the executor the scenario
//! runs under). That feature also brings the executor matrix: the macro
//! `on_every_executor!` runs each async scenario under smol, async-executor and tokio;
//! crates without async tests do not build tokio.
//!
//! ```
//! use qmp_testkit::blocking::{FakePeer, Peer};
//! use qmp_proto::server::FakeQemu;
//!
//! // A real QEMU when it is installed (skipped otherwise, unless QMP_REQUIRE_QEMU=1).
//! if let Some(mut peer) = Peer::storage_daemon() {
//!     let mut qmp = peer.connect();
//!     let _: serde_json::Value = qmp.execute("query-version", &()).unwrap();
//!     peer.quit(&mut qmp);
//! }
//!
//! // The fake QEMU, always there.
//! let peer = FakePeer::serve(FakeQemu::new());
//! let mut qmp = peer.connect();
//! let _: serde_json::Value = qmp.execute("stop", &()).unwrap();
//! drop(qmp);
//! assert_eq!(peer.finish().handler().status(), "paused");
//! ```
//!
//! [`Handler`]: qmp_proto::server::Handler
//! [`FakeQemu`]: qmp_proto::server::FakeQemu

#[cfg(feature = "async")]
pub mod asynchronous;
pub mod blocking;
mod fake;
mod qemu;
pub mod raw;
pub mod soak;
pub mod traces;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fake::{flooding_fake, Fake, Recorded};
pub use qemu::{
    find_qemu, signal_pid, skip_or_fail, Qemu, QemuVersion, QEMU72_VAR, REQUIRE_VAR, VERSION_VAR,
};

/// A generous limit for anything a test waits for: a peer to start, to exit, to answer.
pub const T: Duration = Duration::from_secs(10);

/// qemu-system-x86_64 arguments for a machine with no devices at all: starts fast.
pub const MACHINE_NONE: &[&str] = &["-machine", "none"];

/// qemu-system-x86_64 arguments for a PC under TCG, paused before it runs (`-S`): run states
/// and their events (`cont`, `stop`, `system_reset`) without a guest.
pub const PC_PAUSED: &[&str] = &["-M", "pc", "-accel", "tcg", "-S"];

/// The major version of the QEMU that [`Qemu`]'s plain constructors start (7 or 10: see
/// [`QemuVersion::selected`]), for the tests that check the version a peer announces.
pub fn qemu_major() -> u64 {
    QemuVersion::selected().major()
}

/// Whether a version string such as qemu-ga's `10.0.2` is of the QEMU that [`Qemu`]'s
/// plain constructors start.
pub fn is_qemu_version(version: &str) -> bool {
    QemuVersion::selected().matches(version)
}

/// The reply of `query-status`, as the tests compare it.
#[derive(serde::Deserialize, Debug, PartialEq, Eq)]
pub struct VmStatus {
    /// The run state, such as `prelaunch`, `running`, `paused`.
    pub status: String,
    /// Whether the VM runs.
    pub running: bool,
}

/// How often a test polls for something it waits for (a socket, a process exit).
const POLL: Duration = Duration::from_millis(5);

/// A private temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qmp-test-")
        .tempdir()
        .expect("temporary directory")
}

/// A socket path, `qmp.sock`, in a private temporary directory (removed with the
/// directory).
pub fn socket_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let path = dir.path().join("qmp.sock");
    (dir, path)
}

/// Whether `path` exists, without following a symbolic link (for socket files).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
