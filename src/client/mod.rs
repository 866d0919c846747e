//! The client engine.
//!
//! [`Client`] is the public face: getters, inputs (`handle_*`), application calls and
//! outputs (`poll_*`). Behind it, one module per concern:
//!
//! * [`session`]: the runstate and the stage that gives a frame its meaning, each changed
//!   only there;
//! * [`table`]: one entry per command, from issue to resolution;
//! * [`inbound`]: what each frame from the peer means;
//! * [`agent`]: the guest agent's framing and resynchronisation;
//! * [`timers`]: every deadline, in one table;
//! * [`output`]: the events the application polls;
//! * and [`crate::wire`], every byte the client writes.

mod agent;
mod inbound;
mod output;
mod session;
mod table;
mod timers;
mod tracker;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{CallOptions, ClientConfig};
use crate::error::{CallError, CommandError, DisconnectReason};
use crate::framer::Framer;
use crate::id::CommandId;
use crate::message::Greeting;
use crate::status::{Job, VmStatus};
use crate::transmit::{Transmit, TxBuffer};
use crate::typed::{Command, Pending};
use crate::wire;
use crate::RunState;

use agent::Agent;
use output::Outputs;
use session::{Session, Stage};
use table::{Route, Table};
use timers::{Single, Timers};
use tracker::{Asks, Query, Trackers};

pub use output::{Diagnostic, Direction, Event};

/// How long the engine waits, after a write failed because the peer closed the connection,
/// for the peer's EOF (whose reason says more: a `quit` answered, say) before it ends the
/// session with the write error.
const WRITE_ERROR_GRACE: Duration = Duration::from_millis(100);

/// The sans-IO QMP client engine.
///
/// A plain state machine: the application feeds it bytes, EOF and time, and pulls out bytes
/// to write, events and timer deadlines. It performs no IO, reads no clock and never blocks.
///
/// # Methods
///
/// * **Inputs** (never fail; peer misbehaviour becomes an [`Event`]):
///   [`handle_input`](Self::handle_input), [`handle_eof`](Self::handle_eof),
///   [`handle_io_error`](Self::handle_io_error),
///   [`handle_write_error`](Self::handle_write_error), [`handle_timeout`](Self::handle_timeout)
///   (spurious calls are no-ops).
/// * **Application calls** (return [`CallError`] for local misuse and then change nothing):
///   [`connect`](Self::connect); the three issuing calls, each taking one [`CallOptions`]
///   (timeout, out of band, without an id, file descriptors): [`execute`](Self::execute)
///   (a name and arguments), [`call`](Self::call) (a typed command),
///   [`execute_raw`](Self::execute_raw) (a whole request); [`cancel`](Self::cancel),
///   [`resync`](Self::resync), [`close`](Self::close) (infallible and idempotent).
/// * **Outputs**, to drain after every input or call, in this order:
///   [`poll_transmit`](Self::poll_transmit) then [`advance_transmit`](Self::advance_transmit)
///   until it returns `None`; [`poll_event`](Self::poll_event) until `None`;
///   [`poll_timeout`](Self::poll_timeout) to arm the timer.
/// * **Getters**: [`state`](Self::state), [`greeting`](Self::greeting),
///   [`oob_enabled`](Self::oob_enabled), [`disconnect_reason`](Self::disconnect_reason),
///   [`is_syncing`](Self::is_syncing), [`in_flight`](Self::in_flight),
///   [`queued`](Self::queued), [`buffered_input`](Self::buffered_input),
///   [`pending_transmit`](Self::pending_transmit), [`config`](Self::config).
///
/// # Example
///
/// The engine against a scripted server, no socket involved:
///
/// ```
/// use std::time::Instant;
/// use qmp_proto::{CallOptions, Client, ClientConfig, Event, RunState};
///
/// let now = Instant::now();
/// let mut client = Client::new(ClientConfig::default());
/// client.connect(now)?;
/// let id = client.execute(now, "query-status", &(), CallOptions::new())?; // held until negotiated
///
/// let greeting = br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10},
///     "package": ""}, "capabilities": ["oob"]}}"#;
/// client.handle_input(now, greeting);
/// let t = client.poll_transmit().unwrap();
/// // The held command took id 1; negotiation gets the next one.
/// assert_eq!(t.data, br#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":2}"#);
/// let n = t.data.len();
/// client.advance_transmit(n);
///
/// client.handle_input(now, b"{\"return\": {}, \"id\": 2}\r\n");
/// assert_eq!(client.state(), RunState::Running);
/// let t = client.poll_transmit().unwrap();
/// assert_eq!(t.data, br#"{"execute":"query-status","id":1}"#);
/// let n = t.data.len();
/// client.advance_transmit(n);
///
/// client.handle_input(now, b"{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": 1}\r\n");
/// let mut status = None;
/// while let Some(event) = client.poll_event() {
///     if let Event::Reply { id: done, result } = event {
///         assert_eq!(done, id);
///         status = Some(result?);
///     }
/// }
/// assert_eq!(status.unwrap().get(), r#"{"status": "running", "running": true}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    framer: Framer,
    inner: Inner,
}

