//! Soak: a VM manager's loop against real QEMU that is SIGKILLed and started again every few
//! seconds. Ten commands pipelined at a time, every 10 ms (`stop`/`cont` among them, which
//! cause events), on one reconnecting connection, events taken as they come. No call waits
//! past its timeout (plus the time to open a session), every call is resolved exactly once,
//! and the process's RSS stays flat. Counts and RSS samples are printed.
//!
//! It runs for 8 s per peer by default; `QMP_SOAK_SECS=1800` runs it for 30 minutes:
//!
//! ```sh
//! QMP_SOAK_SECS=1800 cargo test --release -p qmp-blocking --test soak -- --nocapture
//! ```

#![allow(clippy::print_stdout)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Peer;
use qmp_blocking::{Builder, CallOptions, Error, Reconnect};
use qmp_testkit::soak::{self, Counts, Outcome, Restarter, Rss, SLACK, TIMEOUT};
use qmp_testkit::PC_PAUSED;

fn run(mut peer: Peer, name: &str, commands: &[&str]) {
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
    let restarter = Restarter::start(peer);
    let counts = Counts::default();
    let mut events = 0u64;
    let mut rss = Rss::new();
    let end = Instant::now() + soak::soak_time();
    let mut round = 0u64;
    while Instant::now() < end {
        round += 1;
        // Ten pipelined commands; each id is waited for exactly once.
        let mut issued = Vec::new();
        for i in 0..10 {
            let command = commands[(round as usize + i) % commands.len()];
            counts.issued();
            let at = Instant::now();
            match qmp.send(command, &(), CallOptions::new()) {
                Ok(id) => issued.push((command, id, at)),
                failed => counts.resolved(command, Outcome::of(command, &failed), at.elapsed()),
            }
        }
        let mut seen = HashSet::new();
        for (command, id, at) in issued {
            assert!(seen.insert(id), "{id} issued twice");
            let outcome = Outcome::of(command, &qmp.wait(id));
            counts.resolved(command, outcome, at.elapsed());
            // Resolved exactly once: its result is gone.
            assert!(matches!(qmp.wait(id), Err(Error::UnknownCommand(_))));
        }
        events += qmp.drain_events().len() as u64;
        rss.tick();
        std::thread::sleep(Duration::from_millis(10));
    }
    rss.sample();
    let (mut peer, restarts) = restarter.stop();
    counts.assert_all_resolved();
    println!(
        "soak {name} (qmp-blocking): {:?}, {round} rounds, {} sessions, {restarts} restarts, {counts:?}, {events} events, RSS (s, KiB): {:?}",
        soak::soak_time(),
        qmp.session(),
        rss.samples
    );
    assert!(restarts >= 1 && qmp.session() >= 2, "never reconnected");
    rss.assert_flat();
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
    let Some(peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    run(peer, "qemu-system-x86_64", soak::SYSTEM_COMMANDS);
}

#[test]
fn soak_qemu_storage_daemon() {
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    run(peer, "qemu-storage-daemon", soak::STORAGE_DAEMON_COMMANDS);
}
