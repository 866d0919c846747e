//! What the `qmp-proto` adapters (`qmp-blocking`, `qmp-async`, `qmp-tokio`) share above the
//! socket, so that each adapter is only its loop, its handle and its fan-out of events:
//!
//! * [`Error`], the one error type of every adapter, and [`CallOptions`] (the core's,
//!   re-exported), the one options value of every call;
//! * [`Settings`], what every builder configures (with [`settings_methods!`] generating the
//!   same setters in each), including [`Reconnect`], when and how often to reconnect
//!   (jittered exponential backoff), and [`EventFilter`], which events a listener or a wait
//!   takes;
//! * [`Engine`], the sans-IO engine with what every adapter does with its output: tracing
//!   spans and events and log records ([`trace`]), the traffic tap ([`Traffic`]), command
//!   failures as [`Error`]s;
//! * [`Target`], what a connection was opened to (opened again to reconnect), and
//!   [`socket`]: an owner-only listening unix socket and `SCM_RIGHTS` sends and receives;
//! * [`TrackedState`], [`VmStatusChange`], [`JobChange`], [`Change`]: the tracked VM status
//!   and jobs ([`Settings::track_status`]) as an adapter keeps and reports them;
//! * [`buffer`]: the async drivers' growing read buffer and their budgets per turn, and
//!   [`idmap`]: maps keyed by command id without SipHash;
//! * [`fanout`]: the async adapters' building blocks, executor-agnostic: their one handle
//!   ([`fanout::Handle`], over a [`fanout::Runtime`]), the shared session facts, event
//!   listeners with lag counts (for one session or across sessions), the runstate watch and
//!   status stream, the reply slot, and the driver's routing of calls and outputs.
//!
//! Applications use it through the adapters, which re-export what they need; an adapter
//! for another runtime starts here.
//!
//! ```
//! use qmp_kit::{Engine, Output, Settings};
//! use std::time::Instant;
//!
//! let mut engine = Engine::new(&Settings::default().label("vm0"), "my_adapter");
//! engine.connect(Instant::now()).unwrap(); // Deref to qmp_proto::Client
//! engine.close();
//! let mut ended = None;
//! while let Some(output) = engine.next_output() {
//!     if let Output::Disconnected(reason) = output {
//!         ended = Some(reason);
//!     }
//! }
//! assert_eq!(ended, Some(qmp_proto::DisconnectReason::Closed));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod buffer;
mod engine;
mod error;
pub mod fanout;
mod filter;
pub mod idmap;
mod late;
mod reconnect;
mod settings;
pub mod socket;
mod target;
pub mod trace;
mod tracked;
mod traffic;

pub use engine::{Engine, Output};
pub use error::Error;
pub use filter::{EventFilter, DEFAULT_CAPACITY};
pub use late::{Late, Outcome};
pub use qmp_proto::CallOptions;
pub use reconnect::Reconnect;
pub use settings::Settings;
pub use target::{Redial, Target};
pub use tracked::{Change, JobChange, TrackedState, VmStatusChange};
pub use traffic::{Direction, Tap, Traffic};
