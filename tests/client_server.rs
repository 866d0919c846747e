//! The client engine and the server engine wired together in memory, with a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::t0;
use qmp_proto::server::{
    FakeQemu, Handler, Script, Server, ServerConfig, ServerEvent, ServerState,
};
use qmp_proto::testing::Pair;
use qmp_proto::{
    CallOptions, ClientConfig, CommandError, CommandId, Diagnostic, DisconnectReason, Event,
    RunState,
};
use serde_json::json;

/// Shorthands over [`Pair`] for these tests.
trait PairExt {
    fn exec(&mut self, name: &str, args: serde_json::Value) -> CommandId;
    fn result(&self, id: CommandId) -> Option<&Result<Box<qmp_proto::RawValue>, CommandError>>;
    fn ok(&self, id: CommandId) -> serde_json::Value;
    fn log(&self) -> Vec<String>;
}

impl<H: Handler> PairExt for Pair<H> {
    fn exec(&mut self, name: &str, args: serde_json::Value) -> CommandId {
        let id = self
            .client
            .execute(self.now, name, &args, CallOptions::new())
            .unwrap();
        self.settle();
        id
    }

    fn result(&self, id: CommandId) -> Option<&Result<Box<qmp_proto::RawValue>, CommandError>> {
        self.events.iter().find_map(|e| match e {
            Event::Reply { id: i, result } if *i == id => Some(result),
            _ => None,
        })
    }

    fn ok(&self, id: CommandId) -> serde_json::Value {
        match self.result(id) {
            Some(Ok(raw)) => serde_json::from_str(raw.get()).unwrap(),
            other => panic!("{id}: {other:?}"),
        }
    }

    /// A compact log of replies and events, in the order the client saw them.
    fn log(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Reply { id, result: Ok(_) } => Some(format!("reply {id}")),
                Event::Reply { id, result: Err(e) } => Some(format!("reply {id}: {e}")),
                Event::Qmp(ev) => Some(format!("event {}", ev.name)),
                Event::Diagnostic(d) => Some(format!("diag {d}")),
                _ => None,
            })
            .collect()
    }
}

fn fake() -> Pair<FakeQemu> {
    let f = FakeQemu::new();
    Pair::new(t0(), f.server_config(), f, ClientConfig::default())
}

#[test]
fn negotiation() {
    let p = fake();
    assert_eq!(p.client.state(), RunState::Running);
    assert!(p.client.oob_enabled());
    assert!(p.server.negotiated() && p.server.oob_enabled());
    assert_eq!(p.client.greeting().unwrap().version.to_string(), "10.0.2");
    let f = FakeQemu::new();
    let p = Pair::new(
        t0(),
        f.server_config().capabilities(&[]),
        f,
        ClientConfig::default(),
    );
    assert!(!p.client.oob_enabled() && !p.server.oob_enabled());
    assert_eq!(p.client.state(), RunState::Running);
}

