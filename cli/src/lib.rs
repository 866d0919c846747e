//! The library behind the `qmp` command-line tool.

pub mod syntax;