/// Everything but the framer, so that the framer's callback can borrow it.
#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    session: Session,
    table: Table,
    timers: Timers,
    tx: TxBuffer,
    out: Outputs,
    agent: Agent,
    trackers: Trackers,
    /// A write failed because the peer closed: the reason the session ends with unless the
    /// peer's EOF comes first.
    write_error: Option<DisconnectReason>,
}

impl Client {
    /// A client in [`RunState::Idle`]. Call [`connect`](Self::connect) once the transport is
    /// up (or being set up).
    pub fn new(config: ClientConfig) -> Self {
        Client {
            framer: Framer::new(config.max_message_size, config.max_depth),
            inner: Inner {
                session: Session::new(),
                table: Table::new(),
                timers: Timers::default(),
                tx: TxBuffer::default(),
                out: Outputs::new(config.max_buffered_events),
                agent: Agent::new(config.sync_seed),
                trackers: Trackers::new(
                    config.track_vm_status && !config.guest_agent,
                    config.track_jobs && !config.guest_agent,
                    config.max_tracked_jobs,
                ),
                write_error: None,
                config,
            },
        }
    }

    // ----- getters -----

    /// The connection runstate. `Running` means commands flow, in guest agent mode too.
    pub fn state(&self) -> RunState {
        self.inner.session.state()
    }

