//! Event filters: which events a listener or a wait takes.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use qmp_proto::QmpEvent;

/// How many events a listener holds by default before it starts missing them.
pub const DEFAULT_CAPACITY: usize = 256;

type Predicate = Arc<dyn Fn(&QmpEvent) -> bool + Send + Sync>;

/// Which events a listener receives, and how many it may hold unread.
///
/// An event matches when its name is one of the names given (any name if none was given)
/// and the predicate, if any, returns true.
///
/// ```
/// use qmp_kit::EventFilter;
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

    /// Only events for which `f` returns true (combined with the names, if any). It runs for
    /// every event whose name matches (on an async adapter's driver task), so keep it quick.
    pub fn predicate(mut self, f: impl Fn(&QmpEvent) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(f));
        self
    }

    /// How many events the listener holds unread (default [`DEFAULT_CAPACITY`]; at least 1).
    /// When it is full, further events are dropped for this listener and counted; it learns
    /// how many (an async adapter's `Lagged` item). A blocking connection's waits look at its
    /// one event buffer, bounded by
    /// [`ClientConfig::max_buffered_events`](qmp_proto::ClientConfig::max_buffered_events), and
    /// do not use it.
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// The capacity set with [`capacity`](Self::capacity).
    pub fn get_capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &QmpEvent) -> bool {
        self.names
            .as_ref()
            .map_or(true, |n| n.contains(&event.name))
            && self.predicate.as_ref().map_or(true, |p| p(event))
    }
}
