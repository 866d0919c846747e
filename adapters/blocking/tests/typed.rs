//! Typed calls (`Connection::call` with the generated `qmp-types` commands and events,
//! predicate and one-of-several typed waits) and live capability checks against real qemu-storage-daemon and qemu-system-x86_64 (skipped with a
//! printed reason when missing, unless QMP_REQUIRE_QEMU=1), and forward compatibility against
//! the fake QEMU on a real socket.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{qmp_error, FakePeer, Peer};
use qmp_blocking::{CallOptions, Connection, Error};
use qmp_proto::events::OneOf;
use qmp_proto::schema::QueryCommands;
use qmp_proto::server::{FakeQemu, Outcome};
use qmp_proto::{CallError, DecodeTarget};
use qmp_types::qmp::{
    AddFd, Closefd, Cont, Getfd, QueryName, QueryStatus, QueryVersion, Quit, RemoveFd, Reset,
    Resume, RunState, Shutdown, ShutdownCause, Stop, StopEvent, SystemReset,
};
use serde_json::json;

const T: Duration = Duration::from_secs(10);
const PC_PAUSED: &[&str] = &["-M", "pc", "-accel", "tcg", "-S", "-name", "typed-vm"];

#[test]
fn storage_daemon_typed_calls_and_capabilities() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    let version = qmp.call(QueryVersion::new()).unwrap();
    let greeting = qmp.greeting().version;
    assert_eq!(
        [version.qemu.major, version.qemu.minor, version.qemu.micro],
        [greeting.major, greeting.minor, greeting.micro].map(|v| v as i64)
    );
    assert!(version.qemu.major >= 6, "{version:?}");
    let commands = qmp.call(QueryCommands {}).unwrap();
    assert!(commands.has("blockdev-add") && commands.has("query-version"));
    assert!(
        !commands.has("query-status"),
        "no runstate in the storage daemon"
    );
    assert_eq!(qmp.commands().unwrap(), commands);

    // The storage daemon has no VM: a typed call of a missing command is QEMU's error.
    let e = qmp_error(qmp.call(QueryStatus::new()), "CommandNotFound");
    assert!(e.desc.contains("query-status"), "{}", e.desc);
    qmp_error(qmp.call(QueryName::new()), "CommandNotFound");

    let schema = qmp.schema().unwrap();
    assert!(schema.has_command("blockdev-add"));
    assert!(!schema.has_command("query-status"));
    assert!(schema.has_event("JOB_STATUS_CHANGE"));
    assert!(!schema.has_event("STOP"));
    assert!(schema.has_argument("blockdev-add", &["cache", "direct"]));
    assert!(schema
        .argument_values("blockdev-add", &["driver"])
        .contains(&"null-co".to_owned()));
    let names = schema.command_names().len();
    assert_eq!(names, commands.len());

    // No command of the storage daemon allows OOB: refused before anything is sent.
    assert!(matches!(
        qmp.call_with(QueryVersion::new(), CallOptions::new().oob(true)),
        Err(Error::Call(CallError::OobNotAllowed("query-version")))
    ));
    assert!(qmp.is_connected());

    qmp.call(Quit::new()).unwrap();
    peer.wait_exit(T);
}

