//! Against a real qemu-system-x86_64 under TCG. Skipped with a printed reason when it is
//! not installed, unless QMP_REQUIRE_QEMU=1.

mod common;

use std::time::Duration;

use common::{qmp_error, Peer};
use qmp_blocking::{CallOptions, EventFilter, IgnoredAny};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);
use qmp_testkit::{MACHINE_NONE as NONE, PC_PAUSED};
type Status = qmp_testkit::VmStatus;

/// Six pipelined `query-qmp-schema` (about 236 KB each) then `exec-oob query-yank`: QEMU
/// answers the OOB command while in-band ones are still queued.
#[test]
fn oob_overtakes_queued_in_band_commands() {
    let Some(mut peer) = Peer::system(NONE) else {
        return;
    };
    let mut qmp = peer.connect();
    assert!(qmp.oob_enabled());
    let schemas: Vec<_> = (0..6)
        .map(|_| {
            qmp.send("query-qmp-schema", &(), CallOptions::new())
                .unwrap()
        })
        .collect();
    let yanks: Vec<Value> = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .unwrap();
    assert!(yanks.iter().all(|y| y.get("type").is_some()), "{yanks:?}");
    let last = *schemas.last().unwrap();
    assert!(
        !qmp.has_reply(last),
        "the OOB reply should come before the last in-band reply"
    );
    for id in schemas {
        let schema = qmp.wait(id).unwrap();
        assert!(
            (200_000..300_000).contains(&schema.get().len()),
            "{} bytes",
            schema.get().len()
        );
    }
    let entries: Vec<Value> = serde_json::from_str(
        qmp.execute::<Box<qmp_proto::RawValue>>("query-qmp-schema", &())
            .unwrap()
            .get(),
    )
    .unwrap();
    let yank = entries.iter().find(|e| e["name"] == "query-yank").unwrap();
    assert_eq!(yank["allow-oob"], true);
}

/// `getfd` takes a real descriptor sent as SCM_RIGHTS with the command; `closefd` closes it.
#[test]
fn getfd_with_a_real_fd_then_closefd() {
    let Some(mut peer) = Peer::system(NONE) else {
        return;
    };
    let mut qmp = peer.connect();
    let name = json!({"fdname": "fd0"});
    // Without a descriptor, QEMU refuses.
    let e = qmp_error(qmp.execute::<Value>("getfd", &name), "GenericError");
    assert!(e.desc.contains("SCM_RIGHTS"), "{}", e.desc);
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    qmp.execute_with::<IgnoredAny>("getfd", &name, CallOptions::new().fd(null))
        .unwrap();
    qmp.execute::<IgnoredAny>("closefd", &name).unwrap();
    // It is gone now.
    qmp_error(qmp.execute::<Value>("closefd", &name), "GenericError");
}

#[test]
fn quit_sends_shutdown_then_eof() {
    let Some(mut peer) = Peer::system(NONE) else {
        return;
    };
    let mut qmp = peer.connect();
    peer.quit(&mut qmp);
    // SHUTDOWN came before the reply and the EOF; it is still there.
    let shutdown = qmp.wait_event("SHUTDOWN", Duration::ZERO).unwrap();
    let data: Value = shutdown.data_as().unwrap();
    assert_eq!(data["reason"], "host-qmp-quit");
    assert_eq!(data["guest"], false);
}

#[test]
fn cont_and_stop_with_resume_and_stop_events() {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let mut qmp = peer.connect();
    let s: Status = qmp.execute("query-status", &()).unwrap();
    assert_eq!(
        s,
        Status {
            status: "prelaunch".into(),
            running: false
        }
    );
    let (_, resume): (IgnoredAny, _) = qmp
        .execute_and_wait(
            "cont",
            &(),
            CallOptions::new().timeout(T),
            EventFilter::name("RESUME"),
        )
        .unwrap();
    assert!(resume.timestamp.is_some());
    let s: Status = qmp.execute("query-status", &()).unwrap();
    assert!(s.running, "{s:?}");
    let (_, _stop): (IgnoredAny, _) = qmp
        .execute_and_wait(
            "stop",
            &(),
            CallOptions::new().timeout(T),
            EventFilter::name("STOP"),
        )
        .unwrap();
    let s: Status = qmp.execute("query-status", &()).unwrap();
    assert_eq!(
        s,
        Status {
            status: "paused".into(),
            running: false
        }
    );
    peer.quit(&mut qmp);
}
