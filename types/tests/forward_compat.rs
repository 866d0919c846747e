//! Forward and backward compatibility by construction: a member from a future QEMU is
//! ignored, an enum value or union case this crate does not know is kept as received, an
//! event it does not know is simply not one of its types; and each fails nothing but what
//! it must.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use qmp_proto::{Command, QmpEvent};
use qmp_types::qmp::*;
use serde_json::{json, Value};

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("decodes")
}

#[test]
fn a_future_member_is_ignored() {
    let s: <QueryStatus as Command>::Returns = decode(json!({
        "status": "running", "running": true, "future-member": {"deep": [1, 2, 3]}
    }));
    assert_eq!(s.status, RunState::Running);
    assert!(s.running);
    // A missing required member is still an error: only what must fail fails.
    let e = serde_json::from_value::<StatusInfo>(json!({"status": "running"})).unwrap_err();
    assert!(e.to_string().contains("running"), "{e}");
}

#[test]
fn members_decode_by_their_qapi_names() {
    // Renamed members (`type`, `default-value`), from a string (names borrowed), with an
    // escaped name (owned), from a reader (nothing borrowed) and from a `Value`.
    let text = r#"{"name": "x", "typ\u0065": "int", "default-value": 3, "later": [1]}"#;
    let from_str: ObjectPropertyInfo = serde_json::from_str(text).unwrap();
    let from_reader: ObjectPropertyInfo = serde_json::from_reader(text.as_bytes()).unwrap();
    let from_value: ObjectPropertyInfo = decode(serde_json::from_str(text).unwrap());
    for p in [from_str, from_reader, from_value] {
        assert_eq!((p.name.as_str(), p.r#type.as_str()), ("x", "int"));
        assert_eq!(p.default_value, Some(json!(3)));
        assert_eq!(p.description, None);
    }
    // An optional member given as null is unset.
    let p: ObjectPropertyInfo = decode(json!({"name": "x", "type": "int", "description": null}));
    assert_eq!(p.description, None);
    // A member given twice, a required one missing or a value of the wrong type fails; so
    // does an object that is not one.
    let twice = r#"{"name": "x", "name": "y", "type": "int"}"#;
    let e = serde_json::from_str::<ObjectPropertyInfo>(twice).unwrap_err();
    assert!(e.to_string().contains("duplicate field `name`"), "{e}");
    let e = serde_json::from_value::<ObjectPropertyInfo>(json!({"name": "x"})).unwrap_err();
    assert!(e.to_string().contains("missing field `type`"), "{e}");
    let e = serde_json::from_value::<ObjectPropertyInfo>(json!({"name": 1, "type": "int"}));
    assert!(e.is_err());
    let e = serde_json::from_value::<ObjectPropertyInfo>(json!(["x", "int"])).unwrap_err();
    assert!(e.to_string().contains("struct ObjectPropertyInfo"), "{e}");
}

#[test]
fn an_unknown_enum_value_is_kept() {
    let s: StatusInfo = decode(json!({"status": "hibernating-on-mars", "running": false}));
    assert_eq!(s.status, RunState::Other("hibernating-on-mars".into()));
    assert_eq!(s.status.as_str(), "hibernating-on-mars");
    // And sent back as it came.
    assert_eq!(
        serde_json::to_value(&s.status).unwrap(),
        json!("hibernating-on-mars")
    );
    assert_eq!(RunState::from_name("paused"), RunState::Paused);
    assert_eq!(RunState::Prelaunch.to_string(), "prelaunch");
    // A value of the wrong JSON type is an error.
    assert!(serde_json::from_value::<RunState>(json!(3)).is_err());
}

#[test]
fn an_unknown_union_case_is_kept_raw() {
    let raw = json!({"type": "carrier-pigeon", "loft": "north", "birds": 3});
    let a: SocketAddress = decode(raw.clone());
    match &a.branch {
        SocketAddressBranch::Other { tag, data } => {
            assert_eq!(tag, "carrier-pigeon");
            assert_eq!(data, &raw);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.branch.tag(), "carrier-pigeon");
    // Sent back as it came.
    assert_eq!(serde_json::to_value(&a).unwrap(), raw);

    // A known case, with a member from the future.
    let a: SocketAddress = decode(json!({"type": "unix", "path": "/run/x.sock", "new": 1}));
    match &a.branch {
        SocketAddressBranch::Unix(u) => assert_eq!(u.path, "/run/x.sock"),
        other => panic!("{other:?}"),
    }
    // A known case missing its required member fails; a discriminator that is not a string
    // too.
    assert!(serde_json::from_value::<SocketAddress>(json!({"type": "unix"})).is_err());
    assert!(serde_json::from_value::<SocketAddress>(json!({"type": 5, "path": "/x"})).is_err());
    // A missing discriminator (an older QEMU, whose type was not a union yet) is the other
    // case, with an empty tag and the object as it came.
    let old = json!({"path": "/x"});
    let a: SocketAddress = decode(old.clone());
    match &a.branch {
        SocketAddressBranch::Other { tag, data } => {
            assert_eq!(tag, "");
            assert_eq!(data, &old);
        }
        other => panic!("{other:?}"),
    }
}

/// Backward compatibility: a member QEMU added to a received type after the type itself
/// (`BlockDeviceInfo.active`, since 10.0) is optional, so an older QEMU's reply decodes;
/// one the type always had stays required.
#[test]
fn a_member_added_later_is_optional_in_received_types() {
    let mut info = json!({
        "file": "null-co://", "ro": false, "drv": "null-co", "backing_file_depth": 0,
        "encrypted": false, "detect_zeroes": "off", "bps": 0, "bps_rd": 0, "bps_wr": 0,
        "iops": 0, "iops_rd": 0, "iops_wr": 0, "write_threshold": 0,
        "image": {"filename": "null-co://", "format": "null-co", "virtual-size": 0},
        "cache": {"writeback": true, "direct": false, "no-flush": false}
    });
    let old: BlockDeviceInfo = decode(info.clone());
    assert_eq!(old.active, None);
    info["active"] = json!(true);
    let new: BlockDeviceInfo = decode(info.clone());
    assert_eq!(new.active, Some(true));
    info.as_object_mut().unwrap().remove("drv");
    assert!(serde_json::from_value::<BlockDeviceInfo>(info).is_err());
}

#[test]
fn an_unexpected_alternate_type_is_kept_raw() {
    // StatsValue: a number, a boolean or an array; a string is a type no branch has.
    let v: StatsValue = decode(json!(42));
    assert!(matches!(v, StatsValue::Scalar(42)), "{v:?}");
    let v: StatsValue = decode(json!([1, 2]));
    assert!(
        matches!(v, StatsValue::List(ref l) if l == &[1, 2]),
        "{v:?}"
    );
    let v: StatsValue = decode(json!("many"));
    assert!(
        matches!(v, StatsValue::Other(ref x) if x == &json!("many")),
        "{v:?}"
    );
    // A type that commands send: StrOrNull (a string or null) sends an Other as it came.
    let o = StrOrNull::Other(json!(42));
    assert_eq!(serde_json::to_value(&o).unwrap(), json!(42));
}

fn event(name: &str, data: Value) -> QmpEvent {
    QmpEvent {
        name: name.to_owned(),
        data: Some(serde_json::value::to_raw_value(&data).unwrap()),
        timestamp: None,
    }
}

#[test]
fn an_unknown_event_is_not_one_of_the_types() {
    let e = event("QUANTUM_ENTANGLEMENT", json!({"spin": "up"}));
    assert!(e.decode::<DeviceDeleted>().is_none());
    assert!(e.decode::<StopEvent>().is_none());
    // Still readable as raw JSON.
    assert_eq!(e.data_as::<Value>().unwrap()["spin"], "up");

    // A known event with a future member decodes.
    let e = event(
        "DEVICE_DELETED",
        json!({"device": "disk1", "path": "/machine/peripheral/disk1", "why": "asked"}),
    );
    let d = e.decode::<DeviceDeleted>().unwrap().unwrap();
    assert_eq!(d.device.as_deref(), Some("disk1"));
    assert_eq!(d.path, "/machine/peripheral/disk1");
    // A known event without data, and one with a member of the wrong type.
    let stop = QmpEvent {
        name: "STOP".into(),
        data: None,
        timestamp: None,
    };
    assert!(stop.decode::<StopEvent>().unwrap().is_ok());
    assert!(event("DEVICE_DELETED", json!({"path": 1}))
        .decode::<DeviceDeleted>()
        .unwrap()
        .is_err());
}

#[test]
fn arguments_serialise_as_qemu_expects() {
    // No arguments: unit, so no `arguments` member.
    assert_eq!(
        serde_json::to_value(QueryStatus::new()).unwrap(),
        Value::Null
    );
    // Required members in `new`, optional ones by setter, left out when unset.
    let cmd = DeviceDel::new("disk1".into());
    assert_eq!(serde_json::to_value(&cmd).unwrap(), json!({"id": "disk1"}));
    let add = BlockdevAdd::new(BlockdevOptions::new(
        BlockdevOptionsCommon::new()
            .with_node_name("null0".into())
            .with_read_only(true),
        BlockdevOptionsBranch::NullCo(BlockdevOptionsNull::new().with_size(1 << 20)),
    ));
    assert_eq!(
        serde_json::to_value(&add).unwrap(),
        json!({"driver": "null-co", "node-name": "null0", "read-only": true, "size": 1048576})
    );
    assert_eq!(<BlockdevAdd as Command>::NAME, "blockdev-add");
    let oob = [
        <BlockdevAdd as Command>::ALLOW_OOB,
        <MigratePause as Command>::ALLOW_OOB,
        <QueryYank as Command>::ALLOW_OOB,
    ];
    assert_eq!(oob, [false, true, true]);
}

/// The run state and job types convert to the core's tracked ones by wire name, unknown
/// values included.
#[cfg(all(feature = "run-state", feature = "job"))]
#[test]
fn conversions_to_the_tracked_types() {
    use qmp_proto::status;
    use qmp_types::qmp::{JobInfo, JobStatus, RunState};

    assert_eq!(
        status::VmStatus::from(&RunState::GuestPanicked),
        status::VmStatus::GuestPanicked
    );
    let future = RunState::from_name("hibernating");
    let tracked = status::VmStatus::from(&future);
    assert_eq!(tracked, status::VmStatus::Other("hibernating".into()));
    assert_eq!(RunState::from(&tracked), future);
    assert_eq!(
        status::JobStatus::from(&JobStatus::Concluded),
        status::JobStatus::Concluded
    );
    let info: JobInfo = serde_json::from_str(
        r#"{"id": "m0", "type": "mirror", "status": "ready", "current-progress": 5,
            "total-progress": 10, "error": "x"}"#,
    )
    .unwrap();
    let job = status::Job::from(&info);
    assert_eq!(job.to_string(), "m0 (mirror) ready 5/10: x");
}
