//! Users of `log` keep their output: traffic, events, state changes and diagnostics go to
//! the `log` facade under target `qmp_tokio`, with the connection's label; and only there
//! while no `tracing` subscriber is in effect, so that nothing is said twice (its own test
//! binary: a logger is process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::FakePeer;
use qmp_testkit::traces::{traced_fake, Capture, LogRecorder, SLOW};
use qmp_tokio::{Builder, CallOptions};
use serde_json::Value;

static RECORDER: LogRecorder = LogRecorder::new("qmp_tokio");

/// Connects with the label `vm3`, stops the VM, and lets a command time out so that its
/// late reply is a diagnostic.
async fn session() {
    let peer = FakePeer::serve(traced_fake());
    let qmp = Builder::new()
        .label("vm3")
        .connect_unix(&peer.sock)
        .await
        .unwrap();
    let short = CallOptions::new().timeout(Duration::from_millis(50));
    assert!(qmp
        .execute_with::<Value, _>(SLOW, &(), short)
        .await
        .is_err());
    let _: Value = qmp.execute("stop", &()).await.unwrap();
    qmp.close();
    qmp.closed().await;
    peer.finish();
}

fn run(session: impl std::future::Future<Output = ()>) {
    common::runtime(false).block_on(session);
}

#[test]
fn log_users_keep_their_output_and_tracing_users_get_it_once() {
    RECORDER.install();
    run(session());
    let lines = RECORDER.take();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    for expected in [
        "TRACE [vm3] <- {\"QMP\": {\"version\"",
        "TRACE [vm3] -> {\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}",
        "TRACE [vm3] -> {\"execute\":\"stop\",\"id\":",
        "DEBUG [vm3] event STOP",
        "DEBUG [vm3] connection connecting -> running",
        "DEBUG [vm3] negotiated with QEMU 10.0.2 (oob: true)",
        "WARN [vm3] late reply of command #2, which timed out or was cancelled",
        "DEBUG [vm3] session ended: closed locally",
    ] {
        assert!(
            has(expected),
            "no line starting with {expected:?} in {lines:#?}"
        );
    }

    // With a tracing subscriber in effect (this thread's, and the current-thread runtime
    // runs everything here), the same session goes to it and not to the log.
    let capture = Capture::new();
    let guard = capture.set_default();
    run(session());
    drop(guard);
    let lines = RECORDER.lines();
    assert_eq!(lines, Vec::<String>::new());
    let events = capture.events();
    assert!(
        events.iter().any(|e| e.field("event") == Some("STOP")),
        "{events:#?}"
    );
    let spans = capture.spans();
    assert_eq!(spans[0].field("name"), Some("vm3"), "{spans:#?}");
}
