//! A `tracing` subscriber that keeps every span and event, for tests of what the adapters
//! trace.
//!
//! ```
//! use qmp_testkit::traces::Capture;
//!
//! let capture = Capture::new();
//! let _guard = capture.set_default(); // this thread only, until the guard drops
//! let span = tracing::info_span!(target: "qmp", "qmp", name = "vm0");
//! tracing::debug!(target: "qmp", parent: &span, event = "STOP", "event");
//! drop(span);
//! let spans = capture.spans();
//! assert_eq!(spans[0].field("name"), Some("vm0"));
//! assert!(spans[0].closed);
//! assert_eq!(capture.events()[0].span, Some(0));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
pub use tracing::Level;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as it was created and recorded.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Its name (`qmp`, `command`).
    pub name: &'static str,
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: Level,
    /// Its fields, as they were last recorded (strings as they are, others in `Debug` form).
    pub fields: BTreeMap<String, String>,
    /// The index of its parent span in [`Capture::spans`].
    pub parent: Option<usize>,
    /// Whether it was closed (every handle to it dropped).
    pub closed: bool,
}

impl SpanRecord {
    /// A field's value, if it was recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: Level,
    /// Its fields, the message under `message`.
    pub fields: BTreeMap<String, String>,
    /// The index of the span it is in, in [`Capture::spans`].
    pub span: Option<usize>,
}

