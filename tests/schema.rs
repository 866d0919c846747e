//! Introspection over real `query-qmp-schema` replies of qemu-system-x86_64 and
//! qemu-storage-daemon 10.0.2 (the captures in `tests/captures`).
#![allow(clippy::unwrap_used)]

use qmp_proto::schema::{Commands, Schema, SchemaKind};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The `return` member of the capture's `query-qmp-schema` reply (the one with an array).
fn schema_json(capture: &str) -> String {
    let path = format!("{}/tests/captures/{capture}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(path).unwrap();
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "return")]
        ret: Option<Box<RawValue>>,
    }
    serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Reply>()
        .filter_map(|m| m.unwrap().ret)
        .find(|r| r.get().starts_with('['))
        .unwrap()
        .get()
        .to_owned()
}

fn qsys() -> Schema {
    Schema::from_json(&schema_json("qsys-schema.bytes")).unwrap()
}

fn qsd() -> Schema {
    Schema::from_json(&schema_json("qsd-schema.bytes")).unwrap()
}

#[test]
fn counts_match_the_captures() {
    let s = qsys();
    assert_eq!(s.entries().len(), 1172);
    assert_eq!(s.command_names().len(), 233);
    assert_eq!(s.event_names().len(), 55);
    let d = qsd();
    assert_eq!(d.entries().len(), 513);
    assert_eq!(d.command_names().len(), 76);
    assert_eq!(d.event_names().len(), 13);
    // Every entry of a real schema has a known meta-type.
    assert!(s
        .entries()
        .iter()
        .all(|e| !matches!(e.kind, SchemaKind::Other { .. })));
}

#[test]
fn commands_and_events() {
    let s = qsys();
    for c in [
        "query-status",
        "stop",
        "cont",
        "getfd",
        "add-fd",
        "blockdev-add",
        "quit",
    ] {
        assert!(s.has_command(c), "{c}");
    }
    assert!(!s.has_command("nope"));
    assert!(!s.has_command("STOP"), "an event is not a command");
    assert!(!s.has_command("str"), "a type is not a command");
    for e in ["STOP", "RESUME", "SHUTDOWN", "RESET", "JOB_STATUS_CHANGE"] {
        assert!(s.has_event(e), "{e}");
    }
    assert!(!s.has_event("query-status"));
    let names = s.command_names();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );

    let d = qsd();
    assert!(d.has_command("query-version"));
    assert!(
        !d.has_command("query-status"),
        "the storage daemon has no runstate"
    );
    assert!(!d.has_command("getfd"));
    assert!(d.has_event("JOB_STATUS_CHANGE"));
    assert!(!d.has_event("STOP"));
}

#[test]
fn allow_oob() {
    let s = qsys();
    let oob: Vec<&str> = s
        .command_names()
        .into_iter()
        .filter(|c| s.command(c).unwrap().allow_oob)
        .collect();
    assert_eq!(
        oob,
        ["migrate-pause", "migrate-recover", "query-yank", "yank"]
    );
    assert!(!s.command("query-status").unwrap().allow_oob);
    let d = qsd();
    assert!(d
        .command_names()
        .iter()
        .all(|c| !d.command(c).unwrap().allow_oob));
}

#[test]
fn blockdev_add_arguments() {
    for s in [qsys(), qsd()] {
        let top = s.argument_names("blockdev-add", &[]);
        for a in ["driver", "node-name", "cache", "read-only", "discard"] {
            assert!(top.contains(&a.to_owned()), "{a} in {top:?}");
        }
        // Every variant contributes when the driver is not known.
        for a in ["filename", "file", "lazy-refcounts", "size"] {
            assert!(top.contains(&a.to_owned()), "{a} in {top:?}");
        }
        assert_eq!(
            s.argument_names("blockdev-add", &["cache"]),
            ["direct", "no-flush"]
        );
        assert!(s.has_argument("blockdev-add", &["cache", "no-flush"]));
        assert!(s.has_argument("blockdev-add", &["driver"]));
        assert!(!s.has_argument("blockdev-add", &["cache", "writeback"]));
        assert!(!s.has_argument("blockdev-add", &["bogus"]));
        assert!(s.has_argument("blockdev-add", &[]));
        assert!(!s.has_argument("nope", &[]));

        let drivers = s.argument_values("blockdev-add", &["driver"]);
        for d in ["qcow2", "raw", "file", "null-co"] {
            assert!(drivers.contains(&d.to_owned()), "{d}");
        }
        assert_eq!(
            s.argument_values("blockdev-add", &["read-only"]),
            ["true", "false"]
        );
        assert_eq!(
            s.argument_values("blockdev-add", &["cache", "direct"]),
            ["true", "false"]
        );
        assert_eq!(
            s.argument_values("blockdev-add", &["discard"]),
            ["ignore", "unmap"]
        );
        assert!(s.argument_values("blockdev-add", &["node-name"]).is_empty());
        assert!(s.argument_values("blockdev-add", &[]).is_empty());
    }
}

