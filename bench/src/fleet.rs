//! The fleet: one client process, one runtime, many QMP sessions at once, against the fake
//! QEMUs of another process ([`fleet_server`](crate::fleet_server)).
//!
//! The client process (`qmp-bench fleet-client KIND N SOCK SECS [MODE [SERVER_PID]]`) opens
//! `N` sessions on one runtime ([`Kind`]): qmp-tokio on a current-thread or a multi-thread
//! tokio runtime, qmp-async with every task on one `async_executor::Executor` that drives
//! async-io's reactor, or the floor, a hand-written loop per session on a current-thread
//! tokio runtime. An adapter's session has
//!
//! - a listener task ([`subscribe`](qmp_kit::fanout::Handle::subscribe), its queue bounded
//!   at [`LISTENER_CAPACITY`]) that counts the events it receives, the lag counts it is
//!   told, and the gaps in the events' numbers;
//! - a caller task that runs `query-status` once a second ([`CALL_PERIOD`]), its first call
//!   at a point of the first second that differs from session to session;
//!
//! and the server sends each session 10 events a second. The sessions are opened first,
//! [`CONNECTING`] at a time; once all are open, their events ([`START`]) and callers start.
//! [`Mode`] leaves out the calls or the events, to tell their costs apart.
//!
//! The process measures, over a window of `SECS` that starts once every session has run
//! for [`WARM_UP`]:
//!
//! - RSS (`VmRSS`) before the sessions (after one session was opened and closed, so the
//!   runtime is warm) and with them open and running, at the start of the window: the
//!   difference divided by `N` is the memory per session, the bench's own tasks included;
//! - its CPU time (`CLOCK_PROCESS_CPUTIME_ID`: user and system time of every thread), to be
//!   divided by the events received and the calls completed in the window; the server's
//!   CPU time (`/proc/PID/stat`) and the whole machine's (`/proc/stat`), to tell a
//!   saturated machine, and how much of it other processes took;
//! - the calls' latencies;
//!
//! and, at the end, asks every session's server how many events it sent ([`STOP`]) and
//! checks them against the events received and the lag counts reported. It prints what it
//! measured as one JSON line ([`Measured`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use qmp_kit::fanout::{EventStream, Handle, Runtime};
use qmp_kit::{Error, EventFilter};
use qmp_types::qmp::QueryStatus;
use serde::{Deserialize, Serialize};

use crate::fleet_server::{raise_fd_limit, spread};
pub use crate::fleet_server::{EVENT, START, STOP};
use crate::memory::status_kib;

/// The capacity of each session's listener queue.
pub const LISTENER_CAPACITY: usize = 64;
/// Time between two calls of a session.
pub const CALL_PERIOD: Duration = Duration::from_secs(1);
/// How long every session runs before the window starts (every caller has made a call).
pub const WARM_UP: Duration = Duration::from_secs(2);
/// Sessions being opened at once.
pub const CONNECTING: usize = 64;

/// The adapter and runtime of a client process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The floor: a hand-written loop per session on a current-thread tokio runtime, one
    /// task that reads and writes the socket itself, with no engine: it finds the lines,
    /// spots events and replies by a few bytes, and parses only the numbers it counts.
    Floor,
    /// qmp-tokio on a current-thread runtime.
    Tokio,
    /// qmp-tokio on a multi-thread runtime with two workers.
    TokioMulti,
    /// qmp-async, every task on one `async_executor::Executor` driving async-io's reactor.
    Async,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Floor, Kind::Tokio, Kind::TokioMulti, Kind::Async];

    /// Its name on the command line.
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Tokio => "tokio",
            Kind::TokioMulti => "tokio-mt",
            Kind::Async => "async",
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Floor => "hand-written loop on tokio, no engine (floor)",
            Kind::Tokio => "qmp-tokio, current-thread runtime",
            Kind::TokioMulti => "qmp-tokio, multi-thread runtime (2 workers)",
            Kind::Async => "qmp-async, one async-executor",
        }
    }

    /// The kind named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.short_name() == name)
    }
}

/// What the sessions of a client process do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Events and calls.
    Mixed,
    /// Events only: no caller tasks.
    Events,
    /// Calls only: the server sends no events.
    Commands,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 3] = [Mode::Mixed, Mode::Events, Mode::Commands];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Mixed => "mixed",
            Mode::Events => "events",
            Mode::Commands => "commands",
        }
    }

    /// The mode named `name`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    fn events(self) -> bool {
        self != Mode::Commands
    }

    fn calls(self) -> bool {
        self != Mode::Events
    }
}

