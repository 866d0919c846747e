//! What a driver and its handles share: session facts, listeners, and the journals that
//! watchers read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use qmp_proto::schema::Schema;
use qmp_proto::status::{Job, VmStatus};
use qmp_proto::{DisconnectReason, Greeting, QmpEvent, RunState};

use super::events::{EventStream, SessionEventStream, Slot};
use super::watch::{JobWatch, StateWatch, Status, StatusStream, Transition, VmStatusWatch};
use crate::{Error, EventFilter, JobChange, TrackedState, VmStatusChange};

/// How many entries a journal keeps for readers that fall behind.
pub(super) const JOURNAL_LEN: usize = 256;

/// The facts of a connection that its driver writes and its handles read: the runstate, the
/// session number, the greeting, whether OOB is on, the pending count, why the last session
/// ended, whether the driver has finished, the cached schema; plus the event listeners and
/// the journals behind [`StateWatch`] and [`StatusStream`].
///
/// One lock guards it all; nothing user-supplied runs under it (event filters run outside).
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
}

pub(super) struct State {
    pub(super) runstate: RunState,
    /// The number of the current (or last) session, from 1.
    session: u64,
    greeting: Option<Greeting>,
    oob: bool,
    /// Calls issued to the engine and not resolved yet.
    pending: usize,
    /// Why the last session ended.
    last_reason: Option<DisconnectReason>,
    /// The driver has finished or was dropped.
    finished: bool,
    /// `query-qmp-schema` and the session it came from.
    schema: Option<(u64, Arc<Schema>)>,
    listeners: Vec<Arc<Slot>>,
    pub(super) transitions: Journal<Transition>,
    pub(super) status: Journal<Status>,
    /// The tracked VM status and jobs, and their changes.
    pub(super) tracked: TrackedState,
    pub(super) vm_changes: Journal<VmStatusChange>,
    pub(super) job_changes: Journal<JobChange>,
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

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    /// Idle, before the first session.
    pub fn new() -> Self {
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
                tracked: TrackedState::default(),
                vm_changes: Journal::new(),
                job_changes: Journal::new(),
            }),
        }
    }

    /// The state. Nothing user-supplied runs under this lock.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // Handles' side: the facts.

    /// The connection runstate now.
    pub fn runstate(&self) -> RunState {
        self.lock().runstate
    }

    /// The number of the current (or last) session: 0 before the first, then 1, 2, ...
    pub fn session(&self) -> u64 {
        self.lock().session
    }

    /// The greeting of the current (or last) session that became ready (an empty one for a
    /// guest agent).
    pub fn greeting(&self) -> Option<Greeting> {
        self.lock().greeting.clone()
    }

    /// Whether out-of-band execution was negotiated on the current (or last) session.
    pub fn oob_enabled(&self) -> bool {
        self.lock().oob
    }

    /// Commands issued to the engine and not resolved yet.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Why the last session ended, once one has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.lock().last_reason.clone()
    }

    /// Whether the driver has finished (or was dropped): no more sessions will be made.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// The error for a call that the driver will not answer: the end of the last session,
    /// or [`Error::DriverGone`] when none has ended.
    pub fn gone_error(&self) -> Error {
        match &self.lock().last_reason {
            Some(reason) => Error::Disconnected(reason.clone()),
            None => Error::DriverGone,
        }
    }

    /// The schema cached for the current session, and the current session's number (to
    /// [`store_schema`](Self::store_schema) a schema fetched for it).
    pub fn cached_schema(&self) -> (u64, Option<Arc<Schema>>) {
        let s = self.lock();
        let cached = s
            .schema
            .as_ref()
            .filter(|(session, _)| *session == s.session)
            .map(|(_, schema)| Arc::clone(schema));
        (s.session, cached)
    }

    /// Caches `schema`, fetched during `session`, if that session is still the current one.
    pub fn store_schema(&self, session: u64, schema: &Arc<Schema>) {
        let mut s = self.lock();
        if s.session == session {
            s.schema = Some((session, Arc::clone(schema)));
        }
    }

    /// A listener for the events that pass `filter`, from now on. See [`EventStream`].
    pub fn subscribe(self: &Arc<Self>, filter: EventFilter) -> EventStream {
        EventStream::new(Arc::clone(self), filter, false)
    }

    /// A listener for the events that pass `filter`, from now on, across sessions. See
    /// [`SessionEventStream`].
    pub fn subscribe_across_sessions(self: &Arc<Self>, filter: EventFilter) -> SessionEventStream {
        SessionEventStream::new(Arc::clone(self), filter)
    }

    /// The tracked VM status, as last reported (see [`Settings::track_status`](crate::Settings::track_status)).
    pub fn vm_status(&self) -> Option<VmStatus> {
        self.lock().tracked.vm_status().cloned()
    }

    /// The tracked jobs, as last reported.
    pub fn jobs(&self) -> Vec<Job> {
        self.lock().tracked.jobs().to_vec()
    }

    /// A watcher of the VM status: its value now and every change from now on. See
    /// [`VmStatusWatch`].
    pub fn vm_status_watch(self: &Arc<Self>) -> VmStatusWatch {
        VmStatusWatch::new(Arc::clone(self))
    }

    /// A watcher of the jobs: the table now and every change from now on. See
    /// [`JobWatch`].
    pub fn job_watch(self: &Arc<Self>) -> JobWatch {
        JobWatch::new(Arc::clone(self))
    }

    /// A watcher of every runstate transition from now on. See [`StateWatch`].
    pub fn state_watch(self: &Arc<Self>) -> StateWatch {
        StateWatch::new(Arc::clone(self))
    }

    /// A reader of every [`Status`] change from now on. See [`StatusStream`].
    pub fn status_stream(self: &Arc<Self>) -> StatusStream {
        StatusStream::new(Arc::clone(self))
    }

    // The driver's side.

    /// Records the number of commands pending in the engine.
    pub fn set_pending(&self, pending: usize) {
        self.lock().pending = pending;
    }

    /// Records a runstate transition (a new session starts at `Connecting`). `ready` is the
    /// greeting and OOB flag when the session just became ready (`to == Running`): it is
    /// recorded and [`Status::Connected`] reported.
    pub fn transition(&self, from: RunState, to: RunState, ready: Option<(Greeting, bool)>) {
        let mut s = self.lock();
        if to == RunState::Connecting {
            s.session += 1;
            if s.session > 1 {
                for l in s.listeners.iter().filter(|l| l.across_sessions) {
                    l.new_session(s.session);
                }
            }
        }
        s.runstate = to;
        let seq = s.transitions.next_seq();
        let session = s.session;
        s.transitions.push(Transition {
            seq,
            session,
            from,
            to,
        });
        if let Some((greeting, oob)) = ready {
            s.oob = oob;
            s.greeting = Some(greeting.clone());
            s.status.push(Status::Connected { session, greeting });
        }
    }

    /// Records the end of a session: no command is pending any more, `reason` is reported
    /// ([`Status::Disconnected`]), and every listener's stream ends.
    pub fn session_ended(&self, reason: &DisconnectReason) {
        {
            let mut s = self.lock();
            s.pending = 0;
            s.last_reason = Some(reason.clone());
            let session = s.session;
            s.status.push(Status::Disconnected {
                session,
                reason: reason.clone(),
            });
        }
        self.close_listeners(false);
    }

    /// Records a change of the tracked VM status.
    pub fn vm_status_changed(&self, from: Option<VmStatus>, to: Option<VmStatus>) {
        let mut s = self.lock();
        let session = s.session;
        let change = s.tracked.vm_changed(session, from, to);
        s.vm_changes.push(change);
    }

    /// Records a change of a tracked job.
    pub fn job_changed(&self, id: String, from: Option<Job>, to: Option<Job>) {
        let mut s = self.lock();
        let session = s.session;
        let change = s.tracked.job_changed(session, id, from, to);
        s.job_changes.push(change);
    }

    /// Reports a [`Status`] change (reconnection attempts and their outcome).
    pub fn push_status(&self, status: Status) {
        self.lock().status.push(status);
    }

    /// The driver has finished: no more sessions. Watchers end once they have read what is
    /// there, and listeners end.
    pub fn finish(&self) {
        let mut s = self.lock();
        s.finished = true;
        s.transitions.close();
        s.status.close();
        s.vm_changes.close();
        s.job_changes.close();
        drop(s);
        self.close_listeners(true);
    }

    pub(super) fn register(&self, slot: &Arc<Slot>) {
        let mut s = self.lock();
        if s.finished {
            slot.close();
        } else {
            s.listeners.push(Arc::clone(slot));
        }
    }

    pub(super) fn unregister(&self, slot: &Arc<Slot>) {
        self.lock().listeners.retain(|l| !Arc::ptr_eq(l, slot));
    }

    /// Hands an event to every listener whose filter takes it. Filters run outside the lock.
    pub fn dispatch(&self, event: QmpEvent) {
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
    pub fn events_lost(&self, count: u64) {
        let listeners = self.lock().listeners.clone();
        for l in &listeners {
            l.lost(count);
        }
    }

    /// Ends the listeners' streams: those of the session (it ended), or all (the driver
    /// finished). Listeners created from now on belong to the next session.
    fn close_listeners(&self, all: bool) {
        let mut ended = Vec::new();
        self.lock().listeners.retain(|l| {
            let ends = all || !l.across_sessions;
            if ends {
                ended.push(Arc::clone(l));
            }
            !ends
        });
        for l in &ended {
            l.close();
        }
    }
}

/// A bounded, sequence-numbered log of what happened, read by any number of readers, each at
/// its own position: a reader sees every entry after its position, in order, unless it falls
/// more than [`JOURNAL_LEN`] entries behind, in which case it is told how many it missed.
#[derive(Debug)]
pub(super) struct Journal<T> {
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
    pub(super) fn next_seq(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    fn push(&mut self, entry: T) {
        if self.entries.len() == JOURNAL_LEN {
            self.entries.pop_front();
            self.first += 1;
        }
        self.entries.push_back(entry);
        self.wake();
    }

    /// No more entries: readers end once they have read what is there.
    fn close(&mut self) {
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
    pub(super) fn poll_read(
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
