//! What the adapters' soak tests share: how long they run, QEMU killed and started again
//! every few seconds, the outcome counts, and RSS samples that must stay flat.
//!
//! A soak runs for 8 s per peer by default; `QMP_SOAK_SECS` sets the time (1800 for 30
//! minutes).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qmp_kit::fanout::{Handle, Runtime, SessionEventStream, SessionItem};
use qmp_kit::{CallOptions, Error};

use crate::Qemu;

/// How long each command may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer than its timeout a call may wait: opening the next session after QEMU is
/// restarted (its start, the greeting, negotiation).
pub const SLACK: Duration = Duration::from_secs(8);
/// The pause between a caller's calls: a manager's pace, not a benchmark's.
pub const PACE: Duration = Duration::from_millis(5);

/// The commands a soak sends to qemu-system-x86_64 (paused, `-S`): `stop` and `cont` cause
/// events.
pub const SYSTEM_COMMANDS: &[&str] = &[
    "query-status",
    "cont",
    "stop",
    "query-version",
    "query-name",
];
/// The commands a soak sends to qemu-storage-daemon.
pub const STORAGE_DAEMON_COMMANDS: &[&str] = &[
    "query-version",
    "query-block-jobs",
    "query-named-block-nodes",
];

/// How long a soak runs: `QMP_SOAK_SECS`, or 8 s.
pub fn soak_time() -> Duration {
    let secs = std::env::var("QMP_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    Duration::from_secs(secs)
}

/// The resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// RSS samples over a soak: `(seconds since the start, KiB)`.
#[derive(Debug)]
pub struct Rss {
    started: Instant,
    next: Instant,
    /// The samples so far.
    pub samples: Vec<(u64, u64)>,
}

impl Default for Rss {
    fn default() -> Self {
        Self::new()
    }
}

impl Rss {
    /// Starts sampling: a first sample now, then one every eighth of the soak.
    pub fn new() -> Self {
        let started = Instant::now();
        Rss {
            started,
            next: started + soak_time() / 8,
            samples: vec![(0, rss_kib())],
        }
    }

    /// Takes a sample if one is due.
    pub fn tick(&mut self) {
        if Instant::now() >= self.next {
            self.sample();
            self.next += soak_time() / 8;
        }
    }

    /// Takes a sample now.
    pub fn sample(&mut self) {
        let at = self.started.elapsed().as_secs();
        self.samples.push((at, rss_kib()));
    }

    /// Fails unless RSS stayed flat: after the first period (when buffers reach their working
    /// size), it grew by less than 4 MiB in all.
    pub fn assert_flat(&self) {
        let first = self.samples.get(1).map_or(self.samples[0].1, |s| s.1);
        let last = self.samples.last().map_or(first, |s| s.1);
        assert!(
            last < first + 4096,
            "RSS grew from {first} to {last} KiB: {:?}",
            self.samples
        );
    }
}

/// How the calls of a soak ended.
#[derive(Debug, Default)]
pub struct Counts {
    /// Calls made.
    pub issued: AtomicU64,
    /// Answered with a result.
    pub ok: AtomicU64,
    /// Answered with a QMP error.
    pub qmp_errors: AtomicU64,
    /// Failed with the end of their session.
    pub disconnected: AtomicU64,
    /// Failed at their deadline.
    pub timeouts: AtomicU64,
}

/// The outcome of one call, as [`Counts`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A QMP error.
    QmpError,
    /// The session ended.
    Disconnected,
    /// The deadline passed.
    Timeout,
}

impl Outcome {
    /// How a call ended; panics on an outcome a soak does not expect (local misuse, a
    /// malformed reply, ...).
    pub fn of<T>(what: &str, result: &Result<T, Error>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(Error::Qmp(_)) => Outcome::QmpError,
            Err(Error::Disconnected(_)) => Outcome::Disconnected,
            Err(Error::Timeout | Error::CommandTimeout(_)) => Outcome::Timeout,
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// One of an async soak's callers: until `end`, runs `commands` in turn (starting at
/// `first`), each with [`TIMEOUT`], counting how each ended, and pausing [`PACE`] (with
/// `pause`, the runtime's sleep) between calls.
pub async fn caller<R: Runtime, S: Future<Output = ()>>(
    qmp: Handle<R>,
    counts: Arc<Counts>,
    commands: &[&str],
    first: usize,
    end: Instant,
    pause: impl Fn(Duration) -> S,
) {
    let mut n = first;
    while Instant::now() < end {
        n += 1;
        let command = commands[n % commands.len()];
        counts.issued();
        let at = Instant::now();
        let opts = CallOptions::new().timeout(TIMEOUT);
        let result = qmp
            .execute_with::<serde_json::Value, _>(command, &(), opts)
            .await;
        counts.resolved(command, Outcome::of(command, &result), at.elapsed());
        pause(PACE).await;
    }
}

/// An async soak's listener across sessions: counts events, new sessions and events
/// missed, until the stream ends.
pub async fn listen(mut across: SessionEventStream) -> (u64, u64, u64) {
    let (mut events, mut sessions, mut lagged) = (0u64, 0u64, 0u64);
    while let Some(item) = across.recv().await {
        match item {
            SessionItem::Event(_) => events += 1,
            SessionItem::NewSession { .. } => sessions += 1,
            SessionItem::Lagged(l) => lagged += l.missed,
            _ => {}
        }
    }
    (events, sessions, lagged)
}

impl Counts {
    /// Records a call that was made.
    pub fn issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a call ended, after `waited`; fails if it waited past its timeout (and
    /// the time to open a session).
    pub fn resolved(&self, what: &str, outcome: Outcome, waited: Duration) {
        assert!(waited <= TIMEOUT + SLACK, "{what} waited {waited:?}");
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::QmpError => &self.qmp_errors,
            Outcome::Disconnected => &self.disconnected,
            Outcome::Timeout => &self.timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Fails unless every call made was resolved exactly once, and some succeeded.
    pub fn assert_all_resolved(&self) {
        let resolved = self.ok.load(Ordering::Relaxed)
            + self.qmp_errors.load(Ordering::Relaxed)
            + self.disconnected.load(Ordering::Relaxed)
            + self.timeouts.load(Ordering::Relaxed);
        assert_eq!(resolved, self.issued.load(Ordering::Relaxed), "{self:?}");
        assert!(self.ok.load(Ordering::Relaxed) > 0, "{self:?}");
    }
}

/// A thread that kills QEMU and starts it again on the same socket every 1 to 3 s.
#[derive(Debug)]
pub struct Restarter<F: Send + 'static> {
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU64>,
    thread: JoinHandle<Qemu<F>>,
}

impl<F: Send + 'static> Restarter<F> {
    /// Starts restarting `peer`.
    pub fn start(mut peer: Qemu<F>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let restarts = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, restarts) = (Arc::clone(&stop), Arc::clone(&restarts));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    std::thread::sleep(Duration::from_millis(1000 + (n * 769) % 2000));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    peer.restart();
                    restarts.fetch_add(1, Ordering::Relaxed);
                }
                peer
            })
        };
        Restarter {
            stop,
            restarts,
            thread,
        }
    }

    /// Stops restarting; returns the peer (running) and how many times it was restarted.
    pub fn stop(self) -> (Qemu<F>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let peer = self.thread.join().expect("the restarter");
        (peer, self.restarts.load(Ordering::Relaxed))
    }
}
