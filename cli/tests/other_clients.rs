//! Other clients see `qmp fake --prelaunch` as they see real `qemu-system-x86_64 -M pc -S`:
//! Python's `qmp-shell` (from the reference library `qemu.qmp`) prints the same session on
//! both, and the `qapi` crate's blocking client gets the same typed results, errors and
//! events.
//!
//! Needs qemu-system-x86_64 (and python3 with `qemu.qmp` for `qmp-shell`); without them the
//! tests print why and pass, unless `QMP_REQUIRE_QEMU=1` (set by CI), which makes a missing
//! one a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real processes: the test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use qapi::qmp;
use serde::Serialize;
use serde_json::{json, Value};
use support::{qemu_and_fake, wait_listening, WAIT};

/// What `qmp-shell` is given, one line at a time, in QMP mode: commands in its `key=value`
/// syntax (modelled ones, QEMU's recorded queries, errors of several kinds), a JSON line
/// (which it does not take). Not `quit`: qmp-shell 0.0.6 fails with a traceback when the
/// peer goes at `quit`, real QEMU included.
const SHELL_QMP: &str = "\
query-status
query-version
stop
query-status
object-add qom-type=secret id=s1 data=eA==
object-add qom-type=secret id=s1 data=eA==
object-add qom-type=memory-backend-ram id=m1 size=1048576
qom-list path=/objects
qom-get path=/objects/m1 property=size
query-memdev
device_add driver=piix3-usb-uhci id=usb0
device_add driver=usb-tablet id=t0
device_add driver=nope
query-mice
query-pci
device_del id=nope
stop extra=1
blockdev-add driver=null-co node-name=n1 size=1048576
blockdev-add driver=null-co node-name=1bad
blockdev-del node-name=n1
query-named-block-nodes
no-such-command
{\"execute\": \"query-name\"}
query-kvm
query-machines
system_reset
query-status
";

/// The same in HMP mode (`-H`): the HMP commands the fake answers.
const SHELL_HMP: &str = "info status\ninfo name\n";

fn python_with_qemu_qmp() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import qemu.qmp.qmp_shell"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        qmp_testkit::skip_or_fail("python3 with qemu.qmp (pip install qemu.qmp)");
    }
    ok
}

/// Runs `qmp-shell [flags] SOCK` with `input` on its standard input; returns what it
/// printed, with the socket's path replaced by `SOCK`.
fn qmp_shell(flags: &[&str], sock: &Path, input: &str) -> String {
    wait_listening(sock);
    let mut child = Command::new("python3")
        .args(["-m", "qemu.qmp.qmp_shell"])
        .args(flags)
        .arg(sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qmp-shell");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qmp-shell failed:\n{text}");
    text.replace(&sock.display().to_string(), "SOCK")
}