#[test]
fn pipelining_keeps_order_and_the_in_flight_cap() {
    let mut p = fake();
    let ids: Vec<_> = (0..20)
        .map(|_| {
            p.client
                .execute(p.now, "query-status", &(), CallOptions::new())
                .unwrap()
        })
        .collect();
    assert_eq!(p.client.in_flight(), 8);
    assert_eq!(p.client.queued(), 12);
    p.settle();
    let replies: Vec<_> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Reply { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(replies, ids);
    assert_eq!(p.ok(ids[19]), json!({"status": "running", "running": true}));
}

#[test]
fn oob_overtakes_a_busy_in_band_queue() {
    let mut p = fake();
    p.server
        .handler_mut()
        .delay("query-status", Duration::from_secs(5));
    let a = p.exec("query-status", json!(null));
    let b = p.exec("query-version", json!(null));
    let y = p
        .client
        .execute(p.now, "query-yank", &(), CallOptions::new().oob(true))
        .unwrap();
    p.settle();
    // The in-band commands wait behind the delayed one; the OOB command does not.
    assert_eq!(p.log(), [format!("reply {y}")]);
    p.advance(Duration::from_secs(5));
    assert_eq!(
        p.log(),
        [
            format!("reply {y}"),
            format!("reply {a}"),
            format!("reply {b}")
        ]
    );
    assert_eq!(
        p.ok(y),
        json!([{"type": "chardev", "id": "compat_monitor0"}])
    );
}

#[test]
fn events_arrive_before_the_reply_of_their_command() {
    let mut p = fake();
    let stop = p.exec("stop", json!(null));
    let status = p.exec("query-status", json!(null));
    let cont = p.exec("cont", json!(null));
    assert_eq!(
        p.log(),
        [
            "event STOP".to_owned(),
            format!("reply {stop}"),
            format!("reply {status}"),
            "event RESUME".to_owned(),
            format!("reply {cont}")
        ]
    );
    assert_eq!(p.ok(status), json!({"status": "paused", "running": false}));
    assert_eq!(p.server.handler().status(), "running");
}

#[test]
fn a_job_runs_over_virtual_time() {
    let f = FakeQemu::new().job_duration(Duration::from_secs(3));
    let mut p = Pair::new(t0(), f.server_config(), f, ClientConfig::default());
    for node in ["src", "dst"] {
        p.exec(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": node, "size": 1048576}),
        );
    }
    let backup = p.exec(
        "blockdev-backup",
        json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full"}),
    );
    let jobs = p.exec("query-jobs", json!(null));
    assert_eq!(p.ok(jobs)[0]["status"], "running");
    let before: Vec<_> = p.log();
    // created, running, then paused and running again as the backup drains its source
    // (as qemu-storage-daemon 10.0.2 does), all before the reply.
    assert_eq!(
        &before[2..],
        [
            "event JOB_STATUS_CHANGE".to_owned(),
            "event JOB_STATUS_CHANGE".to_owned(),
            "event JOB_STATUS_CHANGE".to_owned(),
            "event JOB_STATUS_CHANGE".to_owned(),
            format!("reply {backup}"),
            format!("reply {jobs}")
        ]
    );
    assert_eq!(
        p.server.poll_timeout(),
        Some(p.now + Duration::from_secs(3))
    );
    p.advance(Duration::from_secs(3));
    let statuses: Vec<String> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Qmp(ev) if ev.name == "JOB_STATUS_CHANGE" => Some(
                ev.data_as::<serde_json::Value>().unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "created",
            "running",
            "paused",
            "running",
            "waiting",
            "pending",
            "concluded",
            "null"
        ]
    );
    // Timestamps come from the virtual clock.
    let last = p.events.iter().rev().find_map(|e| match e {
        Event::Qmp(ev) => ev.timestamp,
        _ => None,
    });
    assert_eq!(last.unwrap().seconds, 1_700_000_003);
}

#[test]
fn timeouts_and_late_replies() {
    let mut p = fake();
    p.server
        .handler_mut()
        .delay("query-version", Duration::from_secs(10));
    let slow = p
        .client
        .execute(
            p.now,
            "query-version",
            &(),
            CallOptions::new().timeout(Duration::from_secs(2)),
        )
        .unwrap();
    p.settle();
    p.advance(Duration::from_secs(2));
    assert!(matches!(p.result(slow), Some(Err(CommandError::Timeout))));
    // The late reply is dropped with a diagnostic; the session goes on.
    p.advance(Duration::from_secs(8));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, Event::Diagnostic(Diagnostic::LateReply { id, .. }) if *id == slow)));
    let next = p.exec("query-status", json!(null));
    assert_eq!(p.ok(next)["running"], true);
}

#[test]
fn close_and_reconnect() {
    let mut p = fake();
    let pending = {
        p.server
            .handler_mut()
            .delay("query-status", Duration::from_secs(1));
        p.exec("query-status", json!(null))
    };
    p.client.close();
    p.server.handle_eof(p.now);
    p.settle();
    assert!(matches!(
        p.result(pending),
        Some(Err(CommandError::Interrupted(DisconnectReason::Closed)))
    ));
    assert!(matches!(
        p.events.last(),
        Some(Event::Disconnected(DisconnectReason::Closed))
    ));
    // The delayed reply of the old connection never reaches the new one.
    p.events.clear();
    p.server.accept(p.now);
    p.client.connect(p.now).unwrap();
    p.settle();
    p.advance(Duration::from_secs(1));
    assert_eq!(p.client.state(), RunState::Running);
    assert!(p.log().is_empty(), "{:?}", p.log());
}

