//! An async QMP (QEMU Machine Protocol) client on [async-io], for smol, tokio and any other
//! executor.
//!
//! A connection is two parts: a [`Driver`], the future that owns the sans-IO
//! [`qmp_proto::Client`] engine and the socket (spawn it on any executor), and [`Qmp`], a
//! cloneable `Send + Sync` handle that any number of tasks use at once. All protocol
//! decisions (framing, negotiation, id routing, OOB, flow control, timeouts, the end of a
//! session) are the engine's; this crate owns the socket, the clock, the waking, the fan-out
//! of events, fd passing and reconnection. What every adapter shares (the [`Error`] type,
//! [`CallOptions`], the builder's options, [`EventFilter`], the [`Traffic`] tap, and the
//! executor-agnostic fan-out: [`EventStream`], [`StateWatch`], [`StatusStream`]) comes from
//! [`qmp_kit`] and is re-exported here.
//!
//! ```no_run
//! use qmp_async::{Builder, CallOptions, EventFilter, IgnoredAny};
//!
//! #[derive(serde::Deserialize)]
//! struct Status { status: String }
//!
//! # fn main() -> Result<(), qmp_async::Error> {
//! smol::block_on(async {
//!     // QEMU started with -qmp unix:/run/vm/qmp.sock,server=on,wait=off
//!     let (qmp, driver) = Builder::new().connect_unix("/run/vm/qmp.sock").await?;
//!     let driver = smol::spawn(driver);
//!     println!("QEMU {}", qmp.greeting().unwrap().version);
//!
//!     let s: Status = qmp.execute("query-status", &()).await?;
//!     println!("status: {}", s.status);
//!
//!     // Subscribed before `stop` is sent, so STOP (sent before the reply) is not missed.
//!     let (_, stop) = qmp
//!         .execute_and_wait::<IgnoredAny, _>("stop", &(), CallOptions::new(), EventFilter::name("STOP"))
//!         .await?;
//!     println!("stopped at {:?}", stop.timestamp);
//!
//!     qmp.quit().await?; // QEMU exits; EOF after quit is a clean end
//!     println!("session ended: {}", driver.await);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Calls
//!
//! The verbs are the core's and the blocking adapter's, each with one [`CallOptions`]
//! (timeout, out of band, without an id, file descriptors): [`Qmp::execute`] (a name and
//! arguments, the result decoded into any type), [`Qmp::call`] (a typed command),
//! [`Qmp::execute_raw`] (a whole request, with any id or none), their `_with` forms taking
//! options, and [`Qmp::execute_and_wait`] / [`Qmp::call_and_wait`] (a command and the event
//! it causes). [`Qmp::call`] takes its name, arguments and result type from the command's
//! Rust type (the `qmp-types` crate has every command and event of QEMU, generated from its
//! schema; or any [`qmp_proto::Command`]); [`Qmp::schema`] tells what this QEMU has.
//!
//! ```no_run
//! # async fn f(qmp: qmp_async::Qmp) -> Result<(), qmp_async::Error> {
//! use qmp_async::CallOptions;
//! use qmp_types::qmp::QueryStatus;
//! use serde_json::{json, Value};
//!
//! let status = qmp.call(QueryStatus::new()).await?; // a StatusInfo
//! println!("{:?}, running: {}", status.status, status.running);
//! if qmp.schema().await?.has_command("query-yank") {
//!     // Out of band: overtakes the in-band commands queued here and in QEMU.
//!     let opts = CallOptions::new().oob(true);
//!     let yanks: Vec<Value> = qmp.execute_with("query-yank", &(), opts).await?;
//!     println!("{} yank instances", yanks.len());
//! }
//! // A whole request, with an id of the caller's choosing.
//! let raw = qmp
//!     .execute_raw(json!({"execute": "query-name", "id": ["mine", 1]}), CallOptions::new())
//!     .await?;
//! println!("{}", raw.get());
//! # Ok(())
//! # }
//! ```
//!
//! # Quick start
//!
//! The example of the project README:
//!
//! ```no_run
//! use qmp_async::{Builder, CallOptions, EventFilter, IgnoredAny};
//!
//! fn main() -> Result<(), qmp_async::Error> {
//!     smol::block_on(async {
//!         let (qmp, driver) = Builder::new().connect_unix("/run/vm/qmp.sock").await?;
//!         let driver = smol::spawn(driver);
//!         let status: serde_json::Value = qmp.execute("query-status", &()).await?;
//!         println!("{status}");
//!         // Subscribed before `stop` is sent: STOP, sent before the reply, is not missed.
//!         let (_, stop) = qmp
//!             .execute_and_wait::<IgnoredAny, _>("stop", &(), CallOptions::new(), EventFilter::name("STOP"))
//!             .await?;
//!         println!("stopped at {:?}", stop.timestamp);
//!         qmp.quit().await?;
//!         println!("session ended: {}", driver.await);
//!         Ok(())
//!     })
//! }
//! ```
//!
//! # Executors
//!
//! The driver waits on async-io's reactor and timers. async-io runs its reactor on its own
//! thread whenever no `async_io::block_on` drives it, so the same code runs under smol,
//! under `futures_lite::future::block_on` with `async-executor`, and inside tokio tasks
//! (this crate's tests run every scenario under all three). Nothing here spawns: you spawn
//! the driver where you like.
//!
//! # Concurrency and cancellation
//!
//! Commands are issued in the order of the calls and pipeline on the one connection; the
//! engine keeps at most 8 in-band commands in flight (QEMU's queue) and queues the rest
//! locally, and out-of-band commands ([`CallOptions::oob`]) overtake that queue. Every call
//! resolves exactly once: its reply, its timeout ([`CallOptions::timeout`] or
//! [`Builder::timeout`]), or the end of the session. Dropping a call's future never
//! desynchronises the stream: replies are routed by id, and the reply of a call nobody
//! waits for is discarded. A dropped call still waiting in the local queue is cancelled
//! ([`qmp_proto::Client::cancel`]) before the next input is read, so it is never sent.
//! A call whose timeout passes after its command was sent fails with
//! [`Error::CommandTimeout`], whose [`Late`] handle gives QEMU's reply when it comes (did the
//! `blockdev-add` that timed out create its node?): `late.outcome().await`.
//!
//! # Events
//!
//! [`Qmp::subscribe`] creates a listener with an [`EventFilter`] (names and/or a predicate)
//! and a bounded queue: a listener that falls behind loses the newest events and is told
//! how many with a [`Lagged`] item, so memory stays bounded. Listeners end when the session
//! ends. [`Qmp::execute_and_wait`] subscribes before it sends, so the event a command causes
//! is never missed, even when QEMU sends it before the reply.
//!
//! # Runstate and reconnection
//!
//! [`Qmp::state_watch`] yields every runstate transition in order, however late it is read.
//! With [`Builder::reconnect`], the driver reconnects with backoff after the peer goes away
//! and negotiates again; [`Qmp::status`] reports each session and attempt.
//!
//! # File descriptors
//!
//! On a unix socket, [`CallOptions::fd`] attaches a descriptor to a command; it is sent as
//! `SCM_RIGHTS` with the first byte of that command, in stream order. Over TCP or a wrapped
//! stream ([`Builder::connect_stream`]) such calls fail with [`Error::FdsUnsupported`].
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
//! `qmp_async`: every message sent and received at
//! `trace` level (`-> {...}`, `<- {...}`), events, runstate changes and reconnection at
//! `debug`, dropped server output at `warn`; each prefixed with the connection's
//! [label](Builder::label), if it has one. Messages are copied for the trace only when `trace`
//! is enabled (for a tracing subscriber or the log target) when the connection is made.
//!
//! [`Builder::tap`] hands every message sent and received, in order, to a function of yours
//! as [`Traffic`] (its [`Direction`], the message, the label), on the driver's task:
//!
//! ```no_run
//! # async fn f() -> Result<(), qmp_async::Error> {
//! let (qmp, driver) = qmp_async::Builder::new()
//!     .label("vm0")
//!     .tap(|traffic| eprintln!("{traffic}")) // [vm0] -> {"execute":"query-status","id":2}
//!     .connect_unix("/run/vm/qmp.sock")
//!     .await?;
//! # let _ = (qmp, driver);
//! # Ok(())
//! # }
//! ```
//!
//! # Examples
//!
//! In `examples/`: `query` (connect and run commands from many tasks), `events` (watch
//! events and the connection status, reconnecting), `pass_fd` (pass a file descriptor with
//! `getfd`). Run one with `cargo run -p qmp-async --example query -- /path/to/qmp.sock`.
//!
//! [async-io]: https://docs.rs/async-io

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod driver;
mod handle;
mod listener;
mod transport;

