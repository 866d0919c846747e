//! Typed calls (`Qmp::call`, `qmp_proto::commands`, `qmp_proto::events`) and live capability
//! checks against real qemu-system-x86_64 and qemu-storage-daemon (skipped with a printed
//! reason when missing, unless QMP_REQUIRE_QEMU=1), and forward compatibility against the
//! fake QEMU. Each scenario runs under smol, async-executor and tokio.

// Scenarios are plain async fns run by generated #[test]s, so the test allowances are spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;

use common::{within, FakePeer, Peer, Spawner};
use futures_lite::StreamExt;
use qmp_async::{CallOptions, Error, EventFilter};
use qmp_proto::commands::{
    Cont, QueryCommands, QueryName, QueryStatus, QueryVersion, Quit, Stop, SystemReset, VmRunState,
};
use qmp_proto::events::{self, KnownEvent, ShutdownCause};
use qmp_proto::server::{FakeQemu, Outcome};
use qmp_proto::{CallError, DecodeTarget};
use qmp_testkit::on_every_executor;

const PC_PAUSED: &[&str] = &["-M", "pc", "-accel", "tcg", "-S"];

fn opts() -> CallOptions {
    CallOptions::new().timeout(common::T)
}

async fn system_typed_calls_and_events(sp: Spawner) {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let status = qmp.call(QueryStatus {}).await.unwrap();
    assert_eq!(
        (status.status, status.running),
        (VmRunState::Prelaunch, false)
    );
    assert_eq!(qmp.call(QueryName {}).await.unwrap().name, None);

    let (_, events::Resume {}) = qmp.call_and_wait(Cont {}, opts()).await.unwrap();
    assert_eq!(
        qmp.call(QueryStatus {}).await.unwrap().status,
        VmRunState::Running
    );
    let (_, events::Stop {}) = qmp.call_and_wait(Stop {}, opts()).await.unwrap();
    let (_, reset): (_, events::Reset) = qmp.call_and_wait(SystemReset {}, opts()).await.unwrap();
    assert_eq!(reset.reason, ShutdownCause::HostQmpSystemReset);

    // Concurrent typed calls pipeline on the one connection.
    let version = sp.spawn(qmp.call(QueryVersion {}));
    let commands = sp.spawn(qmp.call(QueryCommands {}));
    assert_eq!(version.await.unwrap().qemu, qmp.greeting().unwrap().version);
    let commands = commands.await.unwrap();
    assert!(commands.has("query-status") && commands.has("add-fd"));
    assert_eq!(qmp.commands().await.unwrap(), commands);

    // The schema is fetched once per session and shared.
    let schema = qmp.schema().await.unwrap();
    assert!(Arc::ptr_eq(&schema, &qmp.clone().schema().await.unwrap()));
    assert!(schema.has_command("system_reset"));
    assert!(schema.has_event("RESUME"));
    assert!(schema.command("query-yank").unwrap().allow_oob);
    assert_eq!(schema.command_names().len(), commands.len());
    assert!(schema.has_argument("getfd", &["fdname"]));

    // A command that does not allow OOB is refused before anything is sent.
    assert!(matches!(
        qmp.call_with(QueryStatus {}, CallOptions::new().oob(true))
            .await,
        Err(Error::Call(CallError::OobNotAllowed("query-status")))
    ));

    let mut shutdowns = qmp.subscribe(EventFilter::name(
        <events::Shutdown as events::TypedEvent>::NAME,
    ));
    qmp.call(Quit {}).await.unwrap();
    let shutdown = within(shutdowns.next()).await.unwrap().unwrap();
    let Ok(KnownEvent::Shutdown(shutdown)) = KnownEvent::decode(&shutdown) else {
        panic!("{shutdown:?}")
    };
    assert_eq!(shutdown.reason, ShutdownCause::HostQmpQuit);
    within(driver).await;
    assert!(peer.wait_exit().await.success());
}

async fn storage_daemon_typed_calls(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    assert!(qmp.call(QueryVersion {}).await.unwrap().qemu.major >= 6);
    let schema = qmp.schema().await.unwrap();
    assert!(!schema.has_command("query-status"));
    assert!(schema.has_event("JOB_STATUS_CHANGE"));
    assert!(schema
        .argument_values("blockdev-add", &["driver"])
        .contains(&"qcow2".to_owned()));
    let Err(Error::Qmp(e)) = qmp.call(QueryStatus {}).await else {
        panic!()
    };
    assert_eq!(e.class, "CommandNotFound");
    qmp.call(Quit {}).await.unwrap();
    within(driver).await;
    assert!(peer.wait_exit().await.success());
}