/// One run of a client process.
#[derive(Debug, Clone)]
pub struct Run {
    /// The adapter and runtime.
    pub kind: Kind,
    /// What the sessions do.
    pub mode: Mode,
    /// How many sessions to open.
    pub sessions: usize,
    /// The server's socket.
    pub sock: PathBuf,
    /// The length of the measured window.
    pub window: Duration,
    /// The server process, whose CPU time is read from `/proc`.
    pub server_pid: Option<u32>,
}

/// What a client process measured. Counts of events and calls are over the window unless
/// their name says otherwise.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    /// Sessions asked for.
    pub sessions: u64,
    /// Sessions open (all of them unless opening one failed).
    pub connected: u64,
    /// Why opening or starting a session failed, the first time one did.
    pub connect_error: Option<String>,
    /// Seconds it took to open the sessions.
    pub connect_secs: f64,
    /// The process's soft limit on open files.
    pub fd_limit: Option<u64>,
    /// RSS before the sessions, KiB.
    pub rss_before_kib: u64,
    /// RSS with every session open and running, at the start of the window, KiB.
    pub rss_after_kib: u64,
    /// RSS at the end of the window, KiB.
    pub rss_end_kib: u64,
    /// The window's length, seconds.
    pub window_secs: f64,
    /// This process's CPU time in the window (user and system, every thread), ns.
    pub cpu_ns: u64,
    /// Its user time, in clock ticks (`/proc/self/stat`).
    pub user_ticks: u64,
    /// Its system time, in clock ticks.
    pub system_ticks: u64,
    /// The server process's CPU time in the window, in clock ticks.
    pub server_ticks: Option<u64>,
    /// The share of the machine's CPU time (all CPUs) that was busy in the window.
    pub machine_busy: f64,
    /// CPUs of the machine.
    pub cpus: u64,
    /// Events received.
    pub events: u64,
    /// Calls completed.
    pub calls: u64,
    /// Calls that failed.
    pub call_errors: u64,
    /// Latency of the calls, median, µs.
    pub latency_p50_us: u64,
    /// 99th percentile, µs.
    pub latency_p99_us: u64,
    /// Maximum, µs.
    pub latency_max_us: u64,
    /// Events the server said it sent, over the sessions' whole lives.
    pub sent_total: u64,
    /// Events received, over the sessions' whole lives.
    pub received_total: u64,
    /// Events the listeners were told they missed ([`Lagged`](qmp_kit::fanout::Lagged)).
    pub lagged_total: u64,
    /// Events neither received nor counted as missed: lost without a lag count.
    pub unexplained: u64,
    /// Events received or counted beyond what the server sent, or out of order.
    pub surplus: u64,
    /// Sessions whose counts did not add up, or whose server count could not be had.
    pub sessions_off: u64,
}

impl Measured {
    /// RSS per session, KiB.
    pub fn rss_per_session_kib(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.connected.max(1) as f64
    }

    /// This process's CPU time as a share of one CPU over the window.
    pub fn cpu_share(&self) -> f64 {
        self.cpu_ns as f64 / 1e9 / self.window_secs
    }

    /// The CPU time of everything else on the machine (neither this process nor the
    /// server), in CPUs, over the window.
    pub fn others(&self) -> Option<f64> {
        self.server_share()
            .map(|s| (self.machine_busy * self.cpus as f64 - self.cpu_share() - s).max(0.0))
    }

    /// The server process's CPU time as a share of one CPU over the window.
    pub fn server_share(&self) -> Option<f64> {
        self.server_ticks
            .map(|t| t as f64 / clock_ticks_per_sec() as f64 / self.window_secs)
    }
}

/// The kernel's `USER_HZ`: clock ticks of `/proc/*/stat` per second (100 on Linux).
pub fn clock_ticks_per_sec() -> u64 {
    100
}

/// Phases of a run, seen by the caller tasks.
const OPENING: u8 = 0;
const MEASURING: u8 = 1;
const DONE: u8 = 2;

/// Counts shared by every session of a process.
#[derive(Debug)]
struct Counters {
    phase: AtomicU8,
    events: AtomicU64,
    calls: AtomicU64,
    call_errors: AtomicU64,
    /// Latencies of the calls completed in the window, µs.
    latencies: Mutex<Vec<u32>>,
}

