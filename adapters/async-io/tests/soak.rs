//! Soak: a VM manager's loop against real QEMU that is SIGKILLed and started again every few
//! seconds: ten concurrent callers (each pausing 5 ms between calls) and a listener across
//! sessions on one reconnecting connection, on smol. No call waits past its timeout (plus
//! the time to open a session), every call is resolved exactly once, and the process's RSS
//! stays flat. Counts and RSS samples are printed.
//!
//! It runs for 8 s per peer by default; `QMP_SOAK_SECS=1800` runs it for 30 minutes:
//!
//! ```sh
//! QMP_SOAK_SECS=1800 cargo test --release -p qmp-async --test soak -- --nocapture
//! ```

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use qmp_async::{Builder, CallOptions, EventFilter, Reconnect};
use qmp_testkit::blocking::Peer;
use qmp_testkit::soak::{self, Counts, Restarter, Rss, SLACK, TIMEOUT};
use qmp_testkit::PC_PAUSED;

async fn run(peer: Peer, name: &str, commands: &'static [&'static str]) {
    let builder = Builder::new().connect_timeout(qmp_testkit::T).reconnect(
        Reconnect::new()
            .initial(Duration::from_millis(20))
            .max(Duration::from_millis(500))
            .calls_wait(true),
    );
    // The socket appears once QEMU is up.
    let deadline = Instant::now() + qmp_testkit::T;
    let (qmp, driver) = loop {
        match builder.connect_unix(&peer.sock).await {
            Ok(connected) => break connected,
            Err(_) if Instant::now() < deadline => {
                smol::Timer::after(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    };
    let driver = smol::spawn(driver);
    let restarter = Restarter::start(peer);
    let counts = Arc::new(Counts::default());
    // The listener: events and session markers, across sessions.
    let across = qmp.subscribe_across_sessions(EventFilter::all().capacity(4096));
    let listener = smol::spawn(soak::listen(across));
    let end = Instant::now() + soak::soak_time();
    let callers: Vec<_> = (0..10)
        .map(|i| {
            let counts = Arc::clone(&counts);
            smol::spawn(soak::caller(
                qmp.clone(),
                counts,
                commands,
                i,
                end,
                |d| async move {
                    smol::Timer::after(d).await;
                },
            ))
        })
        .collect();
    let mut rss = Rss::new();
    while !callers.iter().all(|c| c.is_finished()) {
        smol::Timer::after(Duration::from_millis(100)).await;
        rss.tick();
    }
    for caller in callers {
        caller.await;
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
    driver.await;
    let (events, sessions, lagged) = listener.await;
    println!(
        "soak {name} (qmp-async): {:?}, {counts:?}, {restarts} restarts, {sessions} new sessions seen, {events} events, {lagged} lagged, RSS (s, KiB): {:?}",
        soak::soak_time(),
        rss.samples
    );
    assert!(restarts >= 1 && sessions >= 1, "never reconnected");
    rss.assert_flat();
}

#[test]
fn soak_qemu_system() {
    let Some(peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    smol::block_on(run(peer, "qemu-system-x86_64", soak::SYSTEM_COMMANDS));
}

#[test]
fn soak_qemu_storage_daemon() {
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    smol::block_on(run(
        peer,
        "qemu-storage-daemon",
        soak::STORAGE_DAEMON_COMMANDS,
    ));
}
