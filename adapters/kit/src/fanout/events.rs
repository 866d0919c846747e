//! Event listeners: filtered, bounded, each a `Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use qmp_proto::QmpEvent;

use super::shared::Shared;
use crate::EventFilter;

/// A listener fell behind: this many matching events were dropped for it (its queue was
/// full, or the engine's own buffer overflowed), at this point of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the listener fell behind and missed {missed} events")]
pub struct Lagged {
    /// How many events were dropped here.
    pub missed: u64,
}

enum Item {
    Event(Arc<QmpEvent>),
    Missed(u64),
    /// A listener across sessions: the events after it are of session `n`.
    Session(u64),
}

/// An item of a listener across sessions ([`SessionEventStream`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionItem {
    /// A QMP event.
    Event(Arc<QmpEvent>),
    /// Events were dropped here: the listener fell behind.
    Lagged(Lagged),
    /// A new session started (after a reconnection): the events after this are of session
    /// `session`; those before it were of the earlier one.
    NewSession {
        /// The number of the new session, from 1.
        session: u64,
    },
}

/// A listener's bounded queue. Holds at most `capacity` events; a gap is remembered as a
/// count and placed in the stream before the next event that fits (or at its end).
struct Queue {
    items: VecDeque<Item>,
    events: usize,
    capacity: usize,
    /// Dropped since the last event queued.
    lag: u64,
    missed_total: u64,
    closed: bool,
    waker: Option<Waker>,
}

impl Queue {
    fn push(&mut self, event: Arc<QmpEvent>) {
        if self.closed {
            return;
        }
        if self.events >= self.capacity {
            self.lost(1);
            return;
        }
        if self.lag > 0 {
            self.items
                .push_back(Item::Missed(std::mem::take(&mut self.lag)));
        }
        self.items.push_back(Item::Event(event));
        self.events += 1;
        self.wake();
    }

    fn push_session(&mut self, session: u64) {
        if self.closed {
            return;
        }
        if self.lag > 0 {
            self.items
                .push_back(Item::Missed(std::mem::take(&mut self.lag)));
        }
        self.items.push_back(Item::Session(session));
        self.wake();
    }

    fn lost(&mut self, count: u64) {
        self.lag += count;
        self.missed_total += count;
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn pop(&mut self) -> Option<SessionItem> {
        match self.items.pop_front() {
            Some(Item::Event(e)) => {
                self.events -= 1;
                Some(SessionItem::Event(e))
            }
            Some(Item::Missed(missed)) => Some(SessionItem::Lagged(Lagged { missed })),
            Some(Item::Session(session)) => Some(SessionItem::NewSession { session }),
            None if self.lag > 0 => Some(SessionItem::Lagged(Lagged {
                missed: std::mem::take(&mut self.lag),
            })),
            None => None,
        }
    }
}

/// One listener as the driver sees it.
pub(super) struct Slot {
    filter: EventFilter,
    /// Outlives the sessions (until the driver finishes), with a marker at each new one.
    pub(super) across_sessions: bool,
    queue: Mutex<Queue>,
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn offer(&self, event: &Arc<QmpEvent>) {
        if self.filter.matches(event) {
            self.queue().push(Arc::clone(event));
        }
    }

    /// The engine dropped `count` events before anyone saw them: every listener missed them.
    pub(super) fn lost(&self, count: u64) {
        self.queue().lost(count);
    }

    /// A listener across sessions: session `session` starts.
    pub(super) fn new_session(&self, session: u64) {
        self.queue().push_session(session);
    }

    /// Ends the stream once the queue is drained.
    pub(super) fn close(&self) {
        let mut q = self.queue();
        q.closed = true;
        q.wake();
    }
}

/// A stream of the QMP events that match one [`EventFilter`], from an adapter's `subscribe`
/// (made by [`Shared::subscribe`]).
///
/// Items are `Ok(event)`, or `Err(`[`Lagged`]`)` where events were dropped because the queue
/// was full: memory stays bounded however slowly (or never) the listener reads. The stream
/// ends (`None`) when the session it was created in ends, after the events queued before
/// the end; a listener created while no session is up belongs to the next one, or ends at
/// once if the driver has finished. Dropping the stream unsubscribes it.
///
/// Events are shared between listeners (`Arc`): a listener costs a pointer per queued event.
pub struct EventStream {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = self.slot.queue();
        f.debug_struct("EventStream")
            .field("filter", &self.slot.filter)
            .field("queued", &q.events)
            .field("missed_total", &q.missed_total)
            .field("closed", &q.closed)
            .finish()
    }
}

impl EventStream {
    pub(super) fn new(shared: Arc<Shared>, filter: EventFilter, across_sessions: bool) -> Self {
        let slot = Arc::new(Slot {
            across_sessions,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                events: 0,
                capacity: filter.get_capacity(),
                lag: 0,
                missed_total: 0,
                closed: false,
                waker: None,
            }),
            filter,
        });
        shared.register(&slot);
        EventStream { shared, slot }
    }

    /// Events queued and not read yet (at most the filter's capacity).
    pub fn len(&self) -> usize {
        self.slot.queue().events
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many events this listener has missed in all, reported or not yet.
    pub fn missed_total(&self) -> u64 {
        self.slot.queue().missed_total
    }

    /// Whether the stream has ended or will end once drained.
    pub fn is_closed(&self) -> bool {
        self.slot.queue().closed
    }

    /// The next item: an event, a [`Lagged`] gap, or `None` once the stream has ended (the
    /// same as `StreamExt::next`, without a stream extension trait).
    pub async fn recv(&mut self) -> Option<Result<Arc<QmpEvent>, Lagged>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for EventStream {
    type Item = Result<Arc<QmpEvent>, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.poll_item(cx) {
                Poll::Ready(Some(SessionItem::Event(e))) => Poll::Ready(Some(Ok(e))),
                Poll::Ready(Some(SessionItem::Lagged(l))) => Poll::Ready(Some(Err(l))),
                // Only a listener across sessions has markers.
                Poll::Ready(Some(SessionItem::NewSession { .. })) => continue,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl EventStream {
    fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<SessionItem>> {
        let mut q = self.slot.queue();
        if let Some(item) = q.pop() {
            return Poll::Ready(Some(item));
        }
        if q.closed {
            return Poll::Ready(None);
        }
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A listener that outlives sessions, from an adapter's `subscribe_across_sessions` (made by
/// [`Shared::subscribe_across_sessions`]): like an [`EventStream`], but when the connection
/// reconnects it goes on, with a [`SessionItem::NewSession`] marker before the events of
/// each new session, so nothing of the old session is taken for the new one. It ends when
/// the driver finishes (no more sessions). Dropping it unsubscribes it.
#[derive(Debug)]
pub struct SessionEventStream {
    inner: EventStream,
}

impl SessionEventStream {
    pub(super) fn new(shared: Arc<Shared>, filter: EventFilter) -> Self {
        SessionEventStream {
            inner: EventStream::new(shared, filter, true),
        }
    }

    /// Events queued and not read yet (at most the filter's capacity).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// How many events this listener has missed in all, reported or not yet.
    pub fn missed_total(&self) -> u64 {
        self.inner.missed_total()
    }

    /// Whether the stream has ended (the driver finished) or will end once drained.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The next item, or `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<SessionItem> {
        std::future::poll_fn(|cx| self.inner.poll_item(cx)).await
    }
}

impl Stream for SessionEventStream {
    type Item = SessionItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_item(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.shared.unregister(&self.slot);
    }
}