impl Counters {
    fn new(expected_calls: usize) -> Arc<Self> {
        Arc::new(Counters {
            phase: AtomicU8::new(OPENING),
            events: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            call_errors: AtomicU64::new(0),
            latencies: Mutex::new(Vec::with_capacity(expected_calls)),
        })
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    fn called(&self, ok: bool, took: Duration) {
        if !ok {
            self.call_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.phase() == MEASURING {
            let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
            self.latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(us);
        }
    }
}

/// What one listener saw over its session's life.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    received: u64,
    lagged: u64,
    /// Events missing between two received ones (by their numbers).
    skipped: u64,
    /// Events whose number was not above the previous one's, or that did not decode.
    disordered: u64,
    /// The number the next event should have.
    next: u64,
}

impl Tally {
    /// An event was received, numbered `n` (`None`: its data did not decode).
    fn event(&mut self, n: Option<u64>, counters: &Counters) {
        self.received += 1;
        counters.events.fetch_add(1, Ordering::Relaxed);
        match n {
            Some(n) if n >= self.next => {
                self.skipped += n - self.next;
                self.next = n + 1;
            }
            _ => self.disordered += 1,
        }
    }
}

/// The data of an [`EVENT`].
#[derive(Debug, Deserialize)]
struct Tick {
    n: u64,
}

/// The reply to [`STOP`].
#[derive(Debug, Deserialize)]
struct Sent {
    sent: u64,
}

/// A session's listener: counts what it receives until the session ends.
async fn listen(mut events: EventStream, counters: Arc<Counters>) -> Tally {
    let mut tally = Tally::default();
    while let Some(item) = events.recv().await {
        match item {
            Ok(event) => tally.event(event.data_as::<Tick>().ok().map(|t| t.n), &counters),
            Err(lagged) => tally.lagged += lagged.missed,
        }
    }
    tally
}

/// How a runtime sleeps.
trait Clock {
    fn sleep_until(at: Instant) -> impl Future<Output = ()> + Send;
}

struct TokioClock;

impl Clock for TokioClock {
    fn sleep_until(at: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at))
    }
}

struct AsyncIoClock;

impl Clock for AsyncIoClock {
    async fn sleep_until(at: Instant) {
        async_io::Timer::at(at).await;
    }
}

/// A session's caller: `query-status` every [`CALL_PERIOD`] from `first`, until the window
/// ends.
async fn caller<R: Runtime, C: Clock>(qmp: Handle<R>, first: Instant, counters: Arc<Counters>) {
    let mut at = first;
    loop {
        C::sleep_until(at).await;
        if counters.phase() == DONE {
            return;
        }
        let start = Instant::now();
        let ok = qmp.call(QueryStatus::new()).await.is_ok();
        counters.called(ok, start.elapsed());
        // On time, or from now if the call (or the runtime) was late by a whole period.
        at = (at + CALL_PERIOD).max(Instant::now());
    }
}

/// A session's listener queue.
fn subscribe<R: Runtime>(qmp: &Handle<R>) -> EventStream {
    qmp.subscribe(EventFilter::name(EVENT).capacity(LISTENER_CAPACITY))
}

/// Asks the server of every session to start its events: every [`START`] is issued at
/// once, then their replies are awaited. Returns the first error.
async fn start_events<'a, R: Runtime>(
    handles: impl Iterator<Item = &'a Handle<R>>,
) -> Result<(), Error> {
    let starts: Vec<_> = handles
        .map(|qmp| qmp.execute::<serde::de::IgnoredAny, _>(START, &()))
        .collect();
    let mut first_error = Ok(());
    for start in starts {
        if let Err(e) = start.await {
            if first_error.is_ok() {
                first_error = Err(e);
            }
        }
    }
    first_error
}

/// When the `index`th session makes its first call.
fn first_call(index: usize) -> Instant {
    Instant::now() + CALL_PERIOD.mul_f64(spread(index as u64))
}

/// Readings at one end of the window.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    cpu_ns: u64,
    user_ticks: u64,
    system_ticks: u64,
    server_ticks: Option<u64>,
    machine: (u64, u64),
    events: u64,
    calls: u64,
    call_errors: u64,
}

