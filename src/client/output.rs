//! What the engine reports: [`Event`]s, queued in the order they occur, with the peer's share
//! of them bounded.

use std::collections::VecDeque;

use crate::error::{DisconnectReason, Excerpt};
use crate::id::{CommandId, CommandResult};
use crate::message::QmpEvent;
use crate::status::{Job, VmStatus};
use crate::RunState;

/// Something the engine reports, pulled with [`Client::poll_event`](crate::Client::poll_event).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The connection runstate changed. Emitted once per transition, right after the output
    /// of its cause.
    StateChanged {
        /// The previous state.
        from: RunState,
        /// The new state.
        to: RunState,
    },
    /// A command was resolved. Every command id returned by an issuing call is resolved
    /// exactly once.
    Reply {
        /// The command.
        id: CommandId,
        /// Its result.
        result: CommandResult,
    },
    /// The reply of a command that was already resolved with
    /// [`CommandError::Timeout`](crate::CommandError::Timeout) or
    /// [`CommandError::Cancelled`](crate::CommandError::Cancelled): its late outcome, for an
    /// application that must know what became of it (did the `blockdev-add` that timed out
    /// create its node?). It follows the [`Diagnostic::LateReply`] of the same reply. At most
    /// one per command, so it is bounded by the application's own calls.
    LateReply {
        /// The command, as its issuing call returned it.
        id: CommandId,
        /// Its result, as [`Reply`](Event::Reply) would have carried it.
        result: CommandResult,
    },
    /// An asynchronous QMP event from the server.
    Qmp(QmpEvent),
    /// The tracked VM status changed
    /// ([`ClientConfig::track_vm_status`](crate::ClientConfig::track_vm_status)): right
    /// after the event that says so (`RESUME`), or after the reply to the client's own
    /// `query-status`. `None` before the first status is known, and for a peer without
    /// `query-status`. See [`status`](crate::status).
    VmStatusChanged {
        /// The status before.
        from: Option<VmStatus>,
        /// The status now.
        to: Option<VmStatus>,
    },
    /// A tracked job appeared, changed or went away
    /// ([`ClientConfig::track_jobs`](crate::ClientConfig::track_jobs)): right after the
    /// event that says so, or after the reply to the client's own `query-jobs`. See
    /// [`status`](crate::status).
    JobChanged {
        /// The job's id.
        id: String,
        /// The job before (`None`: it is new to the table).
        from: Option<Box<Job>>,
        /// The job now (`None`: it was dismissed, or ended unseen).
        to: Option<Box<Job>>,
    },
    /// The server sent something the engine dropped; the session goes on.
    Diagnostic(Diagnostic),
    /// This many QMP events or diagnostics were dropped here because more than
    /// [`ClientConfig::max_buffered_events`](crate::ClientConfig::max_buffered_events) were
    /// waiting to be polled.
    EventsLost {
        /// How many were dropped.
        count: u64,
    },
    /// A message sent or received, when
    /// [`ClientConfig::trace_messages`](crate::ClientConfig::trace_messages) is on. Received
    /// messages are reported before their effects; sent ones when they are written to the
    /// send buffer.
    Traffic {
        /// Which way the message went.
        direction: Direction,
        /// The message as it is on the wire (received ones may be invalid JSON), without
        /// the guest agent's `0xFF` delimiter.
        message: String,
        /// A guest agent sync request, which the `0xFF` delimiter precedes on the wire.
        delimited: bool,
    },
    /// The session ended. Emitted exactly once per session, after every pending command was
    /// resolved and after the transition to [`RunState::Idle`]: it is the last output of the
    /// session.
    Disconnected(DisconnectReason),
}

/// Which way a traced message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server.
    Out,
    /// From the server to the client.
    In,
}

