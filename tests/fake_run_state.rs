//! The fake QEMU's run states, without a real QEMU (`server_vs_qemu.rs` compares them with
//! qemu-system-x86_64): the events of `stop`, `cont`, `system_reset`, `system_powerdown` and
//! `quit` before their replies, `query-status` and HMP `info status` after each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::t0;
use qmp_proto::server::{FakeQemu, Server};

/// Runs `command` on a negotiated server, then `query-status` and `info status`; returns
/// the event names and the two answers.
fn step(server: &mut Server<FakeQemu>, command: &str) -> (Vec<String>, String, String) {
    let now = t0();
    let input = format!(
        r#"{{"execute": "{command}", "id": 1}}{{"execute": "query-status", "id": 2}}{{"execute": "human-monitor-command", "arguments": {{"command-line": "info status"}}, "id": 3}}"#
    );
    server.handle_input(now, input.as_bytes());
    let out = String::from_utf8(server.take_output()).unwrap();
    let mut events = Vec::new();
    let (mut status, mut info) = (String::new(), String::new());
    let mut replied = false;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(e) = v["event"].as_str() {
            assert!(!replied, "{command}: event {e} after its reply");
            events.push(e.to_owned());
        } else if v["id"] == 1 {
            assert!(v.get("return").is_some(), "{command}: {line}");
            replied = true;
        } else if v["id"] == 2 {
            let r = &v["return"];
            assert_eq!(r["running"], r["status"] == "running", "{line}");
            status = r["status"].as_str().unwrap().to_owned();
        } else if v["id"] == 3 {
            info = v["return"].as_str().unwrap().to_owned();
        }
    }
    (events, status, info)
}

fn negotiated(fake: FakeQemu) -> Server<FakeQemu> {
    let mut server = Server::new(fake.server_config(), fake);
    server.accept(t0());
    server.handle_input(t0(), br#"{"execute": "qmp_capabilities"}"#);
    server.take_output();
    server
}

#[test]
fn run_states_follow_qemu() {
    let mut server = negotiated(FakeQemu::new().prelaunch());
    let steps: &[(&str, &[&str], &str, &str)] = &[
        (
            "query-version",
            &[],
            "prelaunch",
            "VM status: paused (prelaunch)\r\n",
        ),
        // A VM that is not running does not stop again: no STOP, still in prelaunch.
        (
            "stop",
            &[],
            "prelaunch",
            "VM status: paused (prelaunch)\r\n",
        ),
        (
            "system_reset",
            &["RESET"],
            "prelaunch",
            "VM status: paused (prelaunch)\r\n",
        ),
        (
            "system_powerdown",
            &["POWERDOWN"],
            "prelaunch",
            "VM status: paused (prelaunch)\r\n",
        ),
        ("cont", &["RESUME"], "running", "VM status: running\r\n"),
        ("cont", &[], "running", "VM status: running\r\n"),
        // A reset of a running VM keeps it running.
        (
            "system_reset",
            &["RESET"],
            "running",
            "VM status: running\r\n",
        ),
        (
            "system_powerdown",
            &["POWERDOWN"],
            "running",
            "VM status: running\r\n",
        ),
        ("stop", &["STOP"], "paused", "VM status: paused\r\n"),
        ("stop", &[], "paused", "VM status: paused\r\n"),
        // A reset of a paused VM puts it in prelaunch.
        (
            "system_reset",
            &["RESET"],
            "prelaunch",
            "VM status: paused (prelaunch)\r\n",
        ),
        ("cont", &["RESUME"], "running", "VM status: running\r\n"),
    ];
    for (command, events, status, info) in steps {
        let got = step(&mut server, command);
        assert_eq!(
            got,
            (
                events.iter().map(|e| (*e).to_owned()).collect(),
                (*status).to_owned(),
                (*info).to_owned()
            ),
            "{command}"
        );
        assert_eq!(server.handler().status(), *status);
    }
}

#[test]
fn quit_sends_shutdown_then_its_reply_then_closes() {
    let mut server = negotiated(FakeQemu::new());
    server.handle_input(t0(), br#"{"execute": "quit", "id": 1}"#);
    let out = String::from_utf8(server.take_output()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains(
            r#""event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}"#
        ),
        "{out}"
    );
    assert_eq!(lines[1], r#"{"return": {}, "id": 1}"#);
    assert!(server.poll_event().is_some(), "the connection ends");
    assert_eq!(server.handler().status(), "shutdown");
    // A later client finds a VM that needs a reset before it runs again, as QEMU run with
    // -no-shutdown does.
    server.accept(t0());
    server.take_output();
    server.handle_input(t0(), br#"{"execute": "qmp_capabilities"}"#);
    server.take_output();
    let (events, status, info) = step(&mut server, "query-status");
    assert!(events.is_empty());
    assert_eq!(status, "shutdown");
    assert_eq!(info, "VM status: paused (shutdown)\r\n");
    server.handle_input(t0(), br#"{"execute": "cont", "id": 9}"#);
    assert_eq!(
        String::from_utf8(server.take_output()).unwrap(),
        "{\"id\": 9, \"error\": {\"class\": \"GenericError\", \"desc\": \"Resetting the Virtual Machine is required\"}}\r\n"
    );
    let (events, status, _) = step(&mut server, "system_reset");
    assert_eq!(
        (events, status.as_str()),
        (vec!["RESET".to_owned()], "prelaunch")
    );
}
