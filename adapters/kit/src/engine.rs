//! The engine as the adapters drive it: the sans-IO [`Client`], plus what every adapter does
//! with its output (logging, the traffic tap, turning command failures into [`Error`]s), and
//! the small decisions every adapter needs (when a session is ready, the greeting a guest
//! agent session shows).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use qmp_proto::{
    Client, CommandId, DisconnectReason, Event, Greeting, QmpEvent, RawValue, RunState,
};

use crate::traffic::{Tap, Traffic};
use crate::{Error, Settings};

/// What an adapter acts on, from the engine's output; the rest (traffic, diagnostics) is
/// logged and tapped by [`Engine::next_output`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// A command was resolved.
    Reply {
        /// The command.
        id: CommandId,
        /// Its result, command failures as [`Error`]s.
        result: Result<Box<RawValue>, Error>,
    },
    /// A QMP event.
    Event(QmpEvent),
    /// The engine dropped this many events: its buffer was full.
    EventsLost(u64),
    /// The runstate changed. `Running` means commands flow (in guest agent mode too).
    Transition {
        /// The previous state.
        from: RunState,
        /// The new state.
        to: RunState,
    },
    /// The session ended: the last output of the session.
    Disconnected(DisconnectReason),
}

/// The engine of one connection, with its label, its traffic tap and its log target.
#[derive(Debug)]
pub struct Engine {
    client: Client,
    /// The greeting of the session that became ready, kept until the next one starts.
    greeting: Option<Greeting>,
    label: Option<Arc<str>>,
    tap: Option<Tap>,
    target: &'static str,
}

impl Engine {
    /// An idle engine configured from `settings`. `target` is the adapter's log target.
    /// Messages are copied for the trace only when someone reads them (a tap, or the log at
    /// trace level); guest agent sync ids are random, so that a reply another client left in
    /// the channel is never taken for this one's.
    pub fn new(settings: &Settings, target: &'static str) -> Self {
        let config = settings.get_config().clone();
        let tap = settings.get_tap();
        let trace = config.get_trace_messages()
            || tap.is_some()
            || log::log_enabled!(target: target, log::Level::Trace);
        let config = config
            .trace_messages(trace)
            .sync_seed(crate::socket::random_seed());
        Engine {
            client: Client::new(config),
            greeting: None,
            label: settings.get_label_arc(),
            tap,
            target,
        }
    }

    /// The connection's label, if it has one.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Whether this is a guest agent connection.
    pub fn is_guest_agent(&self) -> bool {
        self.client.config().get_guest_agent()
    }

    /// Whether the session is ready for commands: negotiated, or (guest agent) synchronised
    /// for the first time.
    #[inline]
    pub fn is_ready(&self) -> bool {
        self.client.state() == RunState::Running
    }

    /// The greeting of the last session that became ready: QEMU's, or an empty one
    /// ([`Greeting::default`]) for a guest agent, which sends none. `None` until a session
    /// became ready (as seen through [`next_output`](Self::next_output)); kept after it ends,
    /// until the next one starts.
    pub fn session_greeting(&self) -> Option<Greeting> {
        self.greeting.clone()
    }

    /// The next output an adapter acts on. Traffic goes to the tap and the trace log,
    /// diagnostics to the warning log, and runstate changes, events and session ends to the
    /// debug log, on the way.
    #[inline]
    pub fn next_output(&mut self) -> Option<Output> {
        loop {
            let event = self.client.poll_event()?;
            let label = Prefix(self.label.as_deref());
            let target = self.target;
            return Some(match event {
                Event::Reply { id, result } => Output::Reply {
                    id,
                    result: result.map_err(Error::from),
                },
                Event::Qmp(e) => {
                    log::debug!(target: target, "{label}event {}", e.name);
                    Output::Event(e)
                }
                Event::EventsLost { count } => {
                    log::warn!(target: target, "{label}the engine dropped {count} events (its buffer is full)");
                    Output::EventsLost(count)
                }
                Event::StateChanged { from, to } => {
                    log::debug!(target: target, "{label}connection {from} -> {to}");
                    match to {
                        RunState::Connecting => self.greeting = None,
                        RunState::Running => {
                            let greeting = match self.client.greeting() {
                                Some(g) => {
                                    log::debug!(target: target, "{label}negotiated with QEMU {} (oob: {})", g.version, self.client.oob_enabled());
                                    g.clone()
                                }
                                None => {
                                    log::debug!(target: target, "{label}synchronised with the guest agent");
                                    Greeting::default()
                                }
                            };
                            self.greeting = Some(greeting);
                        }
                        _ => {}
                    }
                    Output::Transition { from, to }
                }
                Event::Disconnected(reason) => {
                    log::debug!(target: target, "{label}session ended: {reason}");
                    Output::Disconnected(reason)
                }
                Event::Traffic {
                    direction,
                    message,
                    delimited,
                } => {
                    self.traffic(direction, message, delimited);
                    continue;
                }
                Event::Diagnostic(d) => {
                    log::warn!(target: target, "{label}{d}");
                    continue;
                }
                other => {
                    log::debug!(target: target, "{label}{other:?}");
                    continue;
                }
            });
        }
    }

    fn traffic(&self, direction: qmp_proto::Direction, message: String, delimited: bool) {
        let traffic = Traffic {
            direction,
            message,
            delimited,
            label: self.label.clone(),
        };
        log::trace!(target: self.target, "{traffic}");
        if let Some(tap) = &self.tap {
            tap.send(&traffic);
        }
    }
}

impl Deref for Engine {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Engine {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// `[label] ` before a log message, when there is a label.
struct Prefix<'a>(Option<&'a str>);

impl std::fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(label) => write!(f, "[{label}] "),
            None => Ok(()),
        }
    }
}
