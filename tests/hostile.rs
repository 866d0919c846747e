//! Hostile servers: a matrix of named behaviours, each with its asserted outcome.
//!
//! For every case the runner also checks: no panic; no hang (each case runs under a wall-time
//! bound); memory bounded (the receive buffer never exceeds `max_message_size`, the send
//! buffer stays within the in-flight commands); every command resolved exactly once; and
//! every pending command of a session that ended is interrupted with the same cause as the
//! session's final `Disconnected`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{t0, GREETING};
use qmp_proto::{
    CallError, CallOptions, Client, ClientConfig, CommandError, CommandId, Diagnostic,
    DisconnectReason, Event, ProtocolError, RunState,
};
use serde_json::json;

const NEGOTIATED: &[u8] = b"{\"return\": {}, \"id\": 1}\r\n";

/// One hostile session.
struct Run {
    client: Client,
    now: Instant,
    events: Vec<Event>,
    issued: Vec<CommandId>,
    hold: bool,
}

impl Run {
    fn new(config: ClientConfig) -> Self {
        let now = t0();
        let mut client = Client::new(config);
        client.connect(now).unwrap();
        let mut r = Run {
            client,
            now,
            events: Vec::new(),
            issued: Vec::new(),
            hold: false,
        };
        r.drain();
        r
    }

    fn drain(&mut self) {
        let limit = self.client.config().get_max_message_size();
        assert!(
            self.client.buffered_input() <= limit,
            "receive buffer over the limit"
        );
        // The send buffer holds in-flight commands only (these tests send short ones).
        assert!(self.client.pending_transmit() <= 4096, "send buffer grows");
        if self.hold {
            return;
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    /// Writes what the client has to write (a server that reads).
    fn flush(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            let n = t.data.len();
            self.client.advance_transmit(n);
        }
    }

    fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.flush();
        self.client.handle_input(self.now, bytes);
        self.drain();
        self
    }

    fn greet(&mut self) -> &mut Self {
        self.send(GREETING);
        self.send(b"\r\n")
    }

    fn negotiate(&mut self) -> &mut Self {
        self.greet();
        self.send(NEGOTIATED)
    }

    fn exec(&mut self, name: &str) -> CommandId {
        let id = self
            .client
            .execute(self.now, name, &(), CallOptions::new())
            .unwrap();
        self.issued.push(id);
        self.drain();
        id
    }

    fn exec_with_timeout(&mut self, name: &str, t: Duration) -> CommandId {
        let id = self
            .client
            .execute(self.now, name, &(), CallOptions::new().timeout(t))
            .unwrap();
        self.issued.push(id);
        self.drain();
        id
    }

    fn wait(&mut self, d: Duration) -> &mut Self {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.drain();
        self
    }

    fn eof(&mut self) -> &mut Self {
        self.client.handle_eof(self.now);
        self.drain();
        self
    }

    fn disconnected(&self) -> Option<&DisconnectReason> {
        self.events.iter().find_map(|e| match e {
            Event::Disconnected(r) => Some(r),
            _ => None,
        })
    }

    fn result(&self, id: CommandId) -> &Result<Box<qmp_proto::RawValue>, CommandError> {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::Reply { id: i, result } if *i == id => Some(result),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{id} not resolved"))
    }

