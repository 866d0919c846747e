//! Soak: a VM manager's loop against real QEMU that is SIGKILLed and started again every few
//! seconds: ten concurrent callers (each pausing 5 ms between calls) and a listener across
//! sessions on one reconnecting connection. No call waits past its timeout (plus the time to
//! open a session), every call is resolved exactly once, and the process's RSS stays flat.
//! Counts and RSS samples are printed.
//!
//! It runs for 8 s per peer by default; `QMP_SOAK_SECS=1800` runs it for 30 minutes:
//!
//! ```sh
//! QMP_SOAK_SECS=1800 cargo test --release -p qmp-tokio --test soak -- --nocapture
//! ```

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, connect, Peer};
use qmp_tokio::{CallOptions, Error, EventFilter, Reconnect, SessionItem};

const TIMEOUT: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(8);
/// Each caller's pause between calls: a manager's pace, not a benchmark's.
const PACE: Duration = Duration::from_millis(5);

fn soak_time() -> Duration {
    let secs = std::env::var("QMP_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    Duration::from_secs(secs)
}

/// The resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, Default)]
struct Counts {
    issued: AtomicU64,
    ok: AtomicU64,
    qmp_errors: AtomicU64,
    disconnected: AtomicU64,
    timeouts: AtomicU64,
}

async fn soak(peer: Peer, name: &'static str, commands: &'static [&'static str]) {
    let policy = Reconnect::new()
        .initial(Duration::from_millis(20))
        .max(Duration::from_millis(500))
        .calls_wait(true);
    let qmp = connect(&peer, &builder().reconnect(policy)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(AtomicU64::new(0));
    let restarter = {
        let (stop, restarts) = (Arc::clone(&stop), Arc::clone(&restarts));
        let mut peer = peer;
        tokio::task::spawn_blocking(move || {
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
    let counts = Arc::new(Counts::default());
    // The listener: events and session markers, across sessions.
    let mut across = qmp.subscribe_across_sessions(EventFilter::all().capacity(4096));
    let listener = tokio::spawn(async move {
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
    });
    // Ten callers.
    let end = Instant::now() + soak_time();
    let callers: Vec<_> = (0..10)
        .map(|i| {
            let (qmp, counts) = (qmp.clone(), Arc::clone(&counts));
            tokio::spawn(async move {
                let mut n = i;
                while Instant::now() < end {
                    n += 1;
                    let command = commands[n % commands.len()];
                    counts.issued.fetch_add(1, Ordering::Relaxed);
                    let at = Instant::now();
                    let result = qmp
                        .execute_with::<serde_json::Value, _>(
                            command,
                            &(),
                            CallOptions::new().timeout(TIMEOUT),
                        )
                        .await;
                    let waited = at.elapsed();
                    assert!(waited <= TIMEOUT + SLACK, "{command} waited {waited:?}");
                    let counter = match result {
                        Ok(_) => &counts.ok,
                        Err(Error::Qmp(_)) => &counts.qmp_errors,
                        Err(Error::Disconnected(_)) => &counts.disconnected,
                        Err(Error::Timeout) => &counts.timeouts,
                        Err(e) => panic!("{command}: {e:?}"),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(PACE).await;
                }
            })
        })
        .collect();
    let mut samples = vec![(0u64, rss_kib())];
    let started = Instant::now();
    let mut callers_done = false;
    while !callers_done {
        tokio::time::sleep(soak_time() / 8).await;
        samples.push((started.elapsed().as_secs(), rss_kib()));
        callers_done = callers.iter().all(|c| c.is_finished());
    }
    for caller in callers {
        caller.await.expect("a caller panicked");
    }
    stop.store(true, Ordering::Relaxed);
    let mut peer = restarter.await.unwrap();
    // Every call resolved exactly once: as many outcomes as calls.
    let resolved = counts.ok.load(Ordering::Relaxed)
        + counts.qmp_errors.load(Ordering::Relaxed)
        + counts.disconnected.load(Ordering::Relaxed)
        + counts.timeouts.load(Ordering::Relaxed);
    assert_eq!(resolved, counts.issued.load(Ordering::Relaxed));
    let restarts = restarts.load(Ordering::Relaxed);
    // The last QEMU answers (after a reconnection, if it was just restarted), then leaves.
    let long = CallOptions::new().timeout(TIMEOUT + SLACK);
    qmp.execute_with::<serde_json::Value, _>("query-version", &(), long)
        .await
        .expect("the last QEMU");
    qmp.quit().await.expect("quit");
    let _ = peer.wait_exit(SLACK);
    qmp.close();
    let (events, sessions, lagged) = listener.await.unwrap();
    println!(
        "soak {name} (qmp-tokio): {:?}, {counts:?}, {restarts} restarts, {sessions} new sessions seen, {events} events, {lagged} lagged, RSS (s, KiB): {samples:?}",
        soak_time()
    );
    assert!(counts.ok.load(Ordering::Relaxed) > 0);
    assert!(restarts >= 1 && sessions >= 1, "never reconnected");
    let first = samples.get(1).map_or(samples[0].1, |s| s.1);
    let last = samples.last().map_or(first, |s| s.1);
    assert!(
        last < first + 4096,
        "RSS grew from {first} to {last} KiB: {samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_qemu_system() {
    let Some(peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    soak(
        peer,
        "qemu-system-x86_64",
        &[
            "query-status",
            "cont",
            "stop",
            "query-version",
            "query-name",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_qemu_storage_daemon() {
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    soak(
        peer,
        "qemu-storage-daemon",
        &[
            "query-version",
            "query-block-jobs",
            "query-named-block-nodes",
        ],
    )
    .await;
}
