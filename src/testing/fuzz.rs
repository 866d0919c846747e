//! Fuzz target bodies, driven by `fuzz/` (cargo fuzz) and replayed over the committed corpus
//! by `tests/fuzz_corpus.rs`. They are compiled whenever the crate's tests are (which enable
//! the `testing` feature), so they cannot rot.
//!
//! Each target checks invariants, not only the absence of panics: memory within the
//! configured bounds, no output after a session's final `Disconnected`, exactly one
//! `Disconnected` per session, every command resolved exactly once, and the same outputs
//! whether the input arrives whole or byte by byte.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Pair;
use crate::framer::{Frame, Framer};
use crate::server::{FakeQemu, Server, ServerEvent};
use crate::{CallOptions, Client, ClientConfig, CommandId, Event};

/// Reads fuzzer bytes as choices.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The framer: the same frames and error whole, byte by byte and in chunks; the buffer never
/// exceeds the size limit.
pub fn framer(data: &[u8]) {
    let mut b = Bytes(data);
    let max_size = 2 + usize::from(b.byte()) * 7;
    let max_depth = 1 + usize::from(b.byte() % 70);
    let chunk = 1 + usize::from(b.byte() % 17);
    let input = b.0;
    let run = |piece: usize| {
        let mut f = Framer::new(max_size, max_depth);
        let mut frames = Vec::new();
        let mut error = None;
        for part in input.chunks(piece.max(1)) {
            let r = f.feed(part, |frame: Frame<'_>| {
                let (garbage, bytes) = match frame {
                    Frame::Message(m) => (false, m),
                    Frame::Garbage(g) => (true, g),
                };
                assert!(bytes.len() <= max_size);
                frames.push((garbage, bytes.to_vec()));
                ControlFlow::Continue(())
            });
            assert!(f.buffered() <= max_size, "buffer over the limit");
            if let Err(e) = r {
                error = Some(e);
                break;
            }
        }
        (
            frames,
            error.map(|e| e.to_string()),
            f.at_eof().map(|e| e.to_string()),
        )
    };
    let whole = run(input.len());
    assert_eq!(whole, run(1), "byte by byte differs");
    assert_eq!(whole, run(chunk), "chunks of {chunk} differ");
}

const NAMES: &[&str] = &[
    "query-status",
    "quit",
    "stop",
    "cont",
    "x",
    "query-version",
    "guest-shutdown",
];

/// Observes a client's outputs and checks the invariants.
struct Checker {
    sessions: usize,
    disconnects: usize,
    open: bool,
    issued: Vec<CommandId>,
    resolved: HashMap<CommandId, usize>,
    late: std::collections::HashSet<CommandId>,
    log: Vec<String>,
    max_peer_events: usize,
    max_input: usize,
}

impl Checker {
    fn new(config: &ClientConfig) -> Self {
        Checker {
            sessions: 0,
            disconnects: 0,
            open: false,
            issued: Vec::new(),
            resolved: HashMap::new(),
            late: std::collections::HashSet::new(),
            log: Vec::new(),
            max_peer_events: config.max_buffered_events,
            max_input: config.max_message_size.max(2),
        }
    }

    fn drain(&mut self, c: &mut Client, events: bool) {
        assert!(
            c.buffered_input() <= self.max_input,
            "receive buffer over the limit"
        );
        while let Some(t) = c.poll_transmit() {
            let n = t.data.len();
            c.advance_transmit(n);
        }
        if !events {
            return;
        }
        let mut peer = 0;
        while let Some(e) = c.poll_event() {
            if let Event::StateChanged {
                from: crate::RunState::Idle,
                to: crate::RunState::Connecting,
            } = e
            {
                assert!(!self.open, "a session started inside another");
                self.open = true;
            }
            assert!(self.open, "output after Disconnected: {e:?}");
            match &e {
                Event::Qmp(_) | Event::Diagnostic(_) => peer += 1,
                Event::Traffic { direction, .. } if *direction == crate::Direction::In => peer += 1,
                Event::Reply { id, .. } => {
                    let n = self.resolved.entry(*id).or_default();
                    *n += 1;
                    assert_eq!(*n, 1, "{id} resolved twice");
                    assert!(self.issued.contains(id), "{id} never issued");
                }
                Event::LateReply { id, .. } => {
                    assert_eq!(
                        self.resolved.get(id),
                        Some(&1),
                        "late reply of {id} unresolved"
                    );
                    assert!(self.late.insert(*id), "two late replies of {id}");
                }
                Event::Disconnected(_) => {
                    self.disconnects += 1;
                    self.open = false;
                }
                _ => {}
            }
            self.log.push(format!("{e:?}"));
        }
        assert!(
            peer <= self.max_peer_events,
            "more buffered events than the bound"
        );
    }

    fn finish(&mut self, c: &mut Client) {
        c.close();
        self.drain(c, true);
        assert_eq!(
            self.disconnects, self.sessions,
            "one Disconnected per session"
        );
        for id in &self.issued {
            assert_eq!(
                self.resolved.get(id),
                Some(&1),
                "{id} not resolved exactly once"
            );
        }
        assert!(c.poll_timeout().is_none());
    }
}

