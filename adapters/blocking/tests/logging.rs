//! Every message in and out is logged at trace level (its own test binary: the logger is
//! process-wide).

mod common;

use std::sync::Mutex;

use common::scripted;
use qmp_blocking::Builder;
use serde_json::{json, Value};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target() == "qmp_blocking"
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            LINES.lock().expect("log lines").push(line);
        }
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

#[test]
fn every_message_is_logged_at_trace_level() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let (mut qmp, peer) = scripted(&Builder::new(), |mut p| {
        let cmd = p.expect("query-status");
        p.send(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#);
        p.reply(&cmd, json!({"status": "paused"}));
        p.until_eof()
    });
    let _: Value = qmp.execute("query-status", &()).unwrap();
    drop(qmp);
    peer.join().unwrap();
    let lines = LINES.lock().unwrap().clone();
    let has = |want: &str| lines.iter().any(|l| l == want);
    assert!(has(&format!("TRACE <- {}", common::GREETING)), "{lines:#?}");
    assert!(has(
        r#"TRACE -> {"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":1}"#
    ));
    assert!(
        has(r#"TRACE -> {"execute":"query-status","id":2}"#),
        "{lines:#?}"
    );
    assert!(has(
        r#"TRACE <- {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#
    ));
    assert!(has("DEBUG event STOP"), "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("TRACE <- ") && l.contains("\"paused\"")));
}
