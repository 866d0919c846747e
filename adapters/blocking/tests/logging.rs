//! Every message in and out is logged at trace level (its own test binary: the logger is
//! process-wide).

mod common;

use common::FakePeer;
use qmp_testkit::traces::LogRecorder;
use serde_json::Value;

/// The greeting of the fake QEMU, as it writes it.
const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;

static LOGGER: LogRecorder = LogRecorder::new("qmp_blocking");

#[test]
fn every_message_is_logged_at_trace_level() {
    LOGGER.install();
    let peer = FakePeer::script(
        r#"
        -> {"execute": "query-status"}
        <- {"event": "STOP"}
        <- {"return": {"status": "paused"}}
        "#,
    );
    let mut qmp = peer.connect();
    let _: Value = qmp.execute("query-status", &()).unwrap();
    drop(qmp);
    peer.assert_played();
    let lines = LOGGER.lines();
    let has = |want: &str| lines.iter().any(|l| l == want);
    assert!(has(&format!("TRACE <- {GREETING}")), "{lines:#?}");
    assert!(has(
        r#"TRACE -> {"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":1}"#
    ));
    assert!(
        has(r#"TRACE -> {"execute":"query-status","id":2}"#),
        "{lines:#?}"
    );
    // As QEMU writes it: the timestamp (the fake's clock) first.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(r#"TRACE <- {"timestamp": {"seconds": "#)
                && l.ends_with(r#"}, "event": "STOP"}"#)),
        "{lines:#?}"
    );
    assert!(has("DEBUG event STOP"), "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("TRACE <- ") && l.contains("\"paused\"")));
}
