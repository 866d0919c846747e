//! `qmp`: the command-line tool.

fn main() {}