    fn diagnostics(&self) -> Vec<&Diagnostic> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Diagnostic(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    fn protocol_error(&self) -> &ProtocolError {
        match self.disconnected() {
            Some(DisconnectReason::Protocol(e)) => e,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// The checks every case gets.
    fn finish(mut self) {
        self.hold = false;
        self.drain();
        let ended = self.disconnected().cloned();
        self.client.close();
        self.drain();
        let mut count: HashMap<CommandId, usize> = HashMap::new();
        for e in &self.events {
            if let Event::Reply { id, result } = e {
                *count.entry(*id).or_default() += 1;
                if let (Err(CommandError::Interrupted(cause)), Some(reason)) = (result, &ended) {
                    assert_eq!(cause, reason, "{id} interrupted with another cause");
                }
            }
        }
        for id in &self.issued {
            assert_eq!(
                count.get(id),
                Some(&1),
                "{id} resolved {:?} times",
                count.get(id)
            );
        }
        let n = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::Disconnected(_)))
            .count();
        assert_eq!(n, 1, "exactly one Disconnected");
        assert!(matches!(self.events.last(), Some(Event::Disconnected(_))));
        assert_eq!(self.client.state(), RunState::Idle);
    }
}

type CaseFn = fn() -> Run;

fn small() -> ClientConfig {
    ClientConfig::default().max_message_size(1000)
}

fn running() -> Run {
    let mut r = Run::new(ClientConfig::default());
    r.negotiate();
    r
}

fn idless_error() -> Vec<u8> {
    br#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#
        .iter()
        .chain(b"\r\n")
        .copied()
        .collect()
}

fn with_reply(body: &str) -> Run {
    let mut r = running();
    let a = r.exec("x");
    r.send(format!("{body}\r\n").as_bytes());
    let _ = a;
    r
}

fn fatal(body: &[u8], check: fn(&ProtocolError) -> bool) -> Run {
    let mut r = running();
    let a = r.exec("x");
    r.send(body);
    assert!(check(r.protocol_error()), "{:?}", r.protocol_error());
    assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
    r
}

fn cases() -> Vec<(&'static str, CaseFn)> {
    vec![
        ("idless error flood of 1,000", || {
            let mut r = running();
            let a = r.exec("x");
            r.send(&idless_error().repeat(1000));
            assert!(
                matches!(r.protocol_error(), ProtocolError::IdlessError(e) if e.desc.contains("expecting value"))
            );
            assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
            r
        }),
        (
            "idless error flood with an id-less raw command pending",
            || {
                let mut r = running();
                let raw = r
                    .client
                    .execute_raw(
                        r.now,
                        json!({"execute": "x"}),
                        CallOptions::new().without_id(),
                    )
                    .unwrap();
                r.issued.push(raw);
                r.send(&idless_error().repeat(1000));
                assert!(
                    matches!(r.result(raw), Err(CommandError::Qmp(e)) if e.class == "GenericError")
                );
                assert!(matches!(r.protocol_error(), ProtocolError::IdlessError(_)));
                r
            },
        ),
        ("inf token in a reply", || {
            fatal(b"{\"return\": inf, \"id\": 2}\r\n", |e| {
                matches!(e, ProtocolError::InvalidJson { .. })
            })
        }),
        ("nan token in a reply", || {
            fatal(b"{\"return\": nan, \"id\": 2}\r\n", |e| {
                matches!(e, ProtocolError::InvalidJson { .. })
            })
        }),
        ("-inf token in a reply", || {
            fatal(b"{\"return\": {\"a\": -inf}, \"id\": 2}\r\n", |e| {
                matches!(e, ProtocolError::InvalidJson { .. })
            })
        }),
        ("inf as an echoed 1E400 id", || {
            fatal(
                b"{\"return\": {}, \"id\": inf}\r\n",
                |e| matches!(e, ProtocolError::InvalidJson { excerpt, .. } if excerpt.to_string().contains("inf")),
            )
        }),
        ("1E400 itself is accepted", || {
            let mut r = with_reply("{\"return\": 1E400, \"id\": 2}");
            assert!(r.disconnected().is_none());
            assert_eq!(r.result(r.issued[0]).as_ref().unwrap().get(), "1E400");
            r.send(b"");
            r
        }),
        ("inf inside event data", || {
            fatal(b"{\"event\": \"X\", \"data\": {\"v\": inf}}\r\n", |e| {
                matches!(e, ProtocolError::InvalidJson { .. })
            })
        }),
        ("invalid UTF-8 in a reply", || {
            fatal(b"{\"return\": \"\xc3\x28\", \"id\": 2}\r\n", |e| {
                matches!(e, ProtocolError::InvalidUtf8(_))
            })
        }),
        ("overlong UTF-8 (C0 80)", || {
            fatal(b"{\"return\": \"\xc0\x80\", \"id\": 2}\r\n", |e| {
                matches!(e, ProtocolError::InvalidUtf8(_))
            })
        }),
        ("invalid UTF-8 in the greeting", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"\xff\"}, \"capabilities\": []}}\r\n");
            assert!(matches!(r.protocol_error(), ProtocolError::InvalidUtf8(_)));
            r
        }),
        ("a lone surrogate escape passes through raw", || {
            let r = with_reply(r#"{"return": "\uD800", "id": 2}"#);
            assert_eq!(r.result(r.issued[0]).as_ref().unwrap().get(), r#""\uD800""#);
            assert!(r.disconnected().is_none());
            r
        }),
        ("nesting 1,024 is accepted", || {
            let mut r = running();
            let a = r.exec("x");
            let mut m = b"{\"return\": ".to_vec();
            m.extend(b"[".repeat(1023));
            m.extend(b"]".repeat(1023));
            m.extend(b", \"id\": 2}\r\n");
            r.send(&m);
            assert!(r.result(a).is_ok());
            r
        }),
        ("nesting 1,025", || {
            let mut m = b"{\"return\": ".to_vec();
            m.extend(b"[".repeat(1024));
            fatal(&m, |e| {
                matches!(e, ProtocolError::TooDeep { limit: 1024, .. })
            })
        }),
        ("nesting 10,000", || {
            fatal(&b"[".repeat(10_000), |e| {
                matches!(e, ProtocolError::TooDeep { .. })
            })
        }),
        ("a message of exactly the size limit", || {
            let mut r = Run::new(small());
            r.negotiate();
            let a = r.exec("x");
            let head = b"{\"return\": \"";
            let tail = b"\", \"id\": 2}";
            let mut m = head.to_vec();
            m.resize(1000 - tail.len(), b'a');
            m.extend_from_slice(tail);
            r.send(&m);
            assert!(r.result(a).is_ok());
            r
        }),
        ("a message one byte over the size limit", || {
            let mut r = Run::new(small());
            r.negotiate();
            let a = r.exec("x");
            let mut m = b"{\"return\": \"".to_vec();
            m.resize(1000 - 10, b'a');
            m.extend_from_slice(b"\", \"id\": 2}");
            assert_eq!(m.len(), 1001);
            r.send(&m);
            assert!(
                matches!(r.protocol_error(), ProtocolError::MessageTooLarge { limit: 1000, excerpt } if excerpt.total_len() == 1001)
            );
            assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
            r
        }),
        ("a message 100 times the size limit", || {
            let mut r = Run::new(small());
            r.negotiate();
            r.exec("x");
            let mut m = b"{\"return\": \"".to_vec();
            m.resize(100_000, b'a');
            for chunk in m.chunks(4096) {
                r.send(chunk);
            }
            assert!(matches!(
                r.protocol_error(),
                ProtocolError::MessageTooLarge { .. }
            ));
            r
        }),
        ("a pretty-printed greeting and replies", || {
            // captures/qsys-pretty.*: ids 1 (negotiation), 2-4 (version, status, quit).
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
            let text =
                String::from_utf8(std::fs::read(dir.join("qsys-pretty.bytes")).unwrap()).unwrap();
            let msgs: Vec<String> = text
                .split_inclusive("\r\n}\r\n")
                .map(str::to_owned)
                .collect();
            let mut r = Run::new(ClientConfig::default().oob(false));
            r.send(msgs[0].as_bytes());
            r.send(msgs[1].as_bytes());
            assert_eq!(r.client.state(), RunState::Running);
            let ids = [
                r.exec("query-version"),
                r.exec("query-status"),
                r.exec("quit"),
            ];
            for m in &msgs[2..] {
                r.send(m.as_bytes());
            }
            assert_eq!(r.client.state(), RunState::Running);
            assert!(ids.iter().all(|id| r.result(*id).is_ok()));
            assert!(r
                .events
                .iter()
                .any(|e| matches!(e, Event::Qmp(q) if q.name == "SHUTDOWN")));
            r
        }),
        ("an event before the greeting, then the greeting", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(
                b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 1}}\r\n",
            );
            assert!(!r.events.iter().any(|e| matches!(e, Event::Qmp(_))));
            r.negotiate();
            assert!(r
                .events
                .iter()
                .any(|e| matches!(e, Event::Qmp(q) if q.name == "STOP")));
            assert_eq!(r.client.state(), RunState::Running);
            r
        }),
        ("17 events before the greeting", || {
            let mut r = Run::new(ClientConfig::default());
            let a = r.exec("x");
            for _ in 0..17 {
                r.send(
                    b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 1}}\r\n",
                );
            }
            assert!(matches!(
                r.protocol_error(),
                ProtocolError::EventsBeforeGreeting { limit: 16, .. }
            ));
            assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
            assert!(!r.events.iter().any(|e| matches!(e, Event::Qmp(_))));
            r
        }),
        ("events during negotiation are delivered", || {
            let mut r = Run::new(ClientConfig::default());
            r.greet();
            r.send(b"{\"event\": \"A\"}{\"event\": \"B\"}\r\n");
            r.send(NEGOTIATED);
            let names: Vec<_> = r
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Qmp(q) => Some(q.name.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(names, ["A", "B"]);
            assert_eq!(r.client.state(), RunState::Running);
            r
        }),
        ("a reply for an unknown id", || {
            let mut r = running();
            r.send(b"{\"return\": {}, \"id\": 77}\r\n");
            assert!(matches!(
                r.diagnostics()[..],
                [Diagnostic::UnknownReply { .. }]
            ));
            assert!(r.disconnected().is_none());
            r
        }),
        ("a duplicate reply", || {
            let mut r = running();
            let a = r.exec("x");
            r.send(b"{\"return\": 1, \"id\": 2}{\"return\": 2, \"id\": 2}\r\n");
            assert_eq!(r.result(a).as_ref().unwrap().get(), "1");
            assert_eq!(r.diagnostics().len(), 1);
            r
        }),
        ("a reply before the command was sent", || {
            let mut r = Run::new(ClientConfig::default().max_in_flight(1));
            r.negotiate();
            let a = r.exec("x");
            let b = r.exec("y");
            r.send(b"{\"return\": \"early\", \"id\": 3}\r\n");
            assert!(matches!(
                r.diagnostics()[..],
                [Diagnostic::UnknownReply { .. }]
            ));
            r.send(b"{\"return\": 1, \"id\": 2}{\"return\": 2, \"id\": 3}\r\n");
            assert_eq!(r.result(a).as_ref().unwrap().get(), "1");
            assert_eq!(r.result(b).as_ref().unwrap().get(), "2");
            r
        }),
        ("a reply with neither return nor error", || {
            let r = with_reply("{\"id\": 2}");
            assert!(matches!(
                r.result(r.issued[0]),
                Err(CommandError::MalformedReply(_))
            ));
            r
        }),
        ("a reply with both return and error", || {
            let r = with_reply(
                "{\"return\": {}, \"error\": {\"class\": \"X\", \"desc\": \"y\"}, \"id\": 2}",
            );
            assert!(matches!(
                r.result(r.issued[0]),
                Err(CommandError::MalformedReply(_))
            ));
            r
        }),
        ("an error without a class", || {
            let r = with_reply("{\"error\": {\"desc\": \"y\"}, \"id\": 2}");
            assert!(matches!(
                r.result(r.issued[0]),
                Err(CommandError::MalformedReply(_))
            ));
            r
        }),
        ("an error that is a string", || {
            let r = with_reply("{\"error\": \"boom\", \"id\": 2}");
            assert!(matches!(
                r.result(r.issued[0]),
                Err(CommandError::MalformedReply(_))
            ));
            r
        }),
        ("a greeting with a string for capabilities", || {
            greeting_fails(
                r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": "oob"}}"#,
            )
        }),
        ("a greeting with string version numbers", || {
            greeting_fails(
                r#"{"QMP": {"version": {"qemu": {"micro": "2", "minor": "0", "major": "10"}, "package": ""}, "capabilities": []}}"#,
            )
        }),
        ("a greeting without version", || {
            greeting_fails(r#"{"QMP": {"capabilities": []}}"#)
        }),
        ("an empty object as greeting", || greeting_fails("{}")),
        ("an array as greeting", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(b"[\"QMP\"]\r\n");
            assert!(matches!(r.protocol_error(), ProtocolError::NotAnObject(_)));
            r
        }),
        ("a server that sends one byte every 10 ms", || {
            let mut r =
                Run::new(ClientConfig::default().command_timeout(Some(Duration::from_secs(10))));
            let a = r.exec("x");
            let mut all = GREETING.to_vec();
            all.extend_from_slice(
                b"\r\n{\"return\": {}, \"id\": 2}\r\n{\"return\": \"slow\", \"id\": 1}\r\n",
            );
            for b in all {
                r.wait(Duration::from_millis(10));
                r.send(&[b]);
            }
            assert_eq!(r.result(a).as_ref().unwrap().get(), "\"slow\"");
            r
        }),
        ("a server that never greets", || {
            let mut r = Run::new(ClientConfig::default());
            let a = r.exec("x");
            r.wait(Duration::from_secs(29));
            assert!(r.disconnected().is_none());
            r.wait(Duration::from_secs(1));
            assert!(matches!(
                r.disconnected(),
                Some(DisconnectReason::GreetingTimeout(_))
            ));
            assert!(matches!(
                r.result(a),
                Err(CommandError::Interrupted(
                    DisconnectReason::GreetingTimeout(_)
                ))
            ));
            r
        }),
        ("a server that greets and never negotiates", || {
            let mut r = Run::new(ClientConfig::default());
            r.greet();
            r.wait(Duration::from_secs(30));
            assert!(matches!(
                r.disconnected(),
                Some(DisconnectReason::NegotiationTimeout(_))
            ));
            r
        }),
        ("a server that stops reading and answering", || {
            let mut r =
                Run::new(ClientConfig::default().command_timeout(Some(Duration::from_secs(5))));
            r.negotiate();
            // Nothing is written any more: the client must not buffer without bound.
            let ids: Vec<_> = (0..1000).map(|_| r.exec("x")).collect();
            assert!(r.client.in_flight() <= 8);
            assert!(r.client.pending_transmit() < 4096);
            r.wait(Duration::from_secs(5));
            for id in ids {
                assert!(matches!(r.result(id), Err(CommandError::Timeout)));
            }
            r
        }),
        ("a command that is never answered", || {
            let mut r = running();
            let a = r.exec_with_timeout("x", Duration::from_secs(1));
            r.wait(Duration::from_secs(1));
            assert!(matches!(r.result(a), Err(CommandError::Timeout)));
            r
        }),
        ("the reply of a timed-out command", || {
            let mut r = running();
            let a = r.exec_with_timeout("x", Duration::from_secs(1));
            r.wait(Duration::from_secs(1));
            r.send(b"{\"return\": {}, \"id\": 2}\r\n");
            assert!(matches!(r.diagnostics()[..], [Diagnostic::LateReply { id, .. }] if *id == a));
            r
        }),
        ("garbage before the greeting", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(b"hello there\r\n");
            assert!(
                matches!(r.protocol_error(), ProtocolError::UnexpectedData(x) if x.to_string() == "hello there")
            );
            r
        }),
        ("an HMP monitor instead of QMP", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(b"QEMU 10.0.2 monitor - type 'help' for more information\r\n(qemu) ");
            assert!(
                matches!(r.protocol_error(), ProtocolError::UnexpectedData(x) if x.to_string().starts_with("QEMU 10.0.2 monitor"))
            );
            r
        }),
        ("NUL bytes, then silence", || {
            let mut r = running();
            let a = r.exec("x");
            r.send(&[0u8; 64]);
            assert!(r.disconnected().is_none());
            assert_eq!(
                r.client.poll_timeout(),
                Some(r.now + Duration::from_millis(20))
            );
            r.wait(Duration::from_millis(20));
            assert!(
                matches!(r.protocol_error(), ProtocolError::UnexpectedData(x) if x.bytes() == [0u8; 64])
            );
            assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
            r
        }),
        ("an HMP prompt without a line end", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(b"(qemu) ");
            r.wait(Duration::from_millis(20));
            assert!(
                matches!(r.protocol_error(), ProtocolError::UnexpectedData(x) if x.to_string() == "(qemu) ")
            );
            r
        }),
        ("0xFF bytes between messages", || {
            fatal(b"\xff\xff\r\n", |e| {
                matches!(e, ProtocolError::UnexpectedData(_))
            })
        }),
        ("a bare string between messages", || {
            fatal(b"\"hello\"\r\n", |e| {
                matches!(e, ProtocolError::UnexpectedData(_))
            })
        }),
        ("a stray closing brace", || {
            fatal(b"}\r\n", |e| matches!(e, ProtocolError::UnexpectedData(_)))
        }),
        ("a megabyte of whitespace", || {
            let mut r = Run::new(small());
            for _ in 0..256 {
                r.send(&b" \t\r\n".repeat(1024));
            }
            r.negotiate();
            assert_eq!(r.client.state(), RunState::Running);
            r
        }),
        ("a truncated message, then EOF", || {
            let mut r = running();
            let a = r.exec("x");
            r.send(b"{\"return\": {\"sta");
            r.eof();
            assert!(
                matches!(r.protocol_error(), ProtocolError::Truncated(x) if x.to_string() == "{\"return\": {\"sta")
            );
            assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
            r
        }),
        ("EOF in the middle of the greeting", || {
            let mut r = Run::new(ClientConfig::default());
            r.send(&GREETING[..40]);
            r.eof();
            assert!(matches!(r.protocol_error(), ProtocolError::Truncated(_)));
            r
        }),
        ("EOF right after the greeting", || {
            let mut r = Run::new(ClientConfig::default());
            r.greet();
            r.eof();
            assert!(matches!(
                r.disconnected(),
                Some(DisconnectReason::Eof { after_quit: false })
            ));
            r
        }),
        ("a connection reset after quit", || {
            let mut r = running();
            let q = r.exec("quit");
            r.flush();
            r.client.handle_io_error(
                r.now,
                &std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            );
            r.drain();
            assert!(r.result(q).is_ok());
            assert!(matches!(
                r.disconnected(),
                Some(DisconnectReason::Eof { after_quit: true })
            ));
            r
        }),
        ("a connection reset without quit", || {
            let mut r = running();
            let a = r.exec("x");
            r.client.handle_io_error(
                r.now,
                &std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            );
            r.drain();
            assert!(matches!(
                r.result(a),
                Err(CommandError::Interrupted(
                    DisconnectReason::Transport { .. }
                ))
            ));
            r
        }),
        ("a greeting in the middle of a session", || {
            let mut r = running();
            r.send(GREETING);
            assert!(matches!(
                r.diagnostics()[..],
                [Diagnostic::UnexpectedGreeting(_)]
            ));
            r
        }),
        ("an event whose name is not a string", || {
            let mut r = running();
            r.send(b"{\"event\": [1], \"data\": {}}\r\n");
            assert!(matches!(
                r.diagnostics()[..],
                [Diagnostic::MalformedEvent(_)]
            ));
            r
        }),
        ("a message of an unknown kind", || {
            let mut r = running();
            r.send(b"{\"hello\": 1}\r\n");
            assert!(matches!(
                r.diagnostics()[..],
                [Diagnostic::UnknownMessage(_)]
            ));
            r
        }),
        ("a duplicate id member", || {
            fatal(
                b"{\"return\": {}, \"id\": 2, \"id\": 2}\r\n",
                |e| matches!(e, ProtocolError::InvalidJson { error, .. } if error.contains("duplicate")),
            )
        }),
        ("a 100 KB id for nobody", || {
            let mut r = running();
            let mut m = b"{\"return\": {}, \"id\": \"".to_vec();
            m.resize(100_000, b'x');
            m.extend_from_slice(b"\"}\r\n");
            r.send(&m);
            match r.diagnostics()[..] {
                [Diagnostic::UnknownReply { excerpt, .. }] => {
                    assert!(excerpt.bytes().len() <= qmp_proto::EXCERPT_LIMIT)
                }
                ref other => panic!("{other:?}"),
            }
            r
        }),
        ("a string id for a numeric command id", || {
            let mut r = running();
            let a = r.exec("x");
            r.send(b"{\"return\": {}, \"id\": \"2\"}\r\n");
            assert_eq!(r.diagnostics().len(), 1);
            r.send(b"{\"return\": {}, \"id\": 2}\r\n");
            assert!(r.result(a).is_ok());
            r
        }),
        ("an event with an id", || {
            let mut r = running();
            let a = r.exec("x");
            r.send(b"{\"event\": \"E\", \"id\": 2}\r\n");
            assert!(r
                .events
                .iter()
                .any(|e| matches!(e, Event::Qmp(q) if q.name == "E")));
            r.send(b"{\"return\": {}, \"id\": 2}\r\n");
            assert!(r.result(a).is_ok());
            r
        }),
        ("100,000 events while the application does not poll", || {
            let mut r = Run::new(ClientConfig::default().max_buffered_events(100));
            r.negotiate();
            r.hold = true;
            for _ in 0..1000 {
                r.send(&b"{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 1}}\r\n".repeat(100));
            }
            r.hold = false;
            r.drain();
            let delivered = r
                .events
                .iter()
                .filter(|e| matches!(e, Event::Qmp(_)))
                .count();
            let lost: u64 = r
                .events
                .iter()
                .map(|e| match e {
                    Event::EventsLost { count } => *count,
                    _ => 0,
                })
                .sum();
            assert_eq!(delivered, 100);
            assert_eq!(lost, 99_900);
            r
        }),
        ("replies out of order", || {
            let mut r = running();
            let a = r.exec("x");
            let b = r.exec("y");
            r.send(b"{\"return\": \"b\", \"id\": 3}{\"return\": \"a\", \"id\": 2}\r\n");
            assert_eq!(r.result(a).as_ref().unwrap().get(), "\"a\"");
            assert_eq!(r.result(b).as_ref().unwrap().get(), "\"b\"");
            r
        }),
        ("brackets and quotes inside strings", || {
            let r = with_reply(r#"{"return": "[[[{{{\"}}}]]] \\", "id": 2}"#);
            assert!(r.result(r.issued[0]).is_ok());
            assert!(r.disconnected().is_none());
            r
        }),
        ("a raw command with an id that QEMU re-serialises", || {
            let mut r = running();
            let a = r
                .client
                .execute_raw(
                    r.now,
                    json!({"execute": "x", "id": {"b": 1.0, "a": [1e2]}}),
                    CallOptions::new(),
                )
                .unwrap();
            r.issued.push(a);
            r.send(b"{\"return\": 7, \"id\": {\"a\": [100], \"b\": 1}}\r\n");
            assert_eq!(r.result(a).as_ref().unwrap().get(), "7");
            assert_eq!(
                r.client
                    .execute_raw(r.now, json!(1), CallOptions::new())
                    .unwrap_err(),
                CallError::RawNotObject
            );
            r
        }),
    ]
}

