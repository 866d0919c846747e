//! Every figure, as `qmp-bench all` prints it: the engine table, round trips, the side-by-side
//! comparison (with the Python client when `bench/compare.sh` has made its virtualenv, or
//! `QMP_BENCH_PYTHON` names an interpreter with `qemu.qmp`), memory, and the targets checked
//! against them. `QMP_BENCH_QUICK=1` runs fewer rounds.
#![allow(clippy::print_stdout)]

use std::path::Path;

use qmp_bench::{markdown, report};

fn main() {
    // `cargo test --benches` runs bench targets once as tests: nothing to check here.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    // Like `qmp-bench all`: the round trips run on one CPU.
    let _ = qmp_bench::pin_to_one_cpu();
    let quick = std::env::var("QMP_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut rows = report::engine(quick);
    rows.extend(report::end_to_end(
        Path::new(env!("CARGO_BIN_EXE_qmp-bench")),
        quick,
    ));
    println!("{}", markdown(&rows));
    println!("{}", report::verdict_table(&report::verdicts(&rows)));
}
