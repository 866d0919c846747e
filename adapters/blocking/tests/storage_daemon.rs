//! Against a real qemu-storage-daemon (from qemu-utils). Skipped with a printed reason when
//! it is not installed, unless QMP_REQUIRE_QEMU=1.

mod common;

use std::time::Duration;

use common::{qmp_error, Peer};
use qmp_blocking::{CallOptions, DisconnectReason, Error, IgnoredAny};
use serde::Deserialize;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Version {
    qemu: qmp_blocking::QemuVersion,
    package: String,
}

#[derive(Deserialize)]
struct CommandInfo {
    name: String,
}

#[test]
fn negotiates_and_answers_queries() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    let greeting = qmp.greeting().clone();
    assert_eq!(greeting.version.major, qmp_testkit::qemu_major());
    assert!(greeting.has_capability("oob"));
    assert!(qmp.oob_enabled());

    let v: Version = qmp.execute("query-version", &()).unwrap();
    assert_eq!(v.qemu, greeting.version);
    assert_eq!(v.package, greeting.package);

    let commands: Vec<CommandInfo> = qmp.execute("query-commands", &()).unwrap();
    let names: Vec<&str> = commands.iter().map(|c| c.name.as_str()).collect();
    for name in [
        "blockdev-add",
        "blockdev-backup",
        "query-qmp-schema",
        "quit",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // qemu-system commands are not there.
    assert!(!names.contains(&"query-status"));

    let schema = qmp
        .execute::<Box<qmp_proto::RawValue>>("query-qmp-schema", &())
        .unwrap();
    assert!(
        (100_000..150_000).contains(&schema.get().len()),
        "{} bytes",
        schema.get().len()
    );
    let entries: Vec<Value> = serde_json::from_str(schema.get()).unwrap();
    assert!(entries.iter().any(|e| e["name"] == "blockdev-backup"));
}

#[test]
fn error_reply_is_typed_and_the_session_goes_on() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    let args = json!({"node-name": "nope"});
    let e = qmp_error(qmp.execute::<Value>("blockdev-del", &args), "GenericError");
    assert!(e.desc.contains("nope"), "{}", e.desc);
    qmp_error(
        qmp.execute::<Value>("no-such-command", &()),
        "CommandNotFound",
    );
    // qemu-storage-daemon offers OOB but has no OOB-capable command.
    let e = qmp_error(
        qmp.execute_with::<Value>("query-version", &(), CallOptions::new().oob(true)),
        "GenericError",
    );
    assert!(e.desc.contains("does not support OOB"), "{}", e.desc);
    let _: Version = qmp.execute("query-version", &()).unwrap();
    assert!(qmp.is_connected());
}

/// A backup job sends all its JOB_STATUS_CHANGE events before the reply to
/// `blockdev-backup`: they must all be buffered and found afterwards, in order.
#[test]
fn backup_job_events_arriving_before_the_reply_are_kept() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    for node in ["src", "dst"] {
        let args = json!({"driver": "null-co", "node-name": node, "size": 1_048_576});
        qmp.execute::<IgnoredAny>("blockdev-add", &args).unwrap();
    }
    let args = json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full"});
    qmp.execute::<IgnoredAny>("blockdev-backup", &args).unwrap();
    // Everything up to the job's end came before the reply.
    assert!(qmp.buffered_events() >= 6, "{}", qmp.buffered_events());

    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("null") {
        let e = qmp.wait_event("JOB_STATUS_CHANGE", T).unwrap();
        let data: Value = e.data_as().unwrap();
        assert_eq!(data["id"], "j0");
        assert!(e.timestamp.is_some_and(|t| t.seconds > 0));
        statuses.push(data["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses.first().map(String::as_str), Some("created"));
    let tail: Vec<&str> = statuses[statuses.len() - 4..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["waiting", "pending", "concluded", "null"],
        "{statuses:?}"
    );
    let done = qmp.wait_event("BLOCK_JOB_COMPLETED", T).unwrap();
    let data: Value = done.data_as().unwrap();
    assert_eq!(data["device"], "j0");
    assert_eq!(data["offset"], 1_048_576);
    assert_eq!(qmp.events_lost(), 0);
}

#[test]
fn quit_ends_the_session_cleanly() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    peer.quit(&mut qmp);
    assert!(matches!(
        qmp.execute::<Value>("query-version", &()),
        Err(Error::Disconnected(DisconnectReason::Eof {
            after_quit: true
        }))
    ));
    qmp.close();
    qmp.close();
}

/// A megabyte argument (QEMU reads about 4 us per byte) sent while large replies stream
/// back: the adapter reads them while it writes.
#[test]
fn large_command_while_replies_stream_back() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    let schemas: Vec<_> = (0..4)
        .map(|_| {
            qmp.send("query-qmp-schema", &(), CallOptions::new())
                .unwrap()
        })
        .collect();
    let big = "x".repeat(1 << 20);
    let big_id = qmp
        .send(
            "no-such-command",
            &json!({ "data": big }),
            CallOptions::new(),
        )
        .unwrap();
    let after = qmp.send("query-version", &(), CallOptions::new()).unwrap();
    for id in schemas {
        assert!(qmp.wait(id).unwrap().get().len() > 100_000);
    }
    qmp_error(qmp.wait(big_id), "CommandNotFound");
    let _: Version = qmp
        .wait(after)
        .and_then(|raw| Ok(serde_json::from_str(raw.get())?))
        .unwrap();
}
