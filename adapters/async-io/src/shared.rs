//! What the driver and the handles share: session facts, listeners, and the journals that
//! watchers read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use qmp_proto::schema::Schema;
use qmp_proto::{DisconnectReason, Greeting, QmpEvent, RunState};

use crate::events::Slot;
use crate::watch::{Status, Transition};
use crate::Error;

/// How many entries a journal keeps for readers that fall behind.
pub(crate) const JOURNAL_LEN: usize = 256;

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

pub(crate) struct State {
    pub(crate) runstate: RunState,
    /// The number of the current (or last) session, from 1.
    pub(crate) session: u64,
    pub(crate) greeting: Option<Greeting>,
    pub(crate) oob: bool,
    /// Calls issued to the engine and not resolved yet.
    pub(crate) pending: usize,
    /// Why the last session ended.
    pub(crate) last_reason: Option<DisconnectReason>,
    /// The driver has finished or was dropped.
    pub(crate) finished: bool,
    /// `query-qmp-schema` and the session it came from ([`Qmp::schema`](crate::Qmp::schema)).
    pub(crate) schema: Option<(u64, Arc<Schema>)>,
    listeners: Vec<Arc<Slot>>,
    pub(crate) transitions: Journal<Transition>,
    pub(crate) status: Journal<Status>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("runstate", &self.runstate)
            .field("session", &self.session)
            .field("pending", &self.pending)
            .field("listeners", &self.listeners.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            state: Mutex::new(State {
                runstate: RunState::Idle,
                session: 0,
                greeting: None,
                oob: false,
                pending: 0,
                last_reason: None,
                finished: false,
                schema: None,
                listeners: Vec::new(),
                transitions: Journal::new(),
                status: Journal::new(),
            }),
        }
    }

    /// The state. Nothing user-supplied runs under this lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The error for a call that the driver will not answer.
    pub(crate) fn gone_error(&self) -> Error {
        match &self.lock().last_reason {
            Some(reason) => Error::Disconnected(reason.clone()),
            None => Error::DriverGone,
        }
    }

    pub(crate) fn register(&self, slot: &Arc<Slot>) {
        let mut s = self.lock();
        if s.finished {
            slot.close();
        } else {
            s.listeners.push(Arc::clone(slot));
        }
    }

    pub(crate) fn unregister(&self, slot: &Arc<Slot>) {
        self.lock().listeners.retain(|l| !Arc::ptr_eq(l, slot));
    }

    /// Hands an event to every listener whose filter takes it. Filters run outside the lock.
    pub(crate) fn dispatch(&self, event: QmpEvent) {
        let listeners = self.lock().listeners.clone();
        if listeners.is_empty() {
            return;
        }
        let event = Arc::new(event);
        for l in &listeners {
            l.offer(&event);
        }
    }

    /// The engine dropped `count` events: every listener missed them.
    pub(crate) fn events_lost(&self, count: u64) {
        let listeners = self.lock().listeners.clone();
        for l in &listeners {
            l.lost(count);
        }
    }

    /// Ends every listener's stream (the session ended). Listeners created from now on
    /// belong to the next session.
    pub(crate) fn close_listeners(&self) {
        let listeners = std::mem::take(&mut self.lock().listeners);
        for l in &listeners {
            l.close();
        }
    }
}

/// A bounded, sequence-numbered log of what happened, read by any number of readers, each at
/// its own position: a reader sees every entry after its position, in order, unless it falls
/// more than [`JOURNAL_LEN`] entries behind, in which case it is told how many it missed.
#[derive(Debug)]
pub(crate) struct Journal<T> {
    entries: VecDeque<T>,
    /// The sequence number of `entries[0]`; numbers start at 1.
    first: u64,
    wakers: Vec<Waker>,
    closed: bool,
}

impl<T: Clone> Journal<T> {
    fn new() -> Self {
        Journal {
            entries: VecDeque::new(),
            first: 1,
            wakers: Vec::new(),
            closed: false,
        }
    }

    /// The sequence number the next entry gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    pub(crate) fn push(&mut self, entry: T) {
        if self.entries.len() == JOURNAL_LEN {
            self.entries.pop_front();
            self.first += 1;
        }
        self.entries.push_back(entry);
        self.wake();
    }

    /// No more entries: readers end once they have read what is there.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.wake();
    }

    fn wake(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }

    /// The entry at `*cursor`, advancing it; entries that fell out of the journal are
    /// skipped and counted in `*missed`.
    pub(crate) fn poll_read(
        &mut self,
        cursor: &mut u64,
        missed: &mut u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        if *cursor < self.first {
            *missed += self.first - *cursor;
            *cursor = self.first;
        }
        let index = (*cursor - self.first) as usize;
        if let Some(entry) = self.entries.get(index) {
            *cursor += 1;
            return Poll::Ready(Some(entry.clone()));
        }
        if self.closed {
            return Poll::Ready(None);
        }
        if !self.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            self.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
