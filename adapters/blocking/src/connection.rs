//! The connection: the run loop around the engine, commands, events, the end of a session.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use qmp_proto::events::TypedEvent;
use qmp_proto::schema::{Commands, Schema};
use qmp_proto::{
    CallError, Client, ClientConfig, Command, CommandId, CommandResult, Direction,
    DisconnectReason, Event, Greeting, Pending, QmpEvent, RawValue, RunState,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::transport::{self, Stream};
use crate::{Builder, Error};

/// The log target of every message this crate logs.
pub(crate) const TARGET: &str = "qmp_blocking";

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// Options for one command: a timeout and file descriptors to pass with it.
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
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
    fds: Vec<OwnedFd>,
}

impl CallOptions {
    /// The default timeout ([`Builder::timeout`]) and no file descriptors.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for this command, counted from the call, instead of the default one. Past
    /// it the call fails with [`Error::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attaches a file descriptor (a `File`, a socket, an `OwnedFd`, ...), sent as
    /// `SCM_RIGHTS` with the first byte of the command, for `getfd` or `add-fd`. Unix sockets
    /// only. The connection closes its copy once it is sent (or the call fails).
    pub fn fd(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.fds.push(fd.into());
        self
    }

    fn into_engine(self) -> qmp_proto::CallOptions {
        let mut opts = qmp_proto::CallOptions::new();
        if let Some(t) = self.timeout {
            opts = opts.timeout(t);
        }
        self.fds.into_iter().fold(opts, qmp_proto::CallOptions::fd)
    }
}

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
/// * **Typed commands**: [`call`](Self::call) is the typed form of `execute`:
///   `qmp.call(QueryStatus {})` returns a [`StatusInfo`](qmp_proto::commands::StatusInfo)
///   (types in [`qmp_proto::commands`], or any [`Command`]); [`call_oob`](Self::call_oob),
///   [`call_with`](Self::call_with), [`call_then_wait`](Self::call_then_wait) (with a typed
///   event), [`send_call`](Self::send_call) and [`wait_call`](Self::wait_call) to pipeline.
/// * **Commands**: [`execute`](Self::execute) (name, arguments, result type),
///   [`execute_raw_value`](Self::execute_raw_value), [`execute_oob`](Self::execute_oob), and
///   `*_with` variants taking [`CallOptions`] (timeout, file descriptors).
/// * **Capabilities of this QEMU**: [`schema`](Self::schema) (`query-qmp-schema`, fetched
///   once), [`commands`](Self::commands) (`query-commands`).
/// * **Pipelining**: [`send`](Self::send) and [`send_oob`](Self::send_oob) issue without
///   waiting; [`wait`](Self::wait) and [`wait_as`](Self::wait_as) take the result;
///   [`has_reply`](Self::has_reply) tells whether it has arrived.
/// * **Events**: [`next_event`](Self::next_event), [`wait_event`](Self::wait_event),
///   [`wait_event_where`](Self::wait_event_where),
///   [`execute_then_wait`](Self::execute_then_wait), [`drain_events`](Self::drain_events),
///   [`events_lost`](Self::events_lost).
/// * **Session**: [`greeting`](Self::greeting), [`oob_enabled`](Self::oob_enabled),
///   [`is_connected`](Self::is_connected), [`disconnect_reason`](Self::disconnect_reason),
///   [`quit`](Self::quit), [`close`](Self::close).
///
/// Dropping a connection closes it without blocking: unsent bytes are discarded.
#[derive(Debug)]
pub struct Connection {
    engine: Client,
    stream: Stream,
    greeting: Greeting,
    oob: bool,
    buf: Box<[u8]>,
    /// Commands issued here whose result was not taken yet.
    pending: HashSet<CommandId>,
    /// Results that arrived for pending commands.
    replies: HashMap<CommandId, CommandResult>,
    /// QMP events, each with its arrival number.
    events: VecDeque<(u64, QmpEvent)>,
    next_seq: u64,
    max_events: usize,
    events_lost: u64,
    /// Losses are being reported (logged once per burst).
    losing: bool,
    /// Set when the session ended; the last output of the engine.
    ended: Option<DisconnectReason>,
    /// A write failed; reported to the engine once the input is drained.
    write_failed: bool,
    /// `query-qmp-schema`, fetched by the first [`schema`](Self::schema) call.
    schema: Option<Schema>,
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

