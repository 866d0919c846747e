//! `qmp-bench`: prints the benchmark tables (see the crate docs of `qmp_bench`).
//!
//! ```text
//! qmp-bench engine [--quick]                  engine cost per message
//! qmp-bench instructions MESSAGE MEASURE N    N messages through one measured function
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use qmp_bench::engine::{self, Engine, Feed, Message};
use qmp_bench::rtt::{self, Peer};
use qmp_bench::{rtt_report, Row};

const USAGE: &str = "usage: qmp-bench engine [--quick]
       qmp-bench rtt [--quick]
       qmp-bench qsd [--quick]
       qmp-bench instructions MESSAGE MEASURE N
         MESSAGE: small-reply | event | schema | 10mb-reply
         MEASURE: raw-value | value | whole | 4k-chunks | byte-by-byte";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    match args.first().map(String::as_str) {
        Some("engine") => {
            let rows = qmp_bench::engine_report::run(quick);
            println!("{}", qmp_bench::markdown(&rows));
            ExitCode::SUCCESS
        }
        Some("rtt") => {
            let rows = rtt_in_process(quick);
            println!("{}", qmp_bench::markdown(&rows));
            ExitCode::SUCCESS
        }
        Some("qsd") => {
            let rows = rtt_storage_daemon(quick);
            println!("{}", qmp_bench::markdown(&rows));
            ExitCode::SUCCESS
        }
        Some("instructions") => match instructions(&args[1..]) {
            Some(()) => ExitCode::SUCCESS,
            None => usage(),
        },
        _ => usage(),
    }
}

/// Round trips against the fake QEMU served in this process.
fn rtt_in_process(quick: bool) -> Vec<Row> {
    let rounds = if quick { 3 } else { 11 };
    rtt_report::run(
        "rtt",
        "fake QEMU, in process, socket pair",
        &Peer::InProcess,
        &ALL_CLIENTS,
        2000,
        rounds,
    )
}

/// Round trips against qemu-storage-daemon, if it is installed.
fn rtt_storage_daemon(quick: bool) -> Vec<Row> {
    let Some(qsd) = rtt_report::StorageDaemon::start() else {
        eprintln!("qemu-storage-daemon is not installed: skipped");
        return Vec::new();
    };
    let rounds = if quick { 3 } else { 9 };
    rtt_report::run(
        "qsd",
        "qemu-storage-daemon 10.0.2",
        &Peer::Path(qsd.sock.clone()),
        &ALL_CLIENTS,
        500,
        rounds,
    )
}

const ALL_CLIENTS: [rtt::Client; 4] = [
    rtt::Client::Floor,
    rtt::Client::Blocking,
    rtt::Client::AsyncSequential,
    rtt::Client::AsyncConcurrent,
];

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// Runs `n` messages through one measured function only, for a profiler collecting inside
/// the `measured_*` functions (see `bench/callgrind.sh`).
fn instructions(args: &[String]) -> Option<()> {
    let [message, measure, n] = args else {
        return None;
    };
    let message = Message::from_name(message)?;
    let n: usize = n.parse().ok()?;
    let mut engine = Engine::negotiated();
    let wire = message.wire();
    let mut total = 0;
    match measure.as_str() {
        "raw-value" | "value" => {
            for _ in 0..n {
                total += if measure == "value" {
                    engine::measured_value(&wire.bytes)
                } else {
                    engine::measured_raw_value(&wire.bytes)
                };
            }
        }
        feed => {
            let feed = Feed::from_name(feed)?;
            for _ in 0..n {
                let input = engine::prepare(&mut engine, &wire, 1, message.is_reply());
                total += engine::measured_engine(&mut engine, &input[0].bytes, feed);
            }
        }
    }
    println!(
        "{} {} x{n}: {} bytes of output",
        message.name(),
        measure,
        total
    );
    Some(())
}