    /// The greeting of the current session, once received. A guest agent sends none.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.inner.session.greeting()
    }

    /// Whether out-of-band execution is enabled on the current session.
    pub fn oob_enabled(&self) -> bool {
        self.inner.session.oob()
    }

    /// Why the last session ended: set with [`Event::Disconnected`], kept until the next
    /// [`connect`](Self::connect). `None` before the first session ends.
    pub fn disconnect_reason(&self) -> Option<&DisconnectReason> {
        self.inner.session.reason()
    }

    /// Whether the engine waits for a guest agent to answer a resynchronisation (commands
    /// are held meanwhile).
    pub fn is_syncing(&self) -> bool {
        self.inner.session.is_syncing()
    }

    /// Commands sent and not yet answered or given up.
    pub fn in_flight(&self) -> usize {
        self.inner.table.in_flight()
    }

    /// Commands held locally: waiting for negotiation, a guest agent sync, or a free
    /// in-flight slot.
    pub fn queued(&self) -> usize {
        self.inner.table.queued()
    }

    /// Bytes waiting to be written (commands in flight not yet written, and their file
    /// descriptors' carriers). Commands beyond the in-flight cap wait in the local queue,
    /// not here.
    pub fn pending_transmit(&self) -> usize {
        self.inner.tx.pending()
    }

    /// Bytes of an unfinished message held in the receive buffer: never more than
    /// [`ClientConfig::max_message_size`].
    pub fn buffered_input(&self) -> usize {
        self.framer.buffered()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The VM's run status, when [tracked](ClientConfig::track_vm_status) and known: `None`
    /// until the first `query-status` is answered (or `RESUME` comes), and for a peer
    /// without `query-status`. Kept after the session ends, as last known. See
    /// [`status`](crate::status).
    pub fn vm_status(&self) -> Option<&VmStatus> {
        self.inner.trackers.vm()
    }

    /// The jobs, when [tracked](ClientConfig::track_jobs), in the order they appeared. Kept
    /// after the session ends, as last known. See [`status`](crate::status).
    pub fn jobs(&self) -> &[Job] {
        self.inner.trackers.jobs()
    }

    /// Whether a tracker's query (`query-status`, `query-jobs`) is in flight or due: once
    /// it is false again after [`refresh_status`](Self::refresh_status), what the trackers
    /// hold is as of the moment QEMU answered.
    pub fn is_refreshing_status(&self) -> bool {
        self.inner.trackers.refreshing()
    }

    /// The tracked job with this id.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs().iter().find(|j| j.id == id)
    }

    // ----- application calls -----

    /// Starts a session: `Idle → Connecting`, and arms the greeting timeout. Call it when the
    /// transport is connected (or accepted). Per-session state (buffers, greeting, OOB, the
    /// last disconnect reason) starts afresh, so a client can connect again after
    /// [`Event::Disconnected`].
    ///
    /// In [guest agent mode](ClientConfig::guest_agent) there is no greeting: the first
    /// resynchronisation is written at once, and the session becomes `Running` when the agent
    /// answers it; commands issued meanwhile are held.
    pub fn connect(&mut self, now: Instant) -> Result<(), CallError> {
        let inner = &mut self.inner;
        inner.session.start(&mut inner.out)?;
        self.framer.reset();
        if inner.config.guest_agent {
            inner.start_sync(now);
        } else {
            let deadline = inner
                .config
                .greeting_timeout
                .and_then(|t| now.checked_add(t));
            inner.timers.set(Single::Stage, deadline);
        }
        Ok(())
    }

    /// Issues a command: `{"execute": name, "arguments": args, "id": ...}`, or `exec-oob`
    /// with [`CallOptions::oob`].
    ///
    /// `args` must serialise to a JSON object, or to `null` (such as `&()`) for no
    /// arguments. An in-band command is written at once if the session is running and a slot
    /// is free (see [`ClientConfig::max_in_flight`]); otherwise it waits in the local queue.
    /// An out-of-band one is written at once, ahead of queued in-band commands. Allowed in
    /// `Connecting` (held until negotiation succeeds) and `Running`.
    pub fn execute<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        name: &str,
        args: &A,
        opts: CallOptions,
    ) -> Result<CommandId, CallError> {
        self.inner
            .issue(now, "execute", name, opts, |buf, oob, id| {
                wire::command(buf, oob, name, args, id)
            })
    }

    /// Issues a typed command: the typed form of [`execute`](Self::execute).
    /// `client.call(now, &QueryStatus {}, CallOptions::new())` sends `query-status`, and the
    /// [`Pending`] id it returns decodes the raw reply into the command's
    /// [`Returns`](Command::Returns) type ([`Pending::decode_result`]). See
    /// [`commands`](crate::commands) for ready types, or implement [`Command`]. Out of band,
    /// it fails with [`CallError::OobNotAllowed`] when the command's
    /// [`ALLOW_OOB`](Command::ALLOW_OOB) is false (QEMU would refuse it).
    pub fn call<C: Command>(
        &mut self,
        now: Instant,
        command: &C,
        opts: CallOptions,
    ) -> Result<Pending<C>, CallError> {
        if opts.oob && !C::ALLOW_OOB {
            return Err(CallError::OobNotAllowed(C::NAME));
        }
        self.inner
            .issue(now, "call", C::NAME, opts, |buf, oob, id| {
                wire::command(buf, oob, C::NAME, command, id)
            })
            .map(Pending::new)
    }

    /// Sends a whole request, which must be a JSON object.
    ///
    /// If it has an `"id"` member, that id (of any JSON type) is sent as it is and the reply
    /// is routed by it, allowing for QEMU's re-serialisation of numbers (`1.0` comes back as
    /// `1`) and its reordering of object members; it must not equal the id of another pending
    /// command ([`CallError::DuplicateId`]). Without an `"id"`, the engine adds its own, or
    /// sends none with [`CallOptions::without_id`].
    ///
    /// The request says whether it is out of band: one with `"exec-oob"` goes out of band
    /// when OOB is enabled, and in band otherwise (QEMU then answers it with an error, in
    /// order). With [`CallOptions::oob`] it must be an `exec-oob` request and OOB must be
    /// enabled.
    pub fn execute_raw(
        &mut self,
        now: Instant,
        request: Value,
        opts: CallOptions,
    ) -> Result<CommandId, CallError> {
        self.inner.issue_raw(now, request, opts)
    }

    /// Whether command `id` was resolved without its reply (it timed out or was cancelled)
    /// after it was sent, and its reply has not come yet: it will come as
    /// [`Event::LateReply`], unless the session ends first. A guest agent's answer to a later
    /// resynchronisation also ends the wait, with the late outcome
    /// [`CommandError::NoReply`] (or success, for a command that sends nothing on success).
    pub fn awaits_late_reply(&self, id: CommandId) -> bool {
        self.inner.table.awaits_late_reply(id.0)
    }

    /// Asks QEMU again for everything the trackers hold (`query-status`, `query-jobs`), to
    /// learn what changes without events, such as a job's progress. A query already in
    /// flight is followed by one more. Changes come as [`Event::VmStatusChanged`] and
    /// [`Event::JobChanged`]. A no-op for what is not tracked; fails with
    /// [`CallError::InvalidState`] unless running.
    pub fn refresh_status(&mut self, now: Instant) -> Result<(), CallError> {
        if self.state() != RunState::Running {
            return Err(CallError::InvalidState {
                operation: "refresh_status",
                state: self.state(),
            });
        }
        let asks = self.inner.trackers.refresh();
        self.inner.ask(now, asks);
        Ok(())
    }

    /// Cancels a pending command: it resolves at once with [`CommandError::Cancelled`]. A
    /// command still in the local queue is never sent; one already sent keeps its in-flight
    /// slot until QEMU answers, and that reply comes as a [`Diagnostic::LateReply`] and
    /// [`Event::LateReply`]. Returns `false` (and does nothing) if the command is not
    /// pending: already resolved, or unknown.
    pub fn cancel(&mut self, id: CommandId) -> bool {
        let inner = &mut self.inner;
        if inner.table.give_up(id.0, &mut inner.timers).is_none() {
            return false;
        }
        inner.out.reply(id.0, Err(CommandError::Cancelled));
        true
    }

    /// Guest agent mode: resynchronises with the agent now (a `0xFF` byte and
    /// `guest-sync-delimited` with a fresh id); commands issued until it answers are held.
    /// The engine already does this on connect and after a command times out; call it when
    /// the agent may have restarted in the guest. A no-op while a resynchronisation is under
    /// way. Fails with [`CallError::NotGuestAgent`] outside guest agent mode and with
    /// [`CallError::InvalidState`] unless running.
    pub fn resync(&mut self, now: Instant) -> Result<(), CallError> {
        if !self.inner.config.guest_agent {
            return Err(CallError::NotGuestAgent);
        }
        if self.state() != RunState::Running {
            return Err(CallError::InvalidState {
                operation: "resync",
                state: self.state(),
            });
        }
        self.inner.start_sync(now);
        Ok(())
    }

    /// Ends the session: every pending command resolves with
    /// [`CommandError::Interrupted`]`(`[`DisconnectReason::Closed`]`)`, unsent bytes are
    /// dropped, and the runstate goes `→ Disconnecting → Idle`, followed by
    /// [`Event::Disconnected`]. The application then closes the transport. A no-op when
    /// idle.
    pub fn close(&mut self) {
        self.inner.shutdown(DisconnectReason::Closed);
        self.framer.reset();
    }

    // ----- inputs -----

    /// Feeds bytes read from the transport. Ignored when idle.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.inner.session.is_live() {
            self.feed(now, data);
        }
    }

    /// Reports that the peer closed the connection. Pending commands resolve with
    /// [`CommandError::Interrupted`], except a `quit` in flight, which this EOF resolves as a
    /// success with an empty object (QEMU's reply to `quit` is best effort). Ignored when
    /// idle.
    pub fn handle_eof(&mut self, _now: Instant) {
        if !self.inner.session.is_live() {
            return;
        }
        let reason = match self.framer.at_eof() {
            Some(error) => error.into(),
            None => DisconnectReason::Eof {
                after_quit: self.inner.session.quit_sent(),
            },
        };
        self.inner.shutdown(reason);
        self.framer.reset();
    }

    /// Reports a transport error on reading. A connection reset or a broken pipe after a
    /// `quit` was sent (answered or not), or after QEMU announced its exit with a `SHUTDOWN`
    /// event, counts as EOF: QEMU may exit with some of the client's bytes unread, which
    /// resets the connection. Ignored when idle.
    pub fn handle_io_error(&mut self, now: Instant, error: &std::io::Error) {
        if !self.inner.session.is_live() {
            return;
        }
        if closed_by_peer(error) && self.inner.session.close_expected() {
            return self.handle_eof(now);
        }
        self.inner.shutdown(DisconnectReason::Transport {
            kind: error.kind(),
            message: error.to_string(),
        });
        self.framer.reset();
    }

    /// Reports that writing what [`poll_transmit`](Self::poll_transmit) gave failed. Nothing
    /// more is offered for writing.
    ///
    /// When the peer closed the connection (a broken pipe or a reset), what it sent before
    /// closing (the reply to `quit`, a `SHUTDOWN` event, the EOF itself) says more than the
    /// write error: keep reading, and the session ends with the EOF when it comes; only if it
    /// does not come within a short grace (through [`poll_timeout`](Self::poll_timeout)) does
    /// the session end with the write error. Any other write error ends the session at once.
    /// Ignored when idle.
    pub fn handle_write_error(&mut self, now: Instant, error: &std::io::Error) {
        if !self.inner.session.is_live() {
            return;
        }
        self.inner.tx.clear();
        if !closed_by_peer(error) {
            return self.handle_io_error(now, error);
        }
        let inner = &mut self.inner;
        if inner.write_error.is_none() {
            inner.write_error = Some(DisconnectReason::Transport {
                kind: error.kind(),
                message: error.to_string(),
            });
            inner
                .timers
                .set(Single::WriteError, now.checked_add(WRITE_ERROR_GRACE));
        }
    }

    /// Lets time pass: fires the timeouts and deadlines due at `now` (see
    /// [`poll_timeout`](Self::poll_timeout)). Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.inner.timers.take_due(Single::Garbage, now) {
            self.garbage_due();
        }
        if self.inner.timers.take_due(Single::WriteError, now) {
            if let Some(reason) = self.inner.write_error.take() {
                if self.inner.session.close_expected() {
                    self.handle_eof(now);
                } else {
                    self.inner.shutdown(reason);
                }
            }
        }
        self.inner.on_timeout(now);
        if !self.inner.session.is_live() {
            self.framer.reset();
        }
    }

    // ----- outputs -----

    /// The next bytes to write, if any. File descriptors in the result must go with the first
    /// byte of its data. Report what was written with
    /// [`advance_transmit`](Self::advance_transmit), or a failure with
    /// [`handle_write_error`](Self::handle_write_error).
    #[must_use]
    pub fn poll_transmit(&self) -> Option<Transmit<'_>> {
        if self.inner.write_error.is_some() {
            return None;
        }
        self.inner.tx.poll()
    }

    /// Marks `n` bytes of the last [`poll_transmit`](Self::poll_transmit) as written (more
    /// than were pending is clamped). A partial write is fine: poll again for the rest.
    pub fn advance_transmit(&mut self, n: usize) {
        self.inner.tx.advance(n);
    }

    /// The next event, in the order they occurred.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.inner.out.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if at all: the
    /// earliest of the greeting, negotiation or sync timeout, command deadlines, and the
    /// short graces for unexpected bytes and after a failed write.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.inner.timers.next()
    }
}

