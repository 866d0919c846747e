//! The client engine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

#[cfg(unix)]
use std::os::fd::OwnedFd;

use crate::config::{ClientConfig, CommandOptions};
use crate::error::{CallError, CommandError, DisconnectReason, Excerpt, ProtocolError, QmpError};
use crate::framer::{Frame, Framer};
use crate::message::{Envelope, ErrorBody, Greeting, QmpEvent, Timestamp};
use crate::transmit::{Transmit, TxBuffer};
use crate::typed::{Command, Pending};
use crate::RunState;

/// Identifies one command issued through a [`Client`]. Opaque, `Copy`, unique for the
/// lifetime of the client (across reconnections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(u64);

impl CommandId {
    /// The number behind the id (for logs). For commands whose id the engine assigns, it is
    /// also the `"id"` on the wire.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The result of a command: its `return` value as raw JSON, or why there is none.
///
/// Decode the value with `serde_json::from_str::<T>(raw.get())`: it runs once, straight from
/// the bytes that arrived.
pub type CommandResult = Result<Box<RawValue>, CommandError>;

/// Something the engine reports, pulled with [`Client::poll_event`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The connection runstate changed. Emitted once per transition, right after the output
    /// of its cause.
    StateChanged {
        /// The previous state.
        from: RunState,
        /// The new state.
        to: RunState,
    },
    /// A command was resolved. Every command id returned by an `execute*` call is resolved
    /// exactly once.
    Reply {
        /// The command.
        id: CommandId,
        /// Its result.
        result: CommandResult,
    },
    /// An asynchronous QMP event from the server.
    Qmp(QmpEvent),
    /// The server sent something the engine dropped; the session goes on.
    Diagnostic(Diagnostic),
    /// This many QMP events or diagnostics were dropped here because more than
    /// [`ClientConfig::max_buffered_events`] were waiting to be polled.
    EventsLost {
        /// How many were dropped.
        count: u64,
    },
    /// A message sent or received, when
    /// [`ClientConfig::trace_messages`] is on. Received messages are reported before their
    /// effects; sent ones when they are written to the send buffer.
    Traffic {
        /// Which way the message went.
        direction: Direction,
        /// The message as it is on the wire (received ones may be invalid JSON).
        message: String,
    },
    /// The session ended. Emitted exactly once per session, after every pending command was
    /// resolved and after the transition to [`RunState::Idle`]: it is the last output of the
    /// session.
    Disconnected(DisconnectReason),
}

/// Which way a traced message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server.
    Out,
    /// From the server to the client.
    In,
}

/// Server output that the engine dropped without ending the session.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Diagnostic {
    /// A reply whose id matches no command in flight (the QMP specification asks clients to
    /// drop these). `id` is the raw JSON of its id, or `None` for a successful reply without
    /// an id.
    #[error("dropped a reply for an unknown id {}: {excerpt}", id.as_deref().unwrap_or("(none)"))]
    UnknownReply {
        /// The raw JSON of the reply's id, if it had one.
        id: Option<String>,
        /// The reply.
        excerpt: Excerpt,
    },
    /// The reply of a command that had already timed out or been cancelled.
    #[error("dropped the late reply of command {id} (timed out or cancelled): {excerpt}")]
    LateReply {
        /// The command, already resolved with [`CommandError::Timeout`] or
        /// [`CommandError::Cancelled`].
        id: CommandId,
        /// The reply.
        excerpt: Excerpt,
    },
    /// A greeting in the middle of a session.
    #[error("dropped an unexpected greeting: {0}")]
    UnexpectedGreeting(Excerpt),
    /// An event whose `event` member is not a string.
    #[error("dropped a malformed event: {0}")]
    MalformedEvent(Excerpt),
    /// A JSON object that is neither a reply nor an event.
    #[error("dropped a message that is neither a reply nor an event: {0}")]
    UnknownMessage(Excerpt),
    /// Guest agent mode: something the agent sent while the engine waited for the answer to
    /// a resynchronisation (output left over from an earlier client or command, bytes that
    /// are not JSON, half a message cut off by the agent's `0xFF` delimiter), dropped. The
    /// agent's id-less error for the `0xFF` byte itself is expected and dropped silently.
    #[error("discarded while resynchronising with the guest agent: {0}")]
    DiscardedBeforeSync(Excerpt),
}

/// The sans-IO QMP client engine.
///
/// A plain state machine: the application feeds it bytes, EOF and time, and pulls out bytes
/// to write, events and timer deadlines. It performs no IO, reads no clock and never blocks.
///
/// # Methods
///
/// * **Inputs** (never fail; peer misbehaviour becomes an [`Event`]):
///   [`handle_input`](Self::handle_input), [`handle_eof`](Self::handle_eof),
///   [`handle_io_error`](Self::handle_io_error), [`handle_timeout`](Self::handle_timeout)
///   (spurious calls are no-ops).
/// * **Application calls** (return [`CallError`] for local misuse and then change nothing):
///   [`connect`](Self::connect), [`execute`](Self::execute),
///   [`call`](Self::call) (its typed form), [`execute_oob`](Self::execute_oob),
///   [`call_oob`](Self::call_oob), [`execute_raw`](Self::execute_raw),
///   [`execute_raw_idless`](Self::execute_raw_idless), [`cancel`](Self::cancel),
///   [`close`](Self::close) (infallible and idempotent).
/// * **Outputs**, to drain after every input or call, in this order:
///   [`poll_transmit`](Self::poll_transmit) then [`advance_transmit`](Self::advance_transmit)
///   until it returns `None`; [`poll_event`](Self::poll_event) until `None`;
///   [`poll_timeout`](Self::poll_timeout) to arm the timer.
/// * **Getters**: [`state`](Self::state), [`greeting`](Self::greeting),
///   [`oob_enabled`](Self::oob_enabled), [`in_flight`](Self::in_flight),
///   [`queued`](Self::queued), [`buffered_input`](Self::buffered_input),
///   [`pending_transmit`](Self::pending_transmit), [`config`](Self::config).
///
/// # Example
///
/// The engine against a scripted server, no socket involved:
///
/// ```
/// use std::time::Instant;
/// use qmp_proto::{Client, ClientConfig, Event, RunState};
///
/// let now = Instant::now();
/// let mut client = Client::new(ClientConfig::default());
/// client.connect(now)?;
/// let id = client.execute(now, "query-status", &())?; // held until negotiated
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

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    state: RunState,
    phase: Phase,
    greeting: Option<Greeting>,
    oob: bool,
    /// The next command id; engine-assigned wire ids are the same numbers.
    next_id: u64,
    /// Commands written to the send buffer and not yet answered, by id.
    sent: BTreeMap<u64, Sent>,
    /// In-band commands waiting for a free slot (or for negotiation), in order.
    queue: VecDeque<Queued>,
    /// Caller-supplied wire ids of queued or sent commands.
    caller_ids: Vec<(Value, u64)>,
    /// The id-less raw command, queued or sent.
    idless: Option<u64>,
    /// In-band commands sent and not answered, timed-out ones included: QEMU still holds
    /// them in its queue.
    in_band: usize,
    deadlines: BTreeSet<(Instant, u64)>,
    tx: TxBuffer,
    events: VecDeque<Event>,
    /// QMP events and diagnostics in `events`.
    peer_outputs: usize,
    /// A `quit` was written in this session: EOF or a reset is then expected.
    quit_issued: bool,
    /// When unexpected bytes without a line end are reported anyway.
    garbage_deadline: Option<Instant>,
    /// The state of the generator of guest-sync ids.
    sync_rng: u64,
    /// Resynchronising after a message over the limits: input is skipped up to the next
    /// `0xFF` delimiter.
    skip_to_delimiter: bool,
}

