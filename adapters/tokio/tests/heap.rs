//! Nothing grows with the number of sessions: a reconnecting connection through 1,000
//! sessions (each negotiated, one call answered, then closed by the server), with a listener
//! across sessions and the status stream read, holds no more heap after the last session than
//! after the 100th (its own test binary: it counts every allocation of the process).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::alloc::System;
use std::time::Duration;

use common::within;
use qmp_testkit::raw::{reply, RawPeer};
use qmp_tokio::{Builder, EventFilter, Reconnect, Status};
use serde_json::Value;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SESSIONS: usize = 1000;
const WARM: usize = 100;

/// Bytes allocated and not freed since `region` started. (stats_alloc already counts a
/// reallocation's growth as allocated and its shrinking as freed; its `bytes_reallocated`
/// is the same change again, not to be added.)
fn live(region: &Region<'_, System>) -> i64 {
    let s = region.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

#[test]
fn heap_stays_flat_across_a_thousand_sessions() {
    // One after the other: the count is the process's.
    for threaded in [false, true] {
        let rt = common::runtime(threaded);
        sessions(
            rt,
            if threaded {
                "multi-thread"
            } else {
                "current-thread"
            },
        );
    }
}

fn sessions(rt: tokio::runtime::Runtime, flavour: &str) {
    let peer = RawPeer::serve_many(SESSIONS, |conn| {
        conn.greet_and_negotiate();
        if let Some(c) = conn.recv() {
            conn.send(
                "{\"event\": \"TICK\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n",
            );
            conn.send(&reply(&c, "{}"));
        }
    });
    let region = Region::new(GLOBAL);
    let (warm, end) = rt.block_on(async {
        let policy = Reconnect::new()
            .initial(Duration::from_millis(1))
            .max(Duration::from_millis(1))
            .calls_wait(true);
        let qmp = within(Builder::new().reconnect(policy).connect_unix(&peer.sock))
            .await
            .unwrap();
        let mut events = qmp.subscribe_across_sessions(EventFilter::all());
        let mut status = qmp.status();
        let mut warm = 0;
        for session in 1..=SESSIONS {
            let _: Value = within(qmp.execute("query-status", &())).await.unwrap();
            // The session's event, then its end.
            while let Some(item) = within(events.recv()).await {
                if matches!(item, qmp_tokio::SessionItem::Event(_)) {
                    break;
                }
            }
            loop {
                match within(status.recv()).await {
                    Some(Status::Disconnected { .. }) => break,
                    Some(_) => {}
                    None => panic!("the status stream ended"),
                }
            }
            if session == WARM {
                warm = live(&region);
            }
        }
        let end = live(&region);
        qmp.close();
        (warm, end)
    });
    drop(rt);
    peer.finish();
    let growth = end - warm;
    println!("{flavour}: live heap after {WARM} sessions: {warm} B, after {SESSIONS}: {end} B");
    assert!(
        growth < 16 * 1024,
        "{flavour}: the heap grew by {growth} B over {} sessions ({} B each)",
        SESSIONS - WARM,
        growth / (SESSIONS - WARM) as i64
    );
}
