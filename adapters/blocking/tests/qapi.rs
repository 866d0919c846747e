//! The core's `qapi` feature: the `qapi-qmp` crate's generated command and event types,
//! called as they are through `Connection::call`, against real qemu-system-x86_64 (skipped
//! with a printed reason when missing, unless QMP_REQUIRE_QEMU=1).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{qmp_error, Peer};
use qmp_blocking::{CallOptions, Error};
use qmp_proto::CallError;

const T: Duration = Duration::from_secs(10);

#[test]
fn generated_commands_and_events_on_a_paused_pc() {
    let Some(mut peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    let mut qmp = peer.connect();
    let version: qapi_qmp::VersionInfo = qmp.call(qapi_qmp::query_version {}).unwrap();
    assert_eq!(version.qemu.major as u64, qmp.greeting().version.major);
    let status = qmp.call(qapi_qmp::query_status {}).unwrap();
    assert!(matches!(status.status, qapi_qmp::RunState::prelaunch));
    assert!(!status.running);
    let commands: Vec<qapi_qmp::CommandInfo> = qmp.call(qapi_qmp::query_commands {}).unwrap();
    assert!(commands.iter().any(|c| c.name == "blockdev-add"));

    let (_, _resume) = qmp
        .call_and_wait(
            qapi_qmp::cont {},
            CallOptions::new().timeout(T),
            |_: &qapi_qmp::RESUME| true,
        )
        .unwrap();
    let status = qmp.call(qapi_qmp::query_status {}).unwrap();
    assert!(matches!(status.status, qapi_qmp::RunState::running));
    qmp.call(qapi_qmp::stop {}).unwrap();
    qmp.wait_typed_event::<qapi_qmp::STOP>(T).unwrap();
    // The qapi crate's and qmp-types' types on the same connection.
    assert_eq!(
        qmp.call(qmp_types::qmp::QueryStatus::new()).unwrap().status,
        qmp_types::qmp::RunState::Paused
    );
    let (_, reset) = qmp
        .call_and_wait(
            qapi_qmp::system_reset {},
            CallOptions::new().timeout(T),
            |_: &qapi_qmp::RESET| true,
        )
        .unwrap();
    assert!(matches!(
        reset.reason,
        qapi_qmp::ShutdownCause::host_qmp_system_reset
    ));

    // A generated command with arguments, and a real fd.
    let e = qmp_error(
        qmp.call(qapi_qmp::getfd {
            fdname: "fd0".into(),
        }),
        "GenericError",
    );
    assert!(e.desc.contains("SCM_RIGHTS"), "{}", e.desc);
    let null = std::fs::File::open("/dev/null").unwrap();
    qmp.call_with(
        qapi_qmp::getfd {
            fdname: "fd0".into(),
        },
        CallOptions::new().fd(null),
    )
    .unwrap();
    qmp.call(qapi_qmp::closefd {
        fdname: "fd0".into(),
    })
    .unwrap();

    qmp.call(qapi_qmp::quit {}).unwrap();
    let shutdown = qmp
        .wait_typed_event::<qapi_qmp::SHUTDOWN>(Duration::ZERO)
        .unwrap();
    assert!(!shutdown.guest);
    assert!(matches!(
        shutdown.reason,
        qapi_qmp::ShutdownCause::host_qmp_quit
    ));
    assert!(peer.wait_exit(T).success());
}

#[test]
fn generated_allow_oob_is_honoured() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect();
    assert!(qmp.oob_enabled());
    // query-yank allows OOB in the schema qapi-qmp was generated from.
    let yanks: Vec<qapi_qmp::YankInstance> = qmp
        .call_with(qapi_qmp::query_yank {}, CallOptions::new().oob(true))
        .unwrap();
    assert!(!yanks.is_empty());
    assert!(matches!(
        qmp.call_with(qapi_qmp::query_status {}, CallOptions::new().oob(true)),
        Err(Error::Call(CallError::OobNotAllowed("query-status")))
    ));
    peer.quit(&mut qmp);
}