/// Guest agent commands that send no reply when they succeed (`'success-response': false`
/// in the agent's schema): a resynchronisation after them tells success from silence.
const SILENT_ON_SUCCESS: &[&str] = &[
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
];

/// The byte a guest agent resynchronisation starts with (and the agent's reply to it): never
/// part of valid UTF-8, so it resets a JSON parser in any state.
const SYNC_DELIMITER: u8 = 0xFF;

/// How long unexpected bytes may wait for the end of their line before they are reported:
/// long enough to gather what arrived in one burst, so the report shows the whole line.
const GARBAGE_GRACE: Duration = Duration::from_millis(20);

#[derive(Debug)]
enum Phase {
    None,
    Greeting {
        deadline: Option<Instant>,
    },
    Negotiating {
        deadline: Option<Instant>,
    },
    /// Guest agent mode: waiting for `{"return": id}` to `guest-sync-delimited`; commands
    /// are held.
    Syncing {
        id: u64,
        deadline: Option<Instant>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The engine assigned the wire id (the command id).
    Engine,
    /// The caller supplied the wire id (in `caller_ids`).
    Caller,
    /// Sent without an id.
    Idless,
}

#[derive(Debug)]
struct Sent {
    route: Route,
    oob: bool,
    quit: bool,
    /// A guest agent command that sends no reply when it succeeds.
    silent: bool,
    negotiation: bool,
    /// Timed out: already resolved; a late reply is dropped.
    abandoned: bool,
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Queued {
    id: u64,
    bytes: Vec<u8>,
    route: Route,
    quit: bool,
    silent: bool,
    deadline: Option<Instant>,
    #[cfg(unix)]
    fds: Vec<OwnedFd>,
}

/// A command ready to go out.
struct Outgoing {
    id: u64,
    route: Route,
    oob: bool,
    quit: bool,
    silent: bool,
    deadline: Option<Instant>,
    #[cfg(unix)]
    fds: Vec<OwnedFd>,
}

impl Client {
    /// A client in [`RunState::Idle`]. Call [`connect`](Self::connect) once the transport is
    /// up (or being set up).
    pub fn new(config: ClientConfig) -> Self {
        let seed = config.sync_seed;
        Client {
            framer: Framer::new(config.max_message_size, config.max_depth),
            inner: Inner {
                config,
                state: RunState::Idle,
                phase: Phase::None,
                greeting: None,
                oob: false,
                next_id: 1,
                sent: BTreeMap::new(),
                queue: VecDeque::new(),
                caller_ids: Vec::new(),
                idless: None,
                in_band: 0,
                deadlines: BTreeSet::new(),
                tx: TxBuffer::default(),
                events: VecDeque::new(),
                peer_outputs: 0,
                quit_issued: false,
                garbage_deadline: None,
                sync_rng: seed,
                skip_to_delimiter: false,
            },
        }
    }

    // ----- getters -----

    /// The connection runstate.
    pub fn state(&self) -> RunState {
        self.inner.state
    }

    /// The greeting of the current session, once received.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.inner.greeting.as_ref()
    }

    /// Whether out-of-band execution is enabled on the current session.
    pub fn oob_enabled(&self) -> bool {
        self.inner.oob
    }

    /// Commands sent and not yet answered or timed out.
    pub fn in_flight(&self) -> usize {
        self.inner
            .sent
            .values()
            .filter(|s| !s.abandoned && !s.negotiation)
            .count()
    }

    /// Commands held locally: waiting for negotiation or for a free in-flight slot.
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }

