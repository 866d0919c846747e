//! Benchmarks of `qmp-proto` and its adapters, with their baselines measured in the same run.
//!
//! - [`engine`]: the engine's cost per message (a small reply, an event, the 236 KB
//!   `query-qmp-schema` reply of qemu-system-x86_64 10.0.2, a 10 MB reply), fed whole, byte
//!   by byte and in 4 KiB chunks, against `serde_json`'s `RawValue` validation and `Value`
//!   parse of the same bytes.
//! - [`rtt`]: `query-version` round trips over a unix socket with the blocking adapter, the
//!   async adapter (one caller, 100 concurrent callers) and a hand-written loop with no
//!   engine (the floor), against the fake QEMU served in this process, against
//!   qemu-storage-daemon, and side by side with the Python reference `qemu.qmp` and the Rust
//!   `qapi` crate against a fake QEMU in another process.
//! - [`memory`]: RSS per idle async connection, and the peak RSS while a slow listener
//!   receives up to 1,000,000 events.
//! - [`report`]: all of it, and the targets checked against the same run.
//!
//! Every figure is reported as a ratio to a baseline measured in the same run, in interleaved
//! rounds, so that a loaded machine slows both alike. The `qmp-bench` binary prints the
//! tables; `cargo bench -p qmp-bench` runs the same measurements (and divan micro benchmarks
//! of the engine).

pub mod engine;
pub mod engine_report;
pub mod memory;
pub mod report;
pub mod rtt;
pub mod rtt_report;
pub mod stats;

/// One line of a report table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The table it belongs to.
    pub group: &'static str,
    /// What is measured (the message, the peer).
    pub case: String,
    /// How (the baseline, or the client and its mode).
    pub measure: String,
    /// The absolute figure, with its unit.
    pub absolute: String,
    /// The ratio to the baseline (time per unit for engine rows, rate for the others).
    pub ratio: f64,
    /// The name of the baseline of `ratio`.
    pub baseline: &'static str,
}

/// Renders rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| case | measure | absolute | ratio |\n|---|---|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2}× {} |\n",
            r.case, r.measure, r.absolute, r.ratio, r.baseline
        ));
    }
    out
}
