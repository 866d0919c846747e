//! The whole report: every table, and the targets checked against the same run's figures.

use std::path::{Path, PathBuf};

use crate::memory::ServerProcess;
use crate::rtt::{self, Client, Peer};
use crate::rtt_report;
use crate::stats::{interleave, Variant};
use crate::{engine_report, memory, Row};

/// The clients of the round-trip tables, the floor first.
pub const ALL_CLIENTS: [Client; 4] = [
    Client::Floor,
    Client::Blocking,
    Client::AsyncSequential,
    Client::AsyncConcurrent,
];

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
        &ALL_CLIENTS,
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
        &ALL_CLIENTS,
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
    rtt_report::rows("compare", "fake QEMU, other process", &variants)
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
/// side by side (against `exe serve`), and memory (`exe` is the `qmp-bench` binary).
pub fn end_to_end(exe: &Path, quick: bool) -> Vec<Row> {
    let mut rows = rtt_in_process(quick);
    rows.extend(rtt_storage_daemon(quick));
    {
        let server = ServerProcess::start(exe);
        let python = python();
        if python.is_none() {
            engine_report::log(
                "no Python virtualenv with qemu.qmp (run bench/compare.sh once, or set \
                 QMP_BENCH_PYTHON): the Python client is left out",
            );
        }
        rows.extend(compare(&server.sock, python.as_deref(), quick));
    }
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
    for case in ["small-reply", "event"] {
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