#[test]
fn quit_sends_shutdown_then_the_reply_then_closes() {
    let mut p = fake();
    let quit = p.exec("quit", json!(null));
    assert_eq!(
        p.log(),
        ["event SHUTDOWN".to_owned(), format!("reply {quit}")]
    );
    assert!(matches!(
        p.events.last(),
        Some(Event::Disconnected(DisconnectReason::Eof {
            after_quit: true
        }))
    ));
    assert_eq!(p.server.handler().status(), "shutdown");
}

#[test]
fn fds_reach_the_handler() {
    let mut p = fake();
    let file = std::fs::File::open("/dev/null").unwrap();
    let getfd = p
        .client
        .execute(
            p.now,
            "getfd",
            &json!({"fdname": "disk0"}),
            CallOptions::new().fd(file),
        )
        .unwrap();
    p.settle();
    assert_eq!(p.ok(getfd), json!({}));
    assert_eq!(p.server.handler().fd_names(), ["disk0"]);
    let no_fd = p.exec("getfd", json!({"fdname": "disk1"}));
    assert!(matches!(p.result(no_fd), Some(Err(CommandError::Qmp(e)))
        if e.desc == "No file descriptor supplied via SCM_RIGHTS"));
    let close = p.exec("closefd", json!({"fdname": "disk0"}));
    assert_eq!(p.ok(close), json!({}));
    assert!(p.server.handler().fd_names().is_empty());
}

#[test]
fn custom_commands_events_and_faults() {
    let mut p = fake();
    p.server
        .handler_mut()
        .add_command("x-echo", false, |ctx, args| {
            ctx.emit_event("ECHOED", Some(serde_json::Value::Object(args.clone())));
            qmp_proto::server::Outcome::Return(serde_json::Value::Object(args.clone()))
        });
    let echo = p.exec("x-echo", json!({"a": [1, 2]}));
    assert_eq!(p.ok(echo), json!({"a": [1, 2]}));
    assert_eq!(p.log()[0], "event ECHOED");
    // Injected event, then garbage: the client ends the session with a protocol error.
    p.server.emit_event(p.now, "INJECTED", None);
    p.settle();
    assert_eq!(p.log().last().unwrap(), "event INJECTED");
    p.server.inject_bytes(b"garbage\r\n");
    p.settle();
    assert!(matches!(
        p.events.last(),
        Some(Event::Disconnected(DisconnectReason::Protocol(_)))
    ));
}

#[test]
fn dropped_connection_interrupts_pending_commands() {
    let mut p = fake();
    p.server
        .handler_mut()
        .delay("query-status", Duration::from_secs(1));
    let a = p.exec("query-status", json!(null));
    p.server.drop_connection();
    p.settle();
    assert!(matches!(
        p.result(a),
        Some(Err(CommandError::Interrupted(DisconnectReason::Eof {
            after_quit: false
        })))
    ));
}

#[test]
fn pretty_server_works_with_the_client() {
    let f = FakeQemu::new();
    let mut p = Pair::new(
        t0(),
        f.server_config().pretty(true),
        f,
        ClientConfig::default(),
    );
    let v = p.exec("query-version", json!(null));
    assert_eq!(p.ok(v)["qemu"]["major"], 10);
}

#[test]
fn events_are_not_sent_before_negotiation() {
    let f = FakeQemu::new();
    let mut server = Server::new(f.server_config(), f);
    let now = t0();
    server.accept(now);
    server.take_output();
    server.emit_event(now, "STOP", None);
    assert!(server.take_output().is_empty());
}

#[test]
fn without_oob_qemu_reads_one_request_at_a_time() {
    let f = FakeQemu::new();
    let mut p = Pair::new(
        t0(),
        f.server_config(),
        f,
        ClientConfig::default().oob(false),
    );
    p.server
        .handler_mut()
        .delay("query-status", Duration::from_secs(1));
    p.exec("query-status", json!(null));
    p.exec("query-version", json!(null));
    // The second request is not read while the first runs.
    assert!(!p.server.wants_input());
    p.advance(Duration::from_secs(1));
    assert!(p.server.wants_input());
    assert_eq!(p.log().len(), 2);
}