/// Server output that the engine dropped without ending the session.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Diagnostic {
    /// A reply whose id matches no command in flight (the QMP specification asks clients to
    /// drop these). `id` is the raw JSON of its id, or `None` for a successful reply without
    /// an id.
    #[error("dropped a reply for an unknown id {}: {excerpt}", id.as_deref().unwrap_or("(none)"))]
    UnknownReply {
        /// The raw JSON of the reply's id, if it had one.
        id: Option<String>,
        /// The reply.
        excerpt: Excerpt,
    },
    /// The reply of a command that had already timed out or been cancelled. Its outcome
    /// follows as [`Event::LateReply`].
    #[error("late reply of command {id}, which timed out or was cancelled: {excerpt}")]
    LateReply {
        /// The command, already resolved with
        /// [`CommandError::Timeout`](crate::CommandError::Timeout) or
        /// [`CommandError::Cancelled`](crate::CommandError::Cancelled).
        id: CommandId,
        /// The reply.
        excerpt: Excerpt,
    },
    /// A greeting in the middle of a session.
    #[error("dropped an unexpected greeting: {0}")]
    UnexpectedGreeting(Excerpt),
    /// An event whose `event` member is not a string.
    #[error("dropped a malformed event: {0}")]
    MalformedEvent(Excerpt),
    /// A JSON object that is neither a reply nor an event.
    #[error("dropped a message that is neither a reply nor an event: {0}")]
    UnknownMessage(Excerpt),
    /// Guest agent mode: something the agent sent while the engine waited for the answer to
    /// a resynchronisation (output left over from an earlier client or command, bytes that
    /// are not JSON, half a message cut off by the agent's `0xFF` delimiter), dropped. The
    /// agent's id-less error for the `0xFF` byte itself is expected and dropped silently.
    #[error("discarded while resynchronising with the guest agent: {0}")]
    DiscardedBeforeSync(Excerpt),
    /// A job was not added to the tracked table, which holds
    /// [`ClientConfig::max_tracked_jobs`](crate::ClientConfig::max_tracked_jobs) already.
    /// Reported once per job and session.
    #[error("job {id} not tracked: the table is full")]
    JobNotTracked {
        /// The job's id.
        id: String,
    },
    /// A query the client sent for its trackers (`query-status`, `query-jobs`) failed, or
    /// its reply did not decode; what the tracker holds is unchanged.
    #[error("{command}, asked by the status tracker, failed: {error}")]
    StatusQueryFailed {
        /// The command.
        command: &'static str,
        /// Why.
        error: String,
    },
}

/// The queue of events not yet polled. What the peer causes (QMP events, diagnostics,
/// received traffic) is bounded; what the application causes (replies, transitions) is not,
/// as it is bounded by the application's own calls.
#[derive(Debug)]
pub(super) struct Outputs {
    events: VecDeque<Event>,
    /// Peer-caused events in `events`.
    from_peer: usize,
    max_from_peer: usize,
}

impl Outputs {
    pub(super) fn new(max_from_peer: usize) -> Self {
        Outputs {
            events: VecDeque::new(),
            from_peer: 0,
            max_from_peer,
        }
    }

    /// Queues an event the application caused (a reply, a transition, sent traffic).
    pub(super) fn push(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Resolves a command.
    pub(super) fn reply(&mut self, id: u64, result: CommandResult) {
        self.push(Event::Reply {
            id: CommandId(id),
            result,
        });
    }

    /// The late outcome of a command resolved before its reply came.
    pub(super) fn late_reply(&mut self, id: u64, result: CommandResult) {
        self.push(Event::LateReply {
            id: CommandId(id),
            result,
        });
    }

    /// Queues a peer-caused event, within the bound; past it, counts it as lost.
    pub(super) fn push_peer(&mut self, event: Event) {
        if self.from_peer >= self.max_from_peer {
            if let Some(Event::EventsLost { count }) = self.events.back_mut() {
                *count += 1;
            } else {
                self.events.push_back(Event::EventsLost { count: 1 });
            }
            return;
        }
        self.from_peer += 1;
        self.events.push_back(event);
    }

    /// Queues a diagnostic (peer-caused).
    pub(super) fn diagnostic(&mut self, diagnostic: Diagnostic) {
        self.push_peer(Event::Diagnostic(diagnostic));
    }

    pub(super) fn pop(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if matches!(
            event,
            Event::Qmp(_)
                | Event::Diagnostic(_)
                | Event::VmStatusChanged { .. }
                | Event::JobChanged { .. }
                | Event::Traffic {
                    direction: Direction::In,
                    ..
                }
        ) {
            self.from_peer -= 1;
        }
        Some(event)
    }
}
