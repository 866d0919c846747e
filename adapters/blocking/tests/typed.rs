//! Typed calls (`Connection::call`, `qmp_proto::commands`, `qmp_proto::events`) and live
//! capability checks against real qemu-storage-daemon and qemu-system-x86_64 (skipped with a
//! printed reason when missing, unless QMP_REQUIRE_QEMU=1), and forward compatibility against
//! the fake QEMU on a real socket.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{qmp_error, FakePeer, Peer};
use qmp_blocking::{CallOptions, Connection, Error};
use qmp_proto::commands::{
    AddFd, Closefd, Cont, Getfd, QueryCommands, QueryName, QueryStatus, QueryVersion, Quit,
    RemoveFd, Stop, SystemReset, VmRunState,
};
use qmp_proto::events::{self, KnownEvent, ShutdownCause};
use qmp_proto::server::{FakeQemu, Outcome};
use qmp_proto::{CallError, DecodeTarget};
use serde_json::json;

const T: Duration = Duration::from_secs(10);
const PC_PAUSED: &[&str] = &["-M", "pc", "-accel", "tcg", "-S", "-name", "typed-vm"];

#[test]
fn storage_daemon_typed_calls_and_capabilities() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    let version = qmp.call(QueryVersion {}).unwrap();
    assert_eq!(version.qemu, qmp.greeting().version);
    assert!(version.qemu.major >= 6, "{version:?}");
    let commands = qmp.call(QueryCommands {}).unwrap();
    assert!(commands.has("blockdev-add") && commands.has("query-version"));
    assert!(
        !commands.has("query-status"),
        "no runstate in the storage daemon"
    );
    assert_eq!(qmp.commands().unwrap(), commands);

    // The storage daemon has no VM: a typed call of a missing command is QEMU's error.
    let e = qmp_error(qmp.call(QueryStatus {}), "CommandNotFound");
    assert!(e.desc.contains("query-status"), "{}", e.desc);
    qmp_error(qmp.call(QueryName {}), "CommandNotFound");

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
        qmp.call_with(QueryVersion {}, CallOptions::new().oob(true)),
        Err(Error::Call(CallError::OobNotAllowed("query-version")))
    ));
    assert!(qmp.is_connected());

    qmp.call(Quit {}).unwrap();
    peer.wait_exit(T);
}

#[test]
fn system_typed_calls_and_events() {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let mut qmp = peer.connect();
    let status = qmp.call(QueryStatus {}).unwrap();
    assert_eq!(status.status, VmRunState::Prelaunch);
    assert!(!status.running);
    assert_eq!(
        qmp.call(QueryName {}).unwrap().name.as_deref(),
        Some("typed-vm")
    );

    let (_, events::Resume {}) = qmp
        .call_and_wait(Cont {}, CallOptions::new().timeout(T))
        .unwrap();
    let status = qmp.call(QueryStatus {}).unwrap();
    assert_eq!((status.status, status.running), (VmRunState::Running, true));
    let (_, events::Stop {}) = qmp
        .call_and_wait(Stop {}, CallOptions::new().timeout(T))
        .unwrap();
    assert_eq!(qmp.call(QueryStatus {}).unwrap().status, VmRunState::Paused);
    let (_, reset) = qmp
        .call_and_wait::<_, events::Reset>(SystemReset {}, CallOptions::new().timeout(T))
        .unwrap();
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
    // Every value of QEMU's RunState decodes into VmRunState.
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
        serde_json::from_value::<VmRunState>(json!(v)).unwrap_or_else(|e| panic!("{v}: {e}"));
    }

    qmp.call(Quit {}).unwrap();
    let shutdown = qmp
        .wait_typed_event::<events::Shutdown>(Duration::ZERO)
        .unwrap();
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
    let name = || Getfd {
        fdname: "fd0".into(),
    };
    // Without a descriptor, QEMU refuses.
    let e = qmp_error(qmp.call(name()), "GenericError");
    assert!(e.desc.contains("SCM_RIGHTS"), "{}", e.desc);
    let null = std::fs::File::open("/dev/null").unwrap();
    qmp.call_with(name(), CallOptions::new().fd(null)).unwrap();
    qmp.call(Closefd {
        fdname: "fd0".into(),
    })
    .unwrap();
    qmp_error(
        qmp.call(Closefd {
            fdname: "fd0".into(),
        }),
        "GenericError",
    );

    let null = std::fs::File::open("/dev/null").unwrap();
    let info = qmp
        .call_with(
            AddFd {
                fdset_id: Some(3),
                opaque: Some("typed".into()),
            },
            CallOptions::new().fd(null),
        )
        .unwrap();
    assert_eq!(info.fdset_id, 3);
    assert!(info.fd >= 0);
    let sets: serde_json::Value = qmp.execute("query-fdsets", &()).unwrap();
    assert_eq!(sets[0]["fdset-id"], 3);
    assert_eq!(sets[0]["fds"][0]["opaque"], "typed");
    qmp.call(RemoveFd {
        fdset_id: 3,
        fd: Some(info.fd),
    })
    .unwrap();
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