/// Whether an IO error means the peer closed the connection.
fn closed_by_peer(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    )
}

/// `{}`, the result of a command whose success is silence (or EOF, for `quit`).
fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!())
}

impl Inner {
    /// The deadline of a command issued at `now`.
    fn deadline(&self, now: Instant, opts: &CallOptions) -> Option<Instant> {
        opts.timeout
            .or(self.config.command_timeout)
            .and_then(|t| now.checked_add(t))
    }

    /// Whether an out-of-band call may go now.
    fn check_oob(&self) -> Result<(), CallError> {
        if self.session.oob_ready() {
            Ok(())
        } else {
            Err(CallError::OobNotNegotiated)
        }
    }

    /// Issues a command by name; `write` appends its bytes (given whether it goes out of
    /// band and its wire id, if it has one).
    fn issue(
        &mut self,
        now: Instant,
        operation: &'static str,
        name: &str,
        opts: CallOptions,
        write: impl FnOnce(&mut Vec<u8>, bool, Option<u64>) -> Result<(), CallError>,
    ) -> Result<CommandId, CallError> {
        self.session.check_live(operation)?;
        if opts.oob {
            self.check_oob()?;
        }
        let route = if opts.without_id {
            self.table.check_idless()?;
            Route::Idless
        } else {
            Route::Engine
        };
        let oob = opts.oob;
        let command = table::Command {
            route,
            oob,
            quit: name == "quit",
            silent: self.config.guest_agent && Agent::is_silent(name),
            deadline: self.deadline(now, &opts),
            query: None,
        };
        self.place(now, command, opts, |buf, id| write(buf, oob, id))
    }

