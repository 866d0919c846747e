//! `qmp-bench`: prints the benchmark tables (see the crate docs of `qmp_bench`).
//!
//! ```text
//! qmp-bench engine [--quick]                  engine cost per message
//! qmp-bench instructions MESSAGE MEASURE N    N messages through one measured function
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;

use qmp_bench::engine::{self, Engine, Feed, Message};
use qmp_bench::rtt::{self, Peer};
use qmp_bench::stats::{interleave, Variant};
use qmp_bench::{rtt_report, Row};

const USAGE: &str = "usage: qmp-bench engine [--quick]
       qmp-bench rtt [--quick]
       qmp-bench qsd [--quick]
       qmp-bench memory [--quick]
       qmp-bench memory-one idle|async-flood|blocking-flood N SOCK
       qmp-bench serve SOCK
       qmp-bench compare SOCK [PYTHON] [--quick]
       qmp-bench client floor|blocking|async|async-concurrent SOCK N
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
        Some("serve") => match args.get(1) {
            Some(path) => match rtt::serve(Path::new(path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot serve on {path}: {e}");
                    ExitCode::FAILURE
                }
            },
            None => usage(),
        },
        Some("compare") => match (args.get(1), args.get(2)) {
            (Some(sock), python) => {
                let rows = compare(Path::new(sock), python.map(Path::new), quick);
                println!("{}", qmp_bench::markdown(&rows));
                ExitCode::SUCCESS
            }
            _ => usage(),
        },
        Some("client") => match (args.get(1), args.get(2), args.get(3)) {
            (Some(name), Some(sock), Some(n)) => {
                let client = ALL_CLIENTS.into_iter().find(|c| c.short_name() == name);
                match (client, n.parse::<u64>()) {
                    (Some(client), Ok(n)) => {
                        let (done, took) = client.sample(&Peer::Path(sock.into()), n);
                        println!(
                            "{}: {done} round trips in {took:?}, {:.0}/s",
                            client.name(),
                            done as f64 / took.as_secs_f64()
                        );
                        ExitCode::SUCCESS
                    }
                    _ => usage(),
                }
            }
            _ => usage(),
        },
        Some("memory") => {
            let exe = std::env::current_exe().expect("the path of this binary");
            let rows = qmp_bench::memory::run_all(&exe, quick);
            println!("{}", qmp_bench::markdown(&rows));
            ExitCode::SUCCESS
        }
        Some("memory-one") => match (args.get(1), args.get(2).map(|n| n.parse()), args.get(3)) {
            (Some(kind), Some(Ok(n)), Some(sock)) => {
                match qmp_bench::memory::measure_one(kind, n, Path::new(sock)) {
                    Some((before, after, peak)) => {
                        println!("{before} {after} {peak}");
                        ExitCode::SUCCESS
                    }
                    None => usage(),
                }
            }
            _ => usage(),
        },
        Some("instructions") => match instructions(&args[1..]) {
            Some(()) => ExitCode::SUCCESS,
            None => usage(),
        },
        _ => usage(),
    }
}

/// Round trips against the fake QEMU served in this process.
fn rtt_in_process(quick: bool) -> Vec<Row> {
    let rounds = if quick { 5 } else { 31 };
    rtt_report::run(
        "rtt",
        "fake QEMU, in process, socket pair",
        &Peer::InProcess,
        &ALL_CLIENTS,
        1000,
        rounds,
    )
}

/// Round trips against qemu-storage-daemon, if it is installed.
fn rtt_storage_daemon(quick: bool) -> Vec<Row> {
    let Some(qsd) = rtt_report::StorageDaemon::start() else {
        eprintln!("qemu-storage-daemon is not installed: skipped");
        return Vec::new();
    };
    let rounds = if quick { 3 } else { 21 };
    rtt_report::run(
        "qsd",
        "qemu-storage-daemon 10.0.2",
        &Peer::Path(qsd.sock.clone()),
        &ALL_CLIENTS,
        200,
        rounds,
    )
}

/// Every client, Rust and Python, against the fake QEMU served on `sock` (by `qmp-bench
/// serve`, another process), in interleaved rounds.
fn compare(sock: &Path, python: Option<&Path>, quick: bool) -> Vec<Row> {
    let peer = &Peer::Path(sock.to_path_buf());
    let rounds = if quick { 3 } else { 15 };
    let (n, n_python) = (1000, 300);
    let mut variants: Vec<Variant<'_>> = ALL_CLIENTS
        .iter()
        .map(|&c| Variant::new(c.name(), move || c.sample(peer, n)))
        .collect();
    #[cfg(feature = "qapi")]
    variants.push(Variant::new("qapi 0.15 (Rust), sequential", move || {
        rtt::qapi(peer.connect(), n)
    }));
    if let Some(python) = python {
        variants.push(Variant::new(
            "qemu.qmp 0.0.6 (Python), sequential",
            move || rtt::python(python, sock, "sequential", n_python),
        ));
        variants.push(Variant::new(
            "qemu.qmp 0.0.6 (Python), 100 concurrent callers",
            move || rtt::python(python, sock, "concurrent", 4 * n_python),
        ));
    }
    interleave(&mut variants, rounds);
    rtt_report::rows("compare", "fake QEMU, `qmp-bench serve`", &variants)
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
