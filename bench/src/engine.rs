//! Engine cost per message: the client engine fed one server message, whole, byte by byte or
//! in 4 KiB chunks, until the message's output (the reply, or the QMP event) comes out; and
//! the two baselines on the same bytes, `serde_json::from_slice::<&RawValue>` (the cost of
//! merely validating the JSON) and `serde_json::from_slice::<Value>` (building a tree).
//!
//! Replies are routed as real replies: the engine is negotiated once (a greeting, then the
//! reply to its `qmp_capabilities`), and every reply fed answers a `query-version` the
//! engine has in flight, issued (and its bytes drained) outside the measured part. Each
//! reply carries the wire id of its command in a fixed-width field padded with spaces
//! (`"id":       42}`), so a buffer can be re-addressed in place without changing its size.
//!
//! The measured functions are named `measured_*` and never inlined, so a profiler can
//! collect inside them alone (`valgrind --tool=callgrind --toggle-collect='*measured_*'`).

use std::hint::black_box;
use std::time::Instant;

use qmp_proto::{CallOptions, Client, ClientConfig, Event, RawValue};

/// The schema reply captured from qemu-system-x86_64 10.0.2: every byte the server sent in
/// that session (greeting, negotiation reply, schema reply).
const SCHEMA_CAPTURE: &[u8] = include_bytes!("../../tests/captures/qsys-schema.bytes");

/// The size of the synthesised large reply, in bytes (below the engine's 10 MiB limit).
pub const LARGE_SIZE: usize = 10_000_000;

/// Width of the space-padded id field at the end of a reply.
const ID_WIDTH: usize = 20;

/// The messages measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `{"return": {}, "id": N}`: the reply of most commands (`stop`, `cont`, ...), its id
    /// field space-padded like every reply here (43 bytes).
    EmptyReply,
    /// The `query-version` reply of qemu-storage-daemon 10.0.2 (about 120 bytes).
    SmallReply,
    /// A `SHUTDOWN` event with data, as qemu-system-x86_64 sends it after `quit`.
    Event,
    /// The 235,952-byte `query-qmp-schema` reply of qemu-system-x86_64 10.0.2.
    Schema,
    /// A synthesised 10,000,000-byte reply: an array of block-node-like objects.
    Large,
}

impl Message {
    /// Every message, smallest first.
    pub const ALL: [Message; 5] = [
        Message::EmptyReply,
        Message::SmallReply,
        Message::Event,
        Message::Schema,
        Message::Large,
    ];

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Message::EmptyReply => "empty-reply",
            Message::SmallReply => "small-reply",
            Message::Event => "event",
            Message::Schema => "schema",
            Message::Large => "10mb-reply",
        }
    }

    /// The message of this name.
    pub fn from_name(name: &str) -> Option<Message> {
        Message::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether it is a reply (routed to a command in flight) rather than an event.
    pub fn is_reply(self) -> bool {
        self != Message::Event
    }

    /// The message's bytes as the server sends them (with `\r\n`); a reply's id field holds
    /// 0 until [`Wire::set_id`].
    pub fn wire(self) -> Wire {
        match self {
            Message::EmptyReply => Wire::reply(b"{}"),
            Message::SmallReply => Wire::reply(
                br#"{"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}"#,
            ),
            Message::Event => Wire {
                bytes: br#"{"timestamp": {"seconds": 1763812345, "microseconds": 678901}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#
                    .iter()
                    .chain(b"\r\n")
                    .copied()
                    .collect(),
                id_at: None,
            },
            Message::Schema => Wire::reply(schema_return()),
            Message::Large => Wire::reply(&large_return(LARGE_SIZE - reply_overhead())),
        }
    }
}

/// Bytes added around a return value to make a reply: `{"return": ` ... `, "id":` + the id
/// field + `}\r\n`.
fn reply_overhead() -> usize {
    br#"{"return": "#.len() + br#", "id":"#.len() + ID_WIDTH + b"}\r\n".len()
}

