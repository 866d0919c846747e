//! Soak: a VM manager's loop against real QEMU that is SIGKILLed and started again every few
//! seconds. Ten commands pipelined at a time, every 10 ms (`stop`/`cont` among them, which
//! cause events), on one reconnecting connection, events taken as they come. No call waits past its timeout (plus
//! the time to open a session), every call is resolved exactly once, and the process's RSS
//! stays flat. Counts and RSS samples are printed.
//!
//! It runs for 8 s per peer by default; `QMP_SOAK_SECS=1800` runs it for 30 minutes:
//!
//! ```sh
//! QMP_SOAK_SECS=1800 cargo test --release -p qmp-blocking --test soak -- --nocapture
//! ```

#![allow(clippy::print_stdout)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Peer;
use qmp_blocking::{Builder, CallOptions, Error, Reconnect};

/// How long each command may take, and how much longer a call may wait: opening the next
/// session after QEMU is restarted (its start, the greeting, negotiation).
const TIMEOUT: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(8);
/// The pause between rounds: a manager's pace, not a benchmark's.
const PACE: Duration = Duration::from_millis(10);

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
    ok: u64,
    qmp_errors: u64,
    disconnected: u64,
    timeouts: u64,
    events: u64,
}

fn soak(peer: Peer, name: &str, commands: &[&str]) {
    let restarts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut peer = peer;
    let mut qmp = peer.connect_with(
        &Builder::new()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .reconnect(
                Reconnect::new()
                    .initial(Duration::from_millis(20))
                    .max(Duration::from_millis(500))
                    .calls_wait(true),
            ),
    );
    // QEMU killed and started again every 1 to 3 s.
    let restarter = {
        let (restarts, stop) = (Arc::clone(&restarts), Arc::clone(&stop));
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

    let mut counts = Counts::default();
    let mut samples = Vec::new();
    let started = Instant::now();
    let end = started + soak_time();
    let mut next_sample = started;
    let mut round = 0u64;
    while Instant::now() < end {
        round += 1;
        // Ten pipelined commands; each id is waited for exactly once.
        let mut issued = Vec::new();
        for i in 0..10 {
            let name = commands[(round as usize + i) % commands.len()];
            let at = Instant::now();
            match qmp.send(name, &(), CallOptions::new()) {
                Ok(id) => issued.push((id, at)),
                Err(Error::Disconnected(_)) => counts.disconnected += 1,
                Err(Error::Timeout) => counts.timeouts += 1,
                Err(e) => panic!("{name}: {e:?}"),
            }
        }
        let mut seen = HashSet::new();
        for (id, at) in issued {
            assert!(seen.insert(id), "{id} issued twice");
            let result = qmp.wait(id);
            let waited = at.elapsed();
            assert!(
                waited <= TIMEOUT + SLACK,
                "{id} waited {waited:?}, past its timeout"
            );
            match result {
                Ok(_) => counts.ok += 1,
                Err(Error::Qmp(_)) => counts.qmp_errors += 1,
                Err(Error::Disconnected(_)) => counts.disconnected += 1,
                Err(Error::Timeout) => counts.timeouts += 1,
                Err(e) => panic!("{id}: {e:?}"),
            }
            // Resolved exactly once: its result is gone.
            assert!(matches!(qmp.wait(id), Err(Error::UnknownCommand(_))));
        }
        counts.events += qmp.drain_events().len() as u64;
        std::thread::sleep(PACE);
        if Instant::now() >= next_sample {
            samples.push((started.elapsed().as_secs(), rss_kib()));
            next_sample += soak_time() / 8;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut peer = restarter.join().expect("the restarter");
    samples.push((started.elapsed().as_secs(), rss_kib()));
    let restarts = restarts.load(Ordering::Relaxed);
    println!(
        "soak {name}: {:?}, {round} rounds, {} sessions, {restarts} restarts, {counts:?}, RSS (s, KiB): {samples:?}",
        soak_time(),
        qmp.session()
    );
    assert!(counts.ok > 0);
    assert!(restarts >= 1 && qmp.session() >= 2, "never reconnected");
    // RSS flat: after the first sample, it grows by less than 4 MiB in all.
    let first = samples.get(1).map_or(samples[0].1, |s| s.1);
    let last = samples.last().map_or(first, |s| s.1);
    assert!(
        last < first + 4096,
        "RSS grew from {first} to {last} KiB: {samples:?}"
    );
    // The last QEMU still answers, then leaves.
    let _: serde_json::Value = qmp
        .execute_with(
            "query-version",
            &(),
            CallOptions::new().timeout(TIMEOUT + SLACK),
        )
        .expect("the last QEMU");
    peer.quit(&mut qmp);
}

#[test]
fn soak_qemu_system() {
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
    );
}

#[test]
fn soak_qemu_storage_daemon() {
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
    );
}
