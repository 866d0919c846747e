//! Event listeners: filtered, bounded, each a `Stream`.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_lite::Stream;
use qmp_proto::QmpEvent;

use crate::shared::Shared;

/// How many events a listener holds by default before it starts missing them.
pub const DEFAULT_CAPACITY: usize = 256;

type Predicate = Arc<dyn Fn(&QmpEvent) -> bool + Send + Sync>;

/// Which events a listener receives, and how many it may hold unread.
///
/// An event matches when its name is one of the names given (any name if none was given)
/// and the predicate, if any, returns true.
///
/// ```
/// use qmp_async::EventFilter;
///
/// // Every event, up to 256 unread.
/// let all = EventFilter::all();
/// // STOP and RESUME only.
/// let runstate = EventFilter::names(["STOP", "RESUME"]);
/// // The status changes of one job, up to 32 unread.
/// let job = EventFilter::name("JOB_STATUS_CHANGE")
///     .predicate(|e| e.data_as::<serde_json::Value>().is_ok_and(|d| d["id"] == "job0"))
///     .capacity(32);
/// # let _ = (all, runstate, job);
/// ```
#[derive(Clone)]
pub struct EventFilter {
    names: Option<HashSet<String>>,
    predicate: Option<Predicate>,
    capacity: usize,
}

impl fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFilter")
            .field("names", &self.names)
            .field("predicate", &self.predicate.is_some())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for EventFilter {
    fn default() -> Self {
        Self::all()
    }
}

impl EventFilter {
    /// Every event, with the default capacity ([`DEFAULT_CAPACITY`]).
    pub fn all() -> Self {
        EventFilter {
            names: None,
            predicate: None,
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// Events with this name.
    pub fn name(name: impl Into<String>) -> Self {
        Self::all().or_name(name)
    }

    /// Events with any of these names.
    pub fn names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        names.into_iter().fold(Self::all(), Self::or_name)
    }

    /// Also events with this name.
    pub fn or_name(mut self, name: impl Into<String>) -> Self {
        self.names
            .get_or_insert_with(HashSet::new)
            .insert(name.into());
        self
    }

    /// Only events for which `f` returns true (combined with the names, if any). It runs on
    /// the driver's task for every event whose name matches, so keep it quick.
    pub fn predicate(mut self, f: impl Fn(&QmpEvent) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(f));
        self
    }

    /// How many events the listener holds unread (default [`DEFAULT_CAPACITY`]; at least 1).
    /// When it is full, further events are dropped for this listener and counted; it learns
    /// how many with a [`Lagged`] item.
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &QmpEvent) -> bool {
        self.names
            .as_ref()
            .map_or(true, |n| n.contains(&event.name))
            && self.predicate.as_ref().map_or(true, |p| p(event))
    }
}

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

    fn pop(&mut self) -> Option<Result<Arc<QmpEvent>, Lagged>> {
        match self.items.pop_front() {
            Some(Item::Event(e)) => {
                self.events -= 1;
                Some(Ok(e))
            }
            Some(Item::Missed(missed)) => Some(Err(Lagged { missed })),
            None if self.lag > 0 => Some(Err(Lagged {
                missed: std::mem::take(&mut self.lag),
            })),
            None => None,
        }
    }
}

/// One listener as the driver sees it.
pub(crate) struct Slot {
    filter: EventFilter,
    queue: Mutex<Queue>,
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn offer(&self, event: &Arc<QmpEvent>) {
        if self.filter.matches(event) {
            self.queue().push(Arc::clone(event));
        }
    }

    /// The engine dropped `count` events before anyone saw them: every listener missed them.
    pub(crate) fn lost(&self, count: u64) {
        self.queue().lost(count);
    }

    /// Ends the stream once the queue is drained.
    pub(crate) fn close(&self) {
        let mut q = self.queue();
        q.closed = true;
        q.wake();
    }
}

/// A stream of the QMP events that match one [`EventFilter`], from
/// [`Qmp::subscribe`](crate::Qmp::subscribe).
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
    pub(crate) fn new(shared: Arc<Shared>, filter: EventFilter) -> Self {
        let slot = Arc::new(Slot {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                events: 0,
                capacity: filter.capacity,
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
}

impl Stream for EventStream {
    type Item = Result<Arc<QmpEvent>, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
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

impl Drop for EventStream {
    fn drop(&mut self) {
        self.shared.unregister(&self.slot);
    }
}
