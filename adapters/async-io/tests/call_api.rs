//! The one call API against the fake QEMU served in-process on a unix socket: raw requests
//! with a caller's id of any type or none, the OOB-allowed check (the engine's, through
//! `Client::call`), and the typed traffic tap with the connection's label. Each scenario
//! runs under smol, async-executor and tokio.

// Scenarios are plain async fns run by generated #[test]s, so the test allowances are spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::{Arc, Mutex};

use common::{within, FakePeer, Spawner};
use qmp_async::{
    Builder, CallError, CallOptions, Direction, DisconnectReason, Error, IgnoredAny, Traffic,
};
use qmp_proto::server::FakeQemu;
use qmp_testkit::on_every_executor;
use qmp_types::qmp::{QueryStatus, Stop};
use serde_json::{json, Value};

/// A builder whose tap records every message, and the record.
fn tapped(label: &str) -> (Builder, Arc<Mutex<Vec<Traffic>>>) {
    let seen: Arc<Mutex<Vec<Traffic>>> = Arc::default();
    let tap = Arc::clone(&seen);
    let builder = Builder::new()
        .timeout(common::T)
        .label(label)
        .tap(move |t| tap.lock().unwrap().push(t.clone()));
    (builder, seen)
}

/// The messages sent so far, as they went on the wire.
fn sent(seen: &Mutex<Vec<Traffic>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|t| t.direction == Direction::Out)
        .map(|t| t.message.clone())
        .collect()
}

/// A whole request keeps the caller's id, whatever its JSON type; without an id and with
/// `without_id` it goes without one; the result comes back raw.
async fn raw_requests_keep_their_id_or_go_without_one(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new().name("vm0"));
    let (builder, seen) = tapped("raw");
    let (qmp, driver) = peer.connect_with(&builder, &sp).await;

    let by_string = qmp.execute_raw(
        json!({"execute": "query-status", "id": "status-1"}),
        CallOptions::new(),
    );
    let by_object = qmp.execute_raw(
        json!({"execute": "query-name", "id": {"vm": "a", "n": [1, 2.5]}}),
        CallOptions::new(),
    );
    let status: Value = serde_json::from_str(by_string.await.unwrap().get()).unwrap();
    assert_eq!(status["status"], "running");
    let name: Value = serde_json::from_str(by_object.await.unwrap().get()).unwrap();
    assert_eq!(name, json!({"name": "vm0"}));

    let idless = qmp
        .execute_raw(
            json!({"execute": "query-name"}),
            CallOptions::new().without_id(),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(idless.get()).unwrap(),
        json!({"name": "vm0"})
    );
    // Without an id and without the option, the engine adds its own.
    qmp.execute_raw(json!({"execute": "query-version"}), CallOptions::new())
        .await
        .unwrap();
    // A request that carries an id cannot go without one; nothing is sent.
    let refused = qmp
        .execute_raw(
            json!({"execute": "query-name", "id": 7}),
            CallOptions::new().without_id(),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Call(CallError::UnexpectedId))),
        "{refused:?}"
    );
    let refused = qmp.execute_raw(json!(["not", "an", "object"]), CallOptions::new());
    assert!(
        matches!(refused.await, Err(Error::Call(CallError::RawNotObject))),
        "a request must be an object"
    );
    assert_eq!(qmp.pending(), 0);

    let sent = sent(&seen);
    assert_eq!(sent.len(), 5, "{sent:#?}");
    let wire: Vec<Value> = sent
        .iter()
        .map(|m| serde_json::from_str(m).unwrap())
        .collect();
    assert_eq!(
        wire[1],
        json!({"execute": "query-status", "id": "status-1"})
    );
    assert_eq!(
        wire[2],
        json!({"execute": "query-name", "id": {"vm": "a", "n": [1, 2.5]}})
    );
    assert_eq!(wire[3], json!({"execute": "query-name"}));
    assert_eq!(wire[4]["execute"], "query-version");
    assert!(wire[4]["id"].is_u64(), "{}", wire[4]);

    qmp.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    peer.finish();
}

