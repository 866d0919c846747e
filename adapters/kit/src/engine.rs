//! The engine as the adapters drive it: the sans-IO [`Client`], plus what every adapter does
//! with its output (tracing and logging, the traffic tap, turning command failures into
//! [`Error`]s), and
//! the small decisions every adapter needs (when a session is ready, the greeting a guest
//! agent session shows).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use qmp_proto::status::{Job, VmStatus};
use qmp_proto::{
    CallError, CallOptions, Client, Command, CommandError, CommandId, DisconnectReason, Event,
    Greeting, Pending, QmpEvent, RawValue, RunState,
};
use serde::Serialize;
use serde_json::Value;

use crate::idmap::IdMap;
use crate::late::Late;
use crate::trace::Tracer;
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
    /// The tracked VM status changed ([`Event::VmStatusChanged`]).
    VmStatus {
        /// The status before.
        from: Option<VmStatus>,
        /// The status now.
        to: Option<VmStatus>,
    },
    /// A tracked job changed ([`Event::JobChanged`]).
    Job {
        /// The job's id.
        id: String,
        /// The job before.
        from: Option<Job>,
        /// The job now.
        to: Option<Job>,
    },
    /// The session ended: the last output of the session.
    Disconnected(DisconnectReason),
}

/// The engine of one connection, with its traffic tap, its tracing span and its log target
/// (see [`trace`](crate::trace)).
///
/// It dereferences to the [`Client`]; its own [`execute`](Self::execute),
/// [`call`](Self::call) and [`execute_raw`](Self::execute_raw) are the client's, plus each
/// command's tracing span.
#[derive(Debug)]
pub struct Engine {
    client: Client,
    /// The greeting of the session that became ready, kept until the next one starts.
    greeting: Option<Greeting>,
    tap: Option<Tap>,
    trace: Tracer,
    /// The late outcomes to come: commands that timed out after they were sent.
    late: IdMap<Late>,
}

impl Engine {
    /// An idle engine configured from `settings`. `log_target` is the adapter's log target.
    /// Messages are copied for the trace only when someone reads them (a tap, or a tracing
    /// subscriber or the log at trace level); guest agent sync ids are random, so that a
    /// reply another client left in the channel is never taken for this one's.
    pub fn new(settings: &Settings, log_target: &'static str) -> Self {
        let config = settings.get_config().clone();
        let tap = settings.get_tap();
        let trace = Tracer::new(log_target, settings.get_label_arc());
        let traced = config.get_trace_messages() || tap.is_some() || trace.wants_traffic();
        let config = config
            .trace_messages(traced)
            .sync_seed(crate::socket::random_seed());
        Engine {
            client: Client::new(config),
            greeting: None,
            tap,
            trace,
            late: IdMap::default(),
        }
    }

    /// The connection's label, if it has one.
    pub fn label(&self) -> Option<&str> {
        self.trace.label().map(|l| &**l)
    }

    /// Names the connection in its tracing span after what `peer` says it is to (see
    /// [`socket::describe`](crate::socket::describe)), unless it has a label; a connection
    /// without either is `stream`. Call it when a session starts on a socket; `peer` is
    /// called only when a tracing subscriber wants the span.
    pub fn peer(&self, peer: impl FnOnce() -> Option<String>) {
        self.trace.peer(peer);
    }

    /// Logs `message` at `level` about this connection: a tracing event in its span, and a
    /// log record with its label (see [`trace`](crate::trace)).
    pub fn note(&self, level: log::Level, message: fmt::Arguments<'_>) {
        self.trace.note(level, message);
    }