    /// Issues the queries the trackers ask for. Not before commands flow: an event during
    /// negotiation asks nothing, since the session's first queries follow it.
    fn ask(&mut self, now: Instant, asks: Asks) {
        for (wanted, query) in [(asks.status, Query::Status), (asks.jobs, Query::Jobs)] {
            if !wanted || !self.session.commands_flow() {
                continue;
            }
            let command = table::Command {
                route: Route::Engine,
                oob: false,
                quit: false,
                silent: false,
                deadline: None,
                query: Some(query),
            };
            let name = query.command();
            let placed = self.place(now, command, CallOptions::new(), |buf, id| {
                wire::command(buf, false, name, &(), id)
            });
            if placed.is_ok() {
                self.trackers.sent(query);
            }
        }
    }

    fn issue_raw(
        &mut self,
        now: Instant,
        request: Value,
        opts: CallOptions,
    ) -> Result<CommandId, CallError> {
        self.session.check_live("execute_raw")?;
        let Value::Object(mut map) = request else {
            return Err(CallError::RawNotObject);
        };
        let name = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
        let quit = name("execute") == "quit" || name("exec-oob") == "quit";
        let silent = self.config.guest_agent && Agent::is_silent(name("execute"));
        let exec_oob = map.contains_key("exec-oob");
        if opts.oob {
            self.check_oob()?;
            if !exec_oob {
                return Err(CallError::RawOobNotExecOob);
            }
        }
        let oob = exec_oob && self.session.oob_ready();
        let route = match map.get("id") {
            Some(_) if opts.without_id => return Err(CallError::UnexpectedId),
            None if opts.without_id => {
                self.table.check_idless()?;
                Route::Idless
            }
            Some(wire) => {
                let reserved = match self.session.stage() {
                    Stage::Negotiating { id } => Some(id),
                    _ => None,
                };
                self.table.check_caller_id(wire, reserved)?;
                Route::Caller(wire.clone())
            }
            None => Route::Engine,
        };
        let command = table::Command {
            route,
            oob,
            quit,
            silent,
            deadline: self.deadline(now, &opts),
            query: None,
        };
        self.place(now, command, opts, |buf, id| {
            if let Some(id) = id {
                map.insert("id".into(), Value::from(id));
            }
            wire::raw(buf, &map);
            Ok(())
        })
    }

