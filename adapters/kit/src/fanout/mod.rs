//! The async adapters' building blocks: everything between a driver (the task that owns the
//! engine and the socket) and its handles that does not depend on an executor. Only
//! `std::sync` and [`std::task::Waker`]s are used, so `qmp-async` (async-io) and `qmp-tokio`
//! share them, and adapters re-export the public types:
//!
//! * [`Shared`]: the connection's facts (runstate, session, greeting, OOB, pending count,
//!   why the last session ended, the cached schema), its event listeners and its journals;
//! * [`EventStream`] and [`Lagged`]: a listener with an [`EventFilter`](crate::EventFilter)
//!   and a bounded queue that counts what it missed;
//! * [`StateWatch`] and [`Transition`], [`StatusStream`] and [`Status`]: readers of the
//!   runstate and status journals, each at its own position, so none misses a change;
//!   [`VmStatusWatch`] and [`JobWatch`], the same for the tracked VM status and jobs;
//! * [`Handle`]: the handle of every async adapter (its verbs, listeners and watchers), over
//!   a [`Runtime`] that says how a request reaches the driver, the clock and a timeout;
//! * [`reply`]: the one-shot slot a call's result comes back in;
//! * [`Request`], [`Body`]: a call on its way from a handle to the driver, serialised on the
//!   caller's side; [`Hub`]: the driver's side, which issues calls to the engine, cancels
//!   those nobody waits for, and routes the engine's output to callers, listeners and
//!   watchers.
//!
//! An adapter adds its socket, its clock, its request channel and its waiting. The streams
//! implement `futures_core::Stream` and have inherent `async` readers for executors without
//! a stream trait of their own.
//!
//! ```
//! use std::sync::Arc;
//! use qmp_kit::fanout::{Hub, Shared};
//! use qmp_kit::{Engine, EventFilter, Settings};
//! use qmp_proto::{DisconnectReason, RunState};
//!
//! let shared = Arc::new(Shared::new());
//! let mut hub = Hub::new(Arc::clone(&shared));
//! let mut engine = Engine::new(&Settings::default(), "my_adapter");
//! let events = shared.subscribe(EventFilter::all()); // a handle's subscribe
//! engine.connect(std::time::Instant::now()).unwrap();
//! hub.drain(&mut engine);
//! assert_eq!(shared.runstate(), RunState::Connecting);
//! engine.close();
//! let drained = hub.drain(&mut engine);
//! assert_eq!(drained.ended, Some(DisconnectReason::Closed));
//! shared.finish(); // the driver is done
//! assert!(events.is_closed());
//! ```

mod calls;
mod events;
mod handle;
pub mod queue;
pub mod reply;
mod shared;
mod watch;

pub use calls::{decode, Body, Drained, Hub, ReplyRx, ReplyTx, Request};
pub use events::{EventStream, Lagged, SessionEventStream, SessionItem};
pub use handle::{Handle, Runtime};
pub use shared::Shared;
pub use watch::{JobWatch, StateWatch, Status, StatusStream, Transition, VmStatusWatch};