    /// Bytes waiting to be written (commands in flight not yet written, and their file
    /// descriptors' carriers). Commands beyond the in-flight cap wait in the local queue,
    /// not here.
    pub fn pending_transmit(&self) -> usize {
        self.inner.tx.pending()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    // ----- application calls -----

    /// Starts a session: `Idle → Connecting`, and arms the greeting timeout. Call it when the
    /// transport is connected (or accepted). Per-session state (buffers, greeting, OOB) starts
    /// afresh, so a client can connect again after [`Event::Disconnected`].
    ///
    /// In [guest agent mode](ClientConfig::guest_agent) there is no greeting: the runstate
    /// goes on to `Running` at once and the first resynchronisation is written; commands
    /// issued meanwhile are held until the agent answers it.
    pub fn connect(&mut self, now: Instant) -> Result<(), CallError> {
        let inner = &mut self.inner;
        if inner.state != RunState::Idle {
            return Err(CallError::InvalidState {
                operation: "connect",
                state: inner.state,
            });
        }
        self.framer.reset();
        inner.greeting = None;
        inner.oob = false;
        inner.transition(RunState::Connecting);
        if inner.config.guest_agent {
            // No greeting, no negotiation: running at once, commands held until the first
            // resynchronisation is answered.
            inner.transition(RunState::Running);
            inner.start_sync(now);
            return Ok(());
        }
        inner.phase = Phase::Greeting {
            deadline: inner
                .config
                .greeting_timeout
                .and_then(|t| now.checked_add(t)),
        };
        Ok(())
    }

    /// Issues an in-band command: `{"execute": name, "arguments": args, "id": ...}`.
    ///
    /// `args` must serialise to a JSON object, or to `null` (such as `&()`) for no
    /// arguments. The command is written at once if the session is running and a slot is
    /// free (see [`ClientConfig::max_in_flight`]); otherwise it waits in the local queue.
    /// Allowed in `Connecting` (held until negotiation succeeds) and `Running`.
    pub fn execute<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        name: &str,
        args: &A,
    ) -> Result<CommandId, CallError> {
        self.execute_with(now, name, args, CommandOptions::default())
    }