    /// Gives `command` an id and writes it to the send buffer if it may go now, or queues its
    /// bytes.
    fn place(
        &mut self,
        now: Instant,
        command: table::Command,
        opts: CallOptions,
        write: impl FnOnce(&mut Vec<u8>, Option<u64>) -> Result<(), CallError>,
    ) -> Result<CommandId, CallError> {
        let id = self.table.peek_id();
        let wire_id = matches!(command.route, Route::Engine).then_some(id);
        #[cfg(unix)]
        let fds = opts.fds;
        #[cfg(not(unix))]
        let fds = {
            let _ = opts;
        };
        let flowing = self.session.commands_flow();
        // After a failed write nothing more goes out: the command waits in the queue for the
        // end of the session, which the write error brings within its grace.
        if self.write_error.is_none()
            && self
                .table
                .can_send(command.oob, flowing, self.config.max_in_flight)
        {
            let at = self.tx.len();
            write(self.tx.buf_mut(), wire_id)?;
            let (quit, silent) = (command.quit, command.silent);
            self.table.insert(id, command, None, &mut self.timers);
            self.written(now, at, fds, quit, silent);
        } else {
            let mut bytes = Vec::new();
            write(&mut bytes, wire_id)?;
            self.table
                .insert(id, command, Some((bytes, fds)), &mut self.timers);
        }
        Ok(CommandId(id))
    }

