//! Calls from the handles to the driver, and the driver's routing of the engine's output.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use qmp_proto::{CallError, Command, CommandId, DisconnectReason, RawValue, RunState};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::reply;
use super::shared::Shared;
use crate::idmap::IdMap;
use crate::{CallOptions, Engine, Error, Output};

/// The driver's end of a call's one-shot reply slot.
pub type ReplyTx = reply::Sender<Result<Box<RawValue>, Error>>;

/// The caller's end of a call's one-shot reply slot: `None` when the driver dropped it
/// without an answer.
pub type ReplyRx = reply::Receiver<Result<Box<RawValue>, Error>>;

/// What a handle asks of the driver.
#[non_exhaustive]
pub enum Request {
    /// Issue a command.
    Call {
        /// The command.
        body: Body,
        /// Its options.
        opts: CallOptions,
        /// When the call was made, on the adapter's clock: the engine counts its deadline
        /// from here.
        at: Instant,
        /// Where its result goes.
        reply: ReplyTx,
    },
    /// Close the connection ([`Hub::on_request`] leaves it to the driver).
    Close,
    /// Ask QEMU again for what the connection tracks
    /// ([`Client::refresh_status`](qmp_proto::Client::refresh_status)), or (`ask: false`)
    /// only wait for the tracker's queries in flight; `reply` gets `Ok` once the answers
    /// are in.
    RefreshStatus {
        /// When it was asked.
        at: Instant,
        /// Where the outcome goes.
        reply: reply::Sender<Result<(), Error>>,
        /// Whether to ask again; if not, only wait for the queries in flight.
        ask: bool,
    },
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Call { body, .. } => f.debug_tuple("Request::Call").field(body).finish(),
            Request::Close => f.write_str("Request::Close"),
            Request::RefreshStatus { .. } => f.write_str("Request::RefreshStatus"),
        }
    }
}

impl Request {
    /// A call of `body` made `at`, and the receiver its result comes back in.
    pub fn call(body: Body, opts: CallOptions, at: Instant) -> (Self, ReplyRx) {
        let (reply, result) = reply::slot();
        let request = Request::Call {
            body,
            opts,
            at,
            reply,
        };
        (request, result)
    }

    /// Fails the call (a driver that will not issue it any more): `error` is its result.
    pub fn fail(self, error: Error) {
        match self {
            Request::Call { reply, .. } => reply.send(Err(error)),
            Request::RefreshStatus { reply, .. } => reply.send(Err(error)),
            Request::Close => {}
        }
    }
}

/// How the driver issues a typed command whose arguments were serialised on the caller's
/// side: through [`Client::call`] for its type.
type IssueTyped = fn(&mut Engine, Instant, &RawValue, CallOptions) -> Result<CommandId, CallError>;

/// The command of a [`Request::Call`], serialised on the caller's side, as the engine's three
/// issuing calls take it.
pub struct Body(Kind);

enum Kind {
    /// [`Client::execute`]: a name and its arguments.
    Execute { name: String, args: Box<RawValue> },
    /// [`Client::call`]: a typed command's arguments, and the function that issues them as
    /// that command (so the engine's rules for its type, such as the OOB-allowed check,
    /// apply).
    Call {
        args: Box<RawValue>,
        issue: IssueTyped,
    },
    /// [`Client::execute_raw`]: a whole request.
    Raw(Value),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Execute { name, .. } => write!(f, "Body::Execute({name})"),
            Kind::Call { .. } => f.write_str("Body::Call"),
            Kind::Raw(_) => f.write_str("Body::Raw"),
        }
    }
}

impl Body {
    /// A command by name, its arguments serialised now (an object, or `&()` for none).
    pub fn execute<A: Serialize + ?Sized>(name: &str, args: &A) -> Result<Self, Error> {
        Ok(Body(Kind::Execute {
            name: name.to_owned(),
            args: serialize(args)?,
        }))
    }

    /// A typed command, serialised now; issued through the engine's typed call.
    pub fn call<C: Command + 'static>(command: &C) -> Result<Self, Error> {
        Ok(Body(Kind::Call {
            args: serialize(command)?,
            issue: issue_typed::<C>,
        }))
    }

    /// A whole request, as [`Client::execute_raw`](qmp_proto::Client::execute_raw) takes it.
    pub fn raw(request: Value) -> Self {
        Body(Kind::Raw(request))
    }

    /// Issues the command to the engine (opening its tracing span).
    pub fn issue(
        self,
        engine: &mut Engine,
        at: Instant,
        opts: CallOptions,
    ) -> Result<CommandId, CallError> {
        match self.0 {
            Kind::Execute { name, args } => engine.execute(at, &name, &*args, opts),
            Kind::Call { args, issue } => issue(engine, at, &args, opts),
            Kind::Raw(request) => engine.execute_raw(at, request, opts),
        }
    }
}

