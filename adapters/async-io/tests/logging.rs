//! Traffic, events and state changes go to the `log` facade under target `qmp_async` (its
//! own test binary: a logger is process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{under_smol, FakePeer, Spawner};
use qmp_proto::server::FakeQemu;
use qmp_testkit::traces::LogRecorder;
use serde_json::Value;

static RECORDER: LogRecorder = LogRecorder::new("qmp_async");

async fn traffic_is_logged(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (qmp, driver) = peer.connect(&sp).await;
    let _: Value = qmp.execute("query-status", &()).await.unwrap();
    let _: Value = qmp.execute("stop", &()).await.unwrap();
    qmp.close();
    driver.await;
    peer.finish();

    let lines = RECORDER.lines();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    for expected in [
        "TRACE <- {\"QMP\": {\"version\"",
        "TRACE -> {\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}",
        "TRACE -> {\"execute\":\"query-status\",\"id\":",
        "TRACE <- {\"return\": {\"status\": \"running\"",
        "TRACE <- {\"timestamp\":",
        "DEBUG event STOP",
        "DEBUG connection connecting -> running",
        "DEBUG negotiated with QEMU 10.0.2 (oob: true)",
        "DEBUG session ended: closed locally",
    ] {
        assert!(
            has(expected),
            "no line starting with {expected:?} in {lines:#?}"
        );
    }
}

#[test]
fn every_message_is_logged_at_trace_level() {
    RECORDER.install();
    under_smol(traffic_is_logged);
}
