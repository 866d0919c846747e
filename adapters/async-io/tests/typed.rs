//! Typed calls (`Qmp::call` with the generated `qmp-types` commands and events, predicate and
//! one-of-several typed waits) and live capability checks against real qemu-system-x86_64 and qemu-storage-daemon (skipped with a printed
//! reason when missing, unless QMP_REQUIRE_QEMU=1), and forward compatibility against the
//! fake QEMU. Each scenario runs under smol, async-executor and tokio.

// Scenarios are plain async fns run by generated #[test]s, so the test allowances are spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;

use common::{within, FakePeer, Peer, Spawner};
use futures_lite::StreamExt;
use qmp_async::{CallOptions, Error, EventFilter};
use qmp_proto::events::{OneOf, TypedEvent};
use qmp_proto::schema::QueryCommands;
use qmp_proto::server::{FakeQemu, Outcome};
use qmp_proto::{CallError, DecodeTarget};
use qmp_testkit::on_every_executor;
use qmp_types::qmp::{
    Cont, QueryName, QueryStatus, QueryVersion, Quit, Reset, Resume, RunState, Shutdown,
    ShutdownCause, Stop, StopEvent, SystemReset,
};

const PC_PAUSED: &[&str] = &["-M", "pc", "-accel", "tcg", "-S"];

fn opts() -> CallOptions {
    CallOptions::new().timeout(common::T)
}

async fn system_typed_calls_and_events(sp: Spawner) {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let status = qmp.call(QueryStatus::new()).await.unwrap();
    assert_eq!(
        (status.status, status.running),
        (RunState::Prelaunch, false)
    );
    assert_eq!(qmp.call(QueryName::new()).await.unwrap().name, None);

    let any = |_: &Resume| true;
    let (_, Resume { .. }) = qmp.call_and_wait(Cont::new(), opts(), any).await.unwrap();
    assert_eq!(
        qmp.call(QueryStatus::new()).await.unwrap().status,
        RunState::Running
    );
    let any = |_: &StopEvent| true;
    let (_, StopEvent { .. }) = qmp.call_and_wait(Stop::new(), opts(), any).await.unwrap();
    // One of several kinds, with a predicate on the decoded event.
    let host_reset = |e: &OneOf<StopEvent, Reset>| matches!(e, OneOf::Second(r) if !r.guest);
    let (_, ended) = qmp
        .call_and_wait(SystemReset::new(), opts(), host_reset)
        .await
        .unwrap();
    let OneOf::Second(reset) = ended else {
        panic!("{ended:?}")
    };
    assert_eq!(reset.reason, ShutdownCause::HostQmpSystemReset);

    // Concurrent typed calls pipeline on the one connection.
    let version = sp.spawn(qmp.call(QueryVersion::new()));
    let commands = sp.spawn(qmp.call(QueryCommands {}));
    let greeting = qmp.greeting().unwrap().version;
    assert_eq!(version.await.unwrap().qemu.major, greeting.major as i64);
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
        qmp.call_with(QueryStatus::new(), CallOptions::new().oob(true))
            .await,
        Err(Error::Call(CallError::OobNotAllowed("query-status")))
    ));

    let mut shutdowns = qmp.subscribe(EventFilter::name(Shutdown::NAME));
    qmp.call(Quit::new()).await.unwrap();
    let shutdown = within(shutdowns.next()).await.unwrap().unwrap();
    let Some(Ok(shutdown)) = shutdown.decode::<Shutdown>() else {
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
    assert!(qmp.call(QueryVersion::new()).await.unwrap().qemu.major >= 6);
    let schema = qmp.schema().await.unwrap();
    assert!(!schema.has_command("query-status"));
    assert!(schema.has_event("JOB_STATUS_CHANGE"));
    assert!(schema
        .argument_values("blockdev-add", &["driver"])
        .contains(&"qcow2".to_owned()));
    let Err(Error::Qmp(e)) = qmp.call(QueryStatus::new()).await else {
        panic!()
    };
    assert_eq!(e.class, "CommandNotFound");
    qmp.call(Quit::new()).await.unwrap();
    within(driver).await;
    assert!(peer.wait_exit().await.success());
}

