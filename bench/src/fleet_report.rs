//! The fleet table (`qmp-bench fleet`): client processes ([`fleet`](crate::fleet)) against
//! one server process ([`fleet_server`](crate::fleet_server)), every adapter and mode in
//! interleaved rounds, and the fleet's targets.
//!
//! Each round runs, in this order: events and calls with the floor (a hand-written loop per
//! session on tokio, no engine), qmp-tokio (current-thread) and qmp-async; events only with
//! the three; calls only with the three; then events and calls with qmp-tokio on a
//! multi-thread runtime. Each run is a fresh client process, so memory one left behind
//! cannot hide another's. CPU time and latencies are given as ratios to the floor's, RSS per
//! session as a ratio to qmp-tokio's target.
//!
//! CPU is attributed by leaving things out: the cost of an event is the CPU time of the
//! events-only runs divided by the events received, the cost of a call that of the
//! calls-only runs divided by the calls completed. The runs with both divide their whole
//! CPU time by each (an upper bound for either), and say how their CPU time compares with
//! the sum of the two parts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::engine_report::log;
use crate::fleet::{Kind, Measured, Mode};
use crate::memory::ServerProcess;
use crate::report::Verdict;
use crate::stats::{fmt_ns, median};
use crate::Row;

/// The RSS per session qmp-tokio should stay within, KiB.
pub const RSS_TARGET_KIB: f64 = 16.0;

/// What a fleet run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Sessions per client process.
    pub sessions: usize,
    /// The measured window of each run.
    pub window: Duration,
    /// Rounds of every run.
    pub rounds: usize,
}

impl Plan {
    /// 1,000 sessions, 10 s windows, 3 rounds (`quick`: 5 s, 1 round).
    pub fn new(quick: bool) -> Plan {
        Plan {
            sessions: 1000,
            window: Duration::from_secs(if quick { 5 } else { 10 }),
            rounds: if quick { 1 } else { 3 },
        }
    }
}

/// One run of a client process and what it measured.
#[derive(Debug, Clone)]
pub struct FleetRun {
    /// Its round, from 1.
    pub round: usize,
    /// The adapter and runtime.
    pub kind: Kind,
    /// What the sessions did.
    pub mode: Mode,
    /// What it measured.
    pub measured: Measured,
}

/// The runs of one round, in order.
pub fn round_order() -> Vec<(Kind, Mode)> {
    let mut order = Vec::new();
    for mode in Mode::ALL {
        for kind in [Kind::Floor, Kind::Tokio, Kind::Async] {
            order.push((kind, mode));
        }
    }
    order.push((Kind::TokioMulti, Mode::Mixed));
    order
}

/// Runs every client process of `plan` against one `exe fleet-serve`, in interleaved rounds.
pub fn run(exe: &Path, plan: Plan) -> Vec<FleetRun> {
    let server = ServerProcess::start_command(exe, "fleet-serve");
    let mut runs = Vec::new();
    for round in 1..=plan.rounds {
        for (kind, mode) in round_order() {
            log(&format!(
                "fleet: round {round}/{}: {} sessions, {}, {}",
                plan.rounds,
                plan.sessions,
                kind.name(),
                mode.name()
            ));
            if let Some(measured) = client(exe, &server, kind, mode, plan) {
                log(&format!("fleet:   {}", summary(&measured)));
                runs.push(FleetRun {
                    round,
                    kind,
                    mode,
                    measured,
                });
            }
        }
    }
    runs
}

/// Runs one client process; `None` (with its error on stderr) if it failed.
fn client(
    exe: &Path,
    server: &ServerProcess,
    kind: Kind,
    mode: Mode,
    plan: Plan,
) -> Option<Measured> {
    let out = Command::new(exe)
        .arg("fleet-client")
        .arg(kind.short_name())
        .arg(plan.sessions.to_string())
        .arg(&server.sock)
        .arg(plan.window.as_secs().to_string())
        .arg(mode.name())
        .arg(server.pid().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run a fleet client process");
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<Measured>(l).ok());
    if !out.status.success() || parsed.is_none() {
        log(&format!(
            "fleet: the client process failed ({}): {text}",
            out.status
        ));
    }
    parsed
}