    /// [`execute`](Self::execute) with per-command options (timeout, file descriptors).
    pub fn execute_with<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        name: &str,
        args: &A,
        opts: CommandOptions,
    ) -> Result<CommandId, CallError> {
        self.inner.check_state("execute")?;
        self.inner.issue(now, false, name, args, opts)
    }

    /// Issues an out-of-band command: `{"exec-oob": name, ...}`. It is written at once,
    /// ahead of queued in-band commands, and its reply may overtake theirs. Fails with
    /// [`CallError::OobNotNegotiated`] unless the session is running with OOB enabled.
    pub fn execute_oob<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        name: &str,
        args: &A,
    ) -> Result<CommandId, CallError> {
        self.execute_oob_with(now, name, args, CommandOptions::default())
    }

    /// [`execute_oob`](Self::execute_oob) with per-command options.
    pub fn execute_oob_with<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        name: &str,
        args: &A,
        opts: CommandOptions,
    ) -> Result<CommandId, CallError> {
        self.inner.check_state("execute_oob")?;
        if !(self.inner.state == RunState::Running && self.inner.oob) {
            return Err(CallError::OobNotNegotiated);
        }
        self.inner.issue(now, true, name, args, opts)
    }

    /// Issues a typed command: the typed form of [`execute`](Self::execute).
    /// `client.call(now, &QueryStatus {})` sends `query-status`, and the [`Pending`] id it
    /// returns decodes the raw reply into the command's
    /// [`Returns`](Command::Returns) type ([`Pending::decode_result`]). See
    /// [`commands`](crate::commands) for ready types, or implement [`Command`].
    pub fn call<C: Command>(&mut self, now: Instant, command: &C) -> Result<Pending<C>, CallError> {
        self.call_with(now, command, CommandOptions::default())
    }

    /// [`call`](Self::call) with per-command options (timeout, file descriptors).
    pub fn call_with<C: Command>(
        &mut self,
        now: Instant,
        command: &C,
        opts: CommandOptions,
    ) -> Result<Pending<C>, CallError> {
        self.execute_with(now, C::NAME, command, opts)
            .map(Pending::new)
    }

    /// Issues a typed command out of band: the typed form of
    /// [`execute_oob`](Self::execute_oob). Fails with [`CallError::OobNotAllowed`] when the
    /// command's [`ALLOW_OOB`](Command::ALLOW_OOB) is false (QEMU would refuse it), and with
    /// [`CallError::OobNotNegotiated`] unless the session is running with OOB enabled.
    pub fn call_oob<C: Command>(
        &mut self,
        now: Instant,
        command: &C,
    ) -> Result<Pending<C>, CallError> {
        self.call_oob_with(now, command, CommandOptions::default())
    }

    /// [`call_oob`](Self::call_oob) with per-command options.
    pub fn call_oob_with<C: Command>(
        &mut self,
        now: Instant,
        command: &C,
        opts: CommandOptions,
    ) -> Result<Pending<C>, CallError> {
        if !C::ALLOW_OOB {
            return Err(CallError::OobNotAllowed(C::NAME));
        }
        self.execute_oob_with(now, C::NAME, command, opts)
            .map(Pending::new)
    }

    /// Sends a raw message, which must be a JSON object.
    ///
    /// If it has an `"id"` member, that id (of any JSON type) is sent as it is and the reply
    /// is routed by it, allowing for QEMU's re-serialisation of numbers (`1.0` comes back as
    /// `1`) and its reordering of object members; it must not equal the id of another pending
    /// command. Without an `"id"`, the engine adds its own. A message with `"exec-oob"` is
    /// treated as out-of-band when OOB is enabled, as in-band otherwise (QEMU then answers it
    /// with an error, in order).
    pub fn execute_raw(
        &mut self,
        now: Instant,
        message: Value,
        opts: CommandOptions,
    ) -> Result<CommandId, CallError> {
        self.inner.check_state("execute_raw")?;
        self.inner.issue_raw(now, message, opts, false)
    }

    /// Sends a raw message (a JSON object without an `"id"`) as it is. Its reply has no id
    /// either: the next id-less reply resolves it, and so does an id-less error, which QEMU
    /// sends when it cannot parse its input. Only one id-less command may be pending at a
    /// time ([`CallError::IdlessPending`]).
    pub fn execute_raw_idless(
        &mut self,
        now: Instant,
        message: Value,
        opts: CommandOptions,
    ) -> Result<CommandId, CallError> {
        self.inner.check_state("execute_raw_idless")?;
        self.inner.issue_raw(now, message, opts, true)
    }

    /// Cancels a pending command: it resolves at once with [`CommandError::Cancelled`]. A
    /// command still in the local queue is never sent; one already sent keeps its in-flight
    /// slot until QEMU answers, and that reply is dropped as a
    /// [`Diagnostic::LateReply`]. Returns `false` (and does nothing) if the command is not
    /// pending: already resolved, or unknown.
    pub fn cancel(&mut self, id: CommandId) -> bool {
        self.inner.give_up(id.0, CommandError::Cancelled)
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
        if self.inner.state != RunState::Running {
            return Err(CallError::InvalidState {
                operation: "resync",
                state: self.inner.state,
            });
        }
        self.inner.start_sync(now);
        Ok(())
    }

    /// Whether the engine waits for a guest agent to answer a resynchronisation (commands
    /// are held meanwhile).
    pub fn is_syncing(&self) -> bool {
        matches!(self.inner.phase, Phase::Syncing { .. })
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
        if !self.inner.is_live() {
            return;
        }
        let mut data = data;
        loop {
            // While a guest agent resynchronises, its 0xFF delimiter cuts the input: what
            // comes before it is discarded unless it is a whole message.
            let delimiter = if self.inner.syncing() {
                data.iter().position(|&b| b == SYNC_DELIMITER)
            } else {
                None
            };
            let chunk = delimiter.map_or(data, |at| &data[..at]);
            let result = if self.inner.skip_to_delimiter {
                Ok(())
            } else {
                let inner = &mut self.inner;
                self.framer.feed(chunk, |frame| inner.on_frame(now, frame))
            };
            if let Err(e) = result {
                if self.inner.syncing() {
                    // A message over the limits: nothing before the next delimiter can be
                    // framed reliably, so all of it is skipped.
                    self.inner.discard(match e {
                        ProtocolError::MessageTooLarge { excerpt, .. }
                        | ProtocolError::TooDeep { excerpt, .. } => excerpt,
                        other => Excerpt::new(other.to_string().as_bytes()),
                    });
                    self.inner.skip_to_delimiter = true;
                } else {
                    self.inner.shutdown(e.into());
                }
            }
            if !self.inner.is_live() {
                self.framer.reset();
                break;
            }
            let Some(at) = delimiter else { break };
            if self.inner.syncing() {
                if !self.framer.partial().is_empty() {
                    let excerpt = Excerpt::new(self.framer.partial());
                    self.inner.discard(excerpt);
                }
                self.framer.reset();
                self.inner.skip_to_delimiter = false;
                data = &data[at + 1..];
            } else {
                // Resynchronised before this delimiter: it is no longer expected.
                data = &data[at..];
            }
        }
        // Unexpected bytes wait for their line end, but not for long.
        self.inner.garbage_deadline = match self.inner.garbage_deadline {
            _ if !self.framer.in_garbage() => None,
            Some(d) => Some(d),
            None => now.checked_add(GARBAGE_GRACE),
        };
    }

    /// Reports that the peer closed the connection. Pending commands resolve with
    /// [`CommandError::Interrupted`], except a `quit` in flight, which this EOF resolves as a
    /// success with an empty object (QEMU's reply to `quit` is best effort). Ignored when
    /// idle.
    pub fn handle_eof(&mut self, _now: Instant) {
        if !self.inner.is_live() {
            return;
        }
        let reason = match self.framer.at_eof() {
            Some(error) => error.into(),
            None => DisconnectReason::Eof {
                after_quit: self.inner.quit_sent(),
            },
        };
        self.inner.shutdown(reason);
        self.framer.reset();
    }

    /// Reports a transport error. A connection reset or a broken pipe after a `quit` was
    /// sent (answered or not) counts as EOF: QEMU may exit with some of the client's bytes
    /// unread, which resets the connection, or before the client's next write. Ignored when
    /// idle.
    pub fn handle_io_error(&mut self, now: Instant, error: &std::io::Error) {
        if !self.inner.is_live() {
            return;
        }
        let closed_by_peer = matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        );
        if closed_by_peer && self.inner.quit_sent() {
            return self.handle_eof(now);
        }
        self.inner.shutdown(DisconnectReason::Transport {
            kind: error.kind(),
            message: error.to_string(),
        });
        self.framer.reset();
    }

    /// Lets time pass: fires the greeting and negotiation timeouts and command deadlines due
    /// at `now`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.inner.garbage_deadline.is_some_and(|d| d <= now) {
            self.inner.garbage_deadline = None;
            if self.inner.syncing() && self.framer.in_garbage() {
                let excerpt = Excerpt::new(self.framer.partial());
                self.inner.discard(excerpt);
                self.framer.reset();
            } else if let Some(error) = self.framer.at_eof() {
                self.inner.shutdown(error.into());
            }
        }
        self.inner.on_timeout(now);
        if !self.inner.is_live() {
            self.framer.reset();
        }
    }

    // ----- outputs -----

    /// The next bytes to write, if any. File descriptors in the result must go with the first
    /// byte of its data. Report what was written with
    /// [`advance_transmit`](Self::advance_transmit).
    #[must_use]
    pub fn poll_transmit(&self) -> Option<Transmit<'_>> {
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
        let event = self.inner.events.pop_front()?;
        if matches!(
            event,
            Event::Qmp(_)
                | Event::Diagnostic(_)
                | Event::Traffic {
                    direction: Direction::In,
                    ..
                }
        ) {
            self.inner.peer_outputs -= 1;
        }
        Some(event)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if at all.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.inner.phase {
            Phase::None => None,
            Phase::Greeting { deadline }
            | Phase::Negotiating { deadline }
            | Phase::Syncing { deadline, .. } => deadline,
        };
        let command = self.inner.deadlines.first().map(|(d, _)| *d);
        [phase, command, self.inner.garbage_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Bytes of an unfinished message held in the receive buffer: never more than
    /// [`ClientConfig::max_message_size`].
    pub fn buffered_input(&self) -> usize {
        self.framer.buffered()
    }
}

fn serialize_error(e: serde_json::Error) -> CallError {
    CallError::Serialize(e.to_string())
}

fn json_kind(bytes: &[u8]) -> &'static str {
    match bytes.first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// Writes `{"execute"|"exec-oob": name[, "arguments": args], "id": id}` to `out`; on error