/// Decodes a raw result into `T`.
pub fn decode<T: DeserializeOwned>(raw: &RawValue) -> Result<T, Error> {
    Ok(qmp_proto::decode_value(raw)?)
}

/// Arguments serialised on the caller's side, once: the driver copies them into the send
/// buffer as they are.
fn serialize<A: Serialize + ?Sized>(args: &A) -> Result<Box<RawValue>, Error> {
    qmp_proto::to_raw_value(args).map_err(|e| Error::Call(CallError::Serialize(e.to_string())))
}

/// Issues a `C` whose arguments are `args` through the engine's typed call, so that the
/// engine's rules for `C` (the OOB-allowed check) apply here as everywhere.
fn issue_typed<C: Command>(
    engine: &mut Engine,
    now: Instant,
    args: &RawValue,
    opts: CallOptions,
) -> Result<CommandId, CallError> {
    let command = Serialized::<C>(args, PhantomData);
    engine.call(now, &command, opts).map(|pending| pending.id())
}

/// A `C` as its serialised arguments: the same name, OOB rule and result type.
struct Serialized<'a, C>(&'a RawValue, PhantomData<fn() -> C>);

impl<C> Serialize for Serialized<'_, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<C: Command> Command for Serialized<'_, C> {
    const NAME: &'static str = C::NAME;
    const ALLOW_OOB: bool = C::ALLOW_OOB;
    type Returns = C::Returns;
}

/// What [`Hub::drain`] saw.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Drained {
    /// A session became ready.
    pub ready: bool,
    /// The session ended, for this reason: the driver shuts its socket and finishes (or
    /// reconnects).
    pub ended: Option<DisconnectReason>,
}

/// The driver's side of the fan-out: the calls pending in the engine, each with its reply
/// slot, and the [`Shared`] facts, listeners and journals that the handles read.
///
/// A driver hands it every [`Request`] ([`on_request`](Self::on_request)), lets it cancel
/// the calls whose callers stopped waiting before reading input
/// ([`cancel_dropped`](Self::cancel_dropped)), and lets it take the engine's output after
/// every input ([`drain`](Self::drain)): replies go to their callers, events to listeners,
/// transitions to watchers. What is left to the driver is its socket, its clock and its
/// waiting.
#[derive(Debug)]
pub struct Hub {
    shared: Arc<Shared>,
    pending: IdMap<ReplyTx>,
    /// Whether calls made while no session is up wait for the next one
    /// ([`Reconnect::calls_wait`](crate::Reconnect::calls_wait)).
    hold: bool,
    /// Calls made while no session was up, waiting for the next one, with their deadlines.
    held: Vec<(Body, CallOptions, Instant, ReplyTx, Option<Instant>)>,
    /// Callers of a status refresh, answered when the trackers' queries are in.
    refreshing: Vec<reply::Sender<Result<(), Error>>>,
}

impl Hub {
    /// The hub of a new connection, sharing `shared` with its handles.
    pub fn new(shared: Arc<Shared>) -> Self {
        Hub {
            shared,
            pending: IdMap::default(),
            hold: false,
            held: Vec::new(),
            refreshing: Vec::new(),
        }
    }

    /// Makes calls made while no session is up wait for the next one (up to their own
    /// timeouts) instead of failing at once: for a driver that reconnects with
    /// [`Reconnect::calls_wait`](crate::Reconnect::calls_wait).
    pub fn hold_calls_between_sessions(&mut self, hold: bool) {
        self.hold = hold;
    }

    /// Issues the calls held while no session was up to the engine of the session that just
    /// started (it holds them until the session is ready). Their deadlines still count from
    /// when they were called.
    pub fn release_held(&mut self, engine: &mut Engine, passes_fds: bool) {
        for (body, opts, at, reply, _) in std::mem::take(&mut self.held) {
            self.issue(engine, body, opts, at, reply, passes_fds);
        }
    }

    /// Fails the held calls whose deadline has passed at `now` with [`Error::Timeout`] (and
    /// drops those whose callers stopped waiting); returns the earliest deadline left, for
    /// the driver's timer.
    pub fn expire_held(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut kept = Vec::with_capacity(self.held.len());
        for (body, opts, at, reply, deadline) in std::mem::take(&mut self.held) {
            if reply.is_closed() {
                continue;
            }
            match deadline {
                Some(d) if d <= now => reply.send(Err(Error::Timeout)),
                _ => {
                    if let Some(d) = deadline {
                        next = Some(next.map_or(d, |n| n.min(d)));
                    }
                    kept.push((body, opts, at, reply, deadline));
                }
            }
        }
        self.held = kept;
        next
    }

    /// Fails every held call with `error` (the driver finishes).
    pub fn fail_held(&mut self, error: &Error) {
        for (_, _, _, reply, _) in self.held.drain(..) {
            reply.send(Err(error.clone()));
        }
    }

