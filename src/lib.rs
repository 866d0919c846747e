//! A sans-IO engine for QMP, the QEMU Machine Protocol.
//!
//! [`Client`] is a plain state machine: bytes, EOF and time go in; bytes to write (with any
//! file descriptors that travel with them), events, command results, runstate transitions and
//! timer deadlines come out. It performs no IO, reads no clock, spawns nothing and never
//! blocks, so it runs inside any event loop: a blocking socket loop, an async executor, a
//! custom `epoll` loop, a simulation with a virtual clock, or a fuzzer.
//!
//! # The run loop
//!
//! Whatever drives the engine repeats the same steps:
//!
//! 1. feed what happened: [`Client::handle_input`] with bytes read,
//!    [`Client::handle_eof`], [`Client::handle_io_error`], or
//!    [`Client::handle_timeout`] when the timer fires;
//! 2. write what [`Client::poll_transmit`] returns, reporting progress with
//!    [`Client::advance_transmit`] (or a failure with [`Client::handle_write_error`]), until
//!    it returns `None`;
//! 3. take [`Client::poll_event`] until `None`;
//! 4. arm the timer for [`Client::poll_timeout`], and wait for input or the timer.
//!
//! Keep reading while writing: QEMU stops reading its socket while its command queue is full,
//! so a loop that only writes can deadlock.
//!
//! ```no_run
//! use std::io::{ErrorKind, Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::time::{Duration, Instant};
//! use qmp_proto::{CallOptions, Client, ClientConfig, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut sock = UnixStream::connect("/run/vm/qmp.sock")?;
//! let mut client = Client::new(ClientConfig::default());
//! client.connect(Instant::now())?;
//! let status = client.execute(Instant::now(), "query-status", &(), CallOptions::new())?;
//! let mut buf = vec![0; 64 * 1024];
//! loop {
//!     while let Some(t) = client.poll_transmit() {
//!         match sock.write(t.data) {
//!             Ok(n) => client.advance_transmit(n),
//!             Err(e) => client.handle_write_error(Instant::now(), &e),
//!         }
//!     }
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             Event::Reply { id, result } if id == status => {
//!                 println!("{}", result?.get());
//!                 client.close();
//!             }
//!             Event::Disconnected(reason) => return Ok(println!("done: {reason}")),
//!             _ => {}
//!         }
//!     }
//!     let wait = client.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
//!     sock.set_read_timeout(wait.map(|d| d.max(Duration::from_millis(1))))?;
//!     match sock.read(&mut buf) {
//!         Ok(0) => client.handle_eof(Instant::now()),
//!         Ok(n) => client.handle_input(Instant::now(), &buf[..n]),
//!         Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
//!             client.handle_timeout(Instant::now())
//!         }
//!         Err(e) => client.handle_io_error(Instant::now(), &e),
//!     }
//! }
//! # }
//! ```
//!
//! # Typed commands and events
//!
//! [`Client::call`] is the typed form of [`Client::execute`]: a type that implements
//! [`Command`] names its command and its return type, its fields are the arguments, and the
//! [`Pending`] id `call` returns decodes the raw reply into that type. The adapters have the
//! same `call` (`qmp.call(QueryStatus {})` returns the status itself). Ready types:
//!
//! * the `qmp-types` crate: every command and event of QEMU 10.0.2's QMP and guest agent
//!   schemas, generated from the QAPI schema, forward-compatible (an enum keeps values it
//!   does not know), one cargo feature per QAPI module;
//! * [`commands::Empty`], the return value of commands that return nothing; the
//!   [`events`] module's [`TypedEvent`](events::TypedEvent) and the
//!   [`EventSet`](events::EventSet)s that typed waits take;
//! * [`schema`]: what the connected QEMU has (commands, arguments, enum values, events),
//!   from `query-qmp-schema` and `query-commands`.
//!
//! A reply or event that does not decode never breaks a session: it is a [`DecodeError`]
//! for that message alone, with the raw JSON; other commands and events are not affected.
//!
//! ```
//! use std::time::Instant;
//! use qmp_proto::{CallOptions, Client, ClientConfig, Command, CommandError, Event};
//!
//! /// `query-status`, with a strict enum (the `qmp-types` one keeps unknown values).
//! #[derive(serde::Serialize)]
//! struct QueryStatus {}
//!
//! #[derive(Debug, PartialEq, serde::Deserialize)]
//! #[serde(rename_all = "lowercase")]
//! enum RunState { Running, Paused, Prelaunch }
//!
//! #[derive(serde::Deserialize)]
//! struct StatusInfo { status: RunState, running: bool }
//!
//! impl Command for QueryStatus {
//!     const NAME: &'static str = "query-status";
//!     type Returns = StatusInfo;
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Instant::now();
//! let mut client = Client::new(ClientConfig::default());
//! client.connect(now)?;
//! let status = client.call(now, &QueryStatus {}, CallOptions::new())?; // typed form of execute("query-status", ...)
//! let future = client.call(now, &QueryStatus {}, CallOptions::new())?;
//! client.handle_input(now, br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10},
//!     "package": ""}, "capabilities": []}}"#);
//! client.handle_input(now, br#"{"return": {}, "id": 3}"#);
//! client.handle_input(now, br#"{"return": {"status": "paused", "running": false}, "id": 1}
//!     {"return": {"status": "hyperspace", "running": true}, "id": 2}"#);
//! while let Some(event) = client.poll_event() {
//!     match event {
//!         Event::Reply { id, result } if status == id => {
//!             assert_eq!(status.decode_result(result)?.status, RunState::Paused);
//!         }
//!         Event::Reply { id, result } if future == id => {
//!             // Only this call fails, and the raw JSON is at hand.
//!             let Err(CommandError::Decode(e)) = future.decode_result(result) else { panic!() };
//!             assert!(e.raw().get().contains("hyperspace"));
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! None is on by default: the default build is the client engine alone.
//!
//! * `qapi`: every command type generated by the
//!   [`qapi-qmp`](https://crates.io/crates/qapi-qmp) crate (any `qapi_spec::Command`) is a
//!   [`Command`], and every event type (any `qapi_spec::Event`) a
//!   [`TypedEvent`](events::TypedEvent), so `call(qapi_qmp::query_status {})` works for all of
//!   QMP. Their types follow the QEMU version qapi-qmp was generated from. Your own types
//!   can still implement [`Command`], unless they also implement `qapi_spec::Command`.
//! * `server`: the other end, `qmp_proto::server`: the sans-IO QMP server engine (`Server`,
//!   the `Handler` trait), the fake QEMU `FakeQemu` and `Script`, the replay of a recorded
//!   transcript. For tests and demos that need a QMP peer without QEMU.
//! * `testing` (enables `server`): `qmp_proto::testing`: `Pair`, a client and a server engine
//!   wired together in memory with a virtual clock, and the bodies of the fuzz targets.
//!   Enable it in `[dev-dependencies]`.
//!
//! # What the engine guarantees
//!
//! * **Framing by JSON structure**, not by lines: pretty-printed multi-line messages, `\n` or
//!   `\r\n`, several messages per read, a message split at any byte. Each byte is scanned once
//!   however the input is split.
//! * **Bounded memory**: a message larger than [`ClientConfig::max_message_size`] (10 MiB by
//!   default) is rejected before it is buffered; nesting is limited by
//!   [`ClientConfig::max_depth`]; buffered events by
//!   [`ClientConfig::max_buffered_events`]; in-band commands in flight by
//!   [`ClientConfig::max_in_flight`].
//! * **No panics, no hangs**: nothing the peer sends panics. Bad input either becomes a
//!   [`Diagnostic`] (the session goes on) or ends the session with a [`DisconnectReason`]
//!   that carries the offending bytes. Every command is resolved exactly once, by its reply,
//!   its deadline, or the end of the session; [`Event::Disconnected`] is the last output of
//!   every session.
//! * **Raw payloads**: results and event data stay raw JSON (`Box<RawValue>`); routing reads
//!   a borrowed envelope and never builds a `serde_json::Value` tree.
//!
//! # Outcomes of bad input
//!
//! | The server sends | Outcome |
//! |---|---|
//! | a reply for an id that is not in flight | [`Diagnostic::UnknownReply`], dropped |
//! | the reply of a timed-out or cancelled command | [`Diagnostic::LateReply`], then its outcome as [`Event::LateReply`] |
//! | a reply with both or neither of `return` and `error` | that command fails with [`CommandError::MalformedReply`] |
//! | an error without an id | resolves a pending command sent without an id ([`CallOptions::without_id`]), else ends the session: [`ProtocolError::IdlessError`] |
//! | an object that is neither reply nor event | [`Diagnostic::UnknownMessage`] |
//! | an event whose name is not a string | [`Diagnostic::MalformedEvent`] |
//! | a greeting mid-session | [`Diagnostic::UnexpectedGreeting`] |
//! | QMP events before the greeting | held, delivered in order once the greeting is valid; past [`ClientConfig::max_events_before_greeting`] (16): [`ProtocolError::EventsBeforeGreeting`] |
//! | anything else but a valid greeting first | [`ProtocolError::InvalidGreeting`] |
//! | invalid JSON (`inf`, `nan`, a duplicate member, ...) | [`ProtocolError::InvalidJson`] |
//! | invalid UTF-8 | [`ProtocolError::InvalidUtf8`] |
//! | an array | [`ProtocolError::NotAnObject`] |
//! | bytes between messages that cannot start one | [`ProtocolError::UnexpectedData`] |
//! | a message over the size or depth limit | [`ProtocolError::MessageTooLarge`], [`ProtocolError::TooDeep`] |
//! | EOF inside a message | [`ProtocolError::Truncated`] |
//! | nothing, for too long | [`DisconnectReason::GreetingTimeout`], [`DisconnectReason::NegotiationTimeout`], [`CommandError::Timeout`] |
//!
//! A [`ProtocolError`] ends the session with
//! [`DisconnectReason::Protocol`]; every pending command then fails with
//! [`CommandError::Interrupted`].
//!
//! # Guest agent mode
//!
//! [`ClientConfig::for_guest_agent`] makes the engine talk to the QEMU guest agent
//! (`qemu-ga`), which speaks the same JSON commands without a greeting or negotiation, over
//! a channel that outlives its clients. [`Client::connect`] writes a `0xFF` byte and
//! `guest-sync-delimited` with a fresh id (from [`ClientConfig::sync_seed`]) and the session
//! stays [`RunState::Connecting`] until the agent answers it; then it is
//! [`RunState::Running`], as a QMP session is once negotiated. Commands issued meanwhile are
//! held. While it waits for
//! `{"return": id}` (which the agent precedes with a `0xFF` byte), the engine discards
//! everything else the agent sends, whatever it is:
//!
//! | The agent sends, before the sync reply | Outcome |
//! |---|---|
//! | the id-less parse error that answers the `0xFF` byte | dropped silently |
//! | a reply to a command in flight (by its id) | delivered to that command |
//! | a reply no command waits for (an earlier client's, an earlier sync's), garbage, invalid JSON | [`Diagnostic::DiscardedBeforeSync`] |
//! | half a message, then a `0xFF` byte | the half message is [`Diagnostic::DiscardedBeforeSync`] |
//! | a message over the size or depth limit | [`Diagnostic::DiscardedBeforeSync`]; input skipped up to the next `0xFF` |
//! | the sync reply without its `0xFF` | accepted: the fresh id identifies it |
//! | nothing, for too long | [`DisconnectReason::SyncTimeout`] |
//!
//! The engine resynchronises again after a command that was sent times out (so its late
//! reply can never be taken for the next command's), after a command that sends nothing
//! when it succeeds (`guest-shutdown`, `guest-suspend-*`: the sync reply then resolves it
//! with `{}`), and on [`Client::resync`]. A command the agent left unanswered when it
//! answered a later sync resolves with [`CommandError::NoReply`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
pub mod commands;
mod config;
mod error;
pub mod events;
mod framer;
mod id;
pub mod manual;
mod message;
pub mod schema;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod state;
pub mod status;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod transmit;
mod typed;
mod whole;
mod wire;

pub use client::{Client, Diagnostic, Direction, Event};
pub use config::{CallOptions, ClientConfig, GUEST_AGENT_COMMAND_TIMEOUT};
pub use error::{
    CallError, CommandError, DecodeError, DecodeTarget, DisconnectReason, Excerpt, ProtocolError,
    QmpError, EXCERPT_LIMIT,
};
pub use id::{CommandId, CommandResult};
pub use message::{Greeting, QemuVersion, QmpEvent, Timestamp};
pub use serde_json::value::RawValue;
pub use state::RunState;
pub use transmit::Transmit;
pub use typed::{decode_return, decode_value, to_raw_value, Command, Pending};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
