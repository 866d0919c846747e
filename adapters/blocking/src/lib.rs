//! A blocking QMP (QEMU Machine Protocol) client over std unix and TCP sockets.
//!
//! [`Connection`] drives the sans-IO [`qmp_proto::Client`] engine with plain blocking calls:
//! connect, negotiate, run commands with typed results, wait for events, pass file
//! descriptors. All protocol decisions (framing, negotiation, id routing, OOB, timeouts, the
//! end of a session) are the engine's; this crate owns the socket, the clock and the waiting.
//!
//! ```no_run
//! use std::time::Duration;
//! use qmp_blocking::{Connection, IgnoredAny};
//!
//! # fn main() -> Result<(), qmp_blocking::Error> {
//! // QEMU started with -qmp unix:/run/vm/qmp.sock,server=on,wait=off
//! let mut qmp = Connection::connect_unix("/run/vm/qmp.sock")?;
//! println!("QEMU {}", qmp.greeting().version);
//!
//! #[derive(serde::Deserialize)]
//! struct Status { status: String }
//! let s: Status = qmp.execute("query-status", &())?;
//! println!("status: {}", s.status);
//!
//! // Events are buffered as they arrive, so one sent before the reply is not missed.
//! qmp.execute::<IgnoredAny>("stop", &())?;
//! let stop = qmp.wait_event("STOP", Duration::from_secs(5))?;
//! println!("stopped at {:?}", stop.timestamp);
//!
//! qmp.quit(Duration::from_secs(5))?; // QEMU exits; EOF after quit is a clean end
//! # Ok(())
//! # }
//! ```
//!
//! # Typed commands
//!
//! [`Connection::call`] is the typed form of [`Connection::execute`]: the command's name,
//! arguments and result type come from its Rust type (the `qmp-types` crate has every command
//! and event of QEMU, generated from its schema; or any [`qmp_proto::Command`]).
//! [`Connection::schema`] tells what this QEMU has.
//!
//! ```no_run
//! # fn main() -> Result<(), qmp_blocking::Error> {
//! # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
//! use qmp_types::qmp::QueryStatus;
//!
//! let status = qmp.call(QueryStatus::new())?; // a StatusInfo
//! println!("{:?}, running: {}", status.status, status.running);
//! if qmp.schema()?.has_command("query-yank") {
//!     // ...
//! }
//! # Ok(())
//! # }
//! ```
//!
//! With a typed event and the schema's arguments (the example of the project README):
//!
//! ```no_run
//! use std::time::Duration;
//! use qmp_types::qmp::{Cont, QueryStatus, RunState, Stop, StopEvent};
//!
//! fn main() -> Result<(), qmp_blocking::Error> {
//!     let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
//!     if qmp.call(QueryStatus::new())?.status == RunState::Prelaunch {
//!         qmp.call(Cont::new())?;
//!     }
//!     let opts = qmp_blocking::CallOptions::new().timeout(Duration::from_secs(5));
//!     let (_, _stopped) = qmp.call_and_wait(Stop::new(), opts, |_: &StopEvent| true)?;
//!     // Ask this QEMU what it has before relying on it: versions and builds differ.
//!     let schema = qmp.schema()?; // query-qmp-schema, fetched once
//!     if schema.has_argument("blockdev-add", &["cache", "direct"]) {
//!         println!("drivers: {:?}", schema.argument_values("blockdev-add", &["driver"]));
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Quick start
//!
//! The example of the project README:
//!
//! ```no_run
//! use std::time::Duration;
//! use qmp_blocking::{Connection, IgnoredAny};
//!
//! fn main() -> Result<(), qmp_blocking::Error> {
//!     let mut qmp = Connection::builder()
//!         .timeout(Duration::from_secs(10))
//!         .connect_unix("/run/vm/qmp.sock")?;
//!     println!("QEMU {}", qmp.greeting().version);
//!     let status: serde_json::Value = qmp.execute("query-status", &())?;
//!     println!("{status}");
//!     qmp.execute::<IgnoredAny>("stop", &())?;
//!     qmp.wait_event("STOP", Duration::from_secs(5))?; // found even if it came first
//!     qmp.quit(Duration::from_secs(5))
//! }
//! ```
//!
//! # VM status and jobs
//!
//! With [`Builder::track_status`], the connection keeps the VM's run status and the jobs up
//! to date ([`qmp_proto::status`] has the rules): [`Connection::vm_status`],
//! [`Connection::jobs`], the changes ([`Connection::next_change`]) and the waits.
//!
//! ```no_run
//! use std::time::Duration;
//! use qmp_blocking::status::{Job, JobStatus, VmStatus};
//! use qmp_blocking::{Change, Connection, IgnoredAny};
//!
//! fn main() -> Result<(), qmp_blocking::Error> {
//!     let mut qmp = Connection::builder()
//!         .track_status(true)
//!         .connect_unix("/run/vm/qmp.sock")?;
//!     qmp.execute::<IgnoredAny>("stop", &())?;
//!     qmp.wait_vm_status(|s| s == Some(&VmStatus::Paused), Duration::from_secs(5))?;
//!     // ... start a mirror "m0" ...
//!     let ready = |j: Option<&Job>| j.is_some_and(|j| j.status == JobStatus::Ready);
//!     qmp.wait_job("m0", ready, Duration::from_secs(60))?;
//!     for change in qmp.drain_changes() {
//!         if let Change::Job(j) = change {
//!             println!("job {}: {:?} -> {:?}", j.id, j.from.map(|j| j.status), j.to.map(|j| j.status));
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # How it works
//!
//! Every blocking call runs the engine's loop: write what
//! [`Client::poll_transmit`](qmp_proto::Client::poll_transmit) returns, as far as the socket
//! takes it without blocking; take the engine's outputs (replies, events, logs); then wait,
//! until the earliest of the engine's next timer and the call's own deadline. When only
//! input can come, the wait is the read itself (the socket's read timeout bounds it, so a
//! round trip costs a write and a read, as a hand-written loop's); while bytes are pending,
//! or for a wait under 40 ms, it is a `poll` for input and output. Reading never stops while
//! writing, so a large command cannot deadlock against a QEMU that stops reading until its
//! replies are written.
//!
//! Events are always buffered, bounded by [`ClientConfig::max_buffered_events`]
//! (newest dropped beyond it, counted by [`Connection::events_lost`]). Waiting for an event
//! looks at the buffer first, so an event QEMU sends before the reply of the command that
//! caused it (`STOP` before `stop`'s reply, a job's `JOB_STATUS_CHANGE`s before
//! `blockdev-backup`'s) is still found.
//!
//! # Pipelining and out-of-band commands
//!
//! [`Connection::send`] issues a command without waiting, [`Connection::wait`] takes its
//! result. With OOB negotiated, a command with [`CallOptions::oob`] overtakes in-band commands
//! still queued:
//!
//! ```no_run
//! # fn main() -> Result<(), qmp_blocking::Error> {
//! # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
//! use qmp_blocking::CallOptions;
//!
//! let slow: Vec<_> = (0..4)
//!     .map(|_| qmp.send("query-qmp-schema", &(), CallOptions::new()))
//!     .collect::<Result<_, _>>()?;
//! let yanks: serde_json::Value =
//!     qmp.execute_with("query-yank", &(), CallOptions::new().oob(true))?; // answered first
//! for id in slow {
//!     let schema = qmp.wait(id)?;
//!     println!("{} bytes of schema", schema.get().len());
//! }
//! # let _ = yanks;
//! # Ok(())
//! # }
//! ```
//!
//! # File descriptors
//!
//! On a unix socket, [`CallOptions::fd`] attaches a descriptor to a command; it is sent as
//! `SCM_RIGHTS` with the first byte of that command, in stream order, and closed here once
//! sent:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
//! use qmp_blocking::{CallOptions, IgnoredAny};
//! use serde_json::json;
//!
//! let file = std::fs::OpenOptions::new().write(true).open("/tmp/dump")?;
//! qmp.execute_with::<IgnoredAny>("getfd", &json!({"fdname": "dump"}), CallOptions::new().fd(file))?;
//! qmp.execute::<IgnoredAny>("closefd", &json!({"fdname": "dump"}))?;
//! # Ok(())
//! # }
//! ```
//!
//! # Accept mode
//!
//! [`Listener`] listens on a socket path for QEMU started with `-qmp unix:PATH` (no
//! `server=on`) to connect. The socket is owner-only from the start, and removed on drop
//! only if this listener created it.
//!
//! # The end of a session
//!
//! EOF, or a connection reset, after `quit` is the normal end ([`Connection::quit`]). Any
//! other EOF fails every pending call with [`Error::Disconnected`] carrying the engine's
//! [`DisconnectReason`]. [`Connection::close`] is idempotent, and dropping a connection
//! closes it without blocking.
//!
//! # The guest agent
//!
//! [`Builder::guest_agent`] talks to `qemu-ga` instead of a monitor: no greeting or
//! negotiation, and the resynchronisation of the guest agent protocol on connect and after a
//! command times out (see [`qmp_proto::ClientConfig::guest_agent`]):
//!
//! ```no_run
//! use qmp_blocking::Builder;
//!
//! fn main() -> Result<(), qmp_blocking::Error> {
//!     // -chardev socket,path=/run/vm/qga.sock,server=on,wait=off,id=qga0
//!     // -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
//!     let mut agent = Builder::new().guest_agent().connect_unix("/run/vm/qga.sock")?;
//!     let info: serde_json::Value = agent.execute("guest-info", &())?;
//!     println!("agent {}", info["version"]);
//!     Ok(())
//! }
//! ```
//!
//! # Serving QMP
//!
//! The other end, with the `server` feature (off by default; it enables the core's `server`
//! feature): `serve_unix` (and `serve_tcp`) serve one client with a sans-IO
//! `qmp_proto::server::Server`, such as the ready `FakeQemu`, for tests and demos that need a
//! QMP peer on a real socket without QEMU. File descriptors the client passes reach the
//! server.
//!
//! # Tracing and logging
//!
//! Through [`tracing`](https://docs.rs/tracing), target `qmp`: each connection (each session, after a reconnection) is a span
//! `qmp` named after its [label](Builder::label), else its socket path or address, with
//! QEMU's version once negotiated; each command is a span `command`, within it, with its id
//! and name, closed when the command is resolved with its `duration` and `outcome`. QMP
//! events and runstate changes are `debug` events, dropped server output `warn`, every
//! message sent and received `trace`. See [`qmp_kit::trace`].
//!
//! While no tracing subscriber is in effect, the same goes to the [`log`] facade, target
//! `qmp_blocking`: every message sent and received at
//! `trace` level (`-> {...}`, `<- {...}`), events and state changes at `debug`, dropped
//! server output at `warn`; each record starts with the connection's label
//! ([`Builder::label`]) when it has one. Messages are copied for the trace only when `trace` is
//! enabled (for a tracing subscriber or the log target) at connect time, or a traffic tap is
//! set.
//!
//! # The traffic tap
//!
//! [`Builder::tap`] receives every message in and out of the connection as a typed
//! [`Traffic`] (direction, text, label), in order:
//!
//! ```no_run
//! use qmp_blocking::Builder;
//!
//! # fn main() -> Result<(), qmp_blocking::Error> {
//! let mut qmp = Builder::new()
//!     .label("vm0")
//!     .tap(|t| eprintln!("{t}")) // [vm0] -> {"execute":"qmp_capabilities","id":1} ...
//!     .connect_unix("/run/vm/qmp.sock")?;
//! qmp.execute::<serde_json::Value>("query-status", &())?;
//! # Ok(())
//! # }
//! ```
//!
//! # Examples
//!
//! In `examples/`: `query` (connect and run a command), `watch_events` (watch events), `send_fd`
//! (pass a file descriptor with `getfd`). Run one with
//! `cargo run -p qmp-blocking --example query -- /path/to/qmp.sock`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod connection;
mod listener;
mod redial;
#[cfg(feature = "server")]
mod serve;
mod transport;

pub use builder::Builder;
pub use connection::Connection;
pub use listener::Listener;
pub use qmp_kit::fanout::SessionItem;
pub use qmp_kit::{
    CallOptions, Change, Direction, Error, EventFilter, JobChange, Late, Reconnect, Traffic,
    VmStatusChange,
};
/// The tracked VM status and jobs' types.
pub use qmp_proto::status;
pub use qmp_proto::{
    CallError, ClientConfig, CommandError, CommandId, DisconnectReason, Excerpt, Greeting,
    ProtocolError, QemuVersion, QmpError, QmpEvent, RawValue, Timestamp,
};
pub use qmp_proto::{Command, DecodeError, Pending};
/// Use as the result type to ignore a command's result: `execute::<IgnoredAny>("stop", &())`.
pub use serde::de::IgnoredAny;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use serve::{serve_tcp, serve_unix};
