//! The one call API against the fake QEMU on a socket pair: raw requests with any id or
//! none, the OOB-allowed check, and the typed traffic tap.

#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use qmp_blocking::{
    serve_unix, Builder, CallError, CallOptions, Connection, Direction, Error, Traffic,
};
use qmp_proto::server::{FakeQemu, Server};
use qmp_types::qmp::{QueryStatus, Stop};
use serde_json::json;

/// A connection to a fake QEMU served on the other end of a socket pair.
fn connect(builder: Builder) -> (Connection, thread::JoinHandle<()>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let serving = thread::spawn(move || {
        let fake = FakeQemu::new();
        let mut server = Server::new(fake.server_config(), fake);
        serve_unix(theirs, &mut server).unwrap();
    });
    let qmp = builder
        .timeout(Duration::from_secs(10))
        .unix_stream(ours)
        .unwrap();
    (qmp, serving)
}

#[test]
fn raw_requests_keep_their_id_or_go_without_one() {
    let (mut qmp, serving) = connect(Builder::new());
    let by_string = qmp
        .execute_raw(
            json!({"execute": "query-status", "id": {"vm": "a", "n": [1, 2]}}),
            CallOptions::new(),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(by_string.get()).unwrap()["status"],
        "running"
    );
    let idless = qmp
        .execute_raw(
            json!({"execute": "query-name"}),
            CallOptions::new().without_id(),
        )
        .unwrap();
    assert_eq!(idless.get(), "{}");
    // A raw request without an id gets the engine's own.
    qmp.execute_raw(json!({"execute": "query-version"}), CallOptions::new())
        .unwrap();
    assert!(matches!(
        qmp.execute_raw(
            json!({"execute": "x", "id": 1}),
            CallOptions::new().without_id()
        ),
        Err(Error::Call(CallError::UnexpectedId))
    ));
    qmp.quit(Duration::from_secs(5)).unwrap();
    serving.join().unwrap();
}

#[test]
fn out_of_band_is_checked_once_for_typed_calls() {
    let (mut qmp, serving) = connect(Builder::new());
    assert!(qmp.oob_enabled());
    // `stop` does not allow OOB: refused here, nothing sent.
    let sent_before = qmp.engine().in_flight() + qmp.engine().queued();
    assert!(matches!(
        qmp.call_with(Stop::new(), CallOptions::new().oob(true)),
        Err(Error::Call(CallError::OobNotAllowed("stop")))
    ));
    assert_eq!(
        qmp.engine().in_flight() + qmp.engine().queued(),
        sent_before
    );
    assert!(qmp.call(QueryStatus::new()).unwrap().running);
    // An untyped command goes out of band as asked (QEMU judges it).
    let yanks: serde_json::Value = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .unwrap();
    assert!(yanks.is_array());
    qmp.quit(Duration::from_secs(5)).unwrap();
    serving.join().unwrap();
}

#[test]
fn the_tap_sees_every_message_in_order_with_the_label() {
    let seen: Arc<Mutex<Vec<Traffic>>> = Arc::default();
    let tap = Arc::clone(&seen);
    let builder = Builder::new()
        .label("vm0")
        .tap(move |t| tap.lock().unwrap().push(t.clone()));
    let (mut qmp, serving) = connect(builder);
    qmp.execute::<serde_json::Value>("query-status", &())
        .unwrap();
    qmp.quit(Duration::from_secs(5)).unwrap();
    serving.join().unwrap();
    let seen = seen.lock().unwrap();
    let lines: Vec<String> = seen.iter().map(ToString::to_string).collect();
    assert!(lines[0].starts_with("[vm0] <- {\"QMP\""), "{lines:?}");
    assert_eq!(
        lines[1],
        r#"[vm0] -> {"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":1}"#
    );
    assert_eq!(seen[2].direction, Direction::In);
    assert_eq!(lines[3], r#"[vm0] -> {"execute":"query-status","id":2}"#);
    assert!(
        lines[4].starts_with("[vm0] <- {\"return\": {\"status\": \"running\""),
        "{lines:?}"
    );
    assert_eq!(lines[5], r#"[vm0] -> {"execute":"quit","id":3}"#);
    assert!(seen
        .iter()
        .all(|t| t.label.as_deref() == Some("vm0") && !t.delimited));
}