fn greeting_fails(text: &str) -> Run {
    let mut r = Run::new(ClientConfig::default());
    let a = r.exec("x");
    r.send(format!("{text}\r\n").as_bytes());
    assert!(
        matches!(r.protocol_error(), ProtocolError::InvalidGreeting { .. }),
        "{:?}",
        r.disconnected()
    );
    assert!(matches!(r.result(a), Err(CommandError::Interrupted(_))));
    r
}

#[test]
fn hostile_matrix() {
    let cases = cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, case) in cases {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(|| case().finish());
            let _ = tx.send(outcome.map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            }));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("{name}: {msg}")),
            Err(_) => failures.push(format!("{name}: no result within 20 s (hang)")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// EOF at every byte offset of the server stream of every transcript fixture; for the few
/// streams over 16 KiB (the captured schema replies), every offset within 64 bytes of a
/// message boundary, of their first 4 KiB and last 1 KiB, and 2,000 offsets spread in
/// between. Each session must end with one
/// `Disconnected`, every command resolved with the cause.
#[test]
fn eof_at_every_offset_of_every_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut offsets = 0usize;
    for entry in std::fs::read_dir(dir.join("transcripts")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut stream = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("<- ") {
                stream.extend_from_slice(rest.as_bytes());
                stream.extend_from_slice(b"\r\n");
            } else if let Some(rest) = line.strip_prefix("<-lines ") {
                let w: Vec<&str> = rest.split_whitespace().collect();
                let bytes = std::fs::read(dir.join(w[0])).unwrap();
                let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
                let (a, z): (usize, usize) = (w[1].parse().unwrap(), w[2].parse().unwrap());
                stream.extend(lines[a - 1..z].concat());
            }
        }
        let n = stream.len();
        let picks: Vec<usize> = if n <= 16 * 1024 {
            (0..=n).collect()
        } else {
            // Every offset near a message boundary, the first 4 KiB and last 1 KiB, and
            // 2,000 more spread over the rest.
            let step = (n - 5 * 1024) / 2000;
            let near_ends = stream
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .flat_map(|(i, _)| i.saturating_sub(64)..=(i + 64).min(n));
            let mut picks: Vec<usize> = (0..=4096)
                .chain((4096..n - 1024).step_by(step))
                .chain(n - 1024..=n)
                .chain(near_ends)
                .collect();
            picks.sort_unstable();
            picks.dedup();
            picks
        };
        for k in picks {
            offsets += 1;
            let now = t0();
            let mut c = Client::new(ClientConfig::default());
            c.connect(now).unwrap();
            let a = c
                .execute(now, "query-status", &(), CallOptions::new())
                .unwrap();
            c.handle_input(now, &stream[..k]);
            while c.poll_transmit().is_some() {
                let n = c.poll_transmit().unwrap().data.len();
                c.advance_transmit(n);
            }
            c.handle_eof(now);
            let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            let disconnects = events
                .iter()
                .filter(|e| matches!(e, Event::Disconnected(_)))
                .count();
            assert_eq!(disconnects, 1, "{}: offset {k}", path.display());
            assert!(matches!(events.last(), Some(Event::Disconnected(_))));
            let resolved = events
                .iter()
                .filter(|e| matches!(e, Event::Reply { id, .. } if *id == a))
                .count();
            assert_eq!(resolved, 1, "{}: offset {k}", path.display());
            assert_eq!(c.state(), RunState::Idle);
        }
    }
    assert!(offsets > 10_000, "{offsets}");
}
