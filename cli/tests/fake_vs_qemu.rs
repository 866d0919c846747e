//! `qmp fake --prelaunch` against real `qemu-system-x86_64 -M pc -S -nodefaults`: the same
//! commands, in the same order, on both, one connection each. Every answer must be alike:
//! an error with the same class and text; a return of the same shape (the same members,
//! recursively, with values of the same JSON type), and the same value where the fake keeps
//! the state or answers QEMU's recorded reply (every step below but a few whose values only
//! a real process knows: its package string, its threads' ids). The events each step
//! causes must be the same too, names and data.
//!
//! Needs qemu-system-x86_64; without it the test prints why and passes, unless
//! `QMP_REQUIRE_QEMU=1` (set by CI), which makes a missing QEMU a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real processes: the test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};
use support::{qemu_and_fake, WAIT};

/// How an answer is compared, beyond error class and text (always compared).
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// The whole return value.
    Value,
    /// The return value's shape: members and JSON types, recursively.
    Shape,
}
use Compare::{Shape, Value as Same};

/// The steps: a command, its arguments (JSON text, `""` for none) and how its answer is
/// compared.
const STEPS: &[(&str, &str, Compare)] = &[
    ("query-version", "", Shape),
    ("query-status", "", Same),
    ("query-name", "", Same),
    ("qmp_capabilities", "", Same),
    ("query-commands", "", Same),
    ("query-qmp-schema", "", Same),
    ("query-kvm", "", Same),
    ("query-uuid", "", Same),
    ("query-target", "", Same),
    ("query-machines", "", Same),
    ("query-cpu-definitions", "", Same),
    ("query-cpus-fast", "", Shape),
    ("query-hotpluggable-cpus", "", Same),
    ("query-iothreads", "", Same),
    ("query-current-machine", "", Same),
    ("query-memory-size-summary", "", Same),
    ("query-balloon", "", Same),
    ("query-display-options", "", Same),
    ("query-vnc", "", Same),
    ("query-spice", "", Same),
    ("query-tpm", "", Same),
    ("query-tpm-models", "", Same),
    ("query-tpm-types", "", Same),
    ("query-chardev-backends", "", Same),
    ("query-chardev", "", Same),
    ("query-yank", "", Same),
    ("query-block", "", Same),
    ("query-named-block-nodes", "", Same),
    ("query-blockstats", "", Same),
    ("query-block-jobs", "", Same),
    ("query-jobs", "", Same),
    ("query-migrate", "", Same),
    ("query-migrate-capabilities", "", Same),
    ("query-migrate-parameters", "", Same),
    ("query-fdsets", "", Same),
    ("query-dump", "", Same),
    ("query-dump-guest-memory-capability", "", Same),
    ("query-replay", "", Same),
    ("query-sev", "", Same),
    ("query-sgx", "", Same),
    ("query-acpi-ospm-status", "", Same),
    ("query-command-line-options", "", Same),
    ("query-memdev", "", Same),
    ("query-pci", "", Same),
    ("query-mice", "", Same),
    ("query-rocker", "", Same),
    ("no-such-command", "", Same),
    // File descriptors, without one passed.
    ("getfd", r#"{"fdname": "f"}"#, Same),
    ("closefd", r#"{"fdname": "f"}"#, Same),
    ("add-fd", "", Same),
    ("remove-fd", r#"{"fdset-id": 9}"#, Same),
    ("migrate-pause", "", Same),
    // Objects.
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m1", "size": 1048576}"#,
        Same,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m2", "size": 2097152}"#,
        Same,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "a-backend", "size": 4096}"#,
        Same,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s1", "data": "c2VjcmV0"}"#,
        Same,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s1", "data": "x"}"#,
        Same,
    ),
    ("query-memdev", "", Same),
    ("qom-list", r#"{"path": "/objects"}"#, Same),
    (
        "qom-get",
        r#"{"path": "/objects/m1", "property": "size"}"#,
        Same,
    ),
    (
        "qom-set",
        r#"{"path": "/objects/m1", "property": "size", "value": 4096}"#,
        Same,
    ),
    ("object-del", r#"{"id": "s1"}"#, Same),
    ("object-del", r#"{"id": "s1"}"#, Same),
    ("object-del", r#"{"id": "pc.ram"}"#, Same),
    // Devices.
    (
        "device_add",
        r#"{"driver": "usb-tablet", "id": "t0"}"#,
        Same,
    ),
    (
        "device_add",
        r#"{"driver": "piix3-usb-uhci", "id": "u"}"#,
        Same,
    ),
    ("device_add", r#"{"driver": "usb-tablet", "id": "t"}"#, Same),
    ("device_add", r#"{"driver": "usb-kbd"}"#, Same),
    ("device_add", r#"{"driver": "virtio-rng-pci"}"#, Same),
    (
        "device_add",
        r#"{"driver": "pci-testdev", "id": "p"}"#,
        Same,
    ),
    (
        "device_add",
        r#"{"driver": "pci-testdev", "id": "p"}"#,
        Same,
    ),
    ("device_add", r#"{"driver": "no-such-device"}"#, Same),
    ("query-mice", "", Same),
    ("query-pci", "", Same),
    ("qom-list", r#"{"path": "/machine/peripheral"}"#, Same),
    ("qom-list", r#"{"path": "/machine/peripheral-anon"}"#, Same),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/p", "property": "realized"}"#,
        Same,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/t", "property": "hotplugged"}"#,
        Same,
    ),
    (
        "qom-get",
        r#"{"path": "/machine", "property": "type"}"#,
        Same,
    ),
    ("qom-list", r#"{"path": "/machine"}"#, Same),
    (
        "qom-get",
        r#"{"path": "/machine", "property": "smp"}"#,
        Same,
    ),
    (
        "qom-get",
        r#"{"path": "/machine", "property": "memory"}"#,
        Same,
    ),
    (
        "qom-get",
        r#"{"path": "/machine", "property": "smram"}"#,
        Same,
    ),
    (
        "qom-get",
        r#"{"path": "/machine", "property": "nope"}"#,
        Same,
    ),
    (
        "qom-set",
        r#"{"path": "/machine", "property": "peripheral", "value": "x"}"#,
        Same,
    ),
    (
        "qom-set",
        r#"{"path": "/machine", "property": "nope", "value": 1}"#,
        Same,
    ),
    ("qom-list", r#"{"path": "/nowhere"}"#, Same),
    ("device_del", r#"{"id": "t"}"#, Same),
    ("query-mice", "", Same),
    ("device_add", r#"{"driver": "usb-mouse", "id": "m"}"#, Same),
    ("query-mice", "", Same),
    ("device_del", r#"{"id": "p"}"#, Same),
    ("query-pci", "", Same),
    ("device_del", r#"{"id": "t"}"#, Same),
    // Block nodes.
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n1", "size": 1048576}"#,
        Same,
    ),
    (
        "blockdev-add",
        r#"{"driver": "null-co", "node-name": "n1"}"#,
        Same,
    ),
    ("blockdev-del", r#"{"node-name": "n1"}"#, Same),
    ("blockdev-del", r#"{"node-name": "n1"}"#, Same),
    // Run states, last: once the VM runs, a real guest's firmware changes what the devices
    // show (PCI BARs, interrupt lines), which the fake does not model. -S leaves the VM in
    // prelaunch until cont.
    ("stop", "", Same),
    ("system_reset", "", Same),
    ("system_powerdown", "", Same),
    (
        "human-monitor-command",
        r#"{"command-line": "info status"}"#,
        Same,
    ),
    (
        "human-monitor-command",
        r#"{"command-line": "info version"}"#,
        Shape,
    ),
    ("cont", "", Same),
    ("query-status", "", Same),
    ("cont", "", Same),
    ("stop", "", Same),
    ("query-status", "", Same),
    (
        "human-monitor-command",
        r#"{"command-line": "info status"}"#,
        Same,
    ),
    // A paused VM that is reset goes back to prelaunch.
    ("system_reset", "", Same),
    ("query-status", "", Same),
    ("query-yank", "", Same),
    // Migration, last: the VM ends in postmigrate.
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "events", "state": true}]}"#,
        Same,
    ),
    (
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "postcopy-ram", "state": true}, {"capability": "x-ignore-shared", "state": true}]}"#,
        Same,
    ),
    ("query-migrate-capabilities", "", Same),
    (
        "migrate-set-parameters",
        r#"{"max-bandwidth": 1073741824, "downtime-limit": 500}"#,
        Same,
    ),
    (
        "migrate-set-parameters",
        r#"{"downtime-limit": 2000001}"#,
        Same,
    ),
    ("query-migrate-parameters", "", Same),
    ("migrate_cancel", "", Same),
    ("migrate", r#"{"uri": "nope:x"}"#, Same),
    ("migrate", r#"{"uri": "exec:cat > /dev/null"}"#, Same),
    ("query-migrate", "", Shape),
    ("query-status", "", Same),
    ("migrate", r#"{"uri": "exec:cat > /dev/null"}"#, Same),
];

/// A line-by-line QMP client that keeps the events it reads.
struct Monitor {
    lines: BufReader<UnixStream>,
    out: UnixStream,
    events: Vec<Value>,
}

impl Monitor {
    /// Connects (waiting for the socket), reads the greeting and negotiates.
    fn open(sock: &Path) -> Monitor {
        let s = support::connect(sock);
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut m = Monitor {
            out: s.try_clone().unwrap(),
            lines: BufReader::new(s),
            events: Vec::new(),
        };
        let greeting = m.line().expect("a greeting");
        assert!(greeting.get("QMP").is_some(), "{greeting}");
        let reply = m.call("qmp_capabilities", "");
        assert_eq!(reply, json!({"return": {}}));
        m
    }

    fn line(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.lines.read_line(&mut line).unwrap();
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    /// Sends a command, returns its answer; the events read before it are kept.
    fn call(&mut self, command: &str, args: &str) -> Value {
        let text = if args.is_empty() {
            format!(r#"{{"execute": "{command}"}}"#)
        } else {
            format!(r#"{{"execute": "{command}", "arguments": {args}}}"#)
        };
        self.out.write_all(text.as_bytes()).unwrap();
        loop {
            let mut v = self.line().expect("an answer before the end of the stream");
            if v.get("event").is_some() {
                v.as_object_mut().unwrap().remove("timestamp");
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// Reads the events that come within `d`.
    fn settle(&mut self, d: Duration) {
        self.lines.get_ref().set_read_timeout(Some(d)).unwrap();
        let mut line = String::new();
        while let Ok(n) = self.lines.read_line(&mut line) {
            if n == 0 {
                break;
            }
            let mut v: Value = serde_json::from_str(&line).unwrap();
            assert!(v.get("event").is_some(), "unasked: {line}");
            v.as_object_mut().unwrap().remove("timestamp");
            self.events.push(v);
            line.clear();
        }
        assert!(line.is_empty(), "a line cut short: {line}");
        self.lines.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    }

    /// Reads until the end of the stream, keeping the events.
    fn drain(&mut self) {
        while let Some(mut v) = self.line() {
            if v.get("event").is_some() {
                v.as_object_mut().unwrap().remove("timestamp");
                self.events.push(v);
            }
        }
    }
}

/// The shape of a value: its JSON type, and for objects and arrays that of their members.
/// An array's shape is the set of its elements' shapes.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => {
            let set: BTreeSet<String> = a.iter().map(|e| shape(e).to_string()).collect();
            json!(set.into_iter().collect::<Vec<_>>())
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// `v` with the monitor socket's path replaced by `SOCK`.
fn unpath(v: &Value, sock: &Path) -> Value {
    serde_json::from_str(&v.to_string().replace(&sock.display().to_string(), "SOCK")).unwrap()
}

#[test]
fn sixty_commands_answer_as_qemu_answers() {
    let commands: BTreeSet<&str> = STEPS.iter().map(|(c, _, _)| *c).collect();
    assert!(commands.len() >= 60, "{} commands", commands.len());
    let Some((peer, fake_process)) = qemu_and_fake() else {
        return;
    };
    let (qemu_sock, fake_sock) = (peer.sock.clone(), fake_process.sock.clone());
    let mut qemu = Monitor::open(&qemu_sock);
    let mut fake = Monitor::open(&fake_sock);
    let mut differ = Vec::new();
    for (i, (command, args, compare)) in STEPS.iter().enumerate() {
        let real = unpath(&qemu.call(command, args), &qemu_sock);
        let ours = unpath(&fake.call(command, args), &fake_sock);
        let alike = match (real.get("return"), ours.get("return"), compare) {
            (Some(r), Some(o), Shape) => shape(r) == shape(o),
            _ => real == ours,
        };
        if matches!(*command, "device_del" | "system_reset" | "migrate") {
            // DEVICE_DELETED comes some 50 ms after the reply, or never (a PCI device
            // waits for its guest, or for a reset that ejects it); a migration's events
            // come as it runs: let them come before the next step, on both.
            qemu.settle(Duration::from_millis(300));
            fake.settle(Duration::from_millis(300));
        }
        if !alike {
            let cut = |v: &Value| v.to_string().chars().take(600).collect::<String>();
            differ.push(format!(
                "step {i}: {command} {args}\n  QEMU: {}\n  fake: {}",
                cut(&real),
                cut(&ours)
            ));
        }
    }
    // quit: SHUTDOWN, the reply, then the end of the stream, on both.
    for (m, sock) in [(&mut qemu, &qemu_sock), (&mut fake, &fake_sock)] {
        let reply = m.call("quit", "");
        assert_eq!(reply, json!({"return": {}}), "{}", sock.display());
        m.drain();
    }
    eprintln!(
        "{} steps over {} commands compared, {} differ",
        STEPS.len(),
        commands.len(),
        differ.len()
    );
    assert!(
        differ.is_empty(),
        "{} answers differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
    assert_eq!(qemu.events, fake.events, "the events differ");
    let names: BTreeSet<&str> = qemu
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "DEVICE_DELETED",
            "MIGRATION",
            "MIGRATION_PASS",
            "POWERDOWN",
            "RESET",
            "RESUME",
            "SHUTDOWN",
            "STOP"
        ])
    );
}