#[test]
fn qmp_shell_prints_the_same_session_on_the_fake() {
    if !python_with_qemu_qmp() {
        return;
    }
    let Some((qemu, fake)) = qemu_and_fake() else {
        return;
    };
    for (flags, input) in [(&["-v"][..], SHELL_HMP), (&["-H"][..], SHELL_HMP)] {
        // HMP lines in QMP mode are errors of the shell's own; then HMP mode.
        let real = qmp_shell(flags, &qemu.sock, input);
        let ours = qmp_shell(flags, &fake.sock, input);
        assert_eq!(real, ours, "qmp-shell {flags:?}");
    }
    let real = qmp_shell(&["-v"], &qemu.sock, SHELL_QMP);
    let ours = qmp_shell(&["-v"], &fake.sock, SHELL_QMP);
    // The session really ran: replies, QEMU's errors and the shell's own.
    for needle in [
        r#"{"return": {"status": "prelaunch", "running": false}}"#,
        r#""desc": "attempt to add duplicate property 's1' to object (type 'container')""#,
        r#""desc": "Parameter 'extra' is unexpected""#,
        r#""class": "DeviceNotFound""#,
        r#""name": "QEMU HID Tablet""#,
        "Error while parsing command line",
    ] {
        assert!(real.contains(needle), "{needle} not in:\n{real}");
    }
    // The package string is the one thing a real build has that the fake does not.
    let package = |s: &str| {
        let v: Value = s
            .lines()
            .find(|l| l.contains(r#""package""#))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap();
        v["return"]["package"].as_str().unwrap().to_owned()
    };
    let ours = ours.replacen(
        r#""package": """#,
        &format!(r#""package": {}"#, Value::String(package(&real))),
        1,
    );
    assert_eq!(real, ours);
}

/// A `qapi` type read from JSON.
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// One step of the `qapi` client: the command's name and its result (JSON), or its error.
fn step<C: qapi::Command>(qmp: &mut Client, command: &C) -> (String, Value)
where
    C::Ok: Serialize,
{
    let result = match qmp.execute(command) {
        Ok(ok) => serde_json::to_value(ok).unwrap(),
        Err(e) => json!({"error": format!("{e:?}")}),
    };
    (C::NAME.to_owned(), result)
}

type Client = qapi::Qmp<qapi::Stream<std::io::BufReader<&'static UnixStream>, &'static UnixStream>>;

/// A session of the `qapi` client on `sock`: each command's result, then the events (as
/// JSON, without their timestamps).
fn qapi_session(sock: &Path) -> (Vec<(String, Value)>, Vec<Value>) {
    wait_listening(sock);
    let stream: &'static UnixStream = Box::leak(Box::new(UnixStream::connect(sock).unwrap()));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut qmp: Client = qapi::Qmp::from_stream(stream);
    let greeting = qmp.handshake().unwrap();
    let v = &greeting.version.qemu;
    let mut out = vec![(
        "greeting".to_owned(),
        json!([v.major, v.minor, v.micro, greeting.capabilities.len()]),
    )];
    out.push(step(&mut qmp, &qmp::query_status {}));
    out.push(step(&mut qmp, &qmp::query_name {}));
    out.push(step(&mut qmp, &qmp::query_kvm {}));
    out.push(step(&mut qmp, &qmp::query_uuid {}));
    out.push(step(&mut qmp, &qmp::query_target {}));
    out.push(step(&mut qmp, &qmp::query_iothreads {}));
    out.push(step(&mut qmp, &qmp::query_hotpluggable_cpus {}));
    out.push(step(&mut qmp, &qmp::query_yank {}));
    out.push(step(&mut qmp, &qmp::query_jobs {}));
    out.push(step(&mut qmp, &qmp::query_block {}));
    out.push(step(&mut qmp, &qmp::query_migrate {}));
    out.push(step(&mut qmp, &qmp::query_memory_size_summary {}));
    out.push(step(
        &mut qmp,
        &qmp::object_add(typed(
            json!({"qom-type": "memory-backend-ram", "id": "m1", "size": 1048576}),
        )),
    ));
    out.push(step(
        &mut qmp,
        &qmp::object_add(typed(
            json!({"qom-type": "secret", "id": "s1", "data": "eA=="}),
        )),
    ));
    out.push(step(
        &mut qmp,
        &qmp::object_add(typed(
            json!({"qom-type": "secret", "id": "s1", "data": "eA=="}),
        )),
    ));
    out.push(step(&mut qmp, &qmp::query_memdev {}));
    out.push(step(
        &mut qmp,
        &qmp::qom_list {
            path: "/objects".into(),
        },
    ));
    out.push(step(&mut qmp, &qmp::object_del { id: "s1".into() }));
    for (driver, id) in [
        ("piix3-usb-uhci", Some("usb0")),
        ("usb-tablet", Some("t0")),
        ("usb-mouse", None),
        ("pci-testdev", Some("p0")),
    ] {
        out.push(step(
            &mut qmp,
            &qmp::device_add {
                driver: driver.into(),
                id: id.map(Into::into),
                bus: None,
                arguments: Default::default(),
            },
        ));
    }
    out.push(step(&mut qmp, &qmp::query_mice {}));
    out.push(step(&mut qmp, &qmp::query_pci {}));
    out.push(step(
        &mut qmp,
        &qmp::qom_get {
            path: "/machine/peripheral/p0".into(),
            property: "realized".into(),
        },
    ));
    out.push(step(&mut qmp, &qmp::device_del { id: "t0".into() }));
    out.push(step(&mut qmp, &qmp::device_del { id: "nope".into() }));
    // DEVICE_DELETED comes some 50 ms after the reply; query-version reads it.
    std::thread::sleep(Duration::from_millis(300));
    qmp.nop().unwrap();
    out.push(step(&mut qmp, &qmp::query_mice {}));
    out.push(step(
        &mut qmp,
        &qmp::blockdev_add(typed(
            json!({"driver": "null-co", "node-name": "n1", "size": 1048576}),
        )),
    ));
    out.push(step(
        &mut qmp,
        &qmp::blockdev_del {
            node_name: "n1".into(),
        },
    ));
    out.push(step(
        &mut qmp,
        &qmp::blockdev_del {
            node_name: "n1".into(),
        },
    ));
    out.push(step(&mut qmp, &qmp::stop {}));
    out.push(step(&mut qmp, &qmp::system_reset {}));
    out.push(step(&mut qmp, &qmp::cont {}));
    out.push(step(&mut qmp, &qmp::query_status {}));
    out.push(step(&mut qmp, &qmp::stop {}));
    out.push(step(&mut qmp, &qmp::query_status {}));
    out.push(step(&mut qmp, &qmp::quit {}));
    let events = qmp
        .events()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap();
            v.as_object_mut().unwrap().remove("timestamp");
            v
        })
        .collect();
    (out, events)
}

#[test]
fn qapi_crate_client_gets_the_same_results_from_the_fake() {
    let Some((qemu, fake)) = qemu_and_fake() else {
        return;
    };
    let (real, real_events) = qapi_session(&qemu.sock);
    let (ours, our_events) = qapi_session(&fake.sock);
    assert_eq!(real.len(), ours.len());
    for ((name, r), (_, o)) in real.iter().zip(&ours) {
        assert_eq!(r, o, "{name}");
    }
    // Errors came through as errors, and what the model keeps shows.
    let shown = serde_json::to_string(&real).unwrap();
    for needle in [
        "attempt to add duplicate property 's1'",
        "DeviceNotFound",
        "QEMU HID Tablet",
    ] {
        assert!(shown.contains(needle), "{needle} not in {shown}");
    }
    assert_eq!(real_events, our_events);
    let names: Vec<&str> = real_events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names,
        ["DEVICE_DELETED", "RESET", "RESUME", "STOP", "SHUTDOWN"]
    );
}