impl Snapshot {
    fn take(counters: &Counters, server: Option<u32>) -> Snapshot {
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let (user_ticks, system_ticks) = proc_times("self").unwrap_or((0, 0));
        Snapshot {
            at: Instant::now(),
            cpu_ns: cpu.tv_sec as u64 * 1_000_000_000 + cpu.tv_nsec as u64,
            user_ticks,
            system_ticks,
            server_ticks: server
                .and_then(|pid| proc_times(&pid.to_string()))
                .map(|(u, s)| u + s),
            machine: machine_times(),
            events: counters.events.load(Ordering::Relaxed),
            calls: counters.calls.load(Ordering::Relaxed),
            call_errors: counters.call_errors.load(Ordering::Relaxed),
        }
    }
}

/// The user and system time of process `pid` (or `self`), in clock ticks.
fn proc_times(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; the rest starts at field 3.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// The machine's busy and total CPU time, in clock ticks (`/proc/stat`).
fn machine_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user already).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The `p`th quantile of sorted `xs` (0 when empty).
fn quantile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    u64::from(sorted[i])
}

/// What a run gathered, turned into its figures.
struct Gathered {
    connected: usize,
    connect_error: Option<String>,
    connect_secs: f64,
    fd_limit: Option<u64>,
    rss: (u64, u64, u64),
    first: Snapshot,
    last: Snapshot,
    /// Per session: what the server said it sent, and what the listener saw.
    ends: Vec<(Result<u64, String>, Tally)>,
}

