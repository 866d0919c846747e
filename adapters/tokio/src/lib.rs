//! A native tokio QMP (QEMU Machine Protocol) client.
//!
//! A connection is a driver task, which owns the sans-IO [`qmp_proto::Client`] engine and
//! a `tokio::net` socket and is spawned with `tokio::spawn` on the caller's runtime
//! (current-thread or multi-thread; the crate has no thread of its own), and [`Qmp`], a
//! cloneable `Send + Sync` handle that any number of tasks use at once. All protocol
//! decisions (framing, negotiation, id routing, OOB, flow control, timeouts, the end of a
//! session) are the engine's; this crate owns the socket, the clock and the waiting. What
//! every adapter shares comes from [`qmp_kit`] and is re-exported here: the [`Error`] type,
//! [`CallOptions`], the builder's options, [`EventFilter`], the [`Traffic`] tap, and the
//! executor-agnostic fan-out ([`EventStream`], [`StateWatch`]).
//!
//! # Quick start
//!
//! The example of the project README:
//!
//! ```no_run
//! use qmp_tokio::{Builder, CallOptions, EventFilter, IgnoredAny};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), qmp_tokio::Error> {
//!     // The driver runs as a task on this runtime; `qmp` is a cloneable handle.
//!     let qmp = Builder::new().connect_unix("/run/vm/qmp.sock").await?;
//!     let status: serde_json::Value = qmp.execute("query-status", &()).await?;
//!     println!("{status}");
//!     // Subscribed before `stop` is sent: STOP, sent before the reply, is not missed.
//!     let (_, stop) = qmp
//!         .execute_and_wait::<IgnoredAny, _>("stop", &(), CallOptions::new(), EventFilter::name("STOP"))
//!         .await?;
//!     println!("stopped at {:?}", stop.timestamp);
//!     qmp.quit().await?;
//!     println!("session ended: {}", qmp.closed().await);
//!     Ok(())
//! }
//! ```
//!
//! # Calls
//!
//! The verbs are the core's and the other adapters', each with one [`CallOptions`]
//! (timeout, out of band, without an id, file descriptors): [`Qmp::execute`] (a name and
//! arguments, the result decoded into any type), [`Qmp::call`] (a typed command),
//! [`Qmp::execute_raw`] (a whole request, with any id or none), their `_with` forms taking
//! options, and [`Qmp::execute_and_wait`] / [`Qmp::call_and_wait`] (a command and the event
//! it causes); [`Qmp::schema`] and [`Qmp::commands`] tell what this QEMU has.
//!
//! ```no_run
//! # async fn f(qmp: qmp_tokio::Qmp) -> Result<(), qmp_tokio::Error> {
//! use qmp_tokio::CallOptions;
//! use qmp_types::qmp::QueryStatus;
//! use serde_json::Value;
//!
//! let status = qmp.call(QueryStatus::new()).await?; // a StatusInfo
//! println!("{:?}, running: {}", status.status, status.running);
//! if qmp.schema().await?.has_command("query-yank") {
//!     // Out of band: overtakes the in-band commands queued here and in QEMU.
//!     let opts = CallOptions::new().oob(true);
//!     let yanks: Vec<Value> = qmp.execute_with("query-yank", &(), opts).await?;
//!     println!("{} yank instances", yanks.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Time
//!
//! Every deadline is on `tokio::time`: the engine's clock is `tokio::time::Instant::now()`,
//! and its next deadline is a `tokio::time::sleep_until`. So the greeting, negotiation and
//! command timeouts follow a runtime whose time is paused (`tokio::time::pause()`, or
//! `#[tokio::test(start_paused = true)]`): tests of timeouts wait for nothing.
//!
//! # Concurrency and cancellation
//!
//! Commands are issued in the order of the calls and pipeline on the one connection; the
//! engine keeps at most 8 in-band commands in flight (QEMU's queue) and queues the rest
//! locally, and out-of-band commands ([`CallOptions::oob`]) overtake that queue. Every call
//! resolves exactly once: its reply, its timeout ([`CallOptions::timeout`] or
//! [`Builder::timeout`]), or the end of the session. Dropping a call's future (a
//! `tokio::select!` that took another branch, an aborted task) never desynchronises the
//! stream: replies are routed by id, and the reply of a call nobody waits for is discarded.
//! A dropped call still waiting in the engine's local queue is cancelled
//! ([`qmp_proto::Client::cancel`]) before the next input is read, so it is never sent.
//! A call whose timeout passes after its command was sent fails with
//! [`Error::CommandTimeout`], whose [`Late`] handle gives QEMU's reply when it comes (did the
//! `blockdev-add` that timed out create its node?): `late.outcome().await`.
//!
//! # Cost
//!
//! A sequential call costs the driver one `sendto`, one `recvfrom` and one `epoll_wait`
//! (counted by `qmp-bench syscalls`), and a session about 9 KiB of memory (`qmp-bench
//! fleet`). Calls made from the body of `block_on` (`#[tokio::main]`) pay one more
//! `epoll_wait` each: tokio's current-thread scheduler polls its reactor before it runs the
//! `block_on` future again. Calls made from spawned tasks do not. On a multi-thread runtime
//! the caller and the driver usually run on different threads, and each call then wakes one
//! of them across threads (two `futex` calls); a single connection's round trips are
//! fastest on a current-thread runtime, while 100 concurrent callers pipeline on either.
//!
//! # Events and the runstate
//!
//! [`Qmp::subscribe`] creates a listener with an [`EventFilter`] and a bounded queue: a
//! listener that falls behind loses the newest events and is told how many with a
//! [`Lagged`] item. Read it with [`EventStream::recv`] (or as a `futures_core::Stream`).
//! Listeners end when the session ends. [`Qmp::execute_and_wait`] subscribes before it
//! sends, so the event a command causes is never missed, even when QEMU sends it before the
//! reply. [`Qmp::state_watch`] yields every runstate transition in order, however late it
//! is read; [`Qmp::closed`] waits for the end of the session and says why it ended.
//!
//! # File descriptors
//!
//! On a unix socket, [`CallOptions::fd`] attaches a descriptor to a command; it is sent as
//! `SCM_RIGHTS` with the first byte of that command, in stream order. Over TCP such calls
//! fail with [`Error::FdsUnsupported`].
//!
//! # Tracing, logging and the traffic tap
//!
//! Through [`tracing`](https://docs.rs/tracing), target `qmp`: each connection is a span
//! `qmp` named after its [label](Builder::label), else its socket path or address, with
//! QEMU's version once negotiated; each command is a span `command`, within it, with its id
//! and name, closed when the command is resolved with its `duration` and `outcome`. QMP
//! events and runstate changes are `debug` events, dropped server output `warn`, every
//! message sent and received `trace`. See [`qmp_kit::trace`].
//!
//! While no tracing subscriber is in effect, the same goes to the [`log`] facade, target
//! `qmp_tokio`: every message sent and received at `trace` level, events and runstate
//! changes at `debug`, dropped server output at `warn`; each prefixed with the connection's
//! label. [`Builder::tap`] hands every
//! message sent and received, in order, to a function of yours as [`Traffic`], on the
//! driver's task.
//!
//! # Examples
//!
//! In `examples/`: `query` (connect and run commands from many tasks; run it with
//! `cargo run -p qmp-tokio --example query -- /path/to/qmp.sock`) and `fleet` (many VMs
//! from one process, each connection named in its tracing span:
//! `cargo run -p qmp-tokio --example fleet -- /tmp/vm0.sock /tmp/vm1.sock`).
//!
//! [`log`]: https://docs.rs/log

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod driver;
mod handle;
mod listener;
mod transport;

pub use builder::Builder;
pub use handle::{Qmp, Tokio};
pub use listener::Listener;
pub use qmp_kit::fanout::{
    EventStream, JobWatch, Lagged, SessionEventStream, SessionItem, StateWatch, Status,
    StatusStream, Transition, VmStatusWatch,
};
pub use qmp_kit::{
    CallOptions, Direction, Error, EventFilter, Late, Reconnect, Traffic, DEFAULT_CAPACITY,
};
pub use qmp_kit::{JobChange, VmStatusChange};
/// The tracked VM status and jobs' types.
pub use qmp_proto::status;
pub use qmp_proto::{
    CallError, ClientConfig, CommandError, DisconnectReason, Excerpt, Greeting, ProtocolError,
    QemuVersion, QmpError, QmpEvent, RawValue, RunState, Timestamp,
};
pub use qmp_proto::{Command, DecodeError};
/// Use as the result type to ignore a command's result: `execute::<IgnoredAny, _>("stop", &())`.
pub use serde::de::IgnoredAny;
