//! `qmp-bench`: prints the benchmark tables (see the crate docs of `qmp_bench`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use qmp_bench::engine::{self, Engine, Feed, Message};
use qmp_bench::report::{self, ALL_CLIENTS};
use qmp_bench::rtt::{self, Peer};
use qmp_bench::syscalls;
use qmp_bench::{fleet, fleet_report, fleet_server, instant, markdown, memory, Row};

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
       qmp-bench fleet [--sessions N] [--secs S] [--rounds R] [--quick]
                                    N sessions (1000) in one client process, one runtime:
                                    RSS per session, CPU per event and per call, latencies,
                                    events lost; windows of S seconds (10; 5 with --quick),
                                    R rounds (3; 1 with --quick); not pinned
       qmp-bench serve SOCK         serve fake QEMUs on SOCK until killed
       qmp-bench serve-instant SOCK serve instant peers on SOCK until killed
       qmp-bench client CLIENT SOCK N
         CLIENT: floor | floor-epoll | tokio-floor | tokio-floor-task | async-io-floor | async-io-floor-spawned | blocking | async | async-concurrent | async-smol-spawn | tokio |
                 tokio-concurrent | tokio-mt | tokio-spawned, and with the qapi feature:
                 qapi | qapi-tokio | qapi-tokio-concurrent | qmp-crate | qmp-crate-concurrent
       qmp-bench fleet-serve SOCK   serve the fleet's fake QEMUs on SOCK until killed
       qmp-bench fleet-client tokio|tokio-mt|async N SOCK SECS [mixed|events|commands [SERVER_PID]]
       qmp-bench memory-one idle|async-flood|blocking-flood N SOCK
       qmp-bench instructions MESSAGE MEASURE N
         MESSAGE: empty-reply | small-reply | event | schema | 10mb-reply
         MEASURE: raw-value | value | whole | 4k-chunks | byte-by-byte";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let (pos, options) = split_args(&args);
    // Everything but the instruction counts and the fleet runs pinned; the processes the
    // tables start (serve, memory-one, client) pin themselves to the same CPU without a word.
    // The fleet measures CPU time rather than wall time, and its two processes may need both
    // CPUs.
    let unpinned = ["instructions", "fleet", "fleet-serve", "fleet-client"];
    if !pos.first().is_some_and(|p| unpinned.contains(p)) {
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
        ["fleet"] => fleet(&exe(), &options, quick).unwrap_or_else(usage),
        ["fleet-serve", sock] => served(sock, fleet_server::serve(Path::new(sock))),
        ["fleet-client", kind, n, sock, secs] => {
            fleet_client(kind, n, sock, secs, "mixed", None).unwrap_or_else(usage)
        }
        ["fleet-client", kind, n, sock, secs, mode] => {
            fleet_client(kind, n, sock, secs, mode, None).unwrap_or_else(usage)
        }
        ["fleet-client", kind, n, sock, secs, mode, pid] => {
            fleet_client(kind, n, sock, secs, mode, Some(pid)).unwrap_or_else(usage)
        }
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

/// The options that take a value (`--sessions N` or `--sessions=N`).
const VALUE_OPTIONS: [&str; 3] = ["--sessions", "--secs", "--rounds"];

/// The positional arguments, and the options with a value as (name, value).
fn split_args(args: &[String]) -> (Vec<&str>, Vec<(&str, &str)>) {
    let mut pos = Vec::new();
    let mut options = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        if let Some((name, value)) = a.split_once('=').filter(|(n, _)| VALUE_OPTIONS.contains(n)) {
            options.push((name, value));
        } else if VALUE_OPTIONS.contains(&a) {
            options.push((a, it.next().unwrap_or("")));
        } else if !a.starts_with("--") {
            pos.push(a);
        }
    }
    (pos, options)
}

/// `qmp-bench fleet`: every run, the fleet table, the runs and the targets.
fn fleet(exe: &Path, options: &[(&str, &str)], quick: bool) -> Option<ExitCode> {
    let mut plan = fleet_report::Plan::new(quick);
    for &(name, value) in options {
        match name {
            "--sessions" => plan.sessions = value.parse().ok().filter(|&n| n > 0)?,
            "--secs" => plan.window = Duration::from_secs(value.parse().ok().filter(|&s| s > 0)?),
            "--rounds" => plan.rounds = value.parse().ok().filter(|&r| r > 0)?,
            _ => return None,
        }
    }
    let runs = fleet_report::run(exe, plan);
    println!("{}", markdown(&fleet_report::rows(&runs, plan)));
    println!("{}", fleet_report::runs_table(&runs));
    println!("{}\n", fleet_report::load_note(&runs));
    println!(
        "{}",
        report::verdict_table(&fleet_report::verdicts(&runs, plan))
    );
    Some(ExitCode::SUCCESS)
}

/// One fleet client process: prints what it measured as one JSON line.
fn fleet_client(
    kind: &str,
    n: &str,
    sock: &str,
    secs: &str,
    mode: &str,
    pid: Option<&str>,
) -> Option<ExitCode> {
    let run = fleet::Run {
        kind: fleet::Kind::from_name(kind)?,
        mode: fleet::Mode::from_name(mode)?,
        sessions: n.parse().ok()?,
        sock: PathBuf::from(sock),
        window: Duration::from_secs(secs.parse().ok()?),
        server_pid: match pid {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        },
    };
    let measured = fleet::run(&run);
    println!(
        "{}",
        serde_json::to_string(&measured).expect("the figures as JSON")
    );
    Some(ExitCode::SUCCESS)
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