impl Gathered {
    fn measured(self, run: &Run, counters: &Counters) -> Measured {
        let (first, last) = (self.first, self.last);
        let mut latencies = std::mem::take(
            &mut *counters
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        latencies.sort_unstable();
        let mut m = Measured {
            sessions: run.sessions as u64,
            connected: self.connected as u64,
            connect_error: self.connect_error,
            connect_secs: self.connect_secs,
            fd_limit: self.fd_limit,
            rss_before_kib: self.rss.0,
            rss_after_kib: self.rss.1,
            rss_end_kib: self.rss.2,
            window_secs: (last.at - first.at).as_secs_f64(),
            cpu_ns: last.cpu_ns - first.cpu_ns,
            user_ticks: last.user_ticks - first.user_ticks,
            system_ticks: last.system_ticks - first.system_ticks,
            server_ticks: last
                .server_ticks
                .zip(first.server_ticks)
                .map(|(l, f)| l - f),
            machine_busy: (last.machine.0 - first.machine.0) as f64
                / (last.machine.1 - first.machine.1).max(1) as f64,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            events: last.events - first.events,
            calls: last.calls - first.calls,
            call_errors: last.call_errors - first.call_errors,
            latency_p50_us: quantile(&latencies, 0.5),
            latency_p99_us: quantile(&latencies, 0.99),
            latency_max_us: latencies.last().map_or(0, |&x| u64::from(x)),
            ..Measured::default()
        };
        m.account(self.ends);
        m
    }
}

impl Measured {
    /// Adds up the sessions' ends: what each server said it sent, and what its listener saw.
    fn account(&mut self, ends: Vec<(Result<u64, String>, Tally)>) {
        for (sent, tally) in ends {
            self.received_total += tally.received;
            self.lagged_total += tally.lagged;
            let Ok(sent) = sent else {
                self.sessions_off += 1;
                continue;
            };
            self.sent_total += sent;
            let accounted = tally.received + tally.lagged;
            // A gap in the numbers that no lag count covers, or fewer events than sent.
            let lost = sent
                .saturating_sub(accounted)
                .max(tally.skipped.saturating_sub(tally.lagged));
            let surplus = accounted.saturating_sub(sent) + tally.disordered;
            self.unexplained += lost;
            self.surplus += surplus;
            if lost > 0 || surplus > 0 {
                self.sessions_off += 1;
            }
        }
    }
}

/// Runs one client process's measurement: opens the sessions, measures, checks the counts.
pub fn run(run: &Run) -> Measured {
    let fd_limit = raise_fd_limit();
    match run.kind {
        Kind::Floor | Kind::Tokio | Kind::TokioMulti => {
            let mut builder = if run.kind != Kind::TokioMulti {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            };
            let runtime = builder.enable_all().build().expect("a tokio runtime");
            if run.kind == Kind::Floor {
                runtime.block_on(floor::run(run, fd_limit))
            } else {
                runtime.block_on(run_tokio(run, fd_limit))
            }
        }
        Kind::Async => {
            let ex = async_executor::Executor::new();
            async_io::block_on(ex.run(run_async(&ex, run, fd_limit)))
        }
    }
}

/// The window, the same for every runner: warm up, read, wait, read.
async fn window<C: Clock>(
    run: &Run,
    counters: &Counters,
    rss_before: u64,
) -> ((u64, u64, u64), Snapshot, Snapshot) {
    C::sleep_until(Instant::now() + WARM_UP).await;
    let rss_after = status_kib("VmRSS");
    let first = Snapshot::take(counters, run.server_pid);
    counters.phase.store(MEASURING, Ordering::Relaxed);
    C::sleep_until(first.at + run.window).await;
    counters.phase.store(DONE, Ordering::Relaxed);
    let last = Snapshot::take(counters, run.server_pid);
    let rss_end = status_kib("VmRSS");
    ((rss_before, rss_after, rss_end), first, last)
}

struct TokioSession {
    qmp: qmp_tokio::Qmp,
    listener: tokio::task::JoinHandle<Tally>,
    caller: Option<tokio::task::JoinHandle<()>>,
}

async fn open_tokio(sock: Arc<Path>, counters: Arc<Counters>) -> Result<TokioSession, Error> {
    let qmp = qmp_tokio::Builder::new().connect_unix(&sock).await?;
    let listener = tokio::spawn(listen(subscribe(&qmp), counters));
    Ok(TokioSession {
        qmp,
        listener,
        caller: None,
    })
}

async fn run_tokio(run: &Run, fd_limit: Option<u64>) -> Measured {
    {
        // Warm the runtime up with one session.
        let qmp = qmp_tokio::Builder::new()
            .connect_unix(&run.sock)
            .await
            .expect("a first session");
        qmp.close();
        qmp.closed().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = status_kib("VmRSS");
    let counters = Counters::new(run.sessions * (run.window.as_secs() as usize + 2));
    let sock: Arc<Path> = Arc::from(run.sock.as_path());
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(run.sessions);
    let mut connect_error = None;
    for wave in (0..run.sessions).step_by(CONNECTING) {
        let opening: Vec<_> = (wave..(wave + CONNECTING).min(run.sessions))
            .map(|_| tokio::spawn(open_tokio(Arc::clone(&sock), Arc::clone(&counters))))
            .collect();
        for task in opening {
            match task.await.expect("a session opening task") {
                Ok(session) => sessions.push(session),
                Err(e) => {
                    connect_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if connect_error.is_some() {
            break;
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Every session is open: start the events and the callers.
    if run.mode.events() {
        if let Err(e) = start_events(sessions.iter().map(|s| &s.qmp)).await {
            connect_error.get_or_insert_with(|| e.to_string());
        }
    }
    if run.mode.calls() {
        for (i, s) in sessions.iter_mut().enumerate() {
            s.caller = Some(tokio::spawn(caller::<_, TokioClock>(
                s.qmp.clone(),
                first_call(i),
                Arc::clone(&counters),
            )));
        }
    }
    let (rss, first, last) = window::<TokioClock>(run, &counters, rss_before).await;
    for s in &sessions {
        if let Some(caller) = &s.caller {
            caller.abort();
        }
    }
    // Every STOP is issued here, at once; their replies come in any order.
    let stops: Vec<_> = sessions
        .iter()
        .map(|s| s.qmp.execute::<Sent, _>(STOP, &()))
        .collect();
    let mut sent = Vec::with_capacity(stops.len());
    for stop in stops {
        sent.push(stop.await.map(|s| s.sent).map_err(|e| e.to_string()));
    }
    for s in &sessions {
        s.qmp.close();
    }
    let mut ends = Vec::with_capacity(sessions.len());
    for (s, sent) in sessions.into_iter().zip(sent) {
        ends.push((sent, s.listener.await.expect("a listener task")));
    }
    Gathered {
        connected: ends.len(),
        connect_error,
        connect_secs,
        fd_limit,
        rss,
        first,
        last,
        ends,
    }
    .measured(run, &counters)
}

struct AsyncSession {
    qmp: qmp_async::Qmp,
    driver: async_executor::Task<qmp_async::DisconnectReason>,
    listener: async_executor::Task<Tally>,
    caller: Option<async_executor::Task<()>>,
}

async fn run_async(
    ex: &async_executor::Executor<'static>,
    run: &Run,
    fd_limit: Option<u64>,
) -> Measured {
    {
        let (qmp, driver) = qmp_async::Builder::new()
            .connect_unix(&run.sock)
            .await
            .expect("a first session");
        let driver = ex.spawn(driver);
        qmp.close();
        driver.await;
    }
    async_io::Timer::after(Duration::from_millis(100)).await;
    let rss_before = status_kib("VmRSS");
    let counters = Counters::new(run.sessions * (run.window.as_secs() as usize + 2));
    let sock: Arc<Path> = Arc::from(run.sock.as_path());
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(run.sessions);
    let mut connect_error = None;
    for wave in (0..run.sessions).step_by(CONNECTING) {
        let connecting: Vec<_> = (wave..(wave + CONNECTING).min(run.sessions))
            .map(|_| {
                let sock = Arc::clone(&sock);
                ex.spawn(async move { qmp_async::Builder::new().connect_unix(&sock).await })
            })
            .collect();
        for task in connecting {
            match task.await {
                Ok((qmp, driver)) => {
                    let driver = ex.spawn(driver);
                    let listener = ex.spawn(listen(subscribe(&qmp), Arc::clone(&counters)));
                    sessions.push(AsyncSession {
                        qmp,
                        driver,
                        listener,
                        caller: None,
                    });
                }
                Err(e) => {
                    connect_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if connect_error.is_some() {
            break;
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    if run.mode.events() {
        if let Err(e) = start_events(sessions.iter().map(|s| &s.qmp)).await {
            connect_error.get_or_insert_with(|| e.to_string());
        }
    }
    if run.mode.calls() {
        for (i, s) in sessions.iter_mut().enumerate() {
            s.caller = Some(ex.spawn(caller::<_, AsyncIoClock>(
                s.qmp.clone(),
                first_call(i),
                Arc::clone(&counters),
            )));
        }
    }
    let (rss, first, last) = window::<AsyncIoClock>(run, &counters, rss_before).await;
    let mut drivers = Vec::with_capacity(sessions.len());
    let mut listeners = Vec::with_capacity(sessions.len());
    let stops: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            // Dropping a task cancels it.
            drop(s.caller);
            drivers.push(s.driver);
            listeners.push(s.listener);
            let stop = s.qmp.execute::<Sent, _>(STOP, &());
            (s.qmp, stop)
        })
        .collect();
    let mut sent = Vec::with_capacity(stops.len());
    let mut handles = Vec::with_capacity(stops.len());
    for (qmp, stop) in stops {
        sent.push(stop.await.map(|s| s.sent).map_err(|e| e.to_string()));
        handles.push(qmp);
    }
    for qmp in &handles {
        qmp.close();
    }
    let mut ends = Vec::with_capacity(listeners.len());
    for (listener, sent) in listeners.into_iter().zip(sent) {
        ends.push((sent, listener.await));
    }
    for driver in drivers {
        driver.await;
    }
    Gathered {
        connected: ends.len(),
        connect_error,
        connect_secs,
        fd_limit,
        rss,
        first,
        last,
        ends,
    }
    .measured(run, &counters)
}

/// The floor: one task per session that owns its socket, on a current-thread tokio runtime.
/// What it does is what the sessions of an adapter do (negotiate, count the numbered
/// events, one `query-status` a second, [`STOP`] at the end), without an engine: lines are
/// found by their `\r\n`, events and replies told apart by a few bytes, and only the
/// numbers it counts are parsed. The sessions are opened, started and stopped through one
/// `watch` channel.
mod floor {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    use tokio::sync::{oneshot, watch};

    /// Bytes per read, as the adapters' first read buffer.
    const READ_CHUNK: usize = 4096;

    /// What the sessions are told to do.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Control {
        Wait,
        Go,
        Stop,
    }

    enum Wake {
        Read(std::io::Result<usize>),
        Call,
        Control(bool),
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// The number after `key` in `line`.
    pub(super) fn number_after(line: &[u8], key: &[u8]) -> Option<u64> {
        let at = find(line, key)? + key.len();
        let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&line[at..at + digits])
            .ok()?
            .parse()
            .ok()
    }

    /// Reads until `pending` holds a line, and drops it.
    async fn skip_line(stream: &mut UnixStream, pending: &mut Vec<u8>) -> std::io::Result<()> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(end) = find(pending, b"\r\n") {
                pending.drain(..end + 2);
                return Ok(());
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Connects and negotiates.
    async fn open(sock: &Path) -> std::io::Result<(UnixStream, Vec<u8>)> {
        let mut stream = UnixStream::connect(sock).await?;
        let mut pending = Vec::new();
        skip_line(&mut stream, &mut pending).await?;
        stream
            .write_all(br#"{"execute":"qmp_capabilities"}"#)
            .await?;
        skip_line(&mut stream, &mut pending).await?;
        Ok((stream, pending))
    }

    /// One session: says on `ready` whether it opened, then runs as `control` says, and
    /// returns what the server said it sent and what it received.
    async fn session(
        sock: Arc<Path>,
        index: usize,
        mode: Mode,
        counters: Arc<Counters>,
        mut control: watch::Receiver<Control>,
        ready: oneshot::Sender<Result<(), String>>,
    ) -> (Result<u64, String>, Tally) {
        let mut tally = Tally::default();
        let (mut stream, mut pending) = match open(&sock).await {
            Ok(opened) => {
                let _ = ready.send(Ok(()));
                opened
            }
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return (Err(e.to_string()), tally);
            }
        };
        let gone = |what: &str, tally: Tally| (Err(format!("the session ended: {what}")), tally);
        if control.wait_for(|c| *c != Control::Wait).await.is_err() {
            return gone("no control", tally);
        }
        if mode.events()
            && stream
                .write_all(format!(r#"{{"execute":"{START}","id":"start"}}"#).as_bytes())
                .await
                .is_err()
        {
            return gone("cannot write", tally);
        }
        let mut next_call = mode.calls().then(|| first_call(index));
        let mut outstanding: Option<Instant> = None;
        let mut stopping = *control.borrow() == Control::Stop;
        let mut buf = vec![0u8; READ_CHUNK];
        let call = br#"{"execute":"query-status","id":1}"#;
        loop {
            while let Some(end) = find(&pending, b"\r\n") {
                let line = &pending[..end];
                if find(line, br#""event": ""#).is_some() {
                    tally.event(number_after(line, br#""n": "#), &counters);
                } else if find(line, br#""id": "stop""#).is_some() {
                    let sent = number_after(line, br#""sent": "#);
                    return (
                        sent.ok_or_else(|| "no count in the reply".to_owned()),
                        tally,
                    );
                } else if find(line, br#""id": "start""#).is_some() {
                } else if let Some(start) = outstanding.take() {
                    counters.called(find(line, br#""error""#).is_none(), start.elapsed());
                }
                pending.drain(..end + 2);
            }
            let calling = !stopping && outstanding.is_none() && next_call.is_some();
            let at = next_call.unwrap_or_else(Instant::now);
            let wake = tokio::select! {
                r = stream.read(&mut buf) => Wake::Read(r),
                () = TokioClock::sleep_until(at), if calling => Wake::Call,
                r = control.changed(), if !stopping => Wake::Control(r.is_ok()),
            };
            match wake {
                Wake::Read(Ok(0) | Err(_)) => {
                    return gone("the server closed the connection", tally)
                }
                Wake::Read(Ok(n)) => pending.extend_from_slice(&buf[..n]),
                Wake::Call => {
                    if counters.phase() == DONE {
                        next_call = None;
                        continue;
                    }
                    if stream.write_all(call).await.is_err() {
                        return gone("cannot write", tally);
                    }
                    outstanding = Some(Instant::now());
                    next_call = Some((at + CALL_PERIOD).max(Instant::now()));
                }
                Wake::Control(alive) => {
                    if !alive || *control.borrow() == Control::Stop {
                        stopping = true;
                        let stop = format!(r#"{{"execute":"{STOP}","id":"stop"}}"#);
                        if stream.write_all(stop.as_bytes()).await.is_err() {
                            return gone("cannot write", tally);
                        }
                    }
                }
            }
        }
    }

    /// The floor's run, as [`run_tokio`](super::run_tokio) does it for qmp-tokio.
    pub(super) async fn run(run: &Run, fd_limit: Option<u64>) -> Measured {
        // Warm the runtime up with one connection.
        drop(open(&run.sock).await.expect("a first session"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rss_before = status_kib("VmRSS");
        let counters = Counters::new(run.sessions * (run.window.as_secs() as usize + 2));
        let sock: Arc<Path> = Arc::from(run.sock.as_path());
        let (control, watching) = watch::channel(Control::Wait);
        let started = Instant::now();
        let mut sessions = Vec::with_capacity(run.sessions);
        let mut connect_error = None;
        for wave in (0..run.sessions).step_by(CONNECTING) {
            let opening: Vec<_> = (wave..(wave + CONNECTING).min(run.sessions))
                .map(|i| {
                    let (ready, opened) = oneshot::channel();
                    let task = tokio::spawn(session(
                        Arc::clone(&sock),
                        i,
                        run.mode,
                        Arc::clone(&counters),
                        watching.clone(),
                        ready,
                    ));
                    (opened, task)
                })
                .collect();
            for (opened, task) in opening {
                match opened.await {
                    Ok(Ok(())) => sessions.push(task),
                    Ok(Err(e)) => {
                        connect_error.get_or_insert(e);
                    }
                    Err(_) => {
                        connect_error.get_or_insert_with(|| "a session task failed".to_owned());
                    }
                }
            }
            if connect_error.is_some() {
                break;
            }
        }
        let connect_secs = started.elapsed().as_secs_f64();
        drop(watching);
        let _ = control.send(Control::Go);
        let (rss, first, last) = window::<TokioClock>(run, &counters, rss_before).await;
        let _ = control.send(Control::Stop);
        let mut ends = Vec::with_capacity(sessions.len());
        for task in sessions {
            ends.push(task.await.expect("a session task"));
        }
        Gathered {
            connected: ends.len(),
            connect_error,
            connect_secs,
            fd_limit,
            rss,
            first,
            last,
            ends,
        }
        .measured(run, &counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener's tally after `numbers` were received and `lagged` reported.
    fn tally(numbers: &[u64], lagged: u64) -> Tally {
        let counters = Counters::new(0);
        let mut t = Tally {
            lagged,
            ..Tally::default()
        };
        for &n in numbers {
            t.event(Some(n), &counters);
        }
        t
    }

    fn account(ends: Vec<(Result<u64, String>, Tally)>) -> Measured {
        let mut m = Measured::default();
        m.account(ends);
        m
    }

    #[test]
    fn every_event_received_adds_up() {
        let m = account(vec![(Ok(5), tally(&[0, 1, 2, 3, 4], 0))]);
        assert_eq!((m.sent_total, m.received_total), (5, 5));
        assert_eq!((m.unexplained, m.surplus, m.sessions_off), (0, 0, 0));
    }

    #[test]
    fn a_gap_covered_by_a_lag_count_is_no_loss() {
        let m = account(vec![(Ok(5), tally(&[0, 1, 4], 2))]);
        assert_eq!((m.lagged_total, m.unexplained, m.sessions_off), (2, 0, 0));
    }

    #[test]
    fn a_gap_without_a_lag_count_is_a_loss() {
        let m = account(vec![(Ok(5), tally(&[0, 1, 3, 4], 0))]);
        assert_eq!((m.unexplained, m.sessions_off), (1, 1));
        // Missing at the end, after the last event received.
        let m = account(vec![(Ok(5), tally(&[0, 1, 2], 0))]);
        assert_eq!(m.unexplained, 2);
    }

    #[test]
    fn a_repeated_event_is_a_surplus() {
        let m = account(vec![(Ok(3), tally(&[0, 1, 1, 2], 0))]);
        assert_eq!((m.unexplained, m.surplus, m.sessions_off), (0, 2, 1));
    }

    #[test]
    fn a_session_without_a_count_is_off() {
        let m = account(vec![
            (Err("the session ended".to_owned()), tally(&[0], 0)),
            (Ok(1), tally(&[0], 0)),
        ]);
        assert_eq!((m.sent_total, m.received_total, m.sessions_off), (1, 2, 1));
    }

    #[test]
    fn the_floor_finds_its_numbers() {
        let reply = br#"{"return": {"sent": 1234}, "id": "stop"}"#;
        assert_eq!(floor::number_after(reply, br#""sent": "#), Some(1234));
        let event = br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "TICK", "data": {"n": 7}}"#;
        assert_eq!(floor::number_after(event, br#""n": "#), Some(7));
        assert_eq!(floor::number_after(event, br#""sent": "#), None);
    }

    #[test]
    fn spread_stays_in_the_period() {
        let points: Vec<f64> = (0..1000).map(spread).collect();
        assert!(points.iter().all(|&x| (0.0..1.0).contains(&x)));
        // Evenly: every tenth of the period holds about a tenth of the sessions.
        for tenth in 0..10 {
            let lo = f64::from(tenth) / 10.0;
            let n = points.iter().filter(|&&x| x >= lo && x < lo + 0.1).count();
            assert!((90..=110).contains(&n), "{n} in [{lo}, {})", lo + 0.1);
        }
    }

    #[test]
    fn process_times_are_read() {
        assert!(proc_times("self").is_some());
        let (busy, total) = machine_times();
        assert!(busy <= total && total > 0);
    }
}