/// One line about a run, for the progress log.
pub fn summary(m: &Measured) -> String {
    let mut s = format!(
        "{}/{} sessions in {:.1} s, {:.1} KiB RSS each; {:.0} events/s, {:.0} calls/s; CPU {:.0}% of a core (server {}, machine {:.0}% busy); calls p50 {} µs, p99 {} µs; sent {}, received {}, lagged {}, lost without a lag count {}",
        m.connected,
        m.sessions,
        m.connect_secs,
        m.rss_per_session_kib(),
        m.events as f64 / m.window_secs,
        m.calls as f64 / m.window_secs,
        100.0 * m.cpu_share(),
        m.server_share()
            .map_or_else(|| "?".to_owned(), |s| format!("{:.0}%", 100.0 * s)),
        100.0 * m.machine_busy,
        m.latency_p50_us,
        m.latency_p99_us,
        m.sent_total,
        m.received_total,
        m.lagged_total,
        m.unexplained
    );
    if let Some(e) = &m.connect_error {
        s.push_str(&format!("; opening a session failed: {e}"));
    }
    s
}

fn of(runs: &[FleetRun], kind: Kind, mode: Mode) -> Vec<&Measured> {
    runs.iter()
        .filter(|r| r.kind == kind && r.mode == mode)
        .map(|r| &r.measured)
        .collect()
}

fn median_of(ms: &[&Measured], f: impl Fn(&Measured) -> f64) -> f64 {
    median(&ms.iter().map(|m| f(m)).collect::<Vec<_>>())
}

/// CPU ns per event received in a run.
fn cpu_per_event(m: &Measured) -> f64 {
    m.cpu_ns as f64 / m.events.max(1) as f64
}

/// CPU ns per call completed in a run.
fn cpu_per_call(m: &Measured) -> f64 {
    m.cpu_ns as f64 / m.calls.max(1) as f64
}

/// The row of `kind`'s CPU per event (from its `Mode::Events` runs, `measured`) or per call
/// (`Mode::Commands`), as a ratio to the floor's `base`; `None` without such runs.
fn cpu_row(kind: Kind, mode: Mode, measured: &[&Measured], n: usize, base: f64) -> Option<Row> {
    let (what, per): (&str, fn(&Measured) -> f64) = match mode {
        Mode::Events => ("event", cpu_per_event),
        _ => ("call", cpu_per_call),
    };
    if measured.is_empty() {
        return None;
    }
    let ns = median_of(measured, per);
    let rate = median_of(measured, |m| {
        let done = if mode == Mode::Events {
            m.events
        } else {
            m.calls
        };
        done as f64 / m.window_secs
    });
    Some(Row {
        group: "fleet",
        case: format!("{n} sessions, {what}s only ({rate:.0} {what}s/s)"),
        measure: format!("{}: CPU per {what}", kind.name()),
        absolute: format!(
            "{} ({:.1}% of a CPU)",
            fmt_ns(ns),
            100.0 * median_of(measured, Measured::cpu_share)
        ),
        ratio: ns / base,
        baseline: "of the floor",
    })
}