#[test]
fn script_replays_a_real_recording() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/captures/qsys-stopcont.script"),
    )
    .unwrap();
    let script = Script::parse(&text).unwrap();
    let config = ServerConfig::default().package("Debian 1:10.0.2+ds-2+deb13u1~bpo12+1");
    let mut p = Pair::new(t0(), config, script, ClientConfig::default().oob(false));
    let mut ids = Vec::new();
    for cmd in [
        "query-status",
        "cont",
        "query-status",
        "stop",
        "query-status",
        "system_reset",
        "quit",
    ] {
        ids.push(p.exec(cmd, json!(null)));
    }
    assert!(p.server.handler().mismatches().is_empty());
    assert_eq!(p.server.handler().remaining(), 0);
    assert_eq!(
        p.ok(ids[0]),
        json!({"status": "prelaunch", "running": false})
    );
    assert_eq!(p.ok(ids[4]), json!({"status": "paused", "running": false}));
    let events: Vec<_> = p
        .log()
        .into_iter()
        .filter(|l| l.starts_with("event"))
        .collect();
    assert_eq!(
        events,
        [
            "event RESUME",
            "event STOP",
            "event RESET",
            "event SHUTDOWN"
        ]
    );
    assert!(matches!(
        p.events.last(),
        Some(Event::Disconnected(DisconnectReason::Eof {
            after_quit: true
        }))
    ));

    // The server's bytes are the recording's, but for the timestamps.
    let recorded = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/qsys-stopcont.bytes"),
    )
    .unwrap();
    let script = Script::parse(&text).unwrap();
    let mut server = Server::new(
        ServerConfig::default().package("Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"),
        script,
    );
    let now = t0();
    server.accept(now);
    let sent = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/qsys-stopcont.sent"),
    )
    .unwrap();
    server.handle_input(now, &sent);
    let ours = String::from_utf8(server.take_output()).unwrap();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| match l.find("\"event\"") {
                Some(at) => l[at..].to_owned(),
                None => l.to_owned(),
            })
            .collect()
    };
    assert_eq!(strip(&ours), strip(&String::from_utf8(recorded).unwrap()));
}

#[test]
fn script_reports_a_clear_diff() {
    let script = Script::parse(
        "-> {\"execute\": \"stop\"}\n<- {\"return\": {}}\n-> {\"execute\": \"cont\"}\n<- {\"return\": {}}\n",
    )
    .unwrap();
    let mut p = Pair::new(
        t0(),
        ServerConfig::default(),
        script,
        ClientConfig::default(),
    );
    let bad = p.exec("system_reset", json!({"x": 1}));
    match p.result(bad) {
        Some(Err(CommandError::Qmp(e))) => assert_eq!(
            e.desc,
            "script line 1: expected {\"execute\": \"stop\"}\n                got      {\"execute\": \"system_reset\", \"arguments\": {\"x\":1}}"
        ),
        other => panic!("{other:?}"),
    }
    let good = p.exec("stop", json!(null));
    assert_eq!(p.ok(good), json!({}));
    let m = p.server.handler().mismatches();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].line, Some(1));
    assert_eq!(p.server.handler().remaining(), 1);
}

/// Events recorded after a reply come after it in replay, before the next reply, whether
/// the server's timer runs first or the next command comes first; with an `EOF` after them,
/// the connection closes once they are sent.
#[test]
fn script_sends_events_after_the_reply_they_followed() {
    let text = r#"
-> {"execute": "device_del", "arguments": {"id": "t0"}}
<- {"return": {}}
<- {"event": "DEVICE_DELETED", "data": {"device": "t0", "path": "/machine/peripheral/t0"}, "timestamp": {"seconds": 1, "microseconds": 2}}
-> {"execute": "stop"}
<- {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 3}}
<- {"return": {}}
<- {"event": "X_AFTER", "timestamp": {"seconds": 1, "microseconds": 4}}
-> {"execute": "quit"}
<- {"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}, "timestamp": {"seconds": 1, "microseconds": 5}}
<- {"return": {}}
<- {"event": "X_LAST", "timestamp": {"seconds": 1, "microseconds": 6}}
<- EOF
"#;
    let order = |out: &str| -> Vec<String> {
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                match v.get("event") {
                    Some(e) => e.as_str().unwrap().to_owned(),
                    None => format!("reply {}", v["id"]),
                }
            })
            .collect()
    };
    let expected = [
        "reply 1",
        "DEVICE_DELETED",
        "STOP",
        "reply 2",
        "X_AFTER",
        "SHUTDOWN",
        "reply 3",
        "X_LAST",
    ];
    let requests = [
        r#"{"execute": "device_del", "arguments": {"id": "t0"}, "id": 1}"#,
        r#"{"execute": "stop", "id": 2}"#,
        r#"{"execute": "quit", "id": 3}"#,
    ];
    for timers_first in [true, false] {
        let now = t0();
        let mut server = Server::new(ServerConfig::default(), Script::parse(text).unwrap());
        server.accept(now);
        server.handle_input(now, br#"{"execute": "qmp_capabilities"}"#);
        server.take_output();
        let mut out = String::new();
        if timers_first {
            for r in requests {
                server.handle_input(now, r.as_bytes());
                server.handle_timeout(now);
                out.push_str(&String::from_utf8(server.take_output()).unwrap());
            }
        } else {
            // All at once: the next command comes before any timer runs.
            server.handle_input(now, requests.concat().as_bytes());
            out.push_str(&String::from_utf8(server.take_output()).unwrap());
            assert_eq!(server.state(), ServerState::Running, "not closed yet");
            server.handle_timeout(now);
            out.push_str(&String::from_utf8(server.take_output()).unwrap());
        }
        assert_eq!(order(&out), expected, "timers first: {timers_first}");
        assert!(
            matches!(
                server.state(),
                ServerState::Closing { .. } | ServerState::Idle
            ),
            "{:?}",
            server.state()
        );
        assert!(server.handler().mismatches().is_empty());
    }
}