impl EventRecord {
    /// A field's value, if it has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Bumped by [`Capture::clear`]: spans of an earlier generation are no longer kept.
    generation: u64,
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

/// Keeps every span and event of the subscriber it is part of.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Log>>);

/// The generation and index of a span in the log, kept in the span's extensions.
struct Index(u64, usize);

impl Capture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a subscriber with this capture (every level) the default of this thread until
    /// the guard drops.
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    /// Every span so far, in the order they were created.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.lock().spans.clone()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<EventRecord> {
        self.lock().events.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let meta = attrs.metadata();
        let mut log = self.lock();
        let parent = span.parent().and_then(|p| log.index(&p));
        log.spans.push(SpanRecord {
            name: meta.name(),
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields: fields.0,
            parent,
            closed: false,
        });
        let index = Index(log.generation, log.spans.len() - 1);
        drop(log);
        span.extensions_mut().insert(index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let mut log = self.lock();
        if let Some(index) = log.index(&span) {
            log.spans[index].fields.extend(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let mut log = self.lock();
        let span = ctx.event_span(event).and_then(|s| log.index(&s));
        log.events.push(EventRecord {
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields: fields.0,
            span,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let mut log = self.lock();
        if let Some(index) = log.index(&span) {
            log.spans[index].closed = true;
        }
    }
}

impl Log {
    /// The index of a span kept in this generation.
    fn index<'a, R: LookupSpan<'a>>(
        &self,
        span: &tracing_subscriber::registry::SpanRef<'a, R>,
    ) -> Option<usize> {
        match span.extensions().get::<Index>() {
            Some(&Index(generation, index)) if generation == self.generation => Some(index),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// The command [`traced_fake`] answers after [`SLOW_FOR`].
pub const SLOW: &str = "query-name";

/// How long [`traced_fake`] takes to answer [`SLOW`].
pub const SLOW_FOR: std::time::Duration = std::time::Duration::from_millis(300);

/// The fake QEMU of the tracing scenario: it answers [`SLOW`] after [`SLOW_FOR`].
pub fn traced_fake() -> qmp_proto::server::FakeQemu {
    let mut fake = qmp_proto::server::FakeQemu::new();
    fake.delay(SLOW, SLOW_FOR);
    fake
}

/// The commands of the tracing scenario, in order, and whether each succeeds: run them on
/// one connection to [`traced_fake`], [`SLOW`] with a timeout well under [`SLOW_FOR`] (its
/// late reply is then a diagnostic), each awaited before the next.
pub const SCENARIO: [(&str, bool); 5] = [
    ("query-status", true),
    ("no-such-command", false),
    (SLOW, false),
    ("stop", true),
    ("query-status", true),
];

/// Checks what one run of [`SCENARIO`] traced, on a connection named `name` (its label, or
/// its socket path): one connection span `qmp` with `name` and QEMU's version; a `command`
/// span per command, child of the connection's, closed, with its id, name, duration and
/// outcome; the `STOP` event and the late reply's diagnostic as events in the connection's
/// span; the traffic at trace level. Panics with what it found otherwise.
pub fn assert_scenario_traced(capture: &Capture, name: &str) {
    let spans = capture.spans();
    let events = capture.events();
    let dump = || format!("spans: {spans:#?}\nevents: {events:#?}");
    let connections: Vec<usize> = (0..spans.len())
        .filter(|&i| spans[i].name == "qmp")
        .collect();
    assert_eq!(connections.len(), 1, "one connection span: {}", dump());
    let conn = connections[0];
    let span = &spans[conn];
    assert_eq!(span.target, "qmp");
    assert_eq!(span.level, Level::INFO);
    assert_eq!(span.field("name"), Some(name), "{}", dump());
    assert_eq!(span.field("qemu"), Some("10.0.2"), "{}", dump());

    let commands: Vec<&SpanRecord> = spans.iter().filter(|s| s.name == "command").collect();
    let names: Vec<&str> = commands.iter().filter_map(|s| s.field("name")).collect();
    let expected: Vec<&str> = SCENARIO.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "{}", dump());
    let mut ids = Vec::new();
    for (command, (_, ok)) in commands.iter().zip(SCENARIO) {
        assert_eq!(command.parent, Some(conn), "{command:?}");
        assert!(
            command.closed,
            "the span of a resolved command closes: {command:?}"
        );
        assert!(command.field("duration").is_some(), "{command:?}");
        let outcome = command.field("outcome").unwrap_or_default();
        assert_eq!(outcome == "ok", ok, "{command:?}");
        ids.push(command.field("id").unwrap_or_default().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), SCENARIO.len(), "distinct ids: {ids:?}");
    let slow = commands[2];
    assert_eq!(slow.field("outcome"), Some("timed out"), "{slow:?}");

    let in_conn = |e: &&EventRecord| e.span == Some(conn) && e.target == "qmp";
    assert!(
        events
            .iter()
            .filter(in_conn)
            .any(|e| e.level == Level::DEBUG && e.field("event") == Some("STOP")),
        "the STOP event: {}",
        dump()
    );
    assert!(
        events.iter().filter(in_conn).any(|e| e.level == Level::WARN
            && e.field("message")
                .is_some_and(|m| m.starts_with("late reply of command"))),
        "the late reply's diagnostic: {}",
        dump()
    );
    assert!(
        events
            .iter()
            .filter(in_conn)
            .any(|e| e.level == Level::DEBUG
                && e.field("message") == Some("negotiated with QEMU 10.0.2 (oob: true)")),
        "the negotiation: {}",
        dump()
    );
    assert!(
        events
            .iter()
            .filter(in_conn)
            .any(|e| e.level == Level::TRACE
                && e.field("direction") == Some("->")
                && e.field("message").is_some_and(|m| m.contains("\"stop\""))),
        "the traffic: {}",
        dump()
    );
}

impl Capture {
    /// Forgets every span and event so far (spans still open are no longer followed).
    pub fn clear(&self) {
        let mut log = self.lock();
        log.generation += 1;
        log.spans.clear();
        log.events.clear();
    }

    /// Makes a subscriber with this capture the global default (once per process).
    pub fn set_global_default(&self) {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_global_default(subscriber)
            .unwrap_or_else(|e| panic!("a global subscriber is already set: {e}"));
    }
}

/// A `log` logger that keeps the records of one target, as `LEVEL message` (install it in a
/// test binary of its own: a logger is process-wide).
///
/// ```
/// use qmp_testkit::traces::LogRecorder;
///
/// static LOG: LogRecorder = LogRecorder::new("my_target");
/// LOG.install();
/// log::debug!(target: "my_target", "hello");
/// log::debug!(target: "other", "not kept");
/// assert_eq!(LOG.take(), ["DEBUG hello"]);
/// ```
#[derive(Debug)]
pub struct LogRecorder {
    target: &'static str,
    lines: Mutex<Vec<String>>,
}

impl LogRecorder {
    /// A recorder of `target`'s records.
    pub const fn new(target: &'static str) -> Self {
        LogRecorder {
            target,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// Makes it the process's logger, every level enabled. Panics if a logger is set.
    pub fn install(&'static self) {
        log::set_logger(self).unwrap_or_else(|e| panic!("a logger is already set: {e}"));
        log::set_max_level(log::LevelFilter::Trace);
    }

    /// The records so far.
    pub fn lines(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// The records so far, forgetting them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl log::Log for LogRecorder {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.target() == self.target
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            self.lock().push(line);
        }
    }

    fn flush(&self) {}
}