/// `out` is left as it was.
fn write_command<A: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    oob: bool,
    name: &str,
    args: &A,
    id: u64,
) -> Result<(), CallError> {
    let start = out.len();
    let result = (|| {
        out.extend_from_slice(if oob {
            b"{\"exec-oob\":"
        } else {
            b"{\"execute\":"
        });
        serde_json::to_writer(&mut *out, name).map_err(serialize_error)?;
        let mark = out.len();
        out.extend_from_slice(b",\"arguments\":");
        let at = out.len();
        serde_json::to_writer(&mut *out, args).map_err(serialize_error)?;
        if out[at..] == *b"null" {
            out.truncate(mark);
        } else if out.get(at) != Some(&b'{') {
            return Err(CallError::ArgumentsNotObject(json_kind(&out[at..]).into()));
        }
        write!(out, ",\"id\":{id}}}").map_err(|e| CallError::Serialize(e.to_string()))
    })();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// JSON equality as QEMU's echo preserves it: numbers by value (`1.0` equals `1`), objects
/// regardless of member order.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The engine id a caller's id would clash with, if it is a non-negative integer.
fn as_engine_id(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!())
}

impl Inner {
    fn is_live(&self) -> bool {
        matches!(self.state, RunState::Connecting | RunState::Running)
    }

    fn syncing(&self) -> bool {
        matches!(self.phase, Phase::Syncing { .. })
    }

    /// Reports something dropped while resynchronising with a guest agent.
    fn discard(&mut self, excerpt: Excerpt) {
        self.push_peer(Event::Diagnostic(Diagnostic::DiscardedBeforeSync(excerpt)));
    }

