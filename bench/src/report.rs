//! The whole report: every table, and the targets checked against the same run's figures.

use std::path::{Path, PathBuf};

use crate::memory::ServerProcess;
use crate::rtt::{self, Client, Peer};
use crate::rtt_report;
use crate::stats::{fmt_ns, interleave, median, Variant};
use crate::{engine_report, memory, Row};

/// The clients of the round-trip tables, the floor first: the adapters, and with the `qapi`
/// feature the other Rust clients ([`Client::ALL`]).
pub const ALL_CLIENTS: &[Client] = Client::ALL;

/// Engine cost per message.
pub fn engine(quick: bool) -> Vec<Row> {
    engine_report::run(quick)
}

/// Round trips against the fake QEMU served in this process.
pub fn rtt_in_process(quick: bool) -> Vec<Row> {
    let rounds = if quick { 5 } else { 31 };
    rtt_report::run(
        "rtt",
        "fake QEMU, in process, socket pair",
        &Peer::InProcess,
        ALL_CLIENTS,
        1000,
        rounds,
    )
}

/// Round trips against qemu-storage-daemon; empty (with a note on stderr) when it is not
/// installed.
pub fn rtt_storage_daemon(quick: bool) -> Vec<Row> {
    let Some(qsd) = qmp_testkit::blocking::Peer::storage_daemon() else {
        engine_report::log("qemu-storage-daemon is not installed: its table is skipped");
        return Vec::new();
    };
    let rounds = if quick { 3 } else { 21 };
    rtt_report::run(
        "qsd",
        "qemu-storage-daemon 10.0.2",
        &Peer::Path(qsd.sock.clone()),
        ALL_CLIENTS,
        200,
        rounds,
    )
}

/// Every client, Rust and (given its interpreter) Python, against the fake QEMU served on
/// `sock` by another process, in interleaved rounds.
pub fn compare(sock: &Path, python: Option<&Path>, quick: bool) -> Vec<Row> {
    let peer = &Peer::Path(sock.to_path_buf());
    let rounds = if quick { 3 } else { 15 };
    let (n, n_python) = (1000, 300);
    let mut variants: Vec<Variant<'_>> = ALL_CLIENTS
        .iter()
        .map(|&c| Variant::new(c.name(), move || c.sample(peer, n)))
        .collect();
    if let Some(python) = python {
        variants.push(Variant::new(PYTHON_SEQUENTIAL, move || {
            rtt::python(python, sock, "sequential", n_python)
        }));
        variants.push(Variant::new(PYTHON_CONCURRENT, move || {
            rtt::python(python, sock, "concurrent", 4 * n_python)
        }));
    }
    interleave(&mut variants, rounds);
    rtt_report::rows("compare", "fake QEMU, other process", &variants)
}

/// The Python client's rows.
const PYTHON_SEQUENTIAL: &str = "qemu.qmp 0.0.6 (Python), sequential";
const PYTHON_CONCURRENT: &str = "qemu.qmp 0.0.6 (Python), 100 concurrent callers";

/// The case of the instant peer's rows.
pub const INSTANT_CASE: &str = "instant peer, in process, socket pair";

/// Every client against the [instant peer](crate::instant) served in this process (the Python
/// client too, given its interpreter, on a socket path), in interleaved rounds; then the
/// peer's own CPU per round trip (the limit), measured on the floor's connections; then,
/// with strace, the system calls per round trip against the instant peer in another process
/// (`exe serve-instant`; `exe` is the `qmp-bench` binary).
pub fn instant(exe: &Path, python: Option<&Path>, quick: bool) -> Vec<Row> {
    let mut rows = instant_rates(python, quick);
    rows.extend(instant_other_process(exe, quick));
    rows.extend(crate::syscalls::rows(exe, quick));
    rows
}

/// The case of the rows against the instant peer in another process.
pub const INSTANT_OTHER_CASE: &str = "instant peer, other process";

