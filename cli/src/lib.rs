//! The library behind `qmp`, the command-line tool of the qmp-proto project: an
//! interactive QMP shell, one-shot commands, an event stream, a QEMU wrapper and a fake
//! QEMU. The binary is a thin argument parser over [`shell`], [`exec`], [`events`],
//! [`wrap`] and [`fake`]; [`syntax`] is the shell's input syntax.
//!
//! Exit statuses: 0 success, 1 QMP error reply (`qmp exec`), 2 bad command line, 3 the
//! command could not run (no connection, a timeout, a failed session).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod events;
pub mod exec;
pub mod fake;
pub mod format;
pub mod out;
pub mod request;
pub mod shell;
pub mod syntax;
pub mod target;
pub mod traffic;
pub mod wrap;

/// Exit status: QEMU answered with an error.
pub const EXIT_QMP_ERROR: u8 = 1;
/// Exit status: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the command could not run.
pub const EXIT_FAILURE: u8 = 3;

/// Prints an error message to stderr.
pub fn fail(message: &str) {
    note(message);
}

/// Prints a message to stderr.
pub fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}