/// How the client target feeds server bytes.
#[derive(Clone, Copy, PartialEq)]
enum Feed {
    Whole,
    Bytes,
}

fn client_run(base: Instant, data: &[u8], feed: Feed, big_event_bound: bool) -> Checker {
    let mut b = Bytes(data);
    let flags = b.byte();
    let size = b.byte();
    let depth = b.byte();
    let mut config = ClientConfig::default()
        .max_message_size(16 + usize::from(size) * 16)
        .max_depth(1 + usize::from(depth % 40))
        // The trackers, with a small job table.
        .track_status(depth >= 128)
        .max_tracked_jobs(1 + usize::from(size % 4))
        .max_in_flight(1 + usize::from(flags % 8))
        .oob(flags & 8 != 0)
        .trace_messages(flags & 16 != 0)
        .greeting_timeout(Some(Duration::from_secs(30)))
        .negotiation_timeout((flags & 32 != 0).then(|| Duration::from_secs(5)))
        .command_timeout((flags & 64 != 0).then(|| Duration::from_secs(2)));
    if flags & 128 != 0 {
        // Guest agent mode; the first sync id of seed 1 is 5103132997656651 (in the
        // dictionary).
        config = config
            .guest_agent(true)
            .sync_seed(1)
            .sync_timeout(Some(Duration::from_secs(3)));
    }
    config = config.max_buffered_events(if big_event_bound {
        1 << 20
    } else {
        1 + usize::from(b.byte() % 16)
    });
    let mut c = Client::new(config.clone());
    let mut chk = Checker::new(&config);
    let mut now = base;
    let mut hold = false;
    if c.connect(now).is_ok() {
        chk.sessions += 1;
    }
    while !b.is_empty() {
        let op = b.byte();
        match op % 12 {
            0..=4 => {
                let len = usize::from(b.byte());
                let chunk = b.take(len).to_vec();
                match feed {
                    Feed::Whole => {
                        c.handle_input(now, &chunk);
                        chk.drain(&mut c, !hold);
                    }
                    Feed::Bytes => {
                        for byte in &chunk {
                            c.handle_input(now, std::slice::from_ref(byte));
                            chk.drain(&mut c, !hold);
                        }
                    }
                }
                continue;
            }
            5 | 6 => {
                let name = NAMES[usize::from(b.byte()) % NAMES.len()];
                let opts = if op & 64 != 0 {
                    CallOptions::new().timeout(Duration::from_millis(u64::from(b.byte()) * 50))
                } else {
                    CallOptions::new()
                };
                let r = if op % 12 == 5 {
                    c.execute(now, name, &(), opts)
                } else {
                    c.execute(now, name, &json!({}), opts.oob(true))
                };
                if let Ok(id) = r {
                    chk.issued.push(id);
                }
            }
            7 => {
                let id = match b.byte() % 6 {
                    0 => None,
                    1 => Some(json!(u64::from(b.byte()))),
                    2 => Some(json!("s")),
                    3 => Some(json!(null)),
                    4 => Some(json!({"a": [1, 2.5]})),
                    _ => Some(json!(-1)),
                };
                let mut msg = json!({"execute": NAMES[usize::from(op >> 4) % NAMES.len()]});
                let r = match id {
                    Some(id) => {
                        msg["id"] = id;
                        c.execute_raw(now, msg, CallOptions::new())
                    }
                    None if op & 1 == 0 => c.execute_raw(now, msg, CallOptions::new()),
                    None => c.execute_raw(now, msg, CallOptions::new().without_id()),
                };
                if let Ok(id) = r {
                    chk.issued.push(id);
                }
            }
            8 => {
                now += Duration::from_millis(u64::from(b.byte()) * 97);
                c.handle_timeout(now);
            }
            9 => match b.byte() % 4 {
                0 => c.handle_eof(now),
                1 => c.handle_io_error(
                    now,
                    &std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                ),
                2 => c.handle_io_error(now, &std::io::Error::other("boom")),
                _ => c.close(),
            },
            10 => {
                if c.connect(now).is_ok() {
                    chk.sessions += 1;
                }
            }
            _ if op & 192 == 192 => {
                let _ = c.resync(now);
            }
            _ if op & 64 != 0 => {
                // Cancel an issued command (pending or not).
                if !chk.issued.is_empty() {
                    let id = chk.issued[usize::from(b.byte()) % chk.issued.len()];
                    c.cancel(id);
                }
            }
            _ => {
                // A partial write.
                let n = usize::from(b.byte());
                if let Some(t) = c.poll_transmit() {
                    let n = n.min(t.data.len());
                    c.advance_transmit(n);
                }
                hold = op & 32 != 0;
            }
        }
        chk.drain(&mut c, !hold);
    }
    chk.finish(&mut c);
    chk
}

