//! Benchmarks of `qmp-proto` and its adapters, with their baselines measured in the same run.
//!
//! - [`engine`]: the engine's cost per message (a small reply, an event, the 236 KB
//!   `query-qmp-schema` reply of qemu-system-x86_64 10.0.2, a 10 MB reply), fed whole, byte
//!   by byte and in 4 KiB chunks, against `serde_json`'s `RawValue` validation and `Value`
//!   parse of the same bytes.
//! - [`rtt`]: `query-version` round trips over a unix socket with the blocking adapter, the
//!   async adapter and the tokio adapter (one caller, 100 concurrent callers; the tokio
//!   adapter on a current-thread runtime, one caller task, and one caller on a multi-thread
//!   runtime), a hand-written loop with no engine (the floor) and the same loop waiting in
//!   `epoll_wait` (the reactor floor, the least any event-loop client can do); with the
//!   `qapi` feature, the other Rust clients too: the `qapi` crate's blocking and tokio
//!   clients and the `qmp` crate's tokio client. They run against the fake QEMU served in this process, against
//!   qemu-storage-daemon, against the [`instant`] peer, and side by side with the Python
//!   reference `qemu.qmp` against a fake QEMU in another process.
//! - [`instant`]: a QMP server with no engine that answers every command at once, so that a
//!   client's own cost shows (QEMU reads its monitor one byte per `recvmsg`, which hides every
//!   client's cost); its own CPU per round trip, on the floor's connections, is the limit of
//!   any client on the same CPU.
//! - [`syscalls`]: system calls per round trip of each Rust client against the instant peer,
//!   counted with `strace -f -c` (stable where times are not), with the most frequent ones.
//! - [`memory`]: RSS per idle async connection, and the peak RSS while a slow listener
//!   receives up to 1,000,000 events.
//! - [`report`]: all of it, and the targets checked against the same run.
//! - [`fleet`]: one client process, one runtime, 1,000 sessions or more (`qmp-bench fleet`,
//!   not part of `all`): each session with a bounded listener and a task calling
//!   `query-status` once a second, against fake QEMUs that send each session 10 numbered
//!   events a second ([`fleet_server`], another process, on one small tokio runtime). RSS
//!   per session, CPU time per event and per call (events-only and calls-only runs tell the
//!   two apart), call latencies, and every event the servers sent checked against the events
//!   received and the lag counts reported; for qmp-tokio on a current-thread and a
//!   multi-thread runtime, qmp-async on one `async-executor`, and a hand-written loop on
//!   tokio with no engine (the floor). [`fleet_report`] runs them in interleaved rounds and
//!   checks the fleet's targets.
//!
//! Every figure is reported as a ratio to a baseline measured in the same run, in interleaved
//! rounds, so that a loaded machine slows both alike: the ratio of the medians, and beside
//! the rate the best sample's ratio to the floor's best. The `qmp-bench` binary prints the
//! tables (`qmp-bench instant` for the clients against the instant peer, with their system
//! calls); `cargo bench` (at the top of the workspace, or `-p qmp-bench`) runs the same
//! measurements (and divan micro benchmarks of the engine), the fleet excepted.
//!
//! The tokio clients each run on a runtime made for the sample, their sequential calls made
//! in `block_on` (as in the body of `#[tokio::main]`), their concurrent callers spawned as
//! tasks. The `qmp` crate connects by path only: against a peer served in this process it
//! dials a temporary socket ([`rtt::Peer::dial`]).

pub mod engine;
pub mod engine_report;
pub mod fleet;
pub mod fleet_report;
pub mod fleet_server;
pub mod instant;
pub mod memory;
pub mod report;
pub mod rtt;
pub mod rtt_report;
pub mod stats;
pub mod syscalls;

/// Pins this process, the threads it starts and the processes it starts (the fake QEMU
/// server, the Python client, qemu-storage-daemon) to one CPU, and returns it: the CPU
/// `QMP_BENCH_CPU` names, else the last one this process may run on. Nothing is pinned when
/// `QMP_BENCH_CPU` is `none` or the call fails.
///
/// A round trip is a ping-pong between two threads: on a virtual machine, whether the two
/// happen to share a CPU (a cheap wake-up) or not (waking another, possibly idle, virtual
/// CPU) changed the rate by up to four times from one sample to the next. On one CPU the
/// figures measure the clients' own costs, and repeat.
pub fn pin_to_one_cpu() -> Option<usize> {
    let cpu = match std::env::var("QMP_BENCH_CPU") {
        Ok(v) if v == "none" => return None,
        Ok(v) => v.parse().ok()?,
        Err(_) => {
            let allowed = rustix::thread::sched_getaffinity(None).ok()?;
            (0..rustix::thread::CpuSet::MAX_CPU)
                .rev()
                .find(|&c| allowed.is_set(c))?
        }
    };
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).ok()?;
    Some(cpu)
}

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