fn fake_with_future_values() -> FakeQemu {
    let mut fake = FakeQemu::new();
    fake.add_command("query-status", false, |_, _| {
        Outcome::Json(r#"{"status": "some-future-state", "running": false}"#.into())
    });
    fake.add_command("query-name", false, |_, _| {
        Outcome::Json(r#"{"name": 5}"#.into())
    });
    fake.add_command("x-emit", false, |ctx, _| {
        ctx.emit_event_json("RESET", r#"{"guest": "no", "reason": "cosmic-ray"}"#);
        ctx.emit_event_json("FUTURE_EVENT", r#"{}"#);
        ctx.emit_event_json("RESET", r#"{"guest": false, "reason": "cosmic-ray"}"#);
        ctx.emit_event_json("RESET", r#"{"guest": true, "reason": "guest-reset"}"#);
        Outcome::empty()
    });
    fake.add_command("x-emit-decodable", false, |ctx, _| {
        ctx.emit_event_json("RESET", r#"{"guest": false, "reason": "cosmic-ray"}"#);
        ctx.emit_event_json("RESET", r#"{"guest": true, "reason": "guest-reset"}"#);
        Outcome::empty()
    });
    fake
}

/// Values QEMU may add later decode (as `Other`); a message that does not decode at all
/// fails that message only, with its raw JSON.
async fn bad_messages_fail_only_themselves(sp: Spawner) {
    let peer = FakePeer::serve(fake_with_future_values());
    let (qmp, _driver) = peer.connect(&sp).await;
    let status = qmp.call(QueryStatus::new()).await.unwrap();
    assert_eq!(status.status, RunState::Other("some-future-state".into()));
    // Issued together: the bad reply and the next arrive back to back.
    let name = qmp.call(QueryName::new());
    let version = qmp.call(QueryVersion::new());
    let Err(Error::TypedDecode(e)) = name.await else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Return);
    assert_eq!(e.raw().get(), r#"{"name": 5}"#);
    assert_eq!(version.await.unwrap().qemu.major, 10);

    let mut stream = qmp.subscribe(EventFilter::all());
    qmp.execute::<qmp_async::IgnoredAny, _>("x-emit", &())
        .await
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(within(stream.next()).await.unwrap().unwrap());
    }
    let Some(Err(e)) = events[0].decode::<Reset>() else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Event);
    assert!(e.raw().get().contains("cosmic-ray"), "{e}");
    assert_eq!(events[1].name, "FUTURE_EVENT");
    assert!(events[1].decode::<Reset>().is_none());
    let Some(Ok(reset)) = events[2].decode::<Reset>() else {
        panic!()
    };
    assert_eq!(reset.reason, ShutdownCause::Other("cosmic-ray".into()));
    // A typed wait whose predicate skips the unknown reason gets the guest's reset.
    let guest = |r: &Reset| r.reason == ShutdownCause::GuestReset;
    let wait = qmp.call_and_wait(QueryVersion::new(), opts(), guest);
    let emit = qmp.execute::<qmp_async::IgnoredAny, _>("x-emit-decodable", &());
    let (_, reset) = wait.await.unwrap();
    assert!(reset.guest);
    emit.await.unwrap();
    // A typed wait that meets an event of its kind that does not decode fails with it.
    let wait = qmp.call_and_wait(QueryVersion::new(), opts(), |_: &Reset| true);
    let emit = qmp.execute::<qmp_async::IgnoredAny, _>("x-emit", &());
    let Err(Error::TypedDecode(e)) = wait.await else {
        panic!()
    };
    assert!(e.raw().get().contains("\"no\""));
    emit.await.unwrap();
    assert_eq!(qmp.call(QueryVersion::new()).await.unwrap().qemu.minor, 0);
}

/// The core's `qapi` feature: qapi-qmp's generated types through `Qmp::call`.
async fn generated_qapi_types(sp: Spawner) {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let status = qmp.call(qapi_qmp::query_status {}).await.unwrap();
    assert!(matches!(status.status, qapi_qmp::RunState::prelaunch));
    let (_, _resume) = qmp
        .call_and_wait(qapi_qmp::cont {}, opts(), |_: &qapi_qmp::RESUME| true)
        .await
        .unwrap();
    let (_, _stop) = qmp
        .call_and_wait(qapi_qmp::stop {}, opts(), |_: &qapi_qmp::STOP| true)
        .await
        .unwrap();
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
    bad_messages_fail_only_themselves,
);