    /// Waits for the greeting and negotiates capabilities on a connected stream.
    pub(crate) fn establish(stream: Stream, config: ClientConfig) -> Result<Self, Error> {
        stream
            .set_nonblocking()
            .map_err(|e| Error::io("cannot make the socket non-blocking", e))?;
        // Copying each message for the log costs, so the engine reports traffic only when it
        // would be logged.
        let trace =
            config.get_trace_messages() || log::log_enabled!(target: TARGET, log::Level::Trace);
        let max_events = config.get_max_buffered_events();
        // Guest agent resynchronisation ids: random, so that a reply another client left in
        // the channel is never taken for this one's.
        let config = config
            .trace_messages(trace)
            .sync_seed(qmp_socket::random_seed());
        let mut engine = Client::new(config);
        engine.connect(Instant::now())?;
        let mut conn = Connection {
            engine,
            stream,
            // Replaced by the real greeting once negotiated, before anyone can see it (a
            // guest agent sends none: it stays empty).
            greeting: Greeting::default(),
            oob: false,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            pending: HashSet::new(),
            replies: HashMap::new(),
            events: VecDeque::new(),
            next_seq: 0,
            max_events,
            events_lost: 0,
            losing: false,
            ended: None,
            write_failed: false,
            schema: None,
        };
        // The engine's greeting, negotiation and sync timeouts bound this wait.
        conn.run_until(None, |c| {
            c.engine.state() == RunState::Running && !c.engine.is_syncing()
        });
        if let Some(reason) = &conn.ended {
            return Err(Error::Disconnected(reason.clone()));
        }
        if let Some(g) = conn.engine.greeting() {
            conn.greeting = g.clone();
        }
        conn.oob = conn.engine.oob_enabled();
        if conn.is_guest_agent() {
            log::debug!(target: TARGET, "synchronised with the guest agent");
        } else {
            log::debug!(target: TARGET, "negotiated with QEMU {} (oob: {})", conn.greeting.version, conn.oob);
        }
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
        self.engine.config().get_guest_agent()
    }

    /// Guest agent connections: resynchronises with the agent now and waits, up to
    /// `timeout`, until it answers ([`qmp_proto::Client::resync`]); for when the agent may
    /// have restarted in the guest. Commands time out and resynchronise on their own.
    /// Fails with [`Error::Call`] on a QMP connection, [`Error::Timeout`] past `timeout`
    /// (the resynchronisation goes on), and [`Error::Disconnected`] if the agent did not
    /// answer within the sync timeout.
    pub fn resync(&mut self, timeout: Duration) -> Result<(), Error> {
        if let Some(reason) = &self.ended {
            return Err(Error::Disconnected(reason.clone()));
        }
        self.engine.resync(Instant::now())?;
        let deadline = deadline_after(timeout);
        self.run_until(deadline, |c| !c.engine.is_syncing() || c.ended.is_some());
        match &self.ended {
            Some(reason) => Err(Error::Disconnected(reason.clone())),
            None if self.engine.is_syncing() => Err(Error::Timeout),
            None => Ok(()),
        }
    }

    /// Whether out-of-band execution was negotiated (QEMU offered it and the options asked
    /// for it, as they do by default).
    pub fn oob_enabled(&self) -> bool {
        self.oob
    }

    /// Whether the session is still up.
    pub fn is_connected(&self) -> bool {
        self.ended.is_none()
    }