    /// A command's bytes were appended to the send buffer at `at`.
    fn written(&mut self, now: Instant, at: usize, fds: table::Fds, quit: bool, silent: bool) {
        self.trace_out(at);
        #[cfg(unix)]
        self.tx.attach(at, fds);
        #[cfg(not(unix))]
        let _ = fds;
        if quit {
            self.session.quit_written();
        }
        if silent {
            // Its success is silence: the answer to a resynchronisation tells.
            self.start_sync(now);
        }
    }

    /// Sends queued commands while they flow and slots are free.
    fn pump(&mut self, now: Instant) {
        while self.session.commands_flow() && self.write_error.is_none() {
            let Some(next) = self.table.next_to_send(self.config.max_in_flight) else {
                break;
            };
            let at = self.tx.len();
            self.tx.buf_mut().extend_from_slice(&next.bytes);
            self.written(now, at, next.fds, next.quit, next.silent);
        }
    }

    /// Reports the message appended to the send buffer at `at`, when tracing.
    fn trace_out(&mut self, at: usize) {
        self.trace_sent(at, false);
    }

    /// Reports the message appended at `at`, after a `delimited` message's `0xFF` byte.
    fn trace_sent(&mut self, at: usize, delimited: bool) {
        if self.config.trace_messages {
            let sent = &self.tx.since(at)[usize::from(delimited)..];
            let message = String::from_utf8_lossy(sent).into_owned();
            self.out.push(Event::Traffic {
                direction: Direction::Out,
                message,
                delimited,
            });
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if !self.session.is_live() {
            return;
        }
        if self.timers.take_due(Single::Stage, now) {
            let config = &self.config;
            let reason = match self.session.stage() {
                Stage::Greeting => {
                    DisconnectReason::GreetingTimeout(config.greeting_timeout.unwrap_or_default())
                }
                Stage::Negotiating { .. } => DisconnectReason::NegotiationTimeout(
                    config.negotiation_timeout.unwrap_or_default(),
                ),
                Stage::Syncing { .. } => {
                    DisconnectReason::SyncTimeout(config.sync_timeout.unwrap_or_default())
                }
                Stage::Idle | Stage::Ready => return,
            };
            return self.shutdown(reason);
        }
        while let Some(id) = self.timers.pop_due_command(now) {
            self.expire(now, id);
        }
    }

    /// Resolves a command whose deadline passed. With a guest agent, a command that was sent
    /// is followed by a resynchronisation, so its late reply cannot be taken for another.
    fn expire(&mut self, now: Instant, id: u64) {
        let Some(was_sent) = self.table.give_up(id, &mut self.timers) else {
            return;
        };
        self.out.reply(id, Err(CommandError::Timeout));
        if was_sent && self.config.guest_agent {
            self.start_sync(now);
        }
    }

    /// Ends the session with `reason`: resolves everything, `→ Disconnecting → Idle`, then
    /// [`Event::Disconnected`]. A no-op unless connecting or running.
    fn shutdown(&mut self, reason: DisconnectReason) {
        if !self.session.is_live() {
            return;
        }
        self.session.ending(&mut self.out);
        let eof = matches!(reason, DisconnectReason::Eof { .. });
        self.trackers.session_ended();
        for pending in self.table.drain() {
            if pending.query.is_some() {
                continue;
            }
            let result = if eof && pending.sent_quit {
                Ok(empty_object())
            } else {
                Err(CommandError::Interrupted(reason.clone()))
            };
            self.out.reply(pending.id, result);
        }
        self.timers.clear();
        self.tx.clear();
        self.write_error = None;
        self.agent.skip_to_delimiter(false);
        self.session.ended(&mut self.out, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_input_is_bounded() {
        let mut c = Client::new(ClientConfig::default().max_message_size(100));
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        c.connect(now).unwrap();
        for _ in 0..99 {
            c.handle_input(now, b"[");
            assert!(c.buffered_input() <= 100);
        }
    }
}