#[test]
fn a_known_tag_value_narrows_the_union() {
    let s = qsys();
    let qcow2 = s.argument_names_given("blockdev-add", &[], &[("driver", "qcow2")]);
    assert!(qcow2.contains(&"lazy-refcounts".to_owned()));
    assert!(qcow2.contains(&"file".to_owned()));
    assert!(
        qcow2.contains(&"node-name".to_owned()),
        "common members stay"
    );
    assert!(!qcow2.contains(&"filename".to_owned()), "{qcow2:?}");
    let file = s.argument_names_given("blockdev-add", &[], &[("driver", "file")]);
    assert!(file.contains(&"filename".to_owned()));
    assert!(!file.contains(&"lazy-refcounts".to_owned()));
    // No variant for an unknown driver: only the common members.
    let none = s.argument_names_given("blockdev-add", &[], &[("driver", "nope")]);
    assert_eq!(
        none,
        [
            "active",
            "auto-read-only",
            "cache",
            "detect-zeroes",
            "discard",
            "driver",
            "force-share",
            "node-name",
            "read-only"
        ]
    );
    assert!(s.argument_names("blockdev-add", &["bogus-path"]).is_empty());

    // qcow2's `file` is an alternate (a node name or inline options): its object branch is
    // followed, and a given nested driver narrows that union too.
    let nested = s.argument_names("blockdev-add", &["file"]);
    assert!(nested.contains(&"driver".to_owned()) && nested.contains(&"filename".to_owned()));
    let nested_file = s.argument_names_given(
        "blockdev-add",
        &["file"],
        &[("driver", "qcow2"), ("file.driver", "file")],
    );
    assert!(nested_file.contains(&"filename".to_owned()));
    assert!(!nested_file.contains(&"lazy-refcounts".to_owned()));
    assert!(s
        .argument_values("blockdev-add", &["file", "driver"])
        .contains(&"qcow2".to_owned()));
    // A given top-level driver does not narrow the nested union...
    let nested_any = s.argument_names_given("blockdev-add", &["file"], &[("driver", "qcow2")]);
    assert!(nested_any.contains(&"lazy-refcounts".to_owned()));
    // ... but it removes members its variant does not have: the file driver has no `file`.
    assert!(s
        .argument_names_given("blockdev-add", &["file"], &[("driver", "file")])
        .is_empty());
}

#[test]
fn arrays_are_followed() {
    let s = qsys();
    // blkdebug's inject-error is a list of objects.
    let rules = s.argument_names("blockdev-add", &["inject-error"]);
    assert!(rules.contains(&"event".to_owned()), "{rules:?}");
    assert!(s.has_argument("blockdev-add", &["inject-error", "errno"]));
}

#[test]
fn event_data() {
    let s = qsys();
    assert_eq!(
        s.event_data_names("JOB_STATUS_CHANGE", &[]),
        ["id", "status"]
    );
    let status = s.event_data_values("JOB_STATUS_CHANGE", &["status"]);
    for v in ["created", "running", "concluded", "null"] {
        assert!(status.contains(&v.to_owned()), "{v}");
    }
    assert_eq!(s.event_data_names("SHUTDOWN", &[]), ["guest", "reason"]);
    assert!(s.event_data_names("STOP", &[]).is_empty());
    assert!(s.event_data_names("NOPE", &[]).is_empty());
}

#[test]
fn query_status_types() {
    let s = qsys();
    let cmd = s.command("query-status").unwrap();
    let SchemaKind::Object(ret) = &s.get(&cmd.ret_type).unwrap().kind else {
        panic!()
    };
    let mut members: Vec<(&str, bool)> = ret
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.optional))
        .collect();
    members.sort();
    assert_eq!(members, [("running", false), ("status", false)]);
}

