//! The session: the connection runstate and the stage that gives a frame its meaning.
//!
//! # Theory of operation
//!
//! Two things describe where a session is, and both change only here:
//!
//! * the [`RunState`] that the application sees (see [`crate::RunState`] for its diagram),
//!   emitted as [`Event::StateChanged`](crate::Event::StateChanged) on every move;
//! * the [`Stage`], which says what the next frame from the peer means:
//!
//! ```text
//!  QMP:    Idle ─connect─▶ Greeting ─greeting─▶ Negotiating ─capabilities answered─▶ Ready
//!                          (events held)
//!          runstate:       Connecting           Connecting                           Running
//!
//!  agent:  Idle ─connect─▶ Syncing ─sync answered─▶ Ready ─resync / timeout / silent cmd─▶ Syncing
//!          runstate:       Connecting               Running                                Running
//! ```
//!
//! `Running` means "commands flow" in both modes: a guest agent session becomes `Running`
//! only once the agent answered the first `guest-sync-delimited`. A later resynchronisation
//! holds commands without leaving `Running` (commands issued meanwhile wait in the queue).
//!
//! Any cause that ends the session (EOF, a transport error, a fatal protocol error, a stage
//! timeout, [`close`](crate::Client::close)) goes `→ Disconnecting`, resolves every pending
//! command, then `→ Idle`, and [`Event::Disconnected`](crate::Event::Disconnected) is the
//! last output. The reason stays readable ([`Client::disconnect_reason`]) until the next
//! [`connect`](crate::Client::connect).
//!
//! [`Client::disconnect_reason`]: crate::Client::disconnect_reason

use crate::client::output::{Event, Outputs};
use crate::error::{CallError, DisconnectReason};
use crate::message::{Greeting, QmpEvent};
use crate::RunState;

/// What the next frame from the peer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// No session.
    Idle,
    /// The first message must be the greeting.
    Greeting,
    /// `qmp_capabilities` (wire id `id`) was sent; its answer is awaited.
    Negotiating { id: u64 },
    /// Guest agent: `guest-sync-delimited` with `id` was sent; everything before its answer
    /// is discarded, but replies to commands in flight. Commands are held.
    Syncing { id: u64 },
    /// Commands flow; frames are replies and events.
    Ready,
}

#[derive(Debug)]
pub(super) struct Session {
    state: RunState,
    stage: Stage,
    greeting: Option<Greeting>,
    oob: bool,
    /// A `quit` was written in this session: EOF or a reset is then expected.
    quit_sent: bool,
    /// QEMU said `SHUTDOWN` in this session: it is about to exit (unless told to pause),
    /// so a reset is its exit too.
    shutdown_seen: bool,
    /// Why the last session ended, until the next one starts.
    reason: Option<DisconnectReason>,
    /// QMP events that came before the greeting, held until it is accepted.
    early_events: Vec<QmpEvent>,
}

impl Session {
    pub(super) fn new() -> Self {
        Session {
            state: RunState::Idle,
            stage: Stage::Idle,
            greeting: None,
            oob: false,
            quit_sent: false,
            shutdown_seen: false,
            reason: None,
            early_events: Vec::new(),
        }
    }

    // ----- getters -----

    pub(super) fn state(&self) -> RunState {
        self.state
    }

    pub(super) fn stage(&self) -> Stage {
        self.stage
    }

    pub(super) fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    pub(super) fn oob(&self) -> bool {
        self.oob
    }

    pub(super) fn quit_sent(&self) -> bool {
        self.quit_sent
    }

    /// Whether the peer is expected to close: a `quit` was sent, or QEMU said `SHUTDOWN`.
    pub(super) fn close_expected(&self) -> bool {
        self.quit_sent || self.shutdown_seen
    }

    pub(super) fn reason(&self) -> Option<&DisconnectReason> {
        self.reason.as_ref()
    }

    /// Connecting or running: the peer's input and the application's commands count.
    pub(super) fn is_live(&self) -> bool {
        matches!(self.state, RunState::Connecting | RunState::Running)
    }

