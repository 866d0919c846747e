//! What a connection tells the world: [`tracing`] spans and events, and the same messages as
//! [`log`] records for applications that use `log`.
//!
//! - Each connection is a span, `qmp`, with the fields `name` (the label given with
//!   [`Settings::label`](crate::Settings::label), else the socket path or addresses, else
//!   `stream`) and `qemu` (QEMU's version, once negotiated; a guest agent has none).
//! - Each command is a span, `command`, child of its connection's, with the fields `id`,
//!   `name`, and, once it is resolved, `duration` and `outcome` (`ok`, or the error).
//! - QMP events (debug), diagnostics (warn), runstate changes and session ends (debug),
//!   and the traffic (trace) are tracing events in the connection's span.
//!
//! Every tracing span and event has the target [`TARGET`] (`qmp`): filter with, for example,
//! `RUST_LOG=qmp=debug` for `tracing-subscriber`'s `EnvFilter`.
//!
//! The `log` records are the ones the adapters always wrote: the adapter's own target
//! (`qmp_tokio`, `qmp_async`, `qmp_blocking`) and a `[label] ` prefix. They are written only
//! while no `tracing` subscriber is in effect on the thread, as `tracing`'s own `log`
//! feature does, so an application that forwards `log` into `tracing` (or the reverse) sees
//! each message once.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use qmp_proto::CommandId;
use tracing::field::Empty;
use tracing::Span;

/// The target of every tracing span and event of the adapters.
pub const TARGET: &str = "qmp";

/// One connection's span, its open command spans and its log target and label.
#[derive(Debug)]
pub(crate) struct Tracer {
    span: Span,
    label: Option<Arc<str>>,
    log_target: &'static str,
    /// The command spans of unresolved commands (only while a subscriber wants them).
    commands: Vec<Open>,
}

#[derive(Debug)]
struct Open {
    id: CommandId,
    span: Span,
    since: Instant,
}

impl Tracer {
    pub(crate) fn new(log_target: &'static str, label: Option<Arc<str>>) -> Self {
        let span = tracing::info_span!(target: TARGET, "qmp", name = Empty, qemu = Empty);
        span.record("name", label.as_deref().unwrap_or("stream"));
        Tracer {
            span,
            label,
            log_target,
            commands: Vec::new(),
        }
    }

    /// Names the connection's span after what `peer` says it is to, unless it has a label
    /// (`peer` is called only when the span is wanted).
    pub(crate) fn peer(&self, peer: impl FnOnce() -> Option<String>) {
        if self.label.is_none() && !self.span.is_disabled() {
            if let Some(peer) = peer() {
                self.span.record("name", peer.as_str());
            }
        }
    }

    pub(crate) fn label(&self) -> Option<&Arc<str>> {
        self.label.as_ref()
    }

    /// Whether a subscriber would read the traffic.
    pub(crate) fn wants_traffic(&self) -> bool {
        tracing::enabled!(target: TARGET, tracing::Level::TRACE)
            || log::log_enabled!(target: self.log_target, log::Level::Trace)
    }

    /// Records QEMU's version on the connection's span.
    pub(crate) fn negotiated(&self, version: &dyn fmt::Display) {
        self.span.record("qemu", tracing::field::display(version));
    }

    /// Whether command spans are wanted (to spare looking up a raw request's name).
    pub(crate) fn wants_commands(&self) -> bool {
        tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
    }

    /// Opens the span of a command just issued.
    #[inline]
    pub(crate) fn command(&mut self, id: CommandId, name: &str) {
        let span = tracing::debug_span!(
            target: TARGET,
            parent: &self.span,
            "command",
            id = id.as_u64(),
            name,
            duration = Empty,
            outcome = Empty,
        );
        if !span.is_disabled() {
            self.commands.push(Open {
                id,
                span,
                since: Instant::now(),
            });
        }
    }

    /// Closes the span of a resolved command, with its duration and outcome.
    #[inline]
    pub(crate) fn resolved(&mut self, id: CommandId, failure: Option<&dyn fmt::Display>) {
        if self.commands.is_empty() {
            return;
        }
        let Some(at) = self.commands.iter().position(|o| o.id == id) else {
            return;
        };
        let open = self.commands.swap_remove(at);
        open.span
            .record("duration", tracing::field::debug(open.since.elapsed()));
        match failure {
            None => open.span.record("outcome", "ok"),
            Some(e) => open.span.record("outcome", tracing::field::display(e)),
        };
    }

    /// A QMP event.
    pub(crate) fn event(&self, name: &str, data: Option<&str>) {
        tracing::debug!(target: TARGET, parent: &self.span, event = name, data, "event");
        self.log(log::Level::Debug, format_args!("event {name}"));
    }

    /// A message sent or received.
    pub(crate) fn traffic(&self, traffic: &crate::Traffic) {
        tracing::trace!(
            target: TARGET,
            parent: &self.span,
            direction = traffic.arrow(),
            message = traffic.message.as_str(),
            "traffic"
        );
        if log::log_enabled!(target: self.log_target, log::Level::Trace) && no_subscriber() {
            // The traffic's own Display carries the label.
            log::trace!(target: self.log_target, "{traffic}");
        }
    }

    /// A message at `level`: a tracing event in the connection's span, and a log record.
    pub(crate) fn note(&self, level: log::Level, message: fmt::Arguments<'_>) {
        emit(&self.span, level, message);
        self.log(level, message);
    }

    fn log(&self, level: log::Level, message: fmt::Arguments<'_>) {
        if log::log_enabled!(target: self.log_target, level) && no_subscriber() {
            let label = Prefix(self.label.as_deref());
            log::log!(target: self.log_target, level, "{label}{message}");
        }
    }
}

/// A message at `level` about no connection in particular (or one whose span is not at
/// hand): a tracing event, and a log record under `log_target`.
pub fn note(log_target: &str, level: log::Level, message: fmt::Arguments<'_>) {
    emit(&Span::current(), level, message);
    if log::log_enabled!(target: log_target, level) && no_subscriber() {
        log::log!(target: log_target, level, "{message}");
    }
}

fn emit(parent: &Span, level: log::Level, message: fmt::Arguments<'_>) {
    match level {
        log::Level::Error => tracing::error!(target: TARGET, parent: parent, "{message}"),
        log::Level::Warn => tracing::warn!(target: TARGET, parent: parent, "{message}"),
        log::Level::Info => tracing::info!(target: TARGET, parent: parent, "{message}"),
        log::Level::Debug => tracing::debug!(target: TARGET, parent: parent, "{message}"),
        log::Level::Trace => tracing::trace!(target: TARGET, parent: parent, "{message}"),
    }
}

/// Whether no tracing subscriber is in effect on this thread.
fn no_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// `[label] ` before a log message, when there is a label.
struct Prefix<'a>(Option<&'a str>);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(label) => write!(f, "[{label}] "),
            None => Ok(()),
        }
    }
}
