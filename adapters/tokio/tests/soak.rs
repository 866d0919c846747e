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

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, connect, Peer};
use qmp_testkit::soak::{self, Counts, Restarter, Rss, SLACK, TIMEOUT};
use qmp_testkit::PC_PAUSED;
use qmp_tokio::{CallOptions, EventFilter, Reconnect};

async fn run(peer: Peer, name: &str, commands: &'static [&'static str]) {
    let policy = Reconnect::new()
        .initial(Duration::from_millis(20))
        .max(Duration::from_millis(500))
        .calls_wait(true);
    let qmp = connect(&peer, &builder().reconnect(policy)).await;
    let restarter = Restarter::start(peer);
    let counts = Arc::new(Counts::default());
    // The listener: events and session markers, across sessions.
    let across = qmp.subscribe_across_sessions(EventFilter::all().capacity(4096));
    let listener = tokio::spawn(soak::listen(across));
    let end = Instant::now() + soak::soak_time();
    let callers: Vec<_> = (0..10)
        .map(|i| {
            let counts = Arc::clone(&counts);
            tokio::spawn(soak::caller(
                qmp.clone(),
                counts,
                commands,
                i,
                end,
                tokio::time::sleep,
            ))
        })
        .collect();
    let mut rss = Rss::new();
    while !callers.iter().all(|c| c.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss.tick();
    }
    for caller in callers {
        caller.await.expect("a caller panicked");
    }
    rss.sample();
    let (mut peer, restarts) = restarter.stop();
    counts.assert_all_resolved();
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
        "soak {name} (qmp-tokio): {:?}, {counts:?}, {restarts} restarts, {sessions} new sessions seen, {events} events, {lagged} lagged, RSS (s, KiB): {:?}",
        soak::soak_time(),
        rss.samples
    );
    assert!(restarts >= 1 && sessions >= 1, "never reconnected");
    rss.assert_flat();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_qemu_system() {
    let Some(peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    run(peer, "qemu-system-x86_64", soak::SYSTEM_COMMANDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_qemu_storage_daemon() {
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    run(peer, "qemu-storage-daemon", soak::STORAGE_DAEMON_COMMANDS).await;
}