/// The return value of the captured schema reply (the text between `{"return": ` and
/// `, "id": 2}`).
pub fn schema_return() -> &'static [u8] {
    let line = SCHEMA_CAPTURE
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(br#"{"return": ["#))
        .expect("the capture holds the schema reply");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix(br#"{"return": "#)
        .and_then(|l| l.strip_suffix(br#", "id": 2}"#))
        .expect("the schema reply has id 2")
}

/// A deterministic return value of exactly `size` bytes: an array of objects shaped like
/// `query-named-block-nodes` entries, padded with spaces at the end.
pub fn large_return(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    out.push(b'[');
    let mut n = 0u64;
    loop {
        let entry = format!(
            r#"{{"node-name": "node{n:07}", "drv": "qcow2", "ro": false, "encrypted": false, "file": "/var/lib/images/disk{n:07}.qcow2", "cache": {{"writeback": true, "direct": false, "no-flush": false}}, "iops": 0, "bps": 0, "image": {{"virtual-size": 10737418240, "filename": "/var/lib/images/disk{n:07}.qcow2", "format": "qcow2", "actual-size": {}, "dirty-flag": false}}}}"#,
            n * 65536
        );
        // The separator, the entry and the closing bracket must fit.
        if out.len() + 2 + entry.len() + 1 > size {
            break;
        }
        if n > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(entry.as_bytes());
        n += 1;
    }
    out.push(b']');
    out.resize(size, b' ');
    out
}

/// A message's bytes on the wire, with room to re-address a reply.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The bytes, `\r\n` included.
    pub bytes: Vec<u8>,
    /// Where the id field of a reply starts.
    id_at: Option<usize>,
}

impl Wire {
    fn reply(ret: &[u8]) -> Wire {
        let mut bytes = Vec::with_capacity(ret.len() + reply_overhead());
        bytes.extend_from_slice(br#"{"return": "#);
        bytes.extend_from_slice(ret);
        bytes.extend_from_slice(br#", "id":"#);
        let id_at = bytes.len();
        bytes.resize(id_at + ID_WIDTH, b' ');
        bytes.extend_from_slice(b"}\r\n");
        let mut wire = Wire {
            bytes,
            id_at: Some(id_at),
        };
        wire.set_id(0);
        wire
    }

    /// Writes `id` right-aligned into the reply's id field (a no-op for an event).
    pub fn set_id(&mut self, id: u64) {
        let Some(at) = self.id_at else { return };
        let field = &mut self.bytes[at..at + ID_WIDTH];
        field.fill(b' ');
        let digits = id.to_string();
        field[ID_WIDTH - digits.len()..].copy_from_slice(digits.as_bytes());
    }

    /// The message size in bytes, `\r\n` included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it has no bytes (never, for a real message).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// How the bytes of a message reach the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// In one `handle_input` call.
    Whole,
    /// One `handle_input` call per byte.
    ByteByByte,
    /// One `handle_input` call per 4 KiB.
    Chunks4K,
}

impl Feed {
    /// Every way of feeding.
    pub const ALL: [Feed; 3] = [Feed::Whole, Feed::ByteByByte, Feed::Chunks4K];

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Feed::Whole => "whole",
            Feed::ByteByByte => "byte-by-byte",
            Feed::Chunks4K => "4k-chunks",
        }
    }

    /// The feed of this name.
    pub fn from_name(name: &str) -> Option<Feed> {
        Feed::ALL.into_iter().find(|f| f.name() == name)
    }

    fn chunk(self) -> usize {
        match self {
            Feed::Whole => usize::MAX,
            Feed::ByteByByte => 1,
            Feed::Chunks4K => 4096,
        }
    }
}

/// A negotiated client engine, ready to be fed replies and events.
#[derive(Debug)]
pub struct Engine {
    client: Client,
    now: Instant,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::negotiated()
    }
}

impl Engine {
    /// An engine past the greeting and `qmp_capabilities`, with room for many commands in
    /// flight and many buffered events.
    pub fn negotiated() -> Engine {
        let now = Instant::now();
        let config = ClientConfig::default()
            .max_in_flight(1 << 20)
            .max_buffered_events(1 << 20)
            .command_timeout(None);
        let mut client = Client::new(config);
        client.connect(now).expect("an idle client connects");
        let greeting = br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;
        client.handle_input(now, greeting);
        client.handle_input(now, b"\r\n");
        let sent = drain(&mut client);
        let negotiation: serde_json::Value =
            serde_json::from_slice(&sent).expect("qmp_capabilities is JSON");
        let reply = format!(r#"{{"return": {{}}, "id": {}}}"#, negotiation["id"]);
        client.handle_input(now, reply.as_bytes());
        client.handle_input(now, b"\r\n");
        while client.poll_event().is_some() {}
        assert_eq!(client.state(), qmp_proto::RunState::Running);
        Engine { client, now }
    }

    /// Issues a `query-version` and drains its bytes; returns its wire id.
    pub fn issue(&mut self) -> u64 {
        let id = self
            .client
            .execute(self.now, "query-version", &(), CallOptions::new())
            .expect("a running client accepts commands");
        drain(&mut self.client);
        id.as_u64()
    }

    /// The engine.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn drain(client: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = client.poll_transmit() {
        let n = t.data.len();
        out.extend_from_slice(t.data);
        client.advance_transmit(n);
    }
    out
}

/// Feeds one message and polls until its output comes out (the reply of a command in
/// flight, or a QMP event); returns the size of the raw JSON handed out, which keeps the
/// work observable.
#[inline(never)]
pub fn measured_engine(engine: &mut Engine, bytes: &[u8], feed: Feed) -> usize {
    let now = engine.now;
    let client = &mut engine.client;
    for chunk in bytes.chunks(feed.chunk()) {
        client.handle_input(now, chunk);
    }
    match client.poll_event() {
        Some(Event::Reply { result, .. }) => black_box(result).map_or(0, |raw| raw.get().len()),
        Some(Event::Qmp(event)) => black_box(event).name.len(),
        Some(other) => panic!("unexpected engine output {other:?}"),
        None => panic!("the message produced no output"),
    }
}

/// The validation floor: `serde_json::from_slice::<&RawValue>`.
#[inline(never)]
pub fn measured_raw_value(bytes: &[u8]) -> usize {
    let raw: &RawValue = serde_json::from_slice(bytes).expect("valid JSON");
    black_box(raw).get().len()
}

/// The tree baseline: `serde_json::from_slice::<Value>`.
#[inline(never)]
pub fn measured_value(bytes: &[u8]) -> usize {
    let value: serde_json::Value = serde_json::from_slice(bytes).expect("valid JSON");
    black_box(value).as_object().map_or(0, serde_json::Map::len)
}

/// `count` copies of a message, each reply addressed to a fresh command of `engine`.
pub fn prepare(engine: &mut Engine, wire: &Wire, count: usize, is_reply: bool) -> Vec<Wire> {
    (0..count)
        .map(|_| {
            let mut w = wire.clone();
            if is_reply {
                w.set_id(engine.issue());
            }
            w
        })
        .collect()
}
