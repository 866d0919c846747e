//! Watching the connection: runstate transitions and connection status, never missing one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use qmp_proto::{DisconnectReason, Greeting, RunState};

use super::shared::{Journal, Shared, State};
use crate::Error;

/// One change of the connection runstate (`Idle → Connecting → Running → Disconnecting →
/// Idle`), as the engine emitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Its sequence number: 1 for the first transition of the connection, then one more for
    /// each.
    pub seq: u64,
    /// The session it belongs to (1 for the first; a reconnection starts the next).
    pub session: u64,
    /// The previous runstate.
    pub from: RunState,
    /// The new runstate.
    pub to: RunState,
}

/// The connection's status, for the caller of a reconnecting connection, from an adapter's
/// `status` (made by [`Shared::status_stream`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Status {
    /// A session was negotiated and commands flow.
    Connected {
        /// The session number (1 for the first).
        session: u64,
        /// Its greeting.
        greeting: Greeting,
    },
    /// A session ended; every call pending in it failed with this reason.
    Disconnected {
        /// The session number.
        session: u64,
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// The driver will try to connect again after `delay`.
    Reconnecting {
        /// The attempt about to be made: 1 for the first after a disconnection.
        attempt: u32,
        /// How long it waits first.
        delay: Duration,
    },
    /// An attempt to open the socket failed (a failed greeting or negotiation shows as
    /// [`Disconnected`](Self::Disconnected) instead).
    ConnectFailed {
        /// The attempt.
        attempt: u32,
        /// Why.
        error: Arc<io::Error>,
    },
    /// The driver stopped reconnecting after this many attempts and finished.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
    },
}

/// A reader of one journal in the shared state.
#[derive(Debug)]
struct Reader<T> {
    shared: Arc<Shared>,
    pick: fn(&mut State) -> &mut Journal<T>,
    cursor: u64,
    missed: u64,
}

impl<T: Clone> Reader<T> {
    /// A reader of the entries from now on.
    fn new(shared: Arc<Shared>, pick: fn(&mut State) -> &mut Journal<T>) -> (Self, RunState) {
        let (cursor, runstate) = {
            let mut s = shared.lock();
            (pick(&mut s).next_seq(), s.runstate)
        };
        let reader = Reader {
            shared,
            pick,
            cursor,
            missed: 0,
        };
        (reader, runstate)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.shared.lock();
        (self.pick)(&mut s).poll_read(&mut self.cursor, &mut self.missed, cx)
    }
}

/// Watches the connection runstate, from an adapter's `state_watch` (made by
/// [`Shared::state_watch`]).
///
/// It yields every [`Transition`] made after it was created, in order, however late it is
/// polled: transitions are kept in a sequence-numbered journal, and each watcher reads at its
/// own position. (Only a watcher more than 256 transitions behind can miss any; it is told
/// by [`missed`](Self::missed).) The stream ends when the driver has finished and every
/// transition was read.
///
/// ```
/// # async fn f(shared: std::sync::Arc<qmp_kit::fanout::Shared>) -> Result<(), qmp_kit::Error> {
/// use qmp_proto::RunState;
///
/// let mut watch = shared.state_watch(); // qmp.state_watch() in an adapter
/// watch.wait_for(RunState::Idle).await?; // Running -> Disconnecting -> Idle
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StateWatch {
    reader: Reader<Transition>,
    last: RunState,
}

impl StateWatch {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let (reader, last) = Reader::new(shared, |s| &mut s.transitions);
        StateWatch { reader, last }
    }

    /// The runstate after the last transition this watcher has read (at creation: the
    /// runstate then).
    pub fn current(&self) -> RunState {
        self.last
    }

    /// Transitions skipped because this watcher fell more than 256 behind.
    pub fn missed(&self) -> u64 {
        self.reader.missed
    }

    /// The next transition, or `None` once the driver has finished and all were read.
    pub async fn changed(&mut self) -> Option<Transition> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits until the runstate is `state`: returns at once if the last transition read
    /// reached it, else reads transitions until one does. Fails when the driver finishes
    /// first.
    pub async fn wait_for(&mut self, state: RunState) -> Result<(), Error> {
        while self.last != state {
            if self.changed().await.is_none() {
                return Err(self.reader.shared.gone_error());
            }
        }
        Ok(())
    }
}

impl Stream for StateWatch {
    type Item = Transition;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Transition>> {
        let t = std::task::ready!(self.reader.poll_next(cx));
        if let Some(t) = &t {
            self.last = t.to;
        }
        Poll::Ready(t)
    }
}

/// The connection's [`Status`] changes after it was created, in order, from an adapter's
/// `status` (made by [`Shared::status_stream`]). Ends when the driver has finished and every change
/// was read. Like [`StateWatch`], it reads a journal at its own position, so a slow reader
/// misses nothing (unless more than 256 behind: see [`missed`](Self::missed)).
#[derive(Debug)]
pub struct StatusStream {
    reader: Reader<Status>,
}

impl StatusStream {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        StatusStream {
            reader: Reader::new(shared, |s| &mut s.status).0,
        }
    }

    /// Changes skipped because this reader fell more than 256 behind.
    pub fn missed(&self) -> u64 {
        self.reader.missed
    }

    /// The next change, or `None` once the driver has finished and all were read.
    pub async fn recv(&mut self) -> Option<Status> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for StatusStream {
    type Item = Status;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Status>> {
        self.reader.poll_next(cx)
    }
}