/// The Rust clients against the instant peer served by another process (`exe
/// serve-instant`, pinned to the same CPU), in interleaved rounds: each turn of a round trip
/// then switches processes, where the peer served in process (sharing the address space and
/// its caches with the client) switches threads.
pub fn instant_other_process(exe: &Path, quick: bool) -> Vec<Row> {
    let server = ServerProcess::start_command(exe, "serve-instant");
    let peer = &Peer::Path(server.sock.clone());
    let rounds = if quick { 5 } else { 15 };
    let n = 2000;
    let mut variants: Vec<Variant<'_>> = ALL_CLIENTS
        .iter()
        .map(|&c| Variant::new(c.name(), move || c.sample(peer, n)))
        .collect();
    interleave(&mut variants, rounds);
    rtt_report::rows("instant-other", INSTANT_OTHER_CASE, &variants)
}

/// The round trips of [`instant`] and the peer's CPU row.
pub fn instant_rates(python: Option<&Path>, quick: bool) -> Vec<Row> {
    let rounds = if quick { 5 } else { 31 };
    let (n, n_python) = (2000, 300);
    // One channel per client: each connection's serving thread reports its CPU time on it.
    let mut receivers = Vec::new();
    let mut peer = || {
        let (tx, rx) = std::sync::mpsc::channel();
        receivers.push(rx);
        Peer::Instant(Some(tx))
    };
    let peers: Vec<Peer> = ALL_CLIENTS.iter().map(|_| peer()).collect();
    let python_peers = python.map(|_| (peer(), peer()));
    let mut variants: Vec<Variant<'_>> = ALL_CLIENTS
        .iter()
        .zip(&peers)
        .map(|(&c, peer)| Variant::new(c.name(), move || c.sample(peer, n)))
        .collect();
    if let (Some(python), Some((sequential, concurrent))) = (python, &python_peers) {
        variants.push(Variant::new(PYTHON_SEQUENTIAL, move || {
            rtt::python(python, &sequential.dial().path, "sequential", n_python)
        }));
        variants.push(Variant::new(PYTHON_CONCURRENT, move || {
            rtt::python(python, &concurrent.dial().path, "concurrent", 4 * n_python)
        }));
    }
    let started = std::time::Instant::now();
    interleave(&mut variants, rounds);
    engine_report::log(&format!(
        "instant: {rounds} rounds of {n} round trips in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let mut rows = rtt_report::rows("instant", INSTANT_CASE, &variants);
    let floor_rate = variants[0].rate();
    drop(variants);
    drop(peers);
    drop(python_peers);
    // The peer's CPU per round trip on each client's connections (the last threads may
    // still be finishing).
    let per_client: Vec<Vec<f64>> = receivers
        .iter()
        .map(|rx| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            let mut got = Vec::new();
            while got.len() < rounds {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(cpu) => got.push(cpu.ns_per_round_trip()),
                    Err(_) => break,
                }
            }
            got
        })
        .collect();
    for (row, cpu) in rows.iter_mut().zip(&per_client) {
        if !cpu.is_empty() {
            row.absolute
                .push_str(&format!("; peer CPU {}/round trip", fmt_ns(median(cpu))));
        }
    }
    if let Some(floor_cpu) = per_client.first().filter(|c| !c.is_empty()) {
        let (med, best) = (
            median(floor_cpu),
            floor_cpu.iter().copied().fold(f64::INFINITY, f64::min),
        );
        rows.insert(
            1,
            Row {
                group: "instant",
                case: INSTANT_CASE.to_owned(),
                measure: "the peer's own CPU per round trip (the limit)".to_owned(),
                absolute: format!(
                    "{} (best {}): at most {:.0} round trips/s",
                    fmt_ns(med),
                    fmt_ns(best),
                    1e9 / med
                ),
                ratio: 1e9 / med / floor_rate,
                baseline: "floor",
            },
        );
    }
    rows
}

/// The Python interpreter of the comparison: `$QMP_BENCH_PYTHON`, else the virtualenv that
/// `bench/compare.sh` creates, if it exists.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QMP_BENCH_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-venv/bin/python");
    venv.exists().then_some(venv)
}

