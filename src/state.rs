//! The connection runstate and its transitions.
//!
//! # Theory of operation
//!
//! A [`Client`](crate::Client) follows the runstates of the reference design:
//!
//! ```text
//!            connect()              negotiated               cause
//!   Idle ───────────────▶ Connecting ───────────▶ Running ───────────▶ Disconnecting
//!    ▲                       │                                              │
//!    │                       └──────────── cause ──────────────────────────▶│
//!    └──────────────────────────────── all pending resolved ◀───────────────┘
//! ```
//!
//! * `Idle`: no session. [`connect`](crate::Client::connect) starts one.
//! * `Connecting`: waiting for the greeting, then for the answer to `qmp_capabilities` (in
//!   guest agent mode: for the answer to the first `guest-sync-delimited`). Commands issued
//!   now are held and sent once negotiation succeeds. QMP events that arrive during
//!   negotiation are delivered in order.
//! * `Running`: commands flow, in both modes. (A later guest agent resynchronisation holds
//!   new commands for a moment without leaving `Running`.)
//! * `Disconnecting`: a cause (EOF, a transport error, a fatal protocol error, a timeout of
//!   the greeting or negotiation, or [`close`](crate::Client::close)) ended the session. The
//!   engine resolves every pending command with that cause, drops unsent bytes, and moves on
//!   to `Idle` at once, emitting [`Event::Disconnected`](crate::Event::Disconnected) last.
//!
//! Every transition is emitted once, as [`Event::StateChanged`](crate::Event::StateChanged),
//! right after the output of its cause. The runstate, and the stage that gives each frame
//! its meaning, change only in the client's `session` module, whose one `transition` method
//! checks each move against [`RunState::can_move_to`].

use std::fmt;

/// The connection runstate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// No session.
    Idle,
    /// Waiting for the greeting or for capabilities negotiation.
    Connecting,
    /// Negotiated: commands flow.
    Running,
    /// The session is ending; pending commands are being resolved.
    Disconnecting,
}

impl RunState {
    /// Whether the state machine allows a move from `self` to `to`.
    pub fn can_move_to(self, to: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Idle, Connecting)
                | (Connecting, Running)
                | (Connecting, Disconnecting)
                | (Running, Disconnecting)
                | (Disconnecting, Idle)
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::Idle => "idle",
            RunState::Connecting => "connecting",
            RunState::Running => "running",
            RunState::Disconnecting => "disconnecting",
        })
    }
}