/// The client engine driven by a byte-chosen sequence of server bytes, EOF, errors, clock
/// steps and application calls.
pub fn client(base: Instant, data: &[u8]) {
    client_run(base, data, Feed::Whole, false);
    let whole = client_run(base, data, Feed::Whole, true);
    let bytes = client_run(base, data, Feed::Bytes, true);
    assert_eq!(
        whole.log, bytes.log,
        "byte-by-byte input gives other events"
    );
}

/// The server engine with the fake QEMU: input in any split gives the same output.
pub fn server(base: Instant, data: &[u8]) {
    let run = |byte_by_byte: bool| -> Vec<u8> {
        let mut b = Bytes(data);
        let flags = b.byte();
        let mut fake =
            FakeQemu::new().job_duration(Duration::from_millis(u64::from(flags & 7) * 100));
        if flags & 8 != 0 {
            fake.delay("query-status", Duration::from_millis(300));
        }
        let config = fake
            .server_config()
            .pretty(flags & 16 != 0)
            .capabilities(if flags & 32 != 0 { &["oob"] } else { &[] });
        let mut s = Server::new(config, fake);
        let mut now = base;
        let mut out = Vec::new();
        s.accept(now);
        while !b.is_empty() {
            let op = b.byte();
            match op % 8 {
                0..=4 => {
                    let len = usize::from(b.byte());
                    let chunk = b.take(len).to_vec();
                    if byte_by_byte {
                        for byte in &chunk {
                            s.handle_input(now, std::slice::from_ref(byte));
                            out.extend(s.take_output());
                        }
                    } else {
                        s.handle_input(now, &chunk);
                    }
                }
                5 => {
                    now += Duration::from_millis(u64::from(b.byte()) * 10);
                    s.handle_timeout(now);
                }
                6 => s.emit_event(now, "FUZZ", Some(json!({"n": op}))),
                _ => {
                    s.handle_eof(now);
                    s.accept(now);
                }
            }
            out.extend(s.take_output());
            if s.poll_event() == Some(ServerEvent::Closed) {
                // Closed is the connection's last output.
                assert!(s.poll_transmit().is_none() && s.poll_event().is_none());
                s.accept(now);
                out.extend(s.take_output());
            }
        }
        out
    };
    assert_eq!(
        run(false),
        run(true),
        "byte-by-byte input gives other output"
    );
}

/// A client and the fake QEMU connected in memory ([`Pair`]); the fuzzer corrupts, drops
/// and delays bytes in transit. Every command still resolves exactly once.
pub fn pair(base: Instant, data: &[u8]) {
    let mut b = Bytes(data);
    let flags = b.byte();
    let config = ClientConfig::default()
        .max_message_size(64 + usize::from(b.byte()) * 64)
        .oob(flags & 1 != 0)
        .command_timeout((flags & 2 != 0).then(|| Duration::from_secs(1)))
        .max_in_flight(1 + usize::from(flags >> 5))
        .track_status(flags & 8 != 0);
    let mut fake = FakeQemu::new().job_duration(Duration::from_millis(200));
    if flags & 4 != 0 {
        fake.delay("query-status", Duration::from_millis(500));
    }
    let mut p = Pair::connecting(base, fake.server_config(), fake, config.clone());
    let mut chk = Checker::new(&config);
    chk.sessions = 1;
    while !b.is_empty() {
        let op = b.byte();
        match op % 9 {
            0 | 1 => {
                let name = [
                    "query-status",
                    "stop",
                    "cont",
                    "query-version",
                    "system_reset",
                    "quit",
                    "nope",
                    "blockdev-backup",
                ][usize::from(b.byte() % 8)];
                if let Ok(id) = p.client.execute(p.now, name, &(), CallOptions::new()) {
                    chk.issued.push(id);
                }
            }
            2 => {
                if let Ok(id) =
                    p.client
                        .execute(p.now, "query-yank", &(), CallOptions::new().oob(true))
                {
                    chk.issued.push(id);
                }
            }
            3 => {
                // Deliver some bytes to the server, maybe corrupted.
                let n = usize::from(b.byte());
                p.deliver_to_server(n, |chunk| {
                    if op & 16 != 0 && !chunk.is_empty() {
                        let at = usize::from(b.byte()) % chunk.len();
                        chunk[at] ^= b.byte() | 1;
                    }
                });
            }
            4 => {
                let n = usize::from(b.byte());
                p.deliver_to_client(n, |chunk| {
                    if op & 16 != 0 && !chunk.is_empty() {
                        let at = usize::from(b.byte()) % chunk.len();
                        chunk[at] ^= b.byte() | 1;
                    }
                    if op & 32 != 0 && !chunk.is_empty() {
                        chunk.truncate(chunk.len() - 1);
                    }
                });
            }
            5 => p.tick(Duration::from_millis(u64::from(b.byte()) * 20)),
            6 => p.disconnect(),
            7 => {
                if p.reconnect() {
                    chk.sessions += 1;
                }
            }
            _ => p.client.close(),
        }
        p.transmit();
        chk.drain(&mut p.client, true);
    }
    chk.finish(&mut p.client);
}