/// Every table but the engine's: round trips in process, against qemu-storage-daemon,
/// side by side (against `exe serve`), against the instant peer (with the system calls per
/// round trip, against `exe serve-instant`), and memory (`exe` is the `qmp-bench` binary).
pub fn end_to_end(exe: &Path, quick: bool) -> Vec<Row> {
    let mut rows = rtt_in_process(quick);
    rows.extend(rtt_storage_daemon(quick));
    let python = python();
    if python.is_none() {
        engine_report::log(
            "no Python virtualenv with qemu.qmp (run bench/compare.sh once, or set \
             QMP_BENCH_PYTHON): the Python client is left out",
        );
    }
    {
        let server = ServerProcess::start(exe);
        rows.extend(compare(&server.sock, python.as_deref(), quick));
    }
    rows.extend(instant(exe, python.as_deref(), quick));
    rows.extend(memory::run_all(exe, quick));
    rows
}

/// A target of the benchmark, checked against rows of one run.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The target, in words.
    pub target: String,
    /// The figure it was judged on.
    pub figure: String,
    /// Whether it was met (`None`: a figure it needs is missing from the run).
    pub met: Option<bool>,
}

fn find<'a>(rows: &'a [Row], group: &str, case: &str, measure: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.group == group && r.case.starts_with(case) && r.measure.starts_with(measure))
}

