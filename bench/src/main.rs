//! `qmp-bench`: prints the benchmark tables (see the crate docs of `qmp_bench`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qmp_bench::engine::{self, Engine, Feed, Message};
use qmp_bench::report::{self, ALL_CLIENTS};
use qmp_bench::rtt::{self, Peer};
use qmp_bench::syscalls;
use qmp_bench::{instant, markdown, memory, Row};

const USAGE: &str = "usage: qmp-bench all [--quick]      every table, then the targets
       qmp-bench engine [--quick]   engine cost per message
       qmp-bench rtt [--quick]      round trips, fake QEMU in process
       qmp-bench qsd [--quick]      round trips, qemu-storage-daemon
       qmp-bench compare SOCK [PYTHON] [--quick]
                                    every client against the fake QEMU on SOCK
       qmp-bench instant [--quick]  every client against the instant peer (no engine), its
                                    own CPU per round trip, the system calls per round trip
                                    (with strace), then the targets it measures
       qmp-bench syscalls [--quick] the system calls per round trip only
       qmp-bench memory [--quick]   RSS per idle connection, peak RSS under an event flood
       qmp-bench serve SOCK         serve fake QEMUs on SOCK until killed
       qmp-bench serve-instant SOCK serve instant peers on SOCK until killed
       qmp-bench client CLIENT SOCK N
         CLIENT: floor | floor-epoll | blocking | async | async-concurrent | tokio |
                 tokio-concurrent | tokio-mt | tokio-spawned, and with the qapi feature:
                 qapi | qapi-tokio | qapi-tokio-concurrent | qmp-crate | qmp-crate-concurrent
       qmp-bench memory-one idle|async-flood|blocking-flood N SOCK
       qmp-bench instructions MESSAGE MEASURE N
         MESSAGE: small-reply | event | schema | 10mb-reply
         MEASURE: raw-value | value | whole | 4k-chunks | byte-by-byte";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let pos: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // Everything but the instruction counts runs pinned; the helper processes the tables
    // start (serve, memory-one, client) pin themselves to the same CPU without a word.
    if !matches!(pos.first(), Some(&"instructions")) {
        let pinned = qmp_bench::pin_to_one_cpu();
        if !matches!(
            pos.first(),
            Some(&("serve" | "serve-instant" | "memory-one" | "client"))
        ) {
            match pinned {
                Some(cpu) => eprintln!("pinned to CPU {cpu} (QMP_BENCH_CPU=none to leave it free)"),
                None => eprintln!("not pinned to a CPU"),
            }
        }
    }
    let exe = || std::env::current_exe().expect("the path of this binary");
    let tables = |rows: Vec<Row>| {
        println!("{}", markdown(&rows));
        ExitCode::SUCCESS
    };
    match pos[..] {
        ["all"] => {
            let mut rows = report::engine(quick);
            rows.extend(report::end_to_end(&exe(), quick));
            println!("{}", markdown(&rows));
            println!("{}", report::verdict_table(&report::verdicts(&rows)));
            ExitCode::SUCCESS
        }
        ["engine"] => tables(report::engine(quick)),
        ["rtt"] => tables(report::rtt_in_process(quick)),
        ["qsd"] => tables(report::rtt_storage_daemon(quick)),
        ["compare", sock] => tables(report::compare(
            Path::new(sock),
            report::python().as_deref(),
            quick,
        )),
        ["compare", sock, python] => tables(report::compare(
            Path::new(sock),
            Some(Path::new(python)),
            quick,
        )),
        ["instant"] => {
            let rows = report::instant(&exe(), report::python().as_deref(), quick);
            println!("{}", markdown(&rows));
            // Only the targets this table measures.
            let measured: Vec<_> = report::verdicts(&rows)
                .into_iter()
                .filter(|v| v.met.is_some())
                .collect();
            println!("{}", report::verdict_table(&measured));
            ExitCode::SUCCESS
        }
        ["syscalls"] => tables(syscalls::rows(&exe(), quick)),
        ["memory"] => tables(memory::run_all(&exe(), quick)),
        ["serve", sock] => served(sock, rtt::serve(Path::new(sock))),
        ["serve-instant", sock] => served(sock, instant::serve(Path::new(sock))),
        ["client", name, sock, n] => client(name, sock, n).unwrap_or_else(usage),
        ["memory-one", kind, n, sock] => n
            .parse()
            .ok()
            .and_then(|n| memory::measure_one(kind, n, Path::new(sock)))
            .map_or_else(usage, |(before, after, peak)| {
                println!("{before} {after} {peak}");
                ExitCode::SUCCESS
            }),
        ["instructions", message, measure, n] => {
            instructions(message, measure, n).unwrap_or_else(usage)
        }
        _ => usage(),
    }
}

fn served(sock: &str, result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot serve on {sock}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// One sample of one client against SOCK (for profilers: see `bench/callgrind.sh`).
fn client(name: &str, sock: &str, n: &str) -> Option<ExitCode> {
    let client = ALL_CLIENTS
        .iter()
        .copied()
        .find(|c| c.short_name() == name)?;
    let n: u64 = n.parse().ok()?;
    let (done, took) = client.sample(&Peer::Path(PathBuf::from(sock)), n);
    println!(
        "{}: {done} round trips in {took:?}, {:.0}/s",
        client.name(),
        done as f64 / took.as_secs_f64()
    );
    Some(ExitCode::SUCCESS)
}

/// Runs `n` messages through one measured function only, for a profiler collecting inside
/// the `measured_*` functions (see `bench/callgrind.sh`).
fn instructions(message: &str, measure: &str, n: &str) -> Option<ExitCode> {
    let message = Message::from_name(message)?;
    let n: usize = n.parse().ok()?;
    let mut engine = Engine::negotiated();
    let wire = message.wire();
    let mut total = 0;
    match measure {
        "raw-value" => (0..n).for_each(|_| total += engine::measured_raw_value(&wire.bytes)),
        "value" => (0..n).for_each(|_| total += engine::measured_value(&wire.bytes)),
        feed => {
            let feed = Feed::from_name(feed)?;
            for _ in 0..n {
                let input = engine::prepare(&mut engine, &wire, 1, message.is_reply());
                total += engine::measured_engine(&mut engine, &input[0].bytes, feed);
            }
        }
    }
    println!("{} {measure} x{n}: {total} bytes of output", message.name());
    Some(ExitCode::SUCCESS)
}