    /// Why the session ended, once it has.
    pub fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        self.ended.as_ref()
    }

    /// Sends `quit` and waits, up to `timeout`, for QEMU to answer and close the connection.
    /// EOF (or a reset) after `quit` is the expected end: the session then ends with
    /// [`DisconnectReason::Eof`] `{ after_quit: true }` and this returns `Ok`. Events sent
    /// before the end (such as `SHUTDOWN`) stay available to the `*event*` methods.
    pub fn quit(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        let id = self.send_with("quit", &(), CallOptions::new().timeout(timeout))?;
        self.wait(id)?;
        self.run_until(deadline, |c| c.ended.is_some());
        match &self.ended {
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
    /// ignore the result (`()` only decodes from `null`, not from QEMU's `{}`).
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

    /// [`execute`](Self::execute) with per-call options: a timeout, file descriptors.
    pub fn execute_with<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<T, Error> {
        let id = self.send_with(name, args, opts)?;
        self.wait_as(id)
    }

    /// Runs a typed command: the typed form of [`execute`](Self::execute). The command's
    /// name comes from its type, its fields are the arguments, and the result decodes into
    /// its [`Returns`](Command::Returns) type.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use qmp_proto::commands::{Cont, QueryStatus, VmRunState};
    ///
    /// let status = qmp.call(QueryStatus {})?;
    /// if status.status == VmRunState::Prelaunch {
    ///     qmp.call(Cont {})?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A reply that does not decode (such as an enum value newer than these types) fails
    /// this call with [`Error::TypedDecode`], which carries the raw JSON; the connection
    /// and the other commands are not affected.
    pub fn call<C: Command>(&mut self, command: C) -> Result<C::Returns, Error> {
        self.call_with(command, CallOptions::new())
    }

    /// [`call`](Self::call) with per-call options: a timeout, file descriptors (for
    /// [`Getfd`](qmp_proto::commands::Getfd) and [`AddFd`](qmp_proto::commands::AddFd)).
    pub fn call_with<C: Command>(
        &mut self,
        command: C,
        opts: CallOptions,
    ) -> Result<C::Returns, Error> {
        let pending = self.send_call(&command, opts)?;
        self.wait_call(pending)
    }

    /// Runs a typed command out of band. Fails with
    /// [`Error::Call`]`(`[`CallError::OobNotAllowed`]`)` when the command does not allow
    /// OOB ([`Command::ALLOW_OOB`]), and with `Error::Call(CallError::OobNotNegotiated)`
    /// unless OOB was negotiated; nothing is sent then.
    pub fn call_oob<C: Command>(&mut self, command: C) -> Result<C::Returns, Error> {
        self.call_oob_with(command, CallOptions::new())
    }

    /// [`call_oob`](Self::call_oob) with per-call options.
    pub fn call_oob_with<C: Command>(
        &mut self,
        command: C,
        opts: CallOptions,
    ) -> Result<C::Returns, Error> {
        if !C::ALLOW_OOB {
            return Err(Error::Call(CallError::OobNotAllowed(C::NAME)));
        }
        let id = self.send_oob_with(C::NAME, &command, opts)?;
        let raw = self.wait(id)?;
        Ok(qmp_proto::decode_return::<C>(&raw)?)
    }

    /// Runs a typed command, then waits for the event `E` that arrived after the command was
    /// issued (before or after its reply), all within `timeout`, and decodes it.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use std::time::Duration;
    /// use qmp_proto::{commands, events};
    ///
    /// let (_, _stop) = qmp.call_then_wait::<_, events::Stop>(commands::Stop {}, Duration::from_secs(5))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_then_wait<C: Command, E: TypedEvent>(
        &mut self,
        command: C,
        timeout: Duration,
    ) -> Result<(C::Returns, E), Error> {
        let deadline = deadline_after(timeout);
        let mark = self.next_seq;
        let pending = self.send_call(&command, CallOptions::new().timeout(timeout))?;
        let result = self.wait_call(pending)?;
        let event = self.wait_event_since(mark, deadline, |e| e.name == E::NAME)?;
        Ok((result, decode_event(&event)?))
    }

    /// Issues a typed command without waiting; take its result with
    /// [`wait_call`](Self::wait_call). See [`send`](Self::send).
    pub fn send_call<C: Command>(
        &mut self,
        command: &C,
        opts: CallOptions,
    ) -> Result<Pending<C>, Error> {
        self.issue_with(
            opts,
            |engine, now, opts| engine.call(now, command, opts),
            Pending::id,
        )
    }

    /// Waits for the result of a command issued with [`send_call`](Self::send_call) and
    /// decodes it.
    pub fn wait_call<C: Command>(&mut self, pending: Pending<C>) -> Result<C::Returns, Error> {
        let raw = self.wait(pending.id())?;
        Ok(pending.decode(&raw)?)
    }

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
            None => self.call(qmp_proto::commands::QueryQmpSchema {})?,
        };
        Ok(self.schema.insert(schema))
    }

    /// The names of this QEMU's commands (`query-commands`: much smaller than the schema),
    /// fetched on each call.
    pub fn commands(&mut self) -> Result<Commands, Error> {
        self.call(qmp_proto::commands::QueryCommands {})
    }

    /// Waits up to `timeout` for the event `E` (looking at buffered events first, as
    /// [`wait_event`](Self::wait_event) does), takes it out of the buffer and decodes it.
    /// An event that does not decode is taken and reported as [`Error::TypedDecode`]
    /// with the raw event.
    pub fn wait_typed_event<E: TypedEvent>(&mut self, timeout: Duration) -> Result<E, Error> {
        let event = self.wait_event(E::NAME, timeout)?;
        decode_event(&event)
    }

    /// Runs a command and returns its result as raw JSON, undecoded.
    pub fn execute_raw_value(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<Box<RawValue>, Error> {
        let id = self.send(name, args)?;
        self.wait(id)
    }

    /// Runs a command out-of-band (`exec-oob`): it overtakes in-band commands queued here
    /// and in QEMU. Fails with [`Error::Call`] unless OOB was negotiated.
    pub fn execute_oob<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        self.execute_oob_with(name, args, CallOptions::new())
    }

    /// [`execute_oob`](Self::execute_oob) with per-call options.
    pub fn execute_oob_with<T: DeserializeOwned>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<T, Error> {
        let id = self.send_oob_with(name, args, opts)?;
        self.wait_as(id)
    }

    /// Runs a command, then waits for an event matching `matches` that arrived after the
    /// command was issued (before or after its reply), all within `timeout`. Returns the
    /// decoded result and the event.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// # let mut qmp = qmp_blocking::Connection::connect_unix("/run/vm/qmp.sock")?;
    /// use std::time::Duration;
    /// use qmp_blocking::IgnoredAny;
    ///
    /// let (_, resume): (IgnoredAny, _) = qmp.execute_then_wait("cont", &(), Duration::from_secs(5), |e| {
    ///     e.name == "RESUME"
    /// })?;
    /// # let _ = resume;
    /// # Ok(())
    /// # }
    /// ```
    pub fn execute_then_wait<T, F>(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        timeout: Duration,
        matches: F,
    ) -> Result<(T, QmpEvent), Error>
    where
        T: DeserializeOwned,
        F: FnMut(&QmpEvent) -> bool,
    {
        let deadline = deadline_after(timeout);
        let mark = self.next_seq;
        let id = self.send_with(name, args, CallOptions::new().timeout(timeout))?;
        let result = self.wait_as(id)?;
        let event = self.wait_event_since(mark, deadline, matches)?;
        Ok((result, event))
    }

    // ----- pipelining -----

    /// Issues a command without waiting for its result; take it later with
    /// [`wait`](Self::wait) or [`wait_as`](Self::wait_as). Bytes are written as far as the
    /// socket takes them now; the rest goes out during the next blocking call. Up to
    /// [`ClientConfig::max_in_flight`] in-band commands are in flight at once (8 by
    /// default); the others wait in the engine's queue.
    pub fn send(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<CommandId, Error> {
        self.send_with(name, args, CallOptions::new())
    }

    /// [`send`](Self::send) with per-call options.
    pub fn send_with(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<CommandId, Error> {
        self.issue(false, name, args, opts)
    }

    /// Issues an out-of-band command without waiting for its result.
    pub fn send_oob(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<CommandId, Error> {
        self.send_oob_with(name, args, CallOptions::new())
    }

    /// [`send_oob`](Self::send_oob) with per-call options.
    pub fn send_oob_with(
        &mut self,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<CommandId, Error> {
        self.issue(true, name, args, opts)
    }

    /// Waits for the result of a command issued with [`send`](Self::send) and takes it, as
    /// raw JSON. Waits as long as the command's timeout allows (without one, until the reply
    /// or the end of the session).
    pub fn wait(&mut self, id: CommandId) -> Result<Box<RawValue>, Error> {
        if !self.pending.contains(&id) {
            return Err(Error::UnknownCommand(id));
        }
        // The engine resolves every command: by its reply, its deadline or the session end.
        self.run_until(None, |c| c.replies.contains_key(&id));
        self.pending.remove(&id);
        match self.replies.remove(&id) {
            Some(result) => result.map_err(Error::from),
            None => Err(Error::Disconnected(
                self.ended.clone().unwrap_or(DisconnectReason::Closed),
            )),
        }
    }

    /// [`wait`](Self::wait), decoding the result into `T`.
    pub fn wait_as<T: DeserializeOwned>(&mut self, id: CommandId) -> Result<T, Error> {
        let raw = self.wait(id)?;
        Ok(serde_json::from_str(raw.get())?)
    }

    /// Whether the result of a pending command has arrived (no IO: it reflects what the
    /// last call read).
    pub fn has_reply(&self, id: CommandId) -> bool {
        self.replies.contains_key(&id)
    }

    // ----- events -----

    /// The oldest buffered QMP event, waiting up to `timeout` for one (`Duration::ZERO`
    /// only takes what has already arrived; `Duration::MAX` waits without limit).
    /// `Ok(None)` when none came in time; [`Error::Disconnected`] once the session ended and
    /// the buffer is empty.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<QmpEvent>, Error> {
        self.run_until(deadline_after(timeout), |c| !c.events.is_empty());
        match self.events.pop_front() {
            Some((_, event)) => Ok(Some(event)),
            None => match &self.ended {
                Some(reason) => Err(Error::Disconnected(reason.clone())),
                None => Ok(None),
            },
        }
    }

    /// Waits up to `timeout` for an event named `name`, looking at buffered events first,
    /// and takes it out of the buffer; other events stay buffered, in order.
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

    /// Reads what has already arrived, without waiting, and takes every buffered event.
    pub fn drain_events(&mut self) -> Vec<QmpEvent> {
        self.run_until(Some(Instant::now()), |_| false);
        self.events.drain(..).map(|(_, e)| e).collect()
    }

    /// How many events are buffered (as of the last call).
    pub fn buffered_events(&self) -> usize {
        self.events.len()
    }

    /// How many QMP events were dropped because the buffer was full: it holds at most
    /// [`ClientConfig::max_buffered_events`] (10,000 by default), and like the engine, drops
    /// the newest beyond that. Take events regularly to keep it at zero.
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    /// The engine, for what this type does not wrap (its state, queue lengths, config).
    pub fn engine(&self) -> &Client {
        &self.engine
    }

    // ----- the loop -----

    fn issue(
        &mut self,
        oob: bool,
        name: &str,
        args: &(impl Serialize + ?Sized),
        opts: CallOptions,
    ) -> Result<CommandId, Error> {
        self.issue_with(
            opts,
            |engine, now, opts| engine.execute(now, name, args, opts.oob(oob)),
            |id| *id,
        )
    }

    /// Issues a command through `issue` (an engine call) and tracks its id.
    fn issue_with<T>(
        &mut self,
        opts: CallOptions,
        issue: impl FnOnce(&mut Client, Instant, qmp_proto::CallOptions) -> Result<T, CallError>,
        id_of: impl FnOnce(&T) -> CommandId,
    ) -> Result<T, Error> {
        if let Some(reason) = &self.ended {
            return Err(Error::Disconnected(reason.clone()));
        }
        if !opts.fds.is_empty() && !self.stream.is_unix() {
            return Err(Error::FdsNeedUnixSocket);
        }
        let issued = issue(&mut self.engine, Instant::now(), opts.into_engine())?;
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
        let mut found = None;
        self.run_until(deadline, |c| {
            for (i, (seq, event)) in c.events.iter().enumerate().skip(scanned) {
                if *seq >= mark && matches(event) {
                    found = Some(i);
                    return true;
                }
            }
            scanned = c.events.len();
            false
        });
        if let Some((_, event)) = found.and_then(|i| self.events.remove(i)) {
            return Ok(event);
        }
        match &self.ended {
            Some(reason) => Err(Error::Disconnected(reason.clone())),
            None => Err(Error::Timeout),
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
            if self.ended.is_some() {
                return false;
            }
            let now = Instant::now();
            let timer = self.engine.poll_timeout();
            if timer.is_some_and(|t| t <= now) {
                self.engine.handle_timeout(now);
                continue;
            }
            let last = deadline.is_some_and(|d| d <= now);
            let wake = match (timer, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let write = !self.write_failed && self.engine.poll_transmit().is_some();
            let timeout = wake.map(|w| w.saturating_duration_since(now));
            match transport::wait(std::os::fd::AsFd::as_fd(&self.stream), write, timeout) {
                Ok(ready) if ready.read => {
                    self.read_once();
                }
                Ok(_) => {}
                Err(e) => self.engine.handle_io_error(Instant::now(), &e),
            }
            if last {
                self.flush();
                self.drain_engine();
                return done(self);
            }
        }
    }

    /// One non-blocking read, fed to the engine.
    fn read_once(&mut self) -> bool {
        let now = Instant::now();
        match self.stream.read(&mut self.buf) {
            Ok(0) => self.engine.handle_eof(now),
            Ok(n) => self.engine.handle_input(now, &self.buf[..n]),
            Err(e) if is_transient(&e) => return false,
            Err(e) => self.engine.handle_io_error(now, &e),
        }
        true
    }

    /// Writes what the engine has pending, as far as the socket takes it without blocking.
    fn flush(&mut self) {
        while !self.write_failed {
            let Some(t) = self.engine.poll_transmit() else {
                return;
            };
            match self.stream.send(t.data, t.fds) {
                Ok(n) => self.engine.advance_transmit(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.write_error(&e),
            }
        }
    }

    /// A write failed (typically the peer closed: EPIPE or a reset). Whatever the peer sent
    /// before closing (the `quit` reply, a `SHUTDOWN` event, the EOF itself) says more than
    /// the write error, so read it first; report the write error only if the session is
    /// still up after that.
    fn write_error(&mut self, e: &io::Error) {
        log::debug!(target: TARGET, "write failed: {e}");
        self.write_failed = true;
        while self.engine.state() != RunState::Idle && self.read_once() {}
        self.engine.handle_io_error(Instant::now(), e);
    }

    /// Takes every engine output: replies, events (bounded), logs.
    fn drain_engine(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Reply { id, result } => {
                    if self.pending.contains(&id) {
                        self.replies.insert(id, result);
                    }
                }
                Event::Qmp(e) => self.push_event(e),
                Event::EventsLost { count } => self.lose(count),
                Event::Traffic { direction, message } => {
                    let arrow = match direction {
                        Direction::Out => "->",
                        Direction::In => "<-",
                    };
                    log::trace!(target: TARGET, "{arrow} {message}");
                }
                Event::Diagnostic(d) => log::warn!(target: TARGET, "{d}"),
                Event::StateChanged { from, to } => {
                    log::debug!(target: TARGET, "connection {from} -> {to}");
                }
                Event::Disconnected(reason) => {
                    log::debug!(target: TARGET, "session ended: {reason}");
                    self.stream.shutdown();
                    self.ended = Some(reason);
                }
                other => log::debug!(target: TARGET, "{other:?}"),
            }
        }
    }

    fn push_event(&mut self, event: QmpEvent) {
        if self.events.len() >= self.max_events {
            return self.lose(1);
        }
        log::debug!(target: TARGET, "event {}", event.name);
        self.losing = false;
        self.events.push_back((self.next_seq, event));
        self.next_seq += 1;
    }

    fn lose(&mut self, count: u64) {
        if !self.losing {
            log::warn!(
                target: TARGET,
                "event buffer full ({} events): dropping new events until some are taken",
                self.max_events
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

/// `now + timeout`, or `None` (no deadline) when that overflows.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Decodes a typed event, as the `*typed*` waits do.
fn decode_event<E: TypedEvent>(event: &QmpEvent) -> Result<E, Error> {
    match event.decode::<E>() {
        Some(decoded) => Ok(decoded?),
        // Only events named `E::NAME` are waited for.
        None => Err(Error::Timeout),
    }
}