/// The fleet's rows: per adapter, RSS per session, CPU per event and per call, latencies,
/// and the event counts.
pub fn rows(runs: &[FleetRun], plan: Plan) -> Vec<Row> {
    let n = plan.sessions;
    let mut rows = Vec::new();
    let base_event = median_of(&of(runs, Kind::Floor, Mode::Events), cpu_per_event);
    let base_call = median_of(&of(runs, Kind::Floor, Mode::Commands), cpu_per_call);
    let base_p99 = median_of(&of(runs, Kind::Floor, Mode::Mixed), |m| {
        m.latency_p99_us as f64
    });
    for kind in Kind::ALL {
        let mixed = of(runs, kind, Mode::Mixed);
        if mixed.is_empty() {
            continue;
        }
        let per = median_of(&mixed, Measured::rss_per_session_kib);
        let before = median_of(&mixed, |m| m.rss_before_kib as f64);
        let after = median_of(&mixed, |m| m.rss_after_kib as f64);
        rows.push(Row {
            group: "fleet",
            case: format!("{n} sessions, events and calls"),
            measure: format!("{}: RSS per session", kind.name()),
            absolute: format!(
                "{per:.1} KiB (RSS {:.1} → {:.1} MiB)",
                before / 1024.0,
                after / 1024.0
            ),
            ratio: per / RSS_TARGET_KIB,
            baseline: "of the 16 KiB target",
        });
        let events = of(runs, kind, Mode::Events);
        let calls = of(runs, kind, Mode::Commands);
        rows.extend(cpu_row(kind, Mode::Events, &events, n, base_event));
        rows.extend(cpu_row(kind, Mode::Commands, &calls, n, base_call));
        let all = median_of(&mixed, |m| m.cpu_ns as f64 / m.window_secs);
        let parts = median_of(&events, |m| m.cpu_ns as f64 / m.window_secs)
            + median_of(&calls, |m| m.cpu_ns as f64 / m.window_secs);
        let attribution = if parts.is_nan() {
            String::new()
        } else {
            format!(
                "; {:.2}× the events-only and calls-only runs' CPU together",
                all / parts
            )
        };
        rows.push(Row {
            group: "fleet",
            case: format!("{n} sessions, events and calls"),
            measure: format!("{}: all CPU per event, per call", kind.name()),
            absolute: format!(
                "{} per event, {} per call ({:.1}% of a CPU{attribution})",
                fmt_ns(median_of(&mixed, cpu_per_event)),
                fmt_ns(median_of(&mixed, cpu_per_call)),
                100.0 * median_of(&mixed, Measured::cpu_share)
            ),
            ratio: median_of(&mixed, cpu_per_event) / base_event,
            baseline: "of the floor's CPU per event, events only",
        });
        let p99 = median_of(&mixed, |m| m.latency_p99_us as f64);
        rows.push(Row {
            group: "fleet",
            case: format!("{n} sessions, events and calls"),
            measure: format!("{}: call latency p50 / p99 / max", kind.name()),
            absolute: format!(
                "{} / {} / {}",
                fmt_ns(1e3 * median_of(&mixed, |m| m.latency_p50_us as f64)),
                fmt_ns(1e3 * p99),
                fmt_ns(1e3 * median_of(&mixed, |m| m.latency_max_us as f64)),
            ),
            ratio: p99 / base_p99,
            baseline: "of the floor's p99",
        });
        let every: Vec<&Measured> = runs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| &r.measured)
            .collect();
        let sum = |f: fn(&Measured) -> u64| every.iter().map(|m| f(m)).sum::<u64>();
        let sent = sum(|m| m.sent_total);
        let (received, lagged) = (sum(|m| m.received_total), sum(|m| m.lagged_total));
        rows.push(Row {
            group: "fleet",
            case: format!("{n} sessions, every run"),
            measure: format!("{}: events", kind.name()),
            absolute: format!(
                "sent {sent}, received {received}, lag counts {lagged}, lost without a lag count {}, surplus {}",
                sum(|m| m.unexplained),
                sum(|m| m.surplus)
            ),
            ratio: (received + lagged) as f64 / sent.max(1) as f64,
            baseline: "of the events sent, received or counted",
        });
    }
    rows
}

/// Every run, one line each, as a Markdown table.
pub fn runs_table(runs: &[FleetRun]) -> String {
    let mut out = String::from(
        "| round | client | mode | sessions | opened in | RSS/session | events/s | calls/s | client CPU | server CPU | machine busy (others) | CPU/event | CPU/call | call p50 / p99 / max | sent | received | lagged | lost, no lag count |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let m = &r.measured;
        let per = |units: u64| {
            if units == 0 {
                "–".to_owned()
            } else {
                fmt_ns(m.cpu_ns as f64 / units as f64)
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {}/{} | {:.1} s | {:.1} KiB | {:.0} | {:.0} | {:.0}% | {} | {:.0}% of {} CPUs ({}) | {} | {} | {} / {} / {} µs | {} | {} | {} | {} |\n",
            r.round,
            r.kind.short_name(),
            r.mode.name(),
            m.connected,
            m.sessions,
            m.connect_secs,
            m.rss_per_session_kib(),
            m.events as f64 / m.window_secs,
            m.calls as f64 / m.window_secs,
            100.0 * m.cpu_share(),
            m.server_share()
                .map_or_else(|| "?".to_owned(), |s| format!("{:.0}%", 100.0 * s)),
            100.0 * m.machine_busy,
            m.cpus,
            m.others()
                .map_or_else(|| "?".to_owned(), |o| format!("{o:.2} CPU")),
            per(m.events),
            per(m.calls),
            m.latency_p50_us,
            m.latency_p99_us,
            m.latency_max_us,
            m.sent_total,
            m.received_total,
            m.lagged_total,
            m.unexplained,
        ));
    }
    out
}