    /// [`Client::execute`], and the command's tracing span.
    pub fn execute<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        name: &str,
        args: &A,
        opts: CallOptions,
    ) -> Result<CommandId, CallError> {
        let id = self.client.execute(now, name, args, opts)?;
        self.trace.command(id, name);
        Ok(id)
    }

    /// [`Client::call`], and the command's tracing span.
    pub fn call<C: Command>(
        &mut self,
        now: Instant,
        command: &C,
        opts: CallOptions,
    ) -> Result<Pending<C>, CallError> {
        let pending = self.client.call(now, command, opts)?;
        self.trace.command(pending.id(), C::NAME);
        Ok(pending)
    }

    /// [`Client::execute_raw`], and the command's tracing span.
    pub fn execute_raw(
        &mut self,
        now: Instant,
        request: Value,
        opts: CallOptions,
    ) -> Result<CommandId, CallError> {
        let name = self.trace.wants_commands().then(|| {
            ["execute", "exec-oob"]
                .iter()
                .find_map(|k| request.get(k).and_then(Value::as_str))
                .unwrap_or("")
                .to_owned()
        });
        let id = self.client.execute_raw(now, request, opts)?;
        if let Some(name) = name {
            self.trace.command(id, &name);
        }
        Ok(id)
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

    /// The next output an adapter acts on. Traffic goes to the tap and the trace, diagnostics
    /// to the warnings, and runstate changes, events and session ends to the debug output,
    /// on the way (tracing events in the connection's span, and log records: see
    /// [`trace`](crate::trace)); a resolved command closes its span.
    #[inline]
    pub fn next_output(&mut self) -> Option<Output> {
        loop {
            let event = self.client.poll_event()?;
            return Some(match event {
                Event::Reply { id, result } => {
                    let result = result.map_err(|e| match e {
                        CommandError::Timeout if self.client.awaits_late_reply(id) => {
                            let late = Late::new(id);
                            self.late.insert(id, late.clone());
                            Error::CommandTimeout(late)
                        }
                        other => Error::from(other),
                    });
                    self.trace
                        .resolved(id, result.as_ref().err().map(|e| e as &dyn fmt::Display));
                    Output::Reply { id, result }
                }
                Event::Qmp(e) => {
                    self.trace
                        .event(&e.name, e.data.as_deref().map(RawValue::get));
                    Output::Event(e)
                }
                Event::EventsLost { count } => {
                    self.note(
                        log::Level::Warn,
                        format_args!("the engine dropped {count} events (its buffer is full)"),
                    );
                    Output::EventsLost(count)
                }
                Event::StateChanged { from, to } => {
                    self.note(log::Level::Debug, format_args!("connection {from} -> {to}"));
                    match to {
                        RunState::Connecting => self.greeting = None,
                        RunState::Running => self.ready(),
                        _ => {}
                    }
                    Output::Transition { from, to }
                }
                Event::LateReply { id, result } => {
                    if let Some(late) = self.late.remove(&id) {
                        late.fill(result.map_err(Error::from));
                    }
                    continue;
                }
                Event::Disconnected(reason) => {
                    self.note(log::Level::Debug, format_args!("session ended: {reason}"));
                    // No late reply comes after the end of its session.
                    for (_, late) in self.late.drain() {
                        late.fill(Err(Error::Disconnected(reason.clone())));
                    }
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
                    self.note(log::Level::Warn, format_args!("{d}"));
                    continue;
                }
                Event::VmStatusChanged { from, to } => {
                    self.note(
                        log::Level::Debug,
                        format_args!("VM status {} -> {}", show(&from), show(&to)),
                    );
                    Output::VmStatus { from, to }
                }
                Event::JobChanged { id, from, to } => {
                    self.note(
                        log::Level::Debug,
                        format_args!("job {id}: {} -> {}", show(&from), show(&to)),
                    );
                    Output::Job {
                        id,
                        from: from.map(|j| *j),
                        to: to.map(|j| *j),
                    }
                }
                other => {
                    self.note(log::Level::Debug, format_args!("{other:?}"));
                    continue;
                }
            });
        }
    }

    /// A session became ready: keeps its greeting, and says so.
    fn ready(&mut self) {
        let greeting = match self.client.greeting() {
            Some(g) => {
                self.trace.negotiated(&g.version);
                let oob = self.client.oob_enabled();
                self.note(
                    log::Level::Debug,
                    format_args!("negotiated with QEMU {} (oob: {oob})", g.version),
                );
                g.clone()
            }
            None => {
                self.note(
                    log::Level::Debug,
                    format_args!("synchronised with the guest agent"),
                );
                Greeting::default()
            }
        };
        self.greeting = Some(greeting);
    }

    fn traffic(&self, direction: qmp_proto::Direction, message: String, delimited: bool) {
        let traffic = Traffic {
            direction,
            message,
            delimited,
            label: self.trace.label().cloned(),
        };
        self.trace.traffic(&traffic);
        if let Some(tap) = &self.tap {
            tap.send(&traffic);
        }
    }
}

/// A tracked value for the log, `-` when there is none.
fn show<T: fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
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