#[test]
fn an_unknown_enum_value_in_a_reply_fails_that_call_only() {
    let (mut qmp, _dir) = serve_fake(|fake| {
        fake.add_command("query-status", false, |_, _| {
            Outcome::Json(r#"{"status": "some-future-state", "running": false}"#.into())
        });
    });
    // Pipelined, so both replies arrive in one read.
    let status = qmp.send_call(&QueryStatus {}, CallOptions::new()).unwrap();
    let version = qmp.send_call(&QueryVersion {}, CallOptions::new()).unwrap();
    let Err(Error::TypedDecode(e)) = qmp.wait_call(status) else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Return);
    assert_eq!(e.name(), "query-status");
    assert_eq!(
        e.raw().get(),
        r#"{"status": "some-future-state", "running": false}"#
    );
    assert!(e.to_string().contains("some-future-state"), "{e}");
    assert_eq!(qmp.wait_call(version).unwrap().qemu.major, 10);
    // And again without pipelining.
    assert!(matches!(
        qmp.call(QueryStatus {}),
        Err(Error::TypedDecode(_))
    ));
    assert_eq!(qmp.call(QueryVersion {}).unwrap().qemu.minor, 0);
    assert!(qmp.is_connected());
}

#[test]
fn an_unknown_enum_value_in_an_event_fails_that_event_only() {
    let (mut qmp, _dir) = serve_fake(|fake| {
        fake.add_command("x-emit", false, |ctx, _| {
            ctx.emit_event_json("SHUTDOWN", r#"{"guest": true, "reason": "cosmic-ray"}"#);
            ctx.emit_event_json("FUTURE_EVENT", r#"{"n": 1}"#);
            ctx.emit_event_json("SHUTDOWN", r#"{"guest": true, "reason": "guest-shutdown"}"#);
            Outcome::empty()
        });
    });
    qmp.execute::<qmp_blocking::IgnoredAny>("x-emit", &())
        .unwrap();
    let Err(Error::TypedDecode(e)) = qmp.wait_typed_event::<events::Shutdown>(T) else {
        panic!()
    };
    assert_eq!(e.target(), DecodeTarget::Event);
    let raw: serde_json::Value = serde_json::from_str(e.raw().get()).unwrap();
    assert_eq!(raw["event"], "SHUTDOWN");
    assert_eq!(raw["data"]["reason"], "cosmic-ray");
    // The unknown event is not an error, and the stream goes on.
    let future = qmp.next_event(T).unwrap().unwrap();
    assert!(
        matches!(KnownEvent::decode(&future), Ok(KnownEvent::Other(ref o)) if o.name == "FUTURE_EVENT")
    );
    let shutdown = qmp.wait_typed_event::<events::Shutdown>(T).unwrap();
    assert_eq!(shutdown.reason, ShutdownCause::GuestShutdown);
    assert!(qmp.call(QueryStatus {}).is_ok());
}
