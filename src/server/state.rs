//! The connection state of a [`Server`](super::Server), with every transition in one place.
//!
//! ```text
//!            accept             qmp_capabilities
//!   Idle ───────────▶ Negotiating ─────────────▶ Running
//!    ▲                    │                         │
//!    │                    │ Context::close          │ Context::close
//!    │                    ▼                         ▼
//!    │        Closing { negotiated: false } ─▶ Closing { negotiated: true }
//!    │                    │                         │
//!    │                    └──────────┬──────────────┘
//!    │                               │ its output is written
//!    ├───────────── Closed ◀─────────┘
//!    │
//!    └───────────── Closed ◀── Dropped { negotiated }  ◀── drop_connection, from any
//!                                                          connected state
//! ```
//!
//! * A connection starts at [`accept`](super::Server::accept) (which first forgets any
//!   previous one) and negotiates with `qmp_capabilities`.
//! * The handler ends it with [`Context::close`](super::Context::close): nothing more is read,
//!   but what was read still runs and is answered (a request still queued may even complete
//!   the negotiation, as in QEMU), then [`ServerEvent::Closed`](super::ServerEvent::Closed)
//!   comes out once the output is written.
//! * [`drop_connection`](super::Server::drop_connection) ends it at once: unsent output is
//!   discarded and `Closed` is the next output.
//! * `Closed` is emitted by [`poll_event`](super::Server::poll_event), exactly once per
//!   connection the server ends, and the state is `Idle` again.
//! * [`handle_eof`](super::Server::handle_eof) (the client left) goes back to `Idle` from any
//!   state without an event: the caller already knows.

/// Where the connection of a [`Server`](super::Server) is. See
/// [`Server::state`](super::Server::state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// No client: before [`accept`](super::Server::accept), after
    /// [`handle_eof`](super::Server::handle_eof) and after
    /// [`ServerEvent::Closed`](super::ServerEvent::Closed).
    Idle,
    /// The greeting is sent; only `qmp_capabilities` runs, events are not sent.
    Negotiating,
    /// Capabilities negotiation is complete: commands run and events are sent.
    Running,
    /// The handler closed the connection: no more input is read; what was read still runs.
    /// [`ServerEvent::Closed`](super::ServerEvent::Closed) follows once the output is written.
    Closing {
        /// Whether negotiation completed.
        negotiated: bool,
    },
    /// The connection was dropped: unsent output is discarded, and
    /// [`ServerEvent::Closed`](super::ServerEvent::Closed) is the next output.
    Dropped {
        /// Whether negotiation completed.
        negotiated: bool,
    },
}

impl ServerState {
    /// Whether a client is connected (any state but `Idle`).
    pub fn is_connected(self) -> bool {
        self != ServerState::Idle
    }

    /// Whether the client completed capabilities negotiation.
    pub fn is_negotiated(self) -> bool {
        matches!(
            self,
            ServerState::Running
                | ServerState::Closing { negotiated: true }
                | ServerState::Dropped { negotiated: true }
        )
    }

    /// Whether input is read.
    pub(super) fn reads(self) -> bool {
        matches!(self, ServerState::Negotiating | ServerState::Running)
    }

    /// Whether output is kept for the client.
    pub(super) fn writes(self) -> bool {
        matches!(
            self,
            ServerState::Negotiating | ServerState::Running | ServerState::Closing { .. }
        )
    }

    /// Whether the connection ends now, given whether all output is written.
    pub(super) fn ends(self, output_written: bool) -> bool {
        match self {
            ServerState::Closing { .. } => output_written,
            ServerState::Dropped { .. } => true,
            _ => false,
        }
    }

    /// A client connected (the previous connection is forgotten first).
    pub(super) fn accept(&mut self) {
        *self = ServerState::Negotiating;
    }

    /// `qmp_capabilities` succeeded.
    pub(super) fn negotiate(&mut self) {
        *self = match *self {
            ServerState::Negotiating => ServerState::Running,
            ServerState::Closing { .. } => ServerState::Closing { negotiated: true },
            ServerState::Dropped { .. } => ServerState::Dropped { negotiated: true },
            other => other,
        };
    }

    /// The handler closes the connection.
    pub(super) fn close(&mut self) {
        *self = match *self {
            ServerState::Negotiating => ServerState::Closing { negotiated: false },
            ServerState::Running => ServerState::Closing { negotiated: true },
            other => other,
        };
    }

    /// The connection is dropped at once.
    pub(super) fn drop_connection(&mut self) {
        let negotiated = self.is_negotiated();
        if self.is_connected() {
            *self = ServerState::Dropped { negotiated };
        }
    }

    /// The connection ended (`Closed`, EOF, or a new `accept`).
    pub(super) fn reset(&mut self) {
        *self = ServerState::Idle;
    }
}