use std::future::Future;
use std::time::Duration;

pub use builder::Builder;
pub use driver::Driver;
pub use handle::{AsyncIo, Qmp};
pub use listener::Listener;
pub use qmp_kit::fanout::{
    EventStream, JobWatch, Lagged, SessionEventStream, SessionItem, StateWatch, Status,
    StatusStream, Transition, VmStatusWatch,
};
pub use qmp_kit::Reconnect;
pub use qmp_kit::{CallOptions, Direction, Error, EventFilter, Late, Traffic, DEFAULT_CAPACITY};
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

/// Runs `fut` for at most `limit`, on async-io's timer: [`Error::Timeout`] past it (and `fut`
/// is dropped, which for a call means its reply will be discarded).
///
/// ```no_run
/// # async fn f(mut events: qmp_async::EventStream) -> Result<(), qmp_async::Error> {
/// use std::time::Duration;
/// use futures_lite::StreamExt;
///
/// let next = qmp_async::timeout(Duration::from_secs(5), events.next()).await?;
/// # let _ = next;
/// # Ok(())
/// # }
/// ```
pub async fn timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Error> {
    futures_lite::future::or(async { Ok(fut.await) }, async {
        async_io::Timer::after(limit).await;
        Err(Error::Timeout)
    })
    .await
}
