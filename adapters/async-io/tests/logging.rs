//! Traffic, events and state changes go to the `log` facade under target `qmp_async` (its
//! own test binary: a logger is process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;

use common::{under_smol, FakePeer, Spawner};
use log::{Level, LevelFilter, Log, Metadata, Record};
use qmp_proto::server::FakeQemu;
use serde_json::Value;

/// Every record of the adapter's target, as `LEVEL message`.
struct Recorder(Mutex<Vec<String>>);

impl Log for Recorder {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target() == "qmp_async" && meta.level() <= Level::Trace
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut lines = self.0.lock().unwrap();
            lines.push(format!("{} {}", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

async fn traffic_is_logged(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (qmp, driver) = peer.connect(&sp).await;
    let _: Value = qmp.execute("query-status", &()).await.unwrap();
    let _: Value = qmp.execute("stop", &()).await.unwrap();
    qmp.close();
    driver.await;
    peer.finish();

    let lines = RECORDER.0.lock().unwrap().clone();
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
    log::set_logger(&RECORDER).unwrap();
    log::set_max_level(LevelFilter::Trace);
    under_smol(traffic_is_logged);
}