#[test]
fn unknown_meta_types_and_members_are_tolerated() {
    let s = Schema::from_json(
        r#"[{"name": "x", "meta-type": "quantum", "spin": 1},
            {"name": "c", "meta-type": "command", "arg-type": "o", "ret-type": "o", "new": [1]},
            {"name": "o", "meta-type": "object", "members": [{"name": "m", "type": "e", "new": true}]},
            {"name": "e", "meta-type": "enum", "members": [{"name": "a"}, {"name": "b", "features": ["deprecated"]}]},
            {"name": "old", "meta-type": "enum", "values": ["p", "q"]}]"#,
    )
    .unwrap();
    assert_eq!(
        s.get("x").unwrap().kind,
        SchemaKind::Other {
            meta_type: "quantum".into()
        }
    );
    assert_eq!(s.argument_values("c", &["m"]), ["a", "b"]);
    assert_eq!(
        s.get("old").unwrap().kind,
        SchemaKind::Enum {
            values: vec!["p".into(), "q".into()]
        }
    );
    assert!(Schema::from_json(r#"[{"meta-type": "enum"}]"#).is_err());
    assert!(Schema::from_json(r#"{"name": "x"}"#).is_err());
}

#[test]
fn cyclic_and_dangling_schemas_are_walked_safely() {
    let s = Schema::from_json(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "a", "ret-type": "nowhere"},
            {"name": "a", "meta-type": "alternate", "members": [{"type": "a"}, {"type": "[a]"}, {"type": "o"}]},
            {"name": "[a]", "meta-type": "array", "element-type": "a"},
            {"name": "o", "meta-type": "object", "members": [{"name": "self", "type": "a"}, {"name": "d", "type": "gone"}],
             "tag": "self", "variants": [{"case": "x", "type": "o"}]}]"#,
    )
    .unwrap();
    assert_eq!(s.argument_names("c", &[]), ["d", "self"]);
    assert_eq!(
        s.argument_names("c", &["self", "self", "self"]),
        ["d", "self"]
    );
    assert!(s.argument_names("c", &["d"]).is_empty());
    assert!(s.argument_values("c", &["self"]).is_empty());
}

#[test]
fn query_commands() {
    // qemu-system-x86_64's command names, in query-commands' shape.
    let s = qsys();
    let list: Vec<Value> = s
        .command_names()
        .iter()
        .map(|n| serde_json::json!({"name": n, "future-member": 1}))
        .collect();
    let commands = Commands::from_json(&serde_json::to_string(&list).unwrap()).unwrap();
    assert_eq!(commands.len(), 233);
    assert!(commands.has("query-status"));
    assert!(!commands.has("STOP"));
    assert_eq!(commands.names().collect::<Vec<_>>(), s.command_names());
    assert!(Commands::from_json("[]").unwrap().is_empty());
    assert!(Commands::from_json(r#"[{"nom": "x"}]"#).is_err());
}

#[test]
fn a_hostile_schema_cannot_make_a_walk_explode() {
    // 30 unions whose 30 variants are each of the 30 unions, and alternates of all of them:
    // a naive walk visits 30^16 types.
    let n = 30;
    let mut entries = vec![
        json!({"name": "c", "meta-type": "command", "arg-type": "u0", "ret-type": "u0"}),
        json!({"name": "a", "meta-type": "alternate",
               "members": (0..n).map(|i| json!({"type": format!("u{i}")})).collect::<Vec<_>>()}),
    ];
    for i in 0..n {
        entries.push(json!({
            "name": format!("u{i}"), "meta-type": "object", "tag": "t",
            "members": [{"name": format!("m{i}"), "type": "a"}, {"name": "t", "type": "bool"}],
            "variants": (0..n).map(|j| json!({"case": format!("{j}"), "type": format!("u{j}")})).collect::<Vec<_>>(),
        }));
    }
    entries.push(json!({"name": "bool", "meta-type": "builtin", "json-type": "boolean"}));
    let s = Schema::from_json(&serde_json::to_string(&entries).unwrap()).unwrap();
    // The test harness's clock (the clippy ban is for the core's own code).
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let names = s.argument_names("c", &["m0", "m1", "m2", "m3"]);
    assert_eq!(names.len(), n + 1, "{names:?}");
    assert_eq!(s.argument_values("c", &["m5", "t"]), ["true", "false"]);
    assert!(s.has_argument("c", &["m0", "m29", "m7"]));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The fake QEMU's schema is QEMU's: it describes the commands' arguments, so that
/// introspection (and a shell's completion) works against it as against QEMU.
#[test]
fn the_fake_qemu_schema_is_qemus() {
    use qmp_proto::server::{FakeQemu, Server};

    #[allow(clippy::disallowed_methods)] // any instant: the server reads no clock
    let now = std::time::Instant::now();
    let fake = FakeQemu::new();
    let mut server = Server::new(fake.server_config(), fake);
    server.accept(now);
    server.handle_input(
        now,
        br#"{"execute": "qmp_capabilities"}{"execute": "query-qmp-schema", "id": 1}"#,
    );
    let out = String::from_utf8(server.take_output()).unwrap();
    let reply = out.lines().find(|l| l.contains(r#""id": 1"#)).unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
    let schema: Schema = serde_json::from_value(reply["return"].clone()).unwrap();
    let names = schema.argument_names("blockdev-add", &[]);
    for name in ["driver", "node-name", "size", "filename", "cache"] {
        assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
    }
    let drivers = schema.argument_values("blockdev-add", &["driver"]);
    assert!(drivers.iter().any(|d| d == "null-co"), "{drivers:?}");
    assert!(drivers.iter().any(|d| d == "qcow2"), "{drivers:?}");
    assert_eq!(
        schema.argument_values("blockdev-backup", &["sync"]),
        ["top", "full", "none", "incremental", "bitmap"]
    );
    assert_eq!(schema.argument_names("qmp_capabilities", &[]), ["enable"]);
    assert!(schema.has_argument("human-monitor-command", &["command-line"]));
    assert!(schema.argument_names("query-status", &[]).is_empty());
    assert!(schema.has_event("JOB_STATUS_CHANGE"));
    assert!(schema.has_event("DEVICE_DELETED"));
    assert!(schema.command("query-yank").unwrap().allow_oob);
    assert!(schema.command("migrate-recover").unwrap().allow_oob);
    assert!(!schema.command("query-status").unwrap().allow_oob);
}