    /// The next guest-sync id: splitmix64 over the seeded state, cut to 1..2^53 so that any
    /// JSON implementation holds it exactly.
    fn next_sync_id(&mut self) -> u64 {
        self.sync_rng = self.sync_rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.sync_rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11).max(1)
    }

    /// Guest agent mode: writes a `0xFF` byte and `guest-sync-delimited` with a fresh id and
    /// holds further commands until the agent answers it. A no-op while one is under way:
    /// that one was written after every command sent so far, so it covers them too.
    fn start_sync(&mut self, now: Instant) {
        if self.syncing() || !self.is_live() {
            return;
        }
        let id = self.next_sync_id();
        let at = self.tx.len();
        let buf = self.tx.buf_mut();
        buf.push(SYNC_DELIMITER);
        // Writing to a Vec cannot fail.
        let _ = write!(
            buf,
            "{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}"
        );
        self.trace_out(at);
        self.phase = Phase::Syncing {
            id,
            deadline: self.config.sync_timeout.and_then(|t| now.checked_add(t)),
        };
    }

    /// The guest agent answered the resynchronisation. Being in order, it answered every
    /// command sent before it first: those still unanswered never will be. Commands that
    /// send nothing on success succeeded; the others resolve with
    /// [`CommandError::NoReply`]; timed-out ones free their slots. Then held commands go.
    fn synced(&mut self, now: Instant) {
        self.phase = Phase::None;
        self.skip_to_delimiter = false;
        let unanswered = std::mem::take(&mut self.sent);
        for (id, sent) in unanswered {
            if sent.abandoned || sent.negotiation {
                continue;
            }
            let result = if sent.silent {
                Ok(empty_object())
            } else {
                Err(CommandError::NoReply)
            };
            self.events.push_back(Event::Reply {
                id: CommandId(id),
                result,
            });
            if let Some(d) = sent.deadline {
                self.deadlines.remove(&(d, id));
            }
        }
        self.caller_ids
            .retain(|(_, cid)| self.queue.iter().any(|q| q.id == *cid));
        if self
            .idless
            .is_some_and(|id| !self.queue.iter().any(|q| q.id == id))
        {
            self.idless = None;
        }
        self.in_band = 0;
        self.pump(now);
    }

    /// The one place where the runstate changes.
    fn transition(&mut self, to: RunState) {
        let from = self.state;
        debug_assert!(from.can_move_to(to), "bad transition {from} -> {to}");
        self.state = to;
        self.events.push_back(Event::StateChanged { from, to });
    }

    fn check_state(&self, operation: &'static str) -> Result<(), CallError> {
        if self.is_live() {
            Ok(())
        } else {
            Err(CallError::InvalidState {
                operation,
                state: self.state,
            })
        }
    }

    /// Queues a server-driven output, within the bound.
    fn push_peer(&mut self, event: Event) {
        if self.peer_outputs >= self.config.max_buffered_events {
            if let Some(Event::EventsLost { count }) = self.events.back_mut() {
                *count += 1;
            } else {
                self.events.push_back(Event::EventsLost { count: 1 });
            }
            return;
        }
        self.peer_outputs += 1;
        self.events.push_back(event);
    }

    /// The next id that no pending caller-supplied id equals; not consumed.
    fn peek_id(&mut self) -> u64 {
        while !self.caller_ids.is_empty() && {
            let v = Value::from(self.next_id);
            self.caller_ids.iter().any(|(c, _)| json_eq(c, &v))
        } {
            self.next_id += 1;
        }
        self.next_id
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.peek_id();
        self.next_id += 1;
        id
    }

    fn deadline(&self, now: Instant, opts: &CommandOptions) -> Option<Instant> {
        opts.timeout
            .or(self.config.command_timeout)
            .and_then(|t| now.checked_add(t))
    }

    fn slot_free(&self) -> bool {
        self.queue.is_empty() && self.slot_free_for_queue()
    }

    fn issue<A: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        oob: bool,
        name: &str,
        args: &A,
        opts: CommandOptions,
    ) -> Result<CommandId, CallError> {
        let id = self.peek_id();
        let out = Outgoing {
            id,
            route: Route::Engine,
            oob,
            quit: name == "quit",
            silent: self.config.guest_agent && SILENT_ON_SUCCESS.contains(&name),
            deadline: self.deadline(now, &opts),
            #[cfg(unix)]
            fds: opts.fds,
        };
        if oob || self.slot_free() {
            let at = self.tx.len();
            write_command(self.tx.buf_mut(), oob, name, args, id)?;
            self.next_id += 1;
            self.mark_sent(now, at, out);
        } else {
            let mut bytes = Vec::new();
            write_command(&mut bytes, oob, name, args, id)?;
            self.next_id += 1;
            self.enqueue(bytes, out);
        }
        Ok(CommandId(id))
    }

    fn issue_raw(
        &mut self,
        now: Instant,
        message: Value,
        opts: CommandOptions,
        idless: bool,
    ) -> Result<CommandId, CallError> {
        let Value::Object(mut map) = message else {
            return Err(CallError::RawNotObject);
        };
        let name = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
        let quit = name("execute") == "quit" || name("exec-oob") == "quit";
        let silent = self.config.guest_agent && SILENT_ON_SUCCESS.contains(&name("execute"));
        let oob = map.contains_key("exec-oob") && self.oob && self.state == RunState::Running;
        let route = if idless {
            if map.contains_key("id") {
                return Err(CallError::UnexpectedId);
            }
            if self.idless.is_some() {
                return Err(CallError::IdlessPending);
            }
            Route::Idless
        } else if let Some(wire) = map.get("id") {
            let clash = self.caller_ids.iter().any(|(c, _)| json_eq(c, wire))
                || as_engine_id(wire).is_some_and(|n| {
                    self.sent.get(&n).is_some_and(|s| s.route == Route::Engine)
                        || self
                            .queue
                            .iter()
                            .any(|q| q.id == n && q.route == Route::Engine)
                });
            if clash {
                return Err(CallError::DuplicateId(wire.to_string()));
            }
            Route::Caller
        } else {
            Route::Engine
        };
        let id = self.alloc_id();
        match route {
            Route::Engine => {
                map.insert("id".into(), Value::from(id));
            }
            Route::Caller => {
                let wire = map.get("id").cloned().unwrap_or(Value::Null);
                self.caller_ids.push((wire, id));
            }
            Route::Idless => self.idless = Some(id),
        }
        let out = Outgoing {
            id,
            route,
            oob,
            quit,
            silent,
            deadline: self.deadline(now, &opts),
            #[cfg(unix)]
            fds: opts.fds,
        };
        // Serialising a `Value` map cannot fail.
        let bytes = serde_json::to_vec(&map).unwrap_or_default();
        if oob || self.slot_free() {
            let at = self.tx.len();
            self.tx.buf_mut().extend_from_slice(&bytes);
            self.mark_sent(now, at, out);
        } else {
            self.enqueue(bytes, out);
        }
        Ok(CommandId(id))
    }

    /// Reports the message appended to the send buffer at `at`, when tracing.
    fn trace_out(&mut self, at: usize) {
        if self.config.trace_messages {
            let message = String::from_utf8_lossy(self.tx.since(at)).into_owned();
            self.events.push_back(Event::Traffic {
                direction: Direction::Out,
                message,
            });
        }
    }

    /// Records a command whose bytes were appended to the send buffer at `at`.
    fn mark_sent(&mut self, now: Instant, at: usize, out: Outgoing) {
        self.trace_out(at);
        #[cfg(unix)]
        self.tx.attach(at, out.fds);
        #[cfg(not(unix))]
        let _ = at;
        if let Some(d) = out.deadline {
            self.deadlines.insert((d, out.id));
        }
        if !out.oob {
            self.in_band += 1;
        }
        self.quit_issued |= out.quit;
        self.sent.insert(
            out.id,
            Sent {
                route: out.route,
                oob: out.oob,
                quit: out.quit,
                silent: out.silent,
                negotiation: false,
                abandoned: false,
                deadline: out.deadline,
            },
        );
        if out.silent {
            // Its success is silence: the answer to a resynchronisation tells.
            self.start_sync(now);
        }
    }

    fn enqueue(&mut self, bytes: Vec<u8>, out: Outgoing) {
        if let Some(d) = out.deadline {
            self.deadlines.insert((d, out.id));
        }
        self.queue.push_back(Queued {
            id: out.id,
            bytes,
            route: out.route,
            quit: out.quit,
            silent: out.silent,
            deadline: out.deadline,
            #[cfg(unix)]
            fds: out.fds,
        });
    }

    /// Sends queued commands while slots are free (and no resynchronisation holds them).
    fn pump(&mut self, now: Instant) {
        while self.slot_free_for_queue() {
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            let at = self.tx.len();
            self.tx.buf_mut().extend_from_slice(&q.bytes);
            let out = Outgoing {
                id: q.id,
                route: q.route,
                oob: false,
                quit: q.quit,
                silent: q.silent,
                deadline: q.deadline,
                #[cfg(unix)]
                fds: q.fds,
            };
            self.mark_sent(now, at, out);
        }
    }

    /// Whether the head of the queue may be sent.
    fn slot_free_for_queue(&self) -> bool {
        self.state == RunState::Running
            && matches!(self.phase, Phase::None)
            && self.in_band < self.config.max_in_flight.max(1)
    }

    fn quit_sent(&self) -> bool {
        self.quit_issued
    }

    fn fatal(&mut self, error: ProtocolError) -> ControlFlow<()> {
        self.shutdown(error.into());
        ControlFlow::Break(())
    }

    fn on_frame(&mut self, now: Instant, frame: Frame<'_>) -> ControlFlow<()> {
        if !self.is_live() {
            return ControlFlow::Break(());
        }
        let frame = match frame {
            Frame::Message(message) => message,
            Frame::Garbage(line) if self.syncing() => {
                self.discard(Excerpt::new(line));
                return ControlFlow::Continue(());
            }
            Frame::Garbage(line) => {
                return self.fatal(ProtocolError::UnexpectedData(Excerpt::new(line)))
            }
        };
        if self.config.trace_messages {
            self.push_peer(Event::Traffic {
                direction: Direction::In,
                message: String::from_utf8_lossy(frame).into_owned(),
            });
        }
        let parsed = match std::str::from_utf8(frame) {
            Err(_) => Err(ProtocolError::InvalidUtf8(Excerpt::new(frame))),
            Ok(text) if !text.starts_with('{') => {
                Err(ProtocolError::NotAnObject(Excerpt::new(frame)))
            }
            Ok(text) => {
                serde_json::from_str::<Envelope<'_>>(text).map_err(|e| ProtocolError::InvalidJson {
                    error: e.to_string(),
                    excerpt: Excerpt::new(frame),
                })
            }
        };
        let env = match parsed {
            Ok(env) => env,
            Err(_) if self.syncing() => {
                self.discard(Excerpt::new(frame));
                return ControlFlow::Continue(());
            }
            Err(e) => return self.fatal(e),
        };
        if let Phase::Syncing { id, .. } = self.phase {
            self.on_sync_message(now, id, &env, frame);
        } else if matches!(self.phase, Phase::Greeting { .. }) {
            self.on_greeting(now, &env, frame);
        } else if env.qmp.is_some() {
            self.push_peer(Event::Diagnostic(Diagnostic::UnexpectedGreeting(
                Excerpt::new(frame),
            )));
        } else if env.ret.is_some()
            || env.error.is_some()
            || (env.id.is_some() && env.event.is_none())
        {
            self.on_reply(now, &env, frame);
        } else if let Some(name) = env.event {
            self.on_event(name, &env, frame);
        } else {
            self.push_peer(Event::Diagnostic(Diagnostic::UnknownMessage(Excerpt::new(
                frame,
            ))));
        }
        if self.is_live() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    fn on_greeting(&mut self, now: Instant, env: &Envelope<'_>, frame: &[u8]) {
        let parsed = match env.qmp {
            None => Err("expected the greeting {\"QMP\": ...} first".to_owned()),
            Some(body) => Greeting::from_body(body),
        };
        let greeting = match parsed {
            Ok(g) => g,
            Err(reason) => {
                self.shutdown(
                    ProtocolError::InvalidGreeting {
                        reason,
                        excerpt: Excerpt::new(frame),
                    }
                    .into(),
                );
                return;
            }
        };
        self.oob = self.config.oob && greeting.has_capability("oob");
        self.greeting = Some(greeting);
        let id = self.alloc_id();
        let at = self.tx.len();
        let buf = self.tx.buf_mut();
        buf.extend_from_slice(b"{\"execute\":\"qmp_capabilities\",");
        if self.oob {
            buf.extend_from_slice(b"\"arguments\":{\"enable\":[\"oob\"]},");
        }
        // Writing to a Vec cannot fail.
        let _ = write!(buf, "\"id\":{id}}}");
        self.trace_out(at);
        self.sent.insert(
            id,
            Sent {
                route: Route::Engine,
                oob: false,
                quit: false,
                silent: false,
                negotiation: true,
                abandoned: false,
                deadline: None,
            },
        );
        self.phase = Phase::Negotiating {
            deadline: self
                .config
                .negotiation_timeout
                .and_then(|t| now.checked_add(t)),
        };
    }

    /// Finds the command a reply's id designates.
    fn route(&self, id: &RawValue) -> Option<u64> {
        if let Ok(n) = id.get().parse::<u64>() {
            if self.sent.get(&n).is_some_and(|s| s.route == Route::Engine) {
                return Some(n);
            }
        }
        if self.caller_ids.is_empty() {
            return None;
        }
        let v: Value = serde_json::from_str(id.get()).ok()?;
        self.caller_ids
            .iter()
            .find(|(c, cid)| json_eq(c, &v) && self.sent.contains_key(cid))
            .map(|(_, cid)| *cid)
    }

    /// Guest agent mode, while resynchronising: the matching `{"return": id}` ends it;
    /// replies to commands in flight are delivered; the id-less error that answers the
    /// `0xFF` byte is dropped; anything else is discarded with a diagnostic.
    fn on_sync_message(&mut self, now: Instant, sync_id: u64, env: &Envelope<'_>, frame: &[u8]) {
        if let (Some(ret), None) = (env.ret, env.error) {
            if ret.get().trim().parse::<u64>() == Ok(sync_id) {
                return self.synced(now);
            }
        }
        let routed = env.id.and_then(|id| self.route(id)).is_some();
        if routed {
            self.on_reply(now, env, frame);
        } else if !(env.id.is_none() && env.error.is_some()) {
            self.discard(Excerpt::new(frame));
        }
    }

    fn on_reply(&mut self, now: Instant, env: &Envelope<'_>, frame: &[u8]) {
        let target = match env.id {
            Some(id) => self.route(id),
            None => self.idless.filter(|id| self.sent.contains_key(id)),
        };
        // Decoded only for a reply that is delivered: unknown and late replies are dropped
        // without copying their payload.
        let decode = || match (env.ret, env.error) {
            (Some(ret), None) => Ok(ret.to_owned()),
            (None, Some(error)) => match serde_json::from_str::<ErrorBody>(error.get()) {
                Ok(body) => Err(CommandError::Qmp(QmpError {
                    class: body.class,
                    desc: body.desc,
                })),
                Err(_) => Err(CommandError::MalformedReply(Excerpt::new(frame))),
            },
            _ => Err(CommandError::MalformedReply(Excerpt::new(frame))),
        };
        let Some(target) = target else {
            if env.id.is_none() && env.error.is_some() {
                // QEMU could not parse something it was sent.
                let error = match decode() {
                    Err(CommandError::Qmp(e)) => e,
                    _ => QmpError {
                        class: String::new(),
                        desc: Excerpt::new(frame).to_string(),
                    },
                };
                self.shutdown(ProtocolError::IdlessError(error).into());
                return;
            }
            self.push_peer(Event::Diagnostic(Diagnostic::UnknownReply {
                id: env.id.map(|id| id.get().to_owned()),
                excerpt: Excerpt::new(frame),
            }));
            return;
        };
        let Some(sent) = self.sent.remove(&target) else {
            return;
        };
        match sent.route {
            Route::Engine => {}
            Route::Caller => self.caller_ids.retain(|(_, cid)| *cid != target),
            Route::Idless => self.idless = None,
        }
        if !sent.oob && !sent.negotiation {
            self.in_band -= 1;
        }
        if let Some(d) = sent.deadline {
            self.deadlines.remove(&(d, target));
        }
        if sent.negotiation {
            self.on_negotiated(decode(), frame);
        } else if sent.abandoned {
            self.push_peer(Event::Diagnostic(Diagnostic::LateReply {
                id: CommandId(target),
                excerpt: Excerpt::new(frame),
            }));
        } else {
            self.events.push_back(Event::Reply {
                id: CommandId(target),
                result: decode(),
            });
        }
        self.pump(now);
    }

    fn on_negotiated(&mut self, result: CommandResult, frame: &[u8]) {
        match result {
            Ok(_) => {
                self.phase = Phase::None;
                self.transition(RunState::Running);
            }
            Err(CommandError::Qmp(e)) => self.shutdown(DisconnectReason::NegotiationFailed(e)),
            Err(_) => self.shutdown(
                ProtocolError::InvalidJson {
                    error: "malformed answer to qmp_capabilities".into(),
                    excerpt: Excerpt::new(frame),
                }
                .into(),
            ),
        }
    }

    fn on_event(&mut self, name: &RawValue, env: &Envelope<'_>, frame: &[u8]) {
        let Ok(name) = serde_json::from_str::<String>(name.get()) else {
            self.push_peer(Event::Diagnostic(Diagnostic::MalformedEvent(Excerpt::new(
                frame,
            ))));
            return;
        };
        let event = QmpEvent {
            name,
            data: env.data.map(ToOwned::to_owned),
            timestamp: env
                .timestamp
                .and_then(|t| serde_json::from_str::<Timestamp>(t.get()).ok()),
        };
        self.push_peer(Event::Qmp(event));
    }

    fn on_timeout(&mut self, now: Instant) {
        if !self.is_live() {
            return;
        }
        match self.phase {
            Phase::Greeting { deadline: Some(d) } if now >= d => {
                let t = self.config.greeting_timeout.unwrap_or(Duration::ZERO);
                return self.shutdown(DisconnectReason::GreetingTimeout(t));
            }
            Phase::Negotiating { deadline: Some(d) } if now >= d => {
                let t = self.config.negotiation_timeout.unwrap_or(Duration::ZERO);
                return self.shutdown(DisconnectReason::NegotiationTimeout(t));
            }
            Phase::Syncing {
                deadline: Some(d), ..
            } if now >= d => {
                let t = self.config.sync_timeout.unwrap_or(Duration::ZERO);
                return self.shutdown(DisconnectReason::SyncTimeout(t));
            }
            _ => {}
        }
        while let Some(&(d, id)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            self.expire(now, id);
        }
    }

    /// Resolves a command whose deadline passed. With a guest agent, a command that was sent
    /// is followed by a resynchronisation, so its late reply cannot be taken for another.
    fn expire(&mut self, now: Instant, id: u64) {
        let was_sent = self.sent.contains_key(&id);
        if self.give_up(id, CommandError::Timeout) && was_sent && self.config.guest_agent {
            self.start_sync(now);
        }
    }

    /// Resolves a pending command with `error` without its reply: a queued command is never
    /// sent; a sent one keeps its slot and id until QEMU answers (its reply is then dropped).
    /// Returns whether the command was pending.
    fn give_up(&mut self, id: u64, error: CommandError) -> bool {
        if let Some(pos) = self.queue.iter().position(|q| q.id == id) {
            let q = self.queue.remove(pos);
            if let Some(d) = q.as_ref().and_then(|q| q.deadline) {
                self.deadlines.remove(&(d, id));
            }
            match q.map(|q| q.route) {
                Some(Route::Caller) => self.caller_ids.retain(|(_, cid)| *cid != id),
                Some(Route::Idless) => self.idless = None,
                _ => {}
            }
        } else if let Some(sent) = self
            .sent
            .get_mut(&id)
            .filter(|s| !s.abandoned && !s.negotiation)
        {
            // Still in QEMU's queue: keep its slot and its id until the reply comes.
            sent.abandoned = true;
            if let Some(d) = sent.deadline.take() {
                self.deadlines.remove(&(d, id));
            }
        } else {
            return false;
        }
        self.events.push_back(Event::Reply {
            id: CommandId(id),
            result: Err(error),
        });
        true
    }

    /// Ends the session with `reason`: resolves everything, `→ Disconnecting → Idle`, then
    /// [`Event::Disconnected`]. A no-op unless connecting or running.
    fn shutdown(&mut self, reason: DisconnectReason) {
        if !self.is_live() {
            return;
        }
        self.transition(RunState::Disconnecting);
        let eof = matches!(reason, DisconnectReason::Eof { .. });
        let mut pending: Vec<(u64, bool)> = self
            .sent
            .iter()
            .filter(|(_, s)| !s.abandoned && !s.negotiation)
            .map(|(id, s)| (*id, s.quit))
            .collect();
        pending.extend(self.queue.iter().map(|q| (q.id, false)));
        pending.sort_unstable();
        for (id, quit) in pending {
            let result = if eof && quit {
                Ok(empty_object())
            } else {
                Err(CommandError::Interrupted(reason.clone()))
            };
            self.events.push_back(Event::Reply {
                id: CommandId(id),
                result,
            });
        }
        self.sent.clear();
        self.queue.clear();
        self.caller_ids.clear();
        self.idless = None;
        self.in_band = 0;
        self.deadlines.clear();
        self.tx.clear();
        self.phase = Phase::None;
        self.skip_to_delimiter = false;
        self.quit_issued = false;
        self.garbage_deadline = None;
        self.transition(RunState::Idle);
        self.events.push_back(Event::Disconnected(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_eq_follows_qemu_echo() {
        let eq = |a: &str, b: &str| {
            json_eq(
                &serde_json::from_str(a).unwrap(),
                &serde_json::from_str(b).unwrap(),
            )
        };
        assert!(eq("1.0", "1"));
        assert!(eq("1e2", "100"));
        assert!(eq(r#"{"a":1,"b":[1,2]}"#, r#"{"b": [1, 2], "a": 1.0}"#));
        assert!(!eq("1", "\"1\""));
        assert!(!eq(r#"{"a":1}"#, r#"{"a":1,"b":2}"#));
        assert!(eq("18446744073709551616", "1.8446744073709552e19"));
    }

    #[test]
    fn arguments_must_be_an_object() {
        let mut out = b"xyz".to_vec();
        let e = write_command(&mut out, false, "x", &[1, 2], 3).unwrap_err();
        assert_eq!(e, CallError::ArgumentsNotObject("an array".into()));
        assert_eq!(out, b"xyz");
        write_command(&mut out, false, "a\"b", &(), 3).unwrap();
        assert_eq!(out, b"xyz{\"execute\":\"a\\\"b\",\"id\":3}");
    }

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