/// Checks the targets of the benchmark against `rows`.
pub fn verdicts(rows: &[Row]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let mut check = |target: &str, figure: Option<(f64, String)>, ok: &dyn Fn(f64) -> bool| {
        out.push(Verdict {
            target: target.to_owned(),
            met: figure.as_ref().map(|(x, _)| ok(*x)),
            figure: figure.map_or_else(|| "not measured".to_owned(), |(_, s)| s),
        });
    };
    let ratio = |group: &str, case: &str, measure: &str| {
        find(rows, group, case, measure).map(|r| (r.ratio, format!("{:.2}×", r.ratio)))
    };
    check(
        "schema reply: engine ≤ 1.5× the RawValue floor",
        ratio("engine", "schema", "engine, whole"),
        &|x| x <= 1.5,
    );
    let below_value = find(rows, "engine", "schema", "engine, whole").and_then(|e| {
        find(rows, "engine", "schema", "serde_json Value").map(|v| {
            (
                e.ratio / v.ratio,
                format!("{:.2}× the Value parse", e.ratio / v.ratio),
            )
        })
    });
    check(
        "schema reply: engine below the Value parse",
        below_value,
        &|x| x < 1.0,
    );
    for case in ["empty-reply", "small-reply", "event"] {
        check(
            &format!("{case}: engine ≤ 2× the RawValue floor"),
            ratio("engine", case, "engine, whole"),
            &|x| x <= 2.0,
        );
    }
    for group in ["rtt", "compare"] {
        for measure in ["qmp-blocking", "qmp-async, sequential"] {
            check(
                &format!("{measure} ≥ 0.9× the floor ({group})"),
                ratio(group, "", measure),
                &|x| x >= 0.9,
            );
        }
        let concurrency = find(rows, group, "", "qmp-async, 100").and_then(|c| {
            find(rows, group, "", "qmp-async, sequential")
                .map(|s| (c.ratio / s.ratio, format!("{:.2}×", c.ratio / s.ratio)))
        });
        check(
            &format!("100 concurrent async callers ≥ 3× async sequential ({group})"),
            concurrency,
            &|x| x >= 3.0,
        );
    }
    for measure in ["qmp-blocking", "qmp-async, sequential"] {
        let vs_python = find(rows, "compare", "", measure).and_then(|m| {
            find(rows, "compare", "", "qemu.qmp 0.0.6 (Python), sequential")
                .map(|p| (m.ratio / p.ratio, format!("{:.1}×", m.ratio / p.ratio)))
        });
        check(
            &format!("{measure} ≥ 20× qemu.qmp sequential"),
            vs_python,
            &|x| x >= 20.0,
        );
    }
    // The instant peer: the clients' own costs, and their system calls.
    let syscalls = |measure: &str| {
        find(rows, "syscalls", "", measure)
            .and_then(crate::syscalls::figure)
            .map(|x| (x, format!("{x:.2} system calls per round trip")))
    };
    for (measure, floor, calls) in [
        ("qmp-blocking", 0.95, None),
        ("qmp-async, sequential", 0.8, Some(6.0)),
        ("qmp-async, caller in smol::block_on", 0.7, Some(6.0)),
        ("qmp-tokio, sequential", 0.9, Some(4.0)),
    ] {
        // Judged in process; the figure in another process is given beside it, and for
        // qmp-blocking its ratio to the validating floor (what a client that checks its
        // replies cannot avoid).
        let figure = ratio("instant", "", measure).map(|(x, mut text)| {
            if let Some(other) = find(rows, "instant-other", "", measure) {
                text.push_str(&format!(" ({:.2}× in another process)", other.ratio));
            }
            let validating = find(rows, "instant", INSTANT_CASE, "hand-written loop numbering");
            if let (Some(v), "qmp-blocking") = (validating, measure) {
                text.push_str(&format!("; {:.2}× the validating floor", x / v.ratio));
            }
            (x, text)
        });
        check(
            &format!("{measure} ≥ {floor}× the floor (instant peer)"),
            figure,
            &|x| x >= floor,
        );
        if let Some(most) = calls {
            check(
                &format!("{measure}: ≤ {most} system calls per round trip (instant peer)"),
                syscalls(measure),
                &|x| x <= most,
            );
        }
    }
    let tokio_concurrency = find(rows, "instant", "", "qmp-tokio, 100").and_then(|c| {
        find(rows, "instant", "", "qmp-tokio, sequential")
            .map(|s| (c.ratio / s.ratio, format!("{:.2}×", c.ratio / s.ratio)))
    });
    check(
        "100 concurrent qmp-tokio callers ≥ 3× qmp-tokio sequential (instant peer)",
        tokio_concurrency,
        &|x| x >= 3.0,
    );
    // qmp-tokio against the other tokio clients, on every peer.
    for group in ["rtt", "qsd", "compare", "instant"] {
        for mode in ["sequential", "100 concurrent callers"] {
            let ours = find(rows, group, "", &format!("qmp-tokio, {mode}"));
            let theirs: Vec<(&str, Option<&Row>)> = [
                ("qapi", "qapi 0.15.0 (Rust), tokio"),
                ("qmp", "qmp 0.1.1 (Rust), tokio"),
            ]
            .into_iter()
            .map(|(short, name)| (short, find(rows, group, "", &format!("{name}, {mode}"))))
            .collect();
            let figure = ours.and_then(|o| {
                let leads: Option<Vec<(f64, String)>> = theirs
                    .iter()
                    .map(|(short, t)| {
                        t.map(|t| {
                            (
                                o.ratio / t.ratio,
                                format!("{:.2}× {short}", o.ratio / t.ratio),
                            )
                        })
                    })
                    .collect();
                let leads = leads?;
                let least = leads.iter().map(|(x, _)| *x).fold(f64::INFINITY, f64::min);
                let words: Vec<String> = leads.into_iter().map(|(_, w)| w).collect();
                Some((least, words.join(", ")))
            });
            check(
                &format!("qmp-tokio {mode} ahead of qapi's and qmp's tokio clients ({group})"),
                figure,
                &|x| x > 1.0,
            );
        }
    }
    check(
        "≤ 32 KiB RSS per idle connection",
        find(rows, "memory", "1000 idle", "").map(|r| (r.ratio * 32.0, r.absolute.clone())),
        &|x| x <= 32.0,
    );
    let flat = rows
        .iter()
        .filter(|r| r.group == "memory" && r.case.contains("events"))
        .map(|r| r.ratio)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    check(
        "event flood: peak RSS flat (≤ 1.1× the 10,000-event peak)",
        flat.map(|x| (x, format!("at most {x:.2}×"))),
        &|x| x <= 1.1,
    );
    out
}

/// Renders verdicts as a Markdown table.
pub fn verdict_table(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| target | this run | met |\n|---|---:|---|\n");
    for v in verdicts {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        out.push_str(&format!("| {} | {} | {met} |\n", v.target, v.figure));
    }
    out
}
