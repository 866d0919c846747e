//! The connection: the run loop around the engine, commands, events, the end of a session.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qmp_kit::fanout::SessionItem;
use qmp_kit::idmap::{IdMap, IdSet};
use qmp_kit::{CallOptions, Change, Engine, EventFilter, Output, TrackedState};
use qmp_proto::events::EventSet;
use qmp_proto::schema::{Commands, Schema};
use qmp_proto::status::{Job, VmStatus};
use qmp_proto::{
    CallError, Client, Command, CommandId, DisconnectReason, Greeting, Pending, QmpEvent, RawValue,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::redial::Redial;
use crate::transport::{self, Stream};
use crate::{Builder, Error};

/// The log target of every message this crate logs.
pub(crate) const TARGET: &str = "qmp_blocking";

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// A negotiated QMP session over a unix or TCP socket, used from one thread with blocking
/// calls.
///
/// Every call drives the same loop around the sans-IO [`qmp_proto::Client`]: write what the
/// engine asks (never only writing: the socket is polled for input at the same time), feed
/// what arrives, buffer events, and fire the engine's timers. So a call never deadlocks
/// against a QEMU that stops reading until it has written its replies, and no event is lost
/// while a command is waited for: events are always buffered, and the `wait_event*` methods
/// look at the buffer first.
///
/// # Methods
///
/// The same verbs as the core and every adapter, each with one [`CallOptions`] (timeout, out
/// of band, without an id, file descriptors) in its `*_with` form:
///
/// * **Commands**: [`execute`](Self::execute) / [`execute_with`](Self::execute_with) (a name,
///   arguments and the result type), [`call`](Self::call) / [`call_with`](Self::call_with)
///   (a typed command: `qmp.call(QueryStatus::new())` returns a `StatusInfo`; the types of
///   the `qmp-types` crate, or any [`Command`]), [`execute_raw`](Self::execute_raw) (a whole request, raw result).
/// * **A command and its event**: [`execute_and_wait`](Self::execute_and_wait),
///   [`call_and_wait`](Self::call_and_wait).
/// * **Pipelining**: [`send`](Self::send) and [`send_call`](Self::send_call) issue without
///   waiting; [`wait`](Self::wait) and [`wait_call`](Self::wait_call) take the result;
///   [`has_reply`](Self::has_reply) tells whether it has arrived.
/// * **Capabilities of this QEMU**: [`schema`](Self::schema) (`query-qmp-schema`, fetched
///   once), [`commands`](Self::commands) (`query-commands`).
/// * **Events**: [`next_event`](Self::next_event), [`next_item`](Self::next_item) (with a
///   marker at each new session), [`wait_event`](Self::wait_event),
///   [`wait_event_where`](Self::wait_event_where),
///   [`wait_typed_event`](Self::wait_typed_event), [`drain_events`](Self::drain_events),
///   [`events_lost`](Self::events_lost).
/// * **Tracked VM status and jobs** (with [`Builder::track_status`]):
///   [`vm_status`](Self::vm_status), [`jobs`](Self::jobs), [`job`](Self::job),
///   [`next_change`](Self::next_change), [`drain_changes`](Self::drain_changes),
///   [`wait_vm_status`](Self::wait_vm_status), [`wait_job`](Self::wait_job),
///   [`refresh_status`](Self::refresh_status).
/// * **Session**: [`greeting`](Self::greeting), [`oob_enabled`](Self::oob_enabled),
///   [`is_connected`](Self::is_connected), [`disconnect_reason`](Self::disconnect_reason),
///   [`resync`](Self::resync) (guest agent), [`quit`](Self::quit), [`close`](Self::close).
///
/// Dropping a connection closes it without blocking: unsent bytes are discarded.
#[derive(Debug)]
pub struct Connection {
    engine: Engine,
    stream: Stream,
    greeting: Greeting,
    buf: Box<[u8]>,
    /// The socket's read timeout as last set (`None`: none).
    read_timeout: Option<Duration>,
    /// Commands issued here whose result was not taken yet.
    pending: IdSet,
    /// Results that arrived for pending commands.
    replies: IdMap<Result<Box<RawValue>, Error>>,
    /// The command [`wait`](Self::wait) waits for (no longer in `pending`), and its result
    /// once it arrives: kept apart from `replies`, the usual case costs no map.
    awaiting: Option<CommandId>,
    awaited: Option<Result<Box<RawValue>, Error>>,
    /// QMP events, each with its arrival number.
    events: VecDeque<Buffered>,
    next_seq: u64,
    max_events: usize,
    events_lost: u64,
    /// Losses are being reported (logged once per burst).
    losing: bool,
    /// `query-qmp-schema`, fetched by the first [`schema`](Self::schema) call.
    schema: Option<Schema>,
    /// Where and when to dial again after the session ends ([`Builder::reconnect`]).
    redial: Option<Redial>,
    /// The number of the current (or last) session, from 1.
    session: u64,
    /// The tracked VM status and jobs, as reported, and their changes not taken yet.
    tracked: TrackedState,
    changes: VecDeque<Change>,
    changes_lost: u64,
}

impl Connection {
    /// A [`Builder`] to set timeouts and engine options before connecting.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Connects to a QMP unix socket (`-qmp unix:PATH,server=on,wait=off`) with the default
    /// options and negotiates. See [`Builder::connect_unix`].
    pub fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::new().connect_unix(path)
    }

    /// Connects to a QEMU guest agent's unix socket with the default options and
    /// resynchronises. See [`Builder::guest_agent`].
    pub fn connect_guest_agent(path: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::new().guest_agent().connect_unix(path)
    }

    /// Connects to a QMP TCP socket (`-qmp tcp:HOST:PORT,server=on,wait=off`) with the
    /// default options and negotiates. See [`Builder::connect_tcp`].
    pub fn connect_tcp(addr: impl std::net::ToSocketAddrs) -> Result<Self, Error> {
        Builder::new().connect_tcp(addr)
    }

    /// Negotiates over an already-connected unix stream (from `socketpair`, a listener of
    /// your own, a passed fd, ...) with the default options.
    pub fn from_unix_stream(stream: UnixStream) -> Result<Self, Error> {
        Builder::new().unix_stream(stream)
    }

    /// Waits for the greeting and negotiates capabilities on a connected stream (with a
    /// guest agent: until it answered the first resynchronisation).
    pub(crate) fn establish(stream: Stream, settings: &qmp_kit::Settings) -> Result<Self, Error> {
        Self::establish_with(stream, Box::new(Engine::new(settings, TARGET))).map_err(|f| f.0)
    }

    /// [`establish`](Self::establish) with `engine`, idle (a reconnection reuses the
    /// connection's engine, so that what it tracks carries over); on failure, the error and
    /// the engine.
    fn establish_with(stream: Stream, mut engine: Box<Engine>) -> Result<Self, Failed> {
        if let Err(e) = stream.set_blocking() {
            return Err(Failed(Error::io("cannot set up the socket", e), engine));
        }
        engine.peer(|| qmp_kit::socket::describe(stream.as_fd()));
        if let Err(e) = engine.connect(Instant::now()) {
            return Err(Failed(e.into(), engine));
        }
        let mut conn = Connection {
            max_events: engine.config().get_max_buffered_events(),
            engine: *engine,
            stream,
            greeting: Greeting::default(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            read_timeout: None,
            pending: IdSet::default(),
            replies: IdMap::default(),
            awaiting: None,
            awaited: None,
            events: VecDeque::new(),
            next_seq: 0,
            events_lost: 0,
            losing: false,
            schema: None,
            redial: None,
            session: 1,
            tracked: TrackedState::default(),
            changes: VecDeque::new(),
            changes_lost: 0,
        };
        // The engine's greeting, negotiation and sync timeouts bound this wait.
        conn.run_until(None, |c| c.engine.is_ready());
        if let Err(e) = conn.check_connected() {
            let placeholder = Engine::new(&qmp_kit::Settings::default(), TARGET);
            let engine = std::mem::replace(&mut conn.engine, placeholder);
            return Err(Failed(e, Box::new(engine)));
        }
        conn.greeting = conn.engine.session_greeting().unwrap_or_default();
        Ok(conn)
    }

    // ----- session -----

    /// The server's greeting: QEMU's version and the capabilities it offered. A guest agent
    /// sends none: empty ([`Greeting::default`]) on a guest agent connection.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// Whether this is a guest agent connection ([`Builder::guest_agent`]).
    pub fn is_guest_agent(&self) -> bool {
        self.engine.is_guest_agent()
    }

    /// Guest agent connections: resynchronises with the agent now and waits, up to
    /// `timeout`, until it answers ([`qmp_proto::Client::resync`]); for when the agent may
    /// have restarted in the guest. Commands time out and resynchronise on their own.
    /// Fails with [`Error::Call`] on a QMP connection, [`Error::Timeout`] past `timeout`
    /// (the resynchronisation goes on), and [`Error::Disconnected`] if the agent did not
    /// answer within the sync timeout.
    pub fn resync(&mut self, timeout: Duration) -> Result<(), Error> {
        self.check_connected()?;
        self.engine.resync(Instant::now())?;
        let deadline = deadline_after(timeout);
        self.run_until(deadline, |c| !c.engine.is_syncing() || c.ended().is_some());
        self.check_connected()?;
        if self.engine.is_syncing() {
            return Err(Error::Timeout);
        }
        Ok(())
    }

    /// Whether out-of-band execution was negotiated (QEMU offered it and the options asked
    /// for it, as they do by default).
    pub fn oob_enabled(&self) -> bool {
        self.engine.oob_enabled()
    }

    /// The number of the current session (or of the last one, when it ended), from 1: it
    /// grows with every reconnection ([`Builder::reconnect`]).
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Whether the session is still up.
    pub fn is_connected(&self) -> bool {
        self.ended().is_none()
    }

    /// Why the session ended, once it has.
    pub fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        self.ended()
    }

    /// Sends `quit` and waits, up to `timeout`, for QEMU to answer and close the connection.
    /// EOF (or a reset) after `quit` is the expected end: the session then ends with
    /// [`DisconnectReason::Eof`] `{ after_quit: true }` and this returns `Ok`. Events sent
    /// before the end (such as `SHUTDOWN`) stay available to the `*event*` methods.
    pub fn quit(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        let id = self.send("quit", &(), CallOptions::new().timeout(timeout))?;
        self.wait(id)?;
        self.run_until(deadline, |c| c.ended().is_some());
        match self.ended() {
            None => Err(Error::Timeout),
            Some(DisconnectReason::Eof { after_quit: true }) => Ok(()),
            Some(reason) => Err(Error::Disconnected(reason.clone())),
        }
    }

    /// Ends the session without waiting: pending calls fail with
    /// [`Error::Disconnected`]`(`[`DisconnectReason::Closed`]`)`, unsent bytes are dropped
    /// and the socket is shut down. Idempotent; a session that already ended keeps its
    /// reason. Buffered events stay available.
    pub fn close(&mut self) {
        self.engine.close();
        self.drain_engine();
        self.stream.shutdown();
    }

    // ----- commands -----

    /// Runs a command and decodes its result into `T`. `args` must serialise to a JSON
    /// object, or be `&()` for none. Use [`IgnoredAny`](crate::IgnoredAny) as `T` to
    /// ignore the result (`()` only decodes from `null`, not from QEMU's `{}`), and
    /// [`Box<RawValue>`](RawValue) to keep it raw.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use qmp_blocking::IgnoredAny;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Status { status: String, running: bool }
    ///
    /// let s: Status = qmp.execute("query-status", &())?;
    /// qmp.execute::<IgnoredAny>("stop", &())?;
    /// # let _ = (s.status, s.running);
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        self.execute_with(name, args, CallOptions::new())
    }

    /// [`execute`](Self::execute) with options: a timeout, out of band, file descriptors.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use qmp_blocking::{CallOptions, Connection, IgnoredAny};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut qmp = Connection::connect_unix("/run/vm/qmp.sock")?;
    /// let log = std::fs::File::create("/tmp/serial.log")?;
    /// let opts = CallOptions::new().timeout(Duration::from_secs(5)).fd(log);
    /// qmp.execute_with::<IgnoredAny>("getfd", &serde_json::json!({"fdname": "serial"}), opts)?;
    /// // Out of band: overtakes in-band commands queued here and in QEMU.
    /// qmp.execute_with::<IgnoredAny>("query-yank", &(), CallOptions::new().oob(true))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_with<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<T, Error> {
        let id = self.send(name, args, opts)?;
        let raw = self.wait(id)?;
        Ok(qmp_proto::decode_value(&raw)?)
    }

    /// Runs a typed command: the typed form of [`execute`](Self::execute). The command's
    /// name comes from its type, its fields are the arguments, and the result decodes into
    /// its [`Returns`](Command::Returns) type.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use qmp_types::qmp::{Cont, QueryStatus, RunState};
    ///
    /// let status = qmp.call(QueryStatus::new())?;
    /// if status.status == RunState::Prelaunch {
    ///     qmp.call(Cont::new())?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A reply that does not decode (a member of an unexpected type) fails this call with [`Error::TypedDecode`], which carries the raw JSON; the connection
    /// and the other commands are not affected.
    pub fn call<C: Command>(&mut self, command: C) -> Result<C::Returns, Error> {
        self.call_with(command, CallOptions::new())
    }

    /// [`call`](Self::call) with options: a timeout, out of band (failing with
    /// [`Error::Call`]`(`[`CallError::OobNotAllowed`]`)` when the command does not allow it,
    /// nothing sent), file descriptors (for `getfd` and `add-fd`).
    pub fn call_with<C: Command>(
        &mut self,
        command: C,
        opts: CallOptions,
    ) -> Result<C::Returns, Error> {
        let pending = self.send_call(&command, opts)?;
        self.wait_call(pending)
    }

    /// Sends a whole request as it is (a JSON object: `execute` or `exec-oob`, `arguments`,
    /// and an `id` of any JSON type, or none) and returns the raw result. Without an `id`,
    /// the engine adds its own, or sends none with [`CallOptions::without_id`]. See
    /// [`qmp_proto::Client::execute_raw`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use qmp_blocking::CallOptions;
    /// use serde_json::json;
    ///
    /// let raw = qmp.execute_raw(json!({"execute": "query-name", "id": "name-1"}), CallOptions::new())?;
    /// println!("{}", raw.get());
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_raw(
        &mut self,
        request: Value,
        opts: CallOptions,
    ) -> Result<Box<RawValue>, Error> {
        let id = self.issue(
            opts,
            |engine, now, opts| engine.execute_raw(now, request, opts),
            |id| *id,
        )?;
        self.wait(id)
    }

    /// Runs a command, then waits for the first event matching `filter` that arrived after
    /// the command was issued (before or after its reply: `STOP` comes before the reply of
    /// `stop`). A timeout in `opts` bounds the whole wait (without one, the default command
    /// timeout bounds the command, and the event is waited for until it comes or the session
    /// ends). Returns the decoded result and the event.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use std::time::Duration;
    /// use qmp_blocking::{CallOptions, EventFilter, IgnoredAny};
    ///
    /// let opts = CallOptions::new().timeout(Duration::from_secs(5));
    /// let (_, resume) = qmp.execute_and_wait::<IgnoredAny>("cont", &(), opts, EventFilter::name("RESUME"))?;
    /// # let _ = resume;
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_and_wait<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
        filter: EventFilter,
    ) -> Result<(T, QmpEvent), Error> {
        let deadline = opts.get_timeout().and_then(deadline_after);
        let mark = self.next_seq;
        let id = self.send(name, args, opts)?;
        let raw = self.wait(id)?;
        let result = qmp_proto::decode_value(&raw)?;
        let event = self.wait_event_since(mark, deadline, |e| filter.matches(e))?;
        Ok((result, event))
    }

    /// Runs a typed command, then waits for the first event of the set `S` that arrived
    /// after the command was issued (before or after its reply) and that `matches` accepts,
    /// decoded. `S` is one typed event, or one of several
    /// ([`OneOf`](qmp_proto::events::OneOf)); a timeout in `opts` bounds the whole wait, as
    /// for [`execute_and_wait`](Self::execute_and_wait). An event of the set that does not
    /// decode ends the wait with [`Error::TypedDecode`] (it may have been the one).
    ///
    /// The predicate is what tells this `DEVICE_DELETED` from the one of a device's backend
    /// child, or of another device unplugged at the same time:
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// # use qmp_proto::{commands::Empty, events::TypedEvent, Command};
    /// # #[derive(serde::Serialize)] struct DeviceDel { id: String }
    /// # impl Command for DeviceDel { const NAME: &'static str = "device_del"; type Returns = Empty; }
    /// # #[derive(serde::Deserialize)] struct DeviceDeleted { device: Option<String> }
    /// # impl TypedEvent for DeviceDeleted { const NAME: &'static str = "DEVICE_DELETED"; }
    /// use std::time::Duration;
    /// use qmp_blocking::CallOptions;
    ///
    /// // DeviceDel and DeviceDeleted: the qmp-types crate's, or types of your own.
    /// let opts = CallOptions::new().timeout(Duration::from_secs(5));
    /// let del = DeviceDel { id: "disk1".into() };
    /// let (_, _deleted) = qmp.call_and_wait(del, opts, |e: &DeviceDeleted| {
    ///     e.device.as_deref() == Some("disk1")
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_and_wait<C: Command, S: EventSet>(
        &mut self,
        command: C,
        opts: CallOptions,
        matches: impl FnMut(&S) -> bool,
    ) -> Result<(C::Returns, S), Error> {
        let deadline = opts.get_timeout().and_then(deadline_after);
        let mark = self.next_seq;
        let pending = self.send_call(&command, opts)?;
        let result = self.wait_call(pending)?;
        let event = self.wait_typed_since(mark, deadline, matches)?;
        Ok((result, event))
    }

    /// Waits from event number `mark` until `deadline` for the first event of the set `S`
    /// that `matches` accepts (or that does not decode: then the error), taken out of the
    /// buffer.
    fn wait_typed_since<S: EventSet>(
        &mut self,
        mark: u64,
        deadline: Option<Instant>,
        mut matches: impl FnMut(&S) -> bool,
    ) -> Result<S, Error> {
        let mut outcome = None;
        self.wait_event_since(mark, deadline, |e| {
            if !S::has(&e.name) {
                return false;
            }
            match S::decode_event(e) {
                Some(Ok(decoded)) if matches(&decoded) => {
                    outcome = Some(Ok(decoded));
                    true
                }
                Some(Ok(_)) | None => false,
                Some(Err(error)) => {
                    outcome = Some(Err(Error::from(error)));
                    true
                }
            }
        })?;
        // The event that ended the wait set the outcome.
        outcome.unwrap_or(Err(Error::Timeout))
    }

    // ----- pipelining -----

    /// Issues a command without waiting for its result; take it later with
    /// [`wait`](Self::wait). Bytes are written as far as the socket takes them now; the rest
    /// goes out during the next blocking call. Up to
    /// [`ClientConfig::max_in_flight`](qmp_proto::ClientConfig::max_in_flight) in-band
    /// commands are in flight at once (8 by default); the others wait in the engine's queue.
    pub fn send(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<CommandId, Error> {
        self.issue(
            opts,
            |engine, now, opts| engine.execute(now, name, args, opts),
            |id| *id,
        )
    }

    /// Issues a typed command without waiting; take its result with
    /// [`wait_call`](Self::wait_call). See [`send`](Self::send).
    pub fn send_call<C: Command>(
        &mut self,
        command: &C,
        opts: CallOptions,
    ) -> Result<Pending<C>, Error> {
        self.issue(
            opts,
            |engine, now, opts| engine.call(now, command, opts),
            Pending::id,
        )
    }

    /// Waits for the result of a command issued with [`send`](Self::send) and takes it, as
    /// raw JSON. Waits as long as the command's timeout allows (without one, until the reply
    /// or the end of the session).
    pub fn wait(&mut self, id: CommandId) -> Result<Box<RawValue>, Error> {
        if !self.pending.remove(&id) {
            return Err(Error::UnknownCommand(id));
        }
        // (Already arrived: a call that sent several commands before waiting.)
        if !self.replies.is_empty() {
            if let Some(result) = self.replies.remove(&id) {
                return result;
            }
        }
        // The engine resolves every command: by its reply, its deadline or the session end.
        self.awaiting = Some(id);
        self.run_until(None, |c| c.awaited.is_some());
        self.awaiting = None;
        match self.awaited.take() {
            Some(result) => result,
            None => Err(Error::Disconnected(
                self.ended().cloned().unwrap_or(DisconnectReason::Closed),
            )),
        }
    }

    /// Waits for the result of a command issued with [`send_call`](Self::send_call) and
    /// decodes it.
    pub fn wait_call<C: Command>(&mut self, pending: Pending<C>) -> Result<C::Returns, Error> {
        let raw = self.wait(pending.id())?;
        Ok(pending.decode(&raw)?)
    }

    /// Waits up to `timeout` for the late outcome of a command that timed out after it was
    /// sent ([`Error::CommandTimeout`]): QEMU's reply when it comes (did the `blockdev-add`
    /// that timed out create its node?), or the end of the session before it. Fails with
    /// [`Error::Timeout`] past `timeout`; the handle can be waited on again. Meanwhile the
    /// connection reads as any call does (events are buffered, other replies kept).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use qmp_blocking::{CallOptions, Error};
    /// # fn main() -> Result<(), Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// let args = serde_json::json!({"driver": "null-co", "node-name": "disk1"});
    /// let opts = CallOptions::new().timeout(Duration::from_secs(5));
    /// match qmp.execute_with::<serde_json::Value>("blockdev-add", &args, opts) {
    ///     Err(Error::CommandTimeout(late)) => {
    ///         // Did QEMU create the node after all?
    ///         let created = qmp.wait_late(&late, Duration::from_secs(60)).is_ok();
    ///         println!("disk1 exists: {created}");
    ///     }
    ///     other => { other?; }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_late(
        &mut self,
        late: &qmp_kit::Late,
        timeout: Duration,
    ) -> Result<Box<RawValue>, Error> {
        let deadline = Instant::now().checked_add(timeout);
        if let Some(outcome) = late.try_outcome() {
            return outcome;
        }
        self.run_until(deadline, |_| late.try_outcome().is_some());
        late.try_outcome().unwrap_or(Err(Error::Timeout))
    }

    /// Whether the result of a pending command has arrived (no IO: it reflects what the
    /// last call read).
    pub fn has_reply(&self, id: CommandId) -> bool {
        self.replies.contains_key(&id)
    }

    // ----- what this QEMU has -----

    /// This QEMU's QMP schema (`query-qmp-schema`), fetched on the first call and kept for
    /// the connection's life: ask it whether this QEMU has a command, an argument or an
    /// event before relying on one (QEMU versions and builds differ).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// let schema = qmp.schema()?;
    /// if schema.has_argument("blockdev-add", &["cache", "direct"]) {
    ///     // ...
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn schema(&mut self) -> Result<&Schema, Error> {
        let schema = match self.schema.take() {
            Some(schema) => schema,
            None => self.call(qmp_proto::schema::QueryQmpSchema {})?,
        };
        Ok(self.schema.insert(schema))
    }

    /// The names of this QEMU's commands (`query-commands`: much smaller than the schema),
    /// fetched on each call.
    pub fn commands(&mut self) -> Result<Commands, Error> {
        self.call(qmp_proto::schema::QueryCommands {})
    }

    // ----- events -----

    /// The oldest buffered QMP event, waiting up to `timeout` for one (`Duration::ZERO`
    /// only takes what has already arrived; `Duration::MAX` waits without limit).
    /// `Ok(None)` when none came in time; [`Error::Disconnected`] once the session ended and
    /// the buffer is empty.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<QmpEvent>, Error> {
        loop {
            match self.next_item(timeout)? {
                Some(SessionItem::Event(event)) => {
                    return Ok(Some(
                        Arc::try_unwrap(event).unwrap_or_else(|e| (*e).clone()),
                    ))
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// [`next_event`](Self::next_event), with the start of each new session (after a
    /// reconnection, [`Builder::reconnect`]) as a [`SessionItem::NewSession`] marker between
    /// the events of the ended session, which stay buffered, and those of the new one.
    pub fn next_item(&mut self, timeout: Duration) -> Result<Option<SessionItem>, Error> {
        let b = self.next_queued(timeout, |c| !c.events.is_empty(), |c| c.events.pop_front())?;
        Ok(b.map(|b| match b.event {
            Some(event) => SessionItem::Event(Arc::new(event)),
            None => SessionItem::NewSession { session: b.session },
        }))
    }

    /// Waits up to `timeout` for an event named `name`, looking at buffered events first,
    /// and takes it out of the buffer; other events stay buffered, in order. Only events of
    /// the current session are looked at: after a reconnection, those of the ended session
    /// are left to [`next_event`](Self::next_event).
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<QmpEvent, Error> {
        self.wait_event_where(timeout, |e| e.name == name)
    }

    /// Waits up to `timeout` for an event for which `matches` is true, looking at buffered
    /// events first, and takes it out of the buffer; other events stay buffered, in order.
    /// Fails with [`Error::Timeout`], or [`Error::Disconnected`] when the session ended
    /// without such an event.
    pub fn wait_event_where(
        &mut self,
        timeout: Duration,
        matches: impl FnMut(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, Error> {
        self.wait_event_since(0, deadline_after(timeout), matches)
    }

    /// Waits up to `timeout` for an event of the set `S` (one typed event, or one of several
    /// with [`OneOf`](qmp_proto::events::OneOf)), looking at buffered events first as
    /// [`wait_event`](Self::wait_event) does, takes it out of the buffer and decodes it. An
    /// event that does not decode is taken and reported as [`Error::TypedDecode`] with the
    /// raw event.
    pub fn wait_typed_event<S: EventSet>(&mut self, timeout: Duration) -> Result<S, Error> {
        self.wait_typed_event_where(timeout, |_| true)
    }

    /// Waits up to `timeout` for the first event of the set `S` that `matches` accepts
    /// (looking at buffered events first), takes it out of the buffer and returns it
    /// decoded. An event of the set that does not decode is taken and reported as
    /// [`Error::TypedDecode`] with the raw event.
    pub fn wait_typed_event_where<S: EventSet>(
        &mut self,
        timeout: Duration,
        matches: impl FnMut(&S) -> bool,
    ) -> Result<S, Error> {
        self.wait_typed_since(0, deadline_after(timeout), matches)
    }

    /// Reads what has already arrived, without waiting, and takes every buffered event.
    pub fn drain_events(&mut self) -> Vec<QmpEvent> {
        self.run_until(Some(Instant::now()), |_| false);
        self.events.drain(..).filter_map(|b| b.event).collect()
    }

    /// How many events are buffered (as of the last call).
    pub fn buffered_events(&self) -> usize {
        self.events.iter().filter(|b| b.event.is_some()).count()
    }

    /// How many QMP events were dropped because the buffer was full: it holds at most
    /// [`ClientConfig::max_buffered_events`](qmp_proto::ClientConfig::max_buffered_events)
    /// (10,000 by default), and like the engine, drops the newest beyond that. Take events
    /// regularly to keep it at zero.
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    // ----- tracked VM status and jobs -----

    /// The VM's run status, when tracked ([`Builder::track_status`]) and known: `None` until
    /// the first `query-status` is answered, and for a peer without it
    /// (qemu-storage-daemon). As of the last call; see [`qmp_proto::status`] for the rules.
    pub fn vm_status(&self) -> Option<&VmStatus> {
        self.tracked.vm_status()
    }

    /// The tracked jobs, in the order they appeared, as of the last call.
    pub fn jobs(&self) -> &[Job] {
        self.tracked.jobs()
    }

    /// The tracked job with this id, as of the last call.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.tracked.job(id)
    }

    /// The oldest change of the tracked VM status or jobs not taken yet, waiting up to
    /// `timeout` for one. Every change is kept until taken, across reconnections, up to
    /// [`ClientConfig::max_buffered_events`](qmp_proto::ClientConfig::max_buffered_events)
    /// (then the newest are dropped and counted in [`changes_lost`](Self::changes_lost)).
    /// `Ok(None)` when none came in time; [`Error::Disconnected`] once the session ended and
    /// none is left.
    pub fn next_change(&mut self, timeout: Duration) -> Result<Option<Change>, Error> {
        self.next_queued(
            timeout,
            |c| !c.changes.is_empty(),
            |c| c.changes.pop_front(),
        )
    }

    /// Reads what has already arrived, without waiting, and takes every change not taken
    /// yet.
    pub fn drain_changes(&mut self) -> Vec<Change> {
        self.run_until(Some(Instant::now()), |_| false);
        self.changes.drain(..).collect()
    }

    /// Changes of the tracked state dropped because too many were waiting to be taken.
    pub fn changes_lost(&self) -> u64 {
        self.changes_lost
    }

    /// Asks QEMU again for the tracked VM status and jobs (`query-status`, `query-jobs`),
    /// to learn what changes without events (a job's progress), and waits up to `timeout`
    /// for the answers.
    pub fn refresh_status(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        self.ensure_session(deadline)?;
        self.engine.refresh_status(Instant::now())?;
        if self.run_until(deadline, |c| !c.engine.is_refreshing_status()) {
            return Ok(());
        }
        self.check_connected()?;
        Err(Error::Timeout)
    }

    /// Waits up to `timeout` until `pred` holds for the tracked VM status (at once if it
    /// holds now), and returns the status then. Fails with [`Error::Timeout`], or
    /// [`Error::Disconnected`] when the session ends first (with reconnection, the wait goes
    /// on in the next session).
    ///
    /// ```no_run
    /// # fn f(qmp: &mut qmp_blocking::Connection) -> Result<(), qmp_blocking::Error> {
    /// use std::time::Duration;
    /// use qmp_blocking::status::VmStatus;
    ///
    /// qmp.execute::<qmp_blocking::IgnoredAny>("stop", &())?;
    /// qmp.wait_vm_status(|s| s == Some(&VmStatus::Paused), Duration::from_secs(5))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_vm_status(
        &mut self,
        mut pred: impl FnMut(Option<&VmStatus>) -> bool,
        timeout: Duration,
    ) -> Result<Option<VmStatus>, Error> {
        let deadline = deadline_after(timeout);
        loop {
            if self.run_until(deadline, |c| pred(c.tracked.vm_status())) {
                return Ok(self.tracked.vm_status().cloned());
            }
            if self.ended().is_none() {
                return Err(Error::Timeout);
            }
            self.ensure_session(deadline)?;
        }
    }

    /// Waits up to `timeout` until `pred` holds for job `id` (`None`: not in the table, or
    /// gone from it), at once if it holds now, looking at every change as it comes (so a job
    /// that concluded and was dismissed at once is seen concluded). Returns the job then, or,
    /// when the change removed it, the job as it was last. Fails as
    /// [`wait_vm_status`](Self::wait_vm_status) does.
    ///
    /// ```no_run
    /// # fn f(qmp: &mut qmp_blocking::Connection) -> Result<(), qmp_blocking::Error> {
    /// use std::time::Duration;
    ///
    /// // ... start a job "backup0" ...
    /// let ended = |j: Option<&qmp_blocking::status::Job>| j.map_or(true, |j| j.status.is_ended());
    /// let last = qmp.wait_job("backup0", ended, Duration::from_secs(60))?;
    /// if let Some(error) = last.and_then(|j| j.error) {
    ///     eprintln!("backup failed: {error}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_job(
        &mut self,
        id: &str,
        mut pred: impl FnMut(Option<&Job>) -> bool,
        timeout: Duration,
    ) -> Result<Option<Job>, Error> {
        if pred(self.tracked.job(id)) {
            return Ok(self.tracked.job(id).cloned());
        }
        let deadline = deadline_after(timeout);
        // Nothing leaves the queue while waiting: each new change is looked at once.
        let mut scanned = self.changes.len();
        loop {
            let mut found = None;
            self.run_until(deadline, |c| {
                for change in c.changes.iter().skip(scanned) {
                    if let Change::Job(j) = change {
                        if j.id == id && pred(j.to.as_ref()) {
                            found = Some(j.to.clone().or_else(|| j.from.clone()));
                            return true;
                        }
                    }
                }
                scanned = c.changes.len();
                false
            });
            if let Some(job) = found {
                return Ok(job);
            }
            if self.ended().is_none() {
                return Err(Error::Timeout);
            }
            self.ensure_session(deadline)?;
        }
    }

    /// The engine, for what this type does not wrap (its state, queue lengths, config).
    pub fn engine(&self) -> &Client {
        &self.engine
    }

    // ----- the loop -----

    /// Why the session ended, once it has: the engine keeps it.
    fn ended(&self) -> Option<&DisconnectReason> {
        self.engine.disconnect_reason()
    }

    fn check_connected(&self) -> Result<(), Error> {
        match self.ended() {
            Some(reason) => Err(Error::Disconnected(reason.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn set_redial(&mut self, redial: Redial) {
        self.redial = Some(redial);
    }

    /// Makes sure a session is up: after the session ended, with reconnection, dials again
    /// once the policy's delay has passed; with [`Reconnect::calls_wait`](crate::Reconnect),
    /// waits for that (until `deadline`, if any). Fails with the reason the last session
    /// ended when there is no session and none is made now, and with [`Error::Timeout`] past
    /// `deadline`.
    fn ensure_session(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        loop {
            let Some(reason) = self.ended().cloned() else {
                return Ok(());
            };
            let Some(mut redial) = self.redial.take() else {
                return Err(Error::Disconnected(reason));
            };
            let wait = redial.policy.get_calls_wait();
            let now = Instant::now();
            if let Some(at) = redial.next_at.filter(|at| *at > now) {
                if !wait {
                    self.redial = Some(redial);
                    return Err(Error::Disconnected(reason));
                }
                if let Some(d) = deadline.filter(|d| *d < at) {
                    self.redial = Some(redial);
                    std::thread::sleep(d.saturating_duration_since(now));
                    return Err(Error::Timeout);
                }
                std::thread::sleep(at - now);
            }
            let attempt = redial.attempt;
            let opened =
                match crate::redial::dial(&redial.target, redial.settings.get_connect_timeout()) {
                    Ok(stream) => {
                        // The same engine, idle now: what it tracks carries over.
                        let placeholder = Engine::new(&redial.settings, TARGET);
                        let engine = std::mem::replace(&mut self.engine, placeholder);
                        Connection::establish_with(stream, Box::new(engine)).map_err(|f| {
                            self.engine = *f.1;
                            f.0
                        })
                    }
                    Err(e) => Err(e),
                };
            match opened {
                Ok(fresh) => {
                    self.adopt(fresh);
                    redial.attempt = 0;
                    redial.next_at = None;
                    self.redial = Some(redial);
                    return Ok(());
                }
                Err(e) => {
                    self.engine.note(
                        log::Level::Debug,
                        format_args!("reconnect attempt {attempt} failed: {e}"),
                    );
                    if !redial.failed(Instant::now()) {
                        self.engine.note(
                            log::Level::Debug,
                            format_args!("giving up reconnecting after {attempt} attempts"),
                        );
                        return Err(Error::Disconnected(reason));
                    }
                    self.redial = Some(redial);
                    if !wait {
                        return Err(Error::Disconnected(reason));
                    }
                }
            }
        }
    }

    /// Takes the session of `fresh`, newly negotiated: its engine, socket, greeting and the
    /// events that came while it was negotiated. Events of the ended session stay buffered
    /// before them.
    fn adopt(&mut self, mut fresh: Connection) {
        std::mem::swap(&mut self.engine, &mut fresh.engine);
        std::mem::swap(&mut self.stream, &mut fresh.stream);
        std::mem::swap(&mut self.read_timeout, &mut fresh.read_timeout);
        std::mem::swap(&mut self.greeting, &mut fresh.greeting);
        self.schema = None;
        self.session += 1;
        // The events of the ended session stay buffered, before a marker.
        self.events.push_back(Buffered {
            seq: self.next_seq,
            session: self.session,
            event: None,
        });
        self.next_seq += 1;
        for event in std::mem::take(&mut fresh.events)
            .into_iter()
            .filter_map(|b| b.event)
        {
            self.push_event(event);
        }
        for change in std::mem::take(&mut fresh.changes) {
            match change {
                Change::Vm(c) => self.vm_changed(c.from, c.to),
                Change::Job(c) => self.job_changed(c.id, c.from, c.to),
                other => self.push_change(other),
            }
        }
        self.engine.note(
            log::Level::Debug,
            format_args!("session {} is up", self.session),
        );
        // `fresh` now holds the ended session, closed already: dropping it changes nothing.
    }

    /// The deadline of a call made now with `opts`: its timeout, or the default one.
    fn call_deadline(&self, opts: &CallOptions) -> Option<Instant> {
        opts.get_timeout()
            .or(self.engine.config().get_command_timeout())
            .and_then(deadline_after)
    }

    /// The first thing `take` takes from a queue of this connection (events, changes), waiting
    /// up to `timeout` until `queued` says there is one: `Ok(None)` when none came in time. When the session ends,
    /// with reconnection the wait goes on in the next one; without, what is queued is still
    /// taken, then [`Error::Disconnected`].
    fn next_queued<T>(
        &mut self,
        timeout: Duration,
        queued: fn(&Self) -> bool,
        take: fn(&mut Self) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let deadline = deadline_after(timeout);
        loop {
            self.run_until(deadline, queued);
            if let Some(item) = take(self) {
                return Ok(Some(item));
            }
            if self.ended().is_none() {
                return Ok(None);
            }
            // The session ended: with reconnection, go on waiting in the next one.
            match self.ensure_session(deadline) {
                Ok(()) => {}
                Err(Error::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Issues a command through `issue` (an engine call) and tracks its id.
    fn issue<T>(
        &mut self,
        opts: CallOptions,
        issue: impl FnOnce(&mut Engine, Instant, CallOptions) -> Result<T, CallError>,
        id_of: impl FnOnce(&T) -> CommandId,
    ) -> Result<T, Error> {
        let deadline = self.call_deadline(&opts);
        self.ensure_session(deadline)?;
        if !opts.get_fds().is_empty() && !self.stream.is_unix() {
            return Err(Error::FdsUnsupported);
        }
        let issued = issue(&mut self.engine, Instant::now(), opts)?;
        self.pending.insert(id_of(&issued));
        self.flush();
        self.drain_engine();
        Ok(issued)
    }

    fn wait_event_since(
        &mut self,
        mark: u64,
        deadline: Option<Instant>,
        mut matches: impl FnMut(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, Error> {
        // Nothing leaves the buffer while waiting, so each event is looked at once.
        let mut scanned = 0;
        loop {
            let mut found = None;
            self.run_until(deadline, |c| {
                // Only the current session's events: nothing of an ended one is taken for
                // the next one's.
                for (i, b) in c.events.iter().enumerate().skip(scanned) {
                    let current = b.seq >= mark && b.session == c.session;
                    if current && b.event.as_ref().is_some_and(&mut matches) {
                        found = Some(i);
                        return true;
                    }
                }
                scanned = c.events.len();
                false
            });
            if let Some(event) = found.and_then(|i| self.events.remove(i)?.event) {
                return Ok(event);
            }
            if self.ended().is_none() {
                return Err(Error::Timeout);
            }
            // The session ended: with reconnection, go on waiting in the next one.
            self.ensure_session(deadline)?;
        }
    }

    /// Runs the loop until `done` holds, the session ends, or `deadline` passes (`None`:
    /// no deadline of its own; the engine's timers still fire). A deadline already passed
    /// still reads what has arrived, once, without waiting. Returns whether `done` held.
    fn run_until(
        &mut self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        loop {
            self.flush();
            self.drain_engine();
            if done(self) {
                return true;
            }
            if self.ended().is_some() {
                return false;
            }
            let timer = self.engine.poll_timeout();
            // The time matters only to a timer or a deadline (most calls have neither).
            let (timeout, last) = match (timer, deadline) {
                (None, None) => (None, false),
                (timer, deadline) => {
                    let now = Instant::now();
                    if timer.is_some_and(|t| t <= now) {
                        self.engine.handle_timeout(now);
                        continue;
                    }
                    let wake = match (timer, deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let last = deadline.is_some_and(|d| d <= now);
                    (wake.map(|w| w.saturating_duration_since(now)), last)
                }
            };
            let write = self.engine.poll_transmit().is_some();
            if !write && timeout.map_or(true, |t| t >= SHORTEST_READ_TIMEOUT) {
                // Only input can come: wait for it in the read itself.
                self.read_waiting(timeout);
            } else {
                match transport::wait(std::os::fd::AsFd::as_fd(&self.stream), write, timeout) {
                    Ok(ready) if ready.read => self.read_once(),
                    Ok(_) => {}
                    Err(e) => self.engine.handle_io_error(Instant::now(), &e),
                }
            }
            if last {
                self.flush();
                self.drain_engine();
                return done(self);
            }
        }
    }

    /// One non-blocking read, fed to the engine.
    fn read_once(&mut self) {
        let got = self.stream.read(&mut self.buf);
        self.take_read(got);
    }

    /// One read that waits for input, at most about `timeout` (`None`: without limit), fed
    /// to the engine. The socket's read timeout is set only when the one in effect does not
    /// fit: it must not exceed `timeout`, and is not far below it either (else an idle wait
    /// would wake often). A new one is half of `timeout`, so that the next command's
    /// timeout, a little later and as long, still fits: a caller using one timeout for
    /// every command sets it once.
    fn read_waiting(&mut self, timeout: Option<Duration>) {
        let fits = match (self.read_timeout, timeout) {
            (None, None) => true,
            (Some(set), Some(want)) => set <= want && set >= want / 4,
            _ => false,
        };
        if !fits {
            let new = timeout.map(|t| t / 2);
            if let Err(e) = self.stream.set_read_timeout(new) {
                return self.engine.handle_io_error(Instant::now(), &e);
            }
            self.read_timeout = new;
        }
        let got = self.stream.read_wait(&mut self.buf);
        self.take_read(got);
    }

    /// Feeds a read's outcome to the engine.
    fn take_read(&mut self, got: io::Result<usize>) {
        let now = Instant::now();
        match got {
            Ok(0) => self.engine.handle_eof(now),
            Ok(n) => self.engine.handle_input(now, &self.buf[..n]),
            Err(e) if is_transient(&e) => {}
            Err(e) => self.engine.handle_io_error(now, &e),
        }
    }

    /// Writes what the engine has pending, as far as the socket takes it without blocking.
    /// A failed write goes to the engine, which decides what follows.
    fn flush(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            match self.stream.send(t.data, t.fds) {
                Ok(n) => self.engine.advance_transmit(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.engine
                        .note(log::Level::Debug, format_args!("write failed: {e}"));
                    self.engine.handle_write_error(Instant::now(), &e);
                }
            }
        }
    }

    /// Takes every engine output: replies, events (bounded), the end of the session.
    fn drain_engine(&mut self) {
        while let Some(output) = self.engine.next_output() {
            match output {
                Output::Reply { id, result } if self.awaiting == Some(id) => {
                    self.awaited = Some(result);
                }
                Output::Reply { id, result } if self.pending.contains(&id) => {
                    self.replies.insert(id, result);
                }
                Output::Event(e) => self.push_event(e),
                Output::EventsLost(count) => self.lose(count),
                Output::VmStatus { from, to } => self.vm_changed(from, to),
                Output::Job { id, from, to } => self.job_changed(id, from, to),
                Output::Disconnected(reason) => {
                    self.stream.shutdown();
                    if reason == DisconnectReason::Closed {
                        // Closed locally: not reconnected.
                        self.redial = None;
                    } else if let Some(redial) = &mut self.redial {
                        redial.session_ended(Instant::now());
                    }
                }
                _ => {}
            }
        }
    }

    fn vm_changed(&mut self, from: Option<VmStatus>, to: Option<VmStatus>) {
        let change = self.tracked.vm_changed(self.session, from, to);
        self.push_change(Change::Vm(change));
    }

    fn job_changed(&mut self, id: String, from: Option<Job>, to: Option<Job>) {
        let change = self.tracked.job_changed(self.session, id, from, to);
        self.push_change(Change::Job(change));
    }

    fn push_change(&mut self, change: Change) {
        if self.changes.len() >= self.max_events {
            self.changes_lost += 1;
            return;
        }
        self.changes.push_back(change);
    }

    fn push_event(&mut self, event: QmpEvent) {
        if self.events.len() >= self.max_events {
            return self.lose(1);
        }
        self.losing = false;
        self.events.push_back(Buffered {
            seq: self.next_seq,
            session: self.session,
            event: Some(event),
        });
        self.next_seq += 1;
    }

    fn lose(&mut self, count: u64) {
        if !self.losing {
            self.engine.note(
                log::Level::Warn,
                format_args!(
                    "event buffer full ({} events): dropping new events until some are taken",
                    self.max_events
                ),
            );
            self.losing = true;
        }
        self.events_lost += count;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// A session that could not be established: why, and the engine it was given.
struct Failed(Error, Box<Engine>);

/// A buffered event, or (`event: None`) the start of session `session`.
#[derive(Debug)]
struct Buffered {
    /// Its arrival number.
    seq: u64,
    /// The session it came in.
    session: u64,
    event: Option<QmpEvent>,
}

/// `now + timeout`, or `None` (no deadline) when that overflows.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Waits shorter than this are left to `poll`, whose timer is precise; a socket's read
/// timeout is kept in the kernel's clock ticks (up to 4 ms late where a tick is 4 ms).
const SHORTEST_READ_TIMEOUT: Duration = Duration::from_millis(40);

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