#[test]
fn pretty_output_equals_a_real_pretty_monitor() {
    // captures/qsys-pretty.*: qemu-system-x86_64 10.0.2 with -mon pretty=on.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let sent = std::fs::read(dir.join("qsys-pretty.sent")).unwrap();
    let recorded =
        String::from_utf8(std::fs::read(dir.join("qsys-pretty.bytes")).unwrap()).unwrap();
    let f = FakeQemu::new().version(10, 0, 2, "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1");
    let mut server = Server::new(f.server_config().pretty(true), f);
    let now = t0();
    server.accept(now);
    server.handle_input(now, &sent);
    let ours = String::from_utf8(server.take_output()).unwrap();
    assert_eq!(server.state(), ServerState::Closing { negotiated: true });
    assert_eq!(server.poll_event(), Some(ServerEvent::Closed));
    assert_eq!(server.state(), ServerState::Idle);
    assert_eq!(server.poll_event(), None);
    let zero = |s: &str| -> String {
        s.split("\r\n")
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("\"seconds\": ") || t.starts_with("\"microseconds\": ") {
                    let (k, v) = l.split_once(": ").unwrap();
                    format!("{k}: {}", if v.ends_with(',') { "0," } else { "0" })
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    assert_eq!(zero(&ours), zero(&recorded));
}

#[test]
fn the_server_reports_closed_once_after_its_output() {
    let f = FakeQemu::new();
    let mut server = Server::new(f.server_config(), f);
    let now = t0();
    assert_eq!(server.state(), ServerState::Idle);
    server.accept(now);
    assert_eq!(server.state(), ServerState::Negotiating);
    server.handle_input(
        now,
        br#"{"execute": "qmp_capabilities"}{"execute": "quit"}"#,
    );
    assert_eq!(server.state(), ServerState::Closing { negotiated: true });
    assert!(!server.wants_input());
    // Not before the output is written, to the last byte.
    assert_eq!(server.poll_event(), None);
    let t = server.poll_transmit().unwrap();
    assert!(t.fds.is_empty());
    let n = t.data.len();
    server.advance_transmit(n - 1);
    assert_eq!(server.poll_event(), None);
    server.advance_transmit(1);
    assert_eq!(server.poll_event(), Some(ServerEvent::Closed));
    assert_eq!(server.state(), ServerState::Idle);
    assert_eq!(server.poll_event(), None);
    assert!(server.poll_transmit().is_none());

    // A dropped connection: unsent output goes, Closed comes at once.
    server.accept(now);
    server.drop_connection();
    assert_eq!(server.state(), ServerState::Dropped { negotiated: false });
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.poll_event(), Some(ServerEvent::Closed));
    assert_eq!(server.poll_event(), None);

    // The client leaving is no event.
    server.accept(now);
    server.handle_eof(now);
    assert_eq!(server.state(), ServerState::Idle);
    assert_eq!(server.poll_event(), None);
}