    /// Whether held commands may be written now.
    pub(super) fn commands_flow(&self) -> bool {
        self.state == RunState::Running && self.stage == Stage::Ready
    }

    pub(super) fn is_syncing(&self) -> bool {
        matches!(self.stage, Stage::Syncing { .. })
    }

    /// Whether an out-of-band command may be written now.
    pub(super) fn oob_ready(&self) -> bool {
        self.state == RunState::Running && self.oob
    }

    /// Fails unless connecting or running.
    pub(super) fn check_live(&self, operation: &'static str) -> Result<(), CallError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(CallError::InvalidState {
                operation,
                state: self.state,
            })
        }
    }

    // ----- changes -----

    /// `Idle → Connecting`: a new session, waiting for the greeting (QMP) or for the answer
    /// to the first sync (guest agent, whose caller then calls [`syncing`](Self::syncing)).
    pub(super) fn start(&mut self, out: &mut Outputs) -> Result<(), CallError> {
        if self.state != RunState::Idle {
            return Err(CallError::InvalidState {
                operation: "connect",
                state: self.state,
            });
        }
        self.greeting = None;
        self.oob = false;
        self.reason = None;
        self.stage = Stage::Greeting;
        self.transition(out, RunState::Connecting);
        Ok(())
    }

    /// Holds an event that came before the greeting, if fewer than `limit` are held;
    /// returns it otherwise.
    pub(super) fn hold_early_event(
        &mut self,
        event: QmpEvent,
        limit: usize,
    ) -> Result<(), QmpEvent> {
        if self.early_events.len() >= limit {
            return Err(event);
        }
        self.early_events.push(event);
        Ok(())
    }

    /// The greeting arrived and `qmp_capabilities` (wire id `id`) was written. The events
    /// held before it are delivered now, in order, ahead of anything after the greeting.
    pub(super) fn greeted(&mut self, out: &mut Outputs, greeting: Greeting, oob: bool, id: u64) {
        self.greeting = Some(greeting);
        self.oob = oob;
        self.stage = Stage::Negotiating { id };
        for event in self.early_events.drain(..) {
            out.push_peer(Event::Qmp(event));
        }
    }

    /// Capabilities negotiated: `Connecting → Running`.
    pub(super) fn negotiated(&mut self, out: &mut Outputs) {
        self.stage = Stage::Ready;
        self.transition(out, RunState::Running);
    }

    /// Guest agent: `guest-sync-delimited` with `id` was written.
    pub(super) fn syncing(&mut self, id: u64) {
        self.stage = Stage::Syncing { id };
    }

    /// Guest agent: the sync was answered. The first one makes the session `Running`.
    pub(super) fn synced(&mut self, out: &mut Outputs) {
        self.stage = Stage::Ready;
        if self.state == RunState::Connecting {
            self.transition(out, RunState::Running);
        }
    }

    /// A `quit` was written.
    pub(super) fn quit_written(&mut self) {
        self.quit_sent = true;
    }

    /// QEMU sent a `SHUTDOWN` event.
    pub(super) fn shutdown_announced(&mut self) {
        self.shutdown_seen = true;
    }

    /// The first half of the end of a session: `→ Disconnecting`. The caller resolves every
    /// pending command, then calls [`ended`](Self::ended).
    pub(super) fn ending(&mut self, out: &mut Outputs) {
        self.transition(out, RunState::Disconnecting);
    }

    /// The second half: `→ Idle`, then [`Event::Disconnected`], the last output.
    pub(super) fn ended(&mut self, out: &mut Outputs, reason: DisconnectReason) {
        self.stage = Stage::Idle;
        // Events of a peer that never greeted are not delivered.
        self.early_events.clear();
        self.quit_sent = false;
        self.shutdown_seen = false;
        self.transition(out, RunState::Idle);
        self.reason = Some(reason.clone());
        out.push(Event::Disconnected(reason));
    }

    /// The one place where the runstate changes.
    fn transition(&mut self, out: &mut Outputs, to: RunState) {
        let from = self.state;
        debug_assert!(from.can_move_to(to), "bad transition {from} -> {to}");
        self.state = to;
        out.push(Event::StateChanged { from, to });
    }
}