fn fake_with_future_values() -> FakeQemu {
    let mut fake = FakeQemu::new();
    fake.add_command("query-status", false, |_, _| {
        Outcome::Json(r#"{"status": "some-future-state", "running": false}"#.into())
    });
    fake.add_command("x-emit", false, |ctx, _| {
        ctx.emit_event_json("RESET", r#"{"guest": false, "reason": "cosmic-ray"}"#);
        ctx.emit_event_json("FUTURE_EVENT", r#"{}"#);
        ctx.emit_event_json("RESET", r#"{"guest": true, "reason": "guest-reset"}"#);
        Outcome::empty()
    });
    fake
}

async fn unknown_enum_values_fail_only_their_message(sp: Spawner) {
    let peer = FakePeer::serve(fake_with_future_values());
    let (qmp, _driver) = peer.connect(&sp).await;
    // Issued together: the bad reply and the next arrive back to back.
    let status = qmp.call(QueryStatus {});
    let version = qmp.call(QueryVersion {});
    let Err(Error::TypedDecode(e)) = status.await else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Return);
    assert_eq!(
        e.raw().get(),
        r#"{"status": "some-future-state", "running": false}"#
    );
    assert_eq!(version.await.unwrap().qemu.major, 10);

    let mut stream = qmp.subscribe(EventFilter::all());
    qmp.execute::<qmp_async::IgnoredAny, _>("x-emit", &())
        .await
        .unwrap();
    let mut decoded = Vec::new();
    for _ in 0..3 {
        let event = within(stream.next()).await.unwrap().unwrap();
        decoded.push(KnownEvent::decode(&event));
    }
    let Err(e) = &decoded[0] else { panic!() };
    assert_eq!(e.target(), DecodeTarget::Event);
    assert!(e.raw().get().contains("cosmic-ray"), "{e}");
    assert!(matches!(&decoded[1], Ok(KnownEvent::Other(o)) if o.name == "FUTURE_EVENT"));
    let Ok(KnownEvent::Reset(reset)) = &decoded[2] else {
        panic!()
    };
    assert_eq!(reset.reason, ShutdownCause::GuestReset);
    // A typed wait for an event that does not decode fails with the raw event.
    let wait = qmp.call_and_wait::<_, events::Reset>(QueryVersion {}, opts());
    let emit = qmp.execute::<qmp_async::IgnoredAny, _>("x-emit", &());
    let Err(Error::TypedDecode(e)) = wait.await else {
        panic!()
    };
    assert!(e.raw().get().contains("cosmic-ray"));
    emit.await.unwrap();
    assert_eq!(qmp.call(QueryVersion {}).await.unwrap().qemu.minor, 0);
}

/// The core's `qapi` feature: qapi-qmp's generated types through `Qmp::call`.
async fn generated_qapi_types(sp: Spawner) {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let status = qmp.call(qapi_qmp::query_status {}).await.unwrap();
    assert!(matches!(status.status, qapi_qmp::RunState::prelaunch));
    let (_, _resume): (_, qapi_qmp::RESUME) =
        qmp.call_and_wait(qapi_qmp::cont {}, opts()).await.unwrap();
    let (_, _stop): (_, qapi_qmp::STOP) =
        qmp.call_and_wait(qapi_qmp::stop {}, opts()).await.unwrap();
    let version = sp.spawn(qmp.call(qapi_qmp::query_version {}));
    assert_eq!(
        version.await.unwrap().qemu.major as u64,
        qmp.greeting().unwrap().version.major
    );
    let yanks = qmp
        .call_with(qapi_qmp::query_yank {}, CallOptions::new().oob(true))
        .await
        .unwrap();
    assert!(!yanks.is_empty());
    qmp.call(qapi_qmp::quit {}).await.unwrap();
    within(driver).await;
    assert!(peer.wait_exit().await.success());
}

on_every_executor!(
    generated_qapi_types,
    system_typed_calls_and_events,
    storage_daemon_typed_calls,
    unknown_enum_values_fail_only_their_message,
);
