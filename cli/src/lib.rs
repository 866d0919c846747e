//! The library behind `qmp`, the command-line tool of the qmp-proto project: an
//! interactive QMP shell, one-shot commands, an event stream, a QEMU wrapper and a fake
//! QEMU. The binary is a thin argument parser over the modules `shell`, `exec`, `events`,
//! `status`, `qom`, `wrap`, `fake`, `record` and `replay`; `syntax` is the shell's input syntax.
//!
//! **Not a stable API.** This library exists only for the `qmp` binary and its tests: its
//! items are hidden from the documentation and may change in any release, patch releases
//! included. Install the tool with `cargo install qmp-cli`; to talk QMP from Rust, depend on
//! `qmp-proto` and one of its adapters (`qmp-blocking`, `qmp-async`, `qmp-tokio`) instead.
//!
//! Exit statuses: 0 success, 1 QMP error reply (`qmp exec`), 2 bad command line, 3 the
//! command could not run (no connection, a timeout, a failed session).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(hidden)]
pub mod events;
#[doc(hidden)]
pub mod exec;
#[doc(hidden)]
pub mod fake;
#[doc(hidden)]
pub mod format;
#[doc(hidden)]
pub mod out;
#[doc(hidden)]
pub mod qom;
#[doc(hidden)]
pub mod record;
#[doc(hidden)]
pub mod replay;
#[doc(hidden)]
pub mod request;
#[doc(hidden)]
pub mod shell;
#[doc(hidden)]
pub mod status;
#[doc(hidden)]
pub mod syntax;
#[doc(hidden)]
pub mod target;
#[doc(hidden)]
pub mod traffic;
#[doc(hidden)]
pub mod wrap;

/// Exit status: QEMU answered with an error.
#[doc(hidden)]
pub const EXIT_QMP_ERROR: u8 = 1;
/// Exit status: the command line is wrong.
#[doc(hidden)]
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the command could not run.
#[doc(hidden)]
pub const EXIT_FAILURE: u8 = 3;

/// Prints an error message to stderr.
#[doc(hidden)]
pub fn fail(message: &str) {
    note(message);
}

/// Prints a message to stderr.
#[doc(hidden)]
pub fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}