#[test]
fn system_typed_calls_and_events() {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let mut qmp = peer.connect();
    let status = qmp.call(QueryStatus::new()).unwrap();
    assert_eq!(status.status, RunState::Prelaunch);
    assert!(!status.running);
    assert_eq!(
        qmp.call(QueryName::new()).unwrap().name.as_deref(),
        Some("typed-vm")
    );

    let (_, Resume { .. }) = qmp
        .call_and_wait(Cont::new(), CallOptions::new().timeout(T), |_: &Resume| {
            true
        })
        .unwrap();
    let status = qmp.call(QueryStatus::new()).unwrap();
    assert_eq!((status.status, status.running), (RunState::Running, true));
    let (_, StopEvent { .. }) = qmp
        .call_and_wait(
            Stop::new(),
            CallOptions::new().timeout(T),
            |_: &StopEvent| true,
        )
        .unwrap();
    assert_eq!(
        qmp.call(QueryStatus::new()).unwrap().status,
        RunState::Paused
    );
    // One of several kinds: RESET (not STOP or RESUME) ends this wait, and the predicate
    // sees the decoded event.
    let opts = CallOptions::new().timeout(T);
    let (_, ended) = qmp
        .call_and_wait(
            SystemReset::new(),
            opts,
            |e: &OneOf<StopEvent, OneOf<Resume, Reset>>| {
                matches!(e, OneOf::Second(OneOf::Second(r)) if !r.guest)
            },
        )
        .unwrap();
    let OneOf::Second(OneOf::Second(reset)) = ended else {
        panic!("{ended:?}")
    };
    assert!(!reset.guest);
    assert_eq!(reset.reason, ShutdownCause::HostQmpSystemReset);

    // Live checks against this QEMU.
    let schema = qmp.schema().unwrap();
    for c in ["query-status", "getfd", "add-fd", "system_powerdown"] {
        assert!(schema.has_command(c), "{c}");
    }
    assert!(schema.command("query-yank").unwrap().allow_oob);
    assert!(!schema.command("query-status").unwrap().allow_oob);
    assert!(schema.has_argument("add-fd", &["fdset-id"]));
    assert!(schema.has_event("RESET"));
    assert!(schema
        .event_data_values("SHUTDOWN", &["reason"])
        .contains(&"host-qmp-quit".to_owned()));
    // Every value of QEMU's RunState is one this crate knows.
    let ret = schema.command("query-status").unwrap().ret_type.clone();
    let status_type = match &schema.get(&ret).unwrap().kind {
        qmp_proto::schema::SchemaKind::Object(o) => o
            .members
            .iter()
            .find(|m| m.name == "status")
            .unwrap()
            .type_name
            .clone(),
        other => panic!("{other:?}"),
    };
    let qmp_proto::schema::SchemaKind::Enum { values } = &schema.get(&status_type).unwrap().kind
    else {
        panic!()
    };
    for v in values {
        let known = serde_json::from_value::<RunState>(json!(v)).unwrap();
        assert!(!matches!(known, RunState::Other(_)), "{v}");
    }

    qmp.call(Quit::new()).unwrap();
    let shutdown = qmp.wait_typed_event::<Shutdown>(Duration::ZERO).unwrap();
    assert_eq!(shutdown.reason, ShutdownCause::HostQmpQuit);
    assert!(!shutdown.guest);
    assert!(peer.wait_exit(T).success());
}

#[test]
fn system_typed_fd_commands_with_real_fds() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect();
    let name = || Getfd::new("fd0".into());
    // Without a descriptor, QEMU refuses.
    let e = qmp_error(qmp.call(name()), "GenericError");
    assert!(e.desc.contains("SCM_RIGHTS"), "{}", e.desc);
    let null = std::fs::File::open("/dev/null").unwrap();
    qmp.call_with(name(), CallOptions::new().fd(null)).unwrap();
    qmp.call(Closefd::new("fd0".into())).unwrap();
    qmp_error(qmp.call(Closefd::new("fd0".into())), "GenericError");

    let null = std::fs::File::open("/dev/null").unwrap();
    let info = qmp
        .call_with(
            AddFd::new().with_fdset_id(3).with_opaque("typed".into()),
            CallOptions::new().fd(null),
        )
        .unwrap();
    assert_eq!(info.fdset_id, 3);
    assert!(info.fd >= 0);
    let sets: serde_json::Value = qmp.execute("query-fdsets", &()).unwrap();
    assert_eq!(sets[0]["fdset-id"], 3);
    assert_eq!(sets[0]["fds"][0]["opaque"], "typed");
    qmp.call(RemoveFd::new(3).with_fd(info.fd)).unwrap();
    let sets: serde_json::Value = qmp.execute("query-fdsets", &()).unwrap();
    assert_eq!(sets, json!([]));
    peer.quit(&mut qmp);
}