/// Out of band, a typed command whose type does not allow it is refused by the engine's
/// check (`Client::call`), and nothing is sent; an untyped one goes as asked.
async fn typed_oob_is_checked_by_the_engine(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (builder, seen) = tapped("oob");
    let (qmp, driver) = peer.connect_with(&builder, &sp).await;
    assert!(qmp.oob_enabled());

    let refused = qmp
        .call_with(Stop::new(), CallOptions::new().oob(true))
        .await;
    assert!(
        matches!(refused, Err(Error::Call(CallError::OobNotAllowed("stop")))),
        "{refused:?}"
    );
    assert_eq!(qmp.pending(), 0);
    // The next command is the next thing sent; the VM was never stopped.
    let status = qmp.call(QueryStatus::new()).await.unwrap();
    assert!(status.running);
    let sent = sent(&seen);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(
        sent[1].starts_with(r#"{"execute":"query-status""#),
        "{sent:#?}"
    );

    // Untyped, QEMU judges: the fake's query-yank allows OOB.
    let yanks: Vec<Value> = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .await
        .unwrap();
    assert_eq!(yanks[0]["type"], "chardev");
    assert!(sent_last(&seen).starts_with(r#"{"exec-oob":"query-yank""#));

    qmp.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    peer.finish();
}

fn sent_last(seen: &Mutex<Vec<Traffic>>) -> String {
    sent(seen).pop().unwrap()
}

/// Without OOB negotiated, an out-of-band call fails before anything is sent.
async fn oob_needs_negotiation(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (qmp, driver) = peer.connect_with(&Builder::new().oob(false), &sp).await;
    assert!(!qmp.oob_enabled());
    let refused = qmp
        .execute_with::<Value, _>("query-yank", &(), CallOptions::new().oob(true))
        .await;
    assert!(
        matches!(refused, Err(Error::Call(CallError::OobNotNegotiated))),
        "{refused:?}"
    );
    qmp.execute::<IgnoredAny, _>("query-status", &())
        .await
        .unwrap();
    qmp.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    peer.finish();
}

/// The builder's tap sees every message sent and received, in order, with the label.
async fn the_tap_sees_every_message_in_order_with_the_label(sp: Spawner) {
    let peer = FakePeer::serve(FakeQemu::new());
    let (builder, seen) = tapped("vm0");
    let (qmp, driver) = peer.connect_with(&builder, &sp).await;
    let _: Value = qmp.execute("query-status", &()).await.unwrap();
    qmp.quit().await.unwrap();
    assert_eq!(
        within(driver).await,
        DisconnectReason::Eof { after_quit: true }
    );
    assert_eq!(peer.finish().handler().status(), "shutdown");

    let seen = seen.lock().unwrap();
    let lines: Vec<String> = seen.iter().map(ToString::to_string).collect();
    assert!(lines[0].starts_with(r#"[vm0] <- {"QMP""#), "{lines:#?}");
    assert_eq!(
        lines[1],
        r#"[vm0] -> {"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":1}"#
    );
    assert!(
        lines[2].starts_with(r#"[vm0] <- {"return": {}"#),
        "{lines:#?}"
    );
    assert_eq!(lines[3], r#"[vm0] -> {"execute":"query-status","id":2}"#);
    assert!(
        lines[4].starts_with(r#"[vm0] <- {"return": {"status": "running""#),
        "{lines:#?}"
    );
    assert_eq!(lines[5], r#"[vm0] -> {"execute":"quit","id":3}"#);
    // Then SHUTDOWN and the reply to quit.
    assert!(
        lines[6..].iter().all(|l| l.starts_with("[vm0] <- ")),
        "{lines:#?}"
    );
    let directions: Vec<Direction> = seen.iter().map(|t| t.direction).collect();
    assert_eq!(
        directions[..6],
        [
            Direction::In,
            Direction::Out,
            Direction::In,
            Direction::Out,
            Direction::In,
            Direction::Out
        ]
    );
    assert!(seen
        .iter()
        .all(|t| t.label.as_deref() == Some("vm0") && !t.delimited));
}

on_every_executor!(
    raw_requests_keep_their_id_or_go_without_one,
    typed_oob_is_checked_by_the_engine,
    oob_needs_negotiation,
    the_tap_sees_every_message_in_order_with_the_label,
);