/// How busy the machine was with other work: other processes' CPU time can slow the
/// client and the server alike (latencies, lag), and inflate CPU times per unit through
/// shared caches.
pub fn load_note(runs: &[FleetRun]) -> String {
    let others: Vec<f64> = runs.iter().filter_map(|r| r.measured.others()).collect();
    let busy = others.iter().filter(|&&o| o > 0.25).count();
    let most = others.iter().copied().fold(0.0, f64::max);
    format!(
        "Other processes took more than 0.25 CPU in {busy} of {} runs (at most {most:.2} CPU).",
        runs.len()
    )
}

/// The fleet's targets, checked against its runs: qmp-tokio within 16 KiB per session, no
/// event lost without a lag count, CPU per event and per call measured, every session open.
pub fn verdicts(runs: &[FleetRun], plan: Plan) -> Vec<Verdict> {
    let n = plan.sessions;
    let mut out = Vec::new();
    for kind in [Kind::Tokio, Kind::TokioMulti] {
        let mixed = of(runs, kind, Mode::Mixed);
        let per = (!mixed.is_empty()).then(|| median_of(&mixed, Measured::rss_per_session_kib));
        out.push(Verdict {
            target: format!(
                "{}: ≤ {RSS_TARGET_KIB} KiB RSS per session ({n} sessions)",
                kind.name()
            ),
            figure: per.map_or_else(|| "not measured".to_owned(), |p| format!("{p:.1} KiB")),
            met: per.map(|p| p <= RSS_TARGET_KIB),
        });
    }
    for kind in Kind::ALL {
        let every: Vec<&Measured> = runs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| &r.measured)
            .collect();
        let lost: u64 = every.iter().map(|m| m.unexplained).sum();
        let off: u64 = every.iter().map(|m| m.sessions_off).sum();
        let sent: u64 = every.iter().map(|m| m.sent_total).sum();
        out.push(Verdict {
            target: format!("{}: no event lost without a lag count", kind.name()),
            figure: format!("{lost} of {sent} lost, {off} sessions whose counts do not add up"),
            met: (!every.is_empty()).then_some(lost == 0 && off == 0),
        });
        let opened = every.iter().all(|m| m.connected == m.sessions);
        let fds = every
            .iter()
            .find_map(|m| m.fd_limit)
            .map_or_else(|| "no limit".to_owned(), |l| format!("a limit of {l}"));
        out.push(Verdict {
            target: format!("{}: all {n} sessions open in every run", kind.name()),
            figure: every
                .iter()
                .find_map(|m| m.connect_error.clone())
                .unwrap_or_else(|| format!("{} runs, open files: {fds}", every.len())),
            met: (!every.is_empty()).then_some(opened),
        });
    }
    for (what, mode, per) in [
        ("event", Mode::Events, cpu_per_event as fn(&Measured) -> f64),
        ("call", Mode::Commands, cpu_per_call),
    ] {
        let figures: Vec<String> = [Kind::Tokio, Kind::Async]
            .into_iter()
            .filter_map(|k| {
                let ms = of(runs, k, mode);
                (!ms.is_empty())
                    .then(|| format!("{} ({})", fmt_ns(median_of(&ms, per)), k.short_name()))
            })
            .collect();
        out.push(Verdict {
            target: format!("CPU per {what} reported"),
            figure: if figures.is_empty() {
                "not measured".to_owned()
            } else {
                figures.join(", ")
            },
            met: Some(figures.len() == 2),
        });
    }
    out
}