/// The fake QEMU, customised by `setup`, served on a unix socket in a thread.
fn serve_fake(setup: impl FnOnce(&mut FakeQemu)) -> (Connection, FakePeer) {
    let mut fake = FakeQemu::new();
    setup(&mut fake);
    let peer = FakePeer::serve(fake);
    let qmp = peer.connect_with(&Connection::builder().timeout(T));
    (qmp, peer)
}

/// A value QEMU may add to an enum later decodes (as `Other`); a reply that does not decode
/// at all (a member of the wrong type) fails that call only, with the raw JSON.
#[test]
fn unknown_enum_values_decode_and_a_bad_reply_fails_that_call_only() {
    let (mut qmp, _dir) = serve_fake(|fake| {
        fake.add_command("query-status", false, |_, _| {
            Outcome::Json(r#"{"status": "some-future-state", "running": false}"#.into())
        });
        fake.add_command("query-name", false, |_, _| {
            Outcome::Json(r#"{"name": 5}"#.into())
        });
    });
    let status = qmp.call(QueryStatus::new()).unwrap();
    assert_eq!(status.status, RunState::Other("some-future-state".into()));
    assert_eq!(status.status.as_str(), "some-future-state");
    // Pipelined, so both replies arrive in one read.
    let name = qmp
        .send_call(&QueryName::new(), CallOptions::new())
        .unwrap();
    let version = qmp
        .send_call(&QueryVersion::new(), CallOptions::new())
        .unwrap();
    let Err(Error::TypedDecode(e)) = qmp.wait_call(name) else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Return);
    assert_eq!(e.name(), "query-name");
    assert_eq!(e.raw().get(), r#"{"name": 5}"#);
    assert_eq!(qmp.wait_call(version).unwrap().qemu.major, 10);
    assert!(qmp.is_connected());
}

/// The same for events: an unknown reason decodes, data of the wrong type fails that event
/// only (taken, with the raw event), and an event without a type is data.
#[test]
fn a_bad_event_fails_that_event_only() {
    let (mut qmp, _dir) = serve_fake(|fake| {
        fake.add_command("x-emit", false, |ctx, _| {
            ctx.emit_event_json("SHUTDOWN", r#"{"guest": "yes", "reason": "cosmic-ray"}"#);
            ctx.emit_event_json("FUTURE_EVENT", r#"{"n": 1}"#);
            ctx.emit_event_json("SHUTDOWN", r#"{"guest": true, "reason": "cosmic-ray"}"#);
            ctx.emit_event_json("SHUTDOWN", r#"{"guest": true, "reason": "guest-shutdown"}"#);
            Outcome::empty()
        });
    });
    qmp.execute::<qmp_blocking::IgnoredAny>("x-emit", &())
        .unwrap();
    let Err(Error::TypedDecode(e)) = qmp.wait_typed_event::<Shutdown>(T) else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Event);
    let raw: serde_json::Value = serde_json::from_str(e.raw().get()).unwrap();
    assert_eq!(raw["event"], "SHUTDOWN");
    assert_eq!(raw["data"]["guest"], "yes");
    // The unknown event is not an error, and the stream goes on.
    let future = qmp.next_event(T).unwrap().unwrap();
    assert_eq!(future.name, "FUTURE_EVENT");
    assert!(future.decode::<Shutdown>().is_none());
    // A predicate picks the guest's own shutdown, past the one with the unknown reason
    // (which stays buffered).
    let shutdown = qmp
        .wait_typed_event_where(T, |s: &Shutdown| s.reason == ShutdownCause::GuestShutdown)
        .unwrap();
    assert!(shutdown.guest);
    let cosmic = qmp.wait_typed_event::<Shutdown>(T).unwrap();
    assert_eq!(cosmic.reason, ShutdownCause::Other("cosmic-ray".into()));
    assert!(qmp.call(QueryStatus::new()).is_ok());
}