    /// The shared facts.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Issues a call to the engine (`passes_fds`: whether the socket can carry file
    /// descriptors), or answers it at once when it cannot be issued. Returns `true` for
    /// [`Request::Close`], which is the driver's to act on.
    pub fn on_request(&mut self, engine: &mut Engine, request: Request, passes_fds: bool) -> bool {
        let (body, opts, at, reply) = match request {
            Request::Close => return true,
            Request::RefreshStatus { at, reply, ask } => {
                let asked = if ask {
                    engine.refresh_status(at)
                } else if engine.state() == RunState::Running {
                    Ok(())
                } else {
                    Err(CallError::InvalidState {
                        operation: "status_settled",
                        state: engine.state(),
                    })
                };
                match asked {
                    Ok(()) => self.refreshing.push(reply),
                    Err(_) => reply.send(Err(self.shared.gone_error())),
                }
                return false;
            }
            Request::Call {
                body,
                opts,
                at,
                reply,
            } => (body, opts, at, reply),
        };
        if reply.is_closed() {
            // The caller stopped waiting before the command was issued: do not send it.
            return false;
        }
        if self.hold && engine.state() == RunState::Idle && !self.shared.is_finished() {
            // No session now: the call waits for the next one, up to its own timeout.
            let deadline = opts
                .get_timeout()
                .or(engine.config().get_command_timeout())
                .and_then(|t| at.checked_add(t));
            self.held.push((body, opts, at, reply, deadline));
            return false;
        }
        self.issue(engine, body, opts, at, reply, passes_fds);
        false
    }

    fn issue(
        &mut self,
        engine: &mut Engine,
        body: Body,
        opts: CallOptions,
        at: Instant,
        reply: ReplyTx,
        passes_fds: bool,
    ) {
        if !opts.get_fds().is_empty() && !passes_fds {
            // The descriptors are closed with `opts`: nothing is sent.
            reply.send(Err(Error::FdsUnsupported));
            return;
        }
        match body.issue(engine, at, opts) {
            Ok(id) => {
                self.pending.insert(id, reply);
                self.shared.set_pending(self.pending.len());
            }
            Err(CallError::InvalidState { .. }) => reply.send(Err(self.shared.gone_error())),
            Err(e) => reply.send(Err(Error::Call(e))),
        }
    }

    /// Cancels the commands whose callers stopped waiting (their futures were dropped): one
    /// still in the engine's local queue is then never sent, and one in flight keeps its
    /// slot until QEMU answers, its reply dropped. Call it before reading input, so that a
    /// slot freed by a reply goes to a command someone still waits for. Returns whether any
    /// was cancelled (then [`drain`](Self::drain)).
    pub fn cancel_dropped(&mut self, engine: &mut Engine) -> bool {
        let before = self.pending.len();
        self.pending.retain(|id, reply| {
            if reply.is_closed() {
                engine.cancel(*id);
                false
            } else {
                true
            }
        });
        let cancelled = self.pending.len() != before;
        if cancelled {
            self.shared.set_pending(self.pending.len());
        }
        cancelled
    }

    /// Takes every output of the engine (logged and tapped on the way): replies to their
    /// callers, events to listeners, transitions to watchers, and the end of the session
    /// (every listener ends; nothing is pending any more).
    pub fn drain(&mut self, engine: &mut Engine) -> Drained {
        let mut drained = Drained::default();
        while let Some(output) = engine.next_output() {
            match output {
                Output::Reply { id, result } => {
                    if let Some(reply) = self.pending.remove(&id) {
                        // Counted before the caller can see its result.
                        self.shared.set_pending(self.pending.len());
                        // The caller may have stopped waiting: then the result is dropped.
                        reply.send(result);
                    }
                }
                Output::Event(e) => self.shared.dispatch(e),
                Output::EventsLost(count) => self.shared.events_lost(count),
                Output::Transition { from, to } => {
                    // Ready: QEMU's greeting, or an empty one for a guest agent.
                    let ready = (to == RunState::Running)
                        .then(|| engine.session_greeting())
                        .flatten()
                        .map(|greeting| (greeting, engine.oob_enabled()));
                    drained.ready |= ready.is_some();
                    self.shared.transition(from, to, ready);
                }
                Output::VmStatus { from, to } => self.shared.vm_status_changed(from, to),
                Output::Job { id, from, to } => self.shared.job_changed(id, from, to),
                Output::Disconnected(reason) => {
                    // The engine resolved every command before this; anything left is stale.
                    self.pending.clear();
                    for waiter in self.refreshing.drain(..) {
                        waiter.send(Err(Error::Disconnected(reason.clone())));
                    }
                    self.shared.session_ended(&reason);
                    drained.ended = Some(reason);
                }
            }
        }
        if !self.refreshing.is_empty() && !engine.is_refreshing_status() {
            for waiter in self.refreshing.drain(..) {
                waiter.send(Ok(()));
            }
        }
        drained
    }
}
