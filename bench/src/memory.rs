//! Memory: resident set size per idle async connection, and the peak while a slow listener
//! receives an event flood. The fake QEMU runs in another process (`qmp-bench serve`), so
//! only the client's memory is counted. Figures come from `/proc/self/status` (`VmRSS`, and
//! `VmHWM`, the peak, which writing `5` to `/proc/self/clear_refs` resets).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use qmp_async::EventFilter;
use qmp_proto::ClientConfig;
use serde_json::json;

use crate::engine_report::log;
use crate::Row;

/// Events per `flood` command.
const FLOOD_BATCH: u64 = 10_000;

/// The capacity of the slow listener's queue (async), and the engine's event buffer bound
/// (blocking).
pub const LISTENER_CAPACITY: usize = 64;

/// A field of `/proc/self/status`, in KiB.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
pub fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
}

/// `qmp-bench serve` (or `serve-instant`) in a child process, killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    dir: PathBuf,
    /// Its socket.
    pub sock: PathBuf,
}

impl ServerProcess {
    /// Starts `exe serve SOCK` and waits for its socket.
    pub fn start(exe: &Path) -> ServerProcess {
        Self::start_command(exe, "serve")
    }

    /// Starts `exe COMMAND SOCK` (`serve`, `serve-instant`, `fleet-serve`) and waits for its socket.
    pub fn start_command(exe: &Path, command: &str) -> ServerProcess {
        let dir = std::env::temp_dir().join(format!("qmp-bench-{command}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let sock = dir.join("peer.sock");
        let child = Command::new(exe)
            .arg(command)
            .arg(&sock)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the server process");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "no server socket after 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        ServerProcess { child, dir, sock }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// RSS per idle connection: `count` async connections (a `Qmp` handle and its spawned
/// `Driver` each), negotiated and then left idle, against the baseline measured after one
/// connection was opened and closed (so the reactor and the executor are warm).
pub fn idle_connections(sock: &Path, count: usize) -> (u64, u64, u64) {
    // A single-threaded executor that drives async-io's reactor itself.
    let ex = &async_executor::Executor::new();
    let (before, after, peak) = async_io::block_on(ex.run(async move {
        let builder = qmp_async::Builder::new();
        {
            let (qmp, driver) = builder.connect_unix(sock).await.expect("connect");
            let driver = ex.spawn(driver);
            drop(qmp);
            driver.await;
        }
        async_io::Timer::after(Duration::from_millis(100)).await;
        let before = status_kib("VmRSS");
        reset_peak();
        let mut held = Vec::with_capacity(count);
        for _ in 0..count {
            let (qmp, driver) = builder.connect_unix(sock).await.expect("connect");
            held.push((qmp, ex.spawn(driver)));
        }
        async_io::Timer::after(Duration::from_millis(500)).await;
        let after = status_kib("VmRSS");
        let peak = status_kib("VmHWM");
        for (qmp, driver) in held {
            drop(qmp);
            driver.await;
        }
        (before, after, peak)
    }));
    log(&format!(
        "memory: {count} idle connections: RSS {before} KiB before, {after} KiB after, peak {peak} KiB"
    ));
    (before, after, peak)
}

/// Peak RSS above the starting RSS while `events` events reach a listener that reads one
/// event a millisecond (async, queue bound [`LISTENER_CAPACITY`]).
pub fn flood_async(sock: &Path, events: u64) -> (u64, u64, u64) {
    let ex = &async_executor::Executor::new();
    async_io::block_on(ex.run(async move {
        let (qmp, driver) = qmp_async::Builder::new()
            .connect_unix(sock)
            .await
            .expect("connect");
        let driver = ex.spawn(driver);
        let mut slow = qmp.subscribe(EventFilter::name("TICK").capacity(LISTENER_CAPACITY));
        let reader = ex.spawn(async move {
            let mut got = 0u64;
            while let Some(item) = slow.next().await {
                if item.is_ok() {
                    got += 1;
                }
                async_io::Timer::after(Duration::from_millis(1)).await;
            }
            (got, slow.missed_total())
        });
        // Warm up with one batch, then measure.
        qmp.execute::<qmp_async::IgnoredAny, _>("flood", &json!({ "count": FLOOD_BATCH }))
            .await
            .expect("flood");
        let before = status_kib("VmRSS");
        reset_peak();
        for _ in 0..events / FLOOD_BATCH {
            qmp.execute::<qmp_async::IgnoredAny, _>("flood", &json!({ "count": FLOOD_BATCH }))
                .await
                .expect("flood");
        }
        let peak = status_kib("VmHWM");
        drop(qmp);
        driver.await;
        let (got, missed) = reader.await;
        log(&format!(
            "memory: async flood of {events}: peak {peak} KiB (from {before} KiB); the slow listener got {got}, missed {missed}"
        ));
        (before, status_kib("VmRSS"), peak)
    }))
}

/// The same with the blocking adapter, which never reads its events here (its buffer bound
/// is [`LISTENER_CAPACITY`]).
pub fn flood_blocking(sock: &Path, events: u64) -> (u64, u64, u64) {
    let mut qmp = qmp_blocking::Builder::new()
        .config(ClientConfig::default().max_buffered_events(LISTENER_CAPACITY))
        .connect_unix(sock)
        .expect("connect");
    let flood = json!({ "count": FLOOD_BATCH });
    qmp.execute::<qmp_blocking::IgnoredAny>("flood", &flood)
        .expect("flood");
    let before = status_kib("VmRSS");
    reset_peak();
    for _ in 0..events / FLOOD_BATCH {
        qmp.execute::<qmp_blocking::IgnoredAny>("flood", &flood)
            .expect("flood");
    }
    let peak = status_kib("VmHWM");
    log(&format!(
        "memory: blocking flood of {events}: peak {peak} KiB (from {before} KiB); {} buffered, {} lost",
        qmp.buffered_events(),
        qmp.events_lost()
    ));
    (before, status_kib("VmRSS"), peak)
}

/// One measurement, run in a process of its own (`qmp-bench memory-one KIND N SOCK`) so that
/// memory freed by an earlier one cannot hide this one's growth. `kind` is `idle` (N idle
/// connections), `async-flood` or `blocking-flood` (N events). Returns the RSS before, the
/// RSS after and the peak, in KiB.
pub fn measure_one(kind: &str, n: u64, sock: &Path) -> Option<(u64, u64, u64)> {
    match kind {
        "idle" => Some(idle_connections(sock, n as usize)),
        "async-flood" => Some(flood_async(sock, n)),
        "blocking-flood" => Some(flood_blocking(sock, n)),
        _ => None,
    }
}

fn child(exe: &Path, server: &ServerProcess, kind: &str, n: u64) -> (u64, u64, u64) {
    let out = Command::new(exe)
        .args(["memory-one", kind, &n.to_string()])
        .arg(&server.sock)
        .stderr(Stdio::inherit())
        .output()
        .expect("run a memory measurement");
    assert!(out.status.success(), "memory-one {kind} {n} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match v[..] {
        [before, after, peak] => (before, after, peak),
        _ => panic!("unexpected output of memory-one: {text}"),
    }
}

/// Every memory figure, each measured in a fresh process against one server process.
pub fn run_all(exe: &Path, quick: bool) -> Vec<Row> {
    let server = ServerProcess::start(exe);
    let count = 1000;
    let (before, after, _) = child(exe, &server, "idle", count);
    let per = after.saturating_sub(before) as f64 / count as f64;
    let mut rows = vec![Row {
        group: "memory",
        case: format!("{count} idle connections (qmp-async)"),
        measure: "RSS per connection".to_owned(),
        absolute: format!(
            "{per:.1} KiB (RSS {:.1} → {:.1} MiB)",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        ),
        ratio: per / 32.0,
        baseline: "of the 32 KiB target",
    }];
    let counts: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for (kind, name) in [
        ("async-flood", "qmp-async, slow listener"),
        ("blocking-flood", "qmp-blocking, events never read"),
    ] {
        let mut first = None;
        for &n in counts {
            let (before, _, peak) = child(exe, &server, kind, n);
            let growth = peak.saturating_sub(before);
            let base = *first.get_or_insert(peak.max(1));
            rows.push(Row {
                group: "memory",
                case: format!("{n} events, queue bound {LISTENER_CAPACITY}"),
                measure: format!("{name}: peak RSS"),
                absolute: format!(
                    "{:.2} MiB ({growth} KiB above the start)",
                    peak as f64 / 1024.0
                ),
                ratio: peak as f64 / base as f64,
                baseline: "of the 10,000-event peak",
            });
        }
    }
    rows
}
