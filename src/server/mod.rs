//! The sans-IO QMP server engine: what QEMU's monitor does, without QEMU.
//!
//! [`Server`] greets, enforces capabilities negotiation, reads its input with QEMU's own
//! streaming JSON rules (see the id-less parse errors), validates each request with QEMU's
//! messages, and dispatches commands to a [`Handler`]. In-band commands run one at a time and
//! are answered in order; out-of-band commands run as soon as they are read and may overtake.
//! A handler may answer later ([`Outcome::Deferred`], then [`Server::complete`]), emit events,
//! ask to be woken at a deadline, and close the connection. [`FakeQemu`] is a ready handler.
//!
//! Like the client, the server performs no IO and reads no clock, and its outputs have the
//! client's shape. Feed it bytes ([`Server::handle_input`]), received file descriptors
//! ([`Server::handle_fds`]), EOF and time; then drain, in this order:
//!
//! 1. [`Server::poll_transmit`] until `None`: bytes to write (a [`Transmit`], whose `fds`
//!    are always empty), reporting progress with [`Server::advance_transmit`];
//! 2. [`Server::poll_event`] until `None`: [`ServerEvent::Closed`] when the server ends the
//!    connection (after `quit`, once its output is written): close the transport;
//! 3. [`Server::poll_timeout`]: when to call [`Server::handle_timeout`].
//!
//! Read from the client only while [`Server::wants_input`] says so (QEMU stops reading while
//! its request queue is full). The connection's state is a [`ServerState`].
//!
//! ```
//! use std::time::Instant;
//! use qmp_proto::server::{FakeQemu, Server};
//!
//! let now = Instant::now();
//! let mut server = Server::new(FakeQemu::new().server_config(), FakeQemu::new());
//! server.accept(now);
//! let greeting = server.take_output();
//! assert!(greeting.starts_with(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}"));
//!
//! server.handle_input(now, br#"{"execute": "query-status", "id": 1}"#);
//! assert_eq!(server.take_output(), b"{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n");
//!
//! server.handle_input(now, br#"{"execute": "qmp_capabilities"}{"execute": "query-status", "id": 2}"#);
//! assert_eq!(server.take_output(), b"{\"return\": {}}\r\n{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": 2}\r\n");
//! ```

mod dispatch;
mod fake;
mod fake_block;
mod fake_migrate;
mod fake_qom;
pub(crate) mod json;
mod qapi;
mod script;
mod state;

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

#[cfg(unix)]
use std::os::fd::OwnedFd;

use serde_json::{Map, Value};

use dispatch::{check_enable, check_envelope, check_oob, Checked, Rejection, Request};
pub use fake::{CustomCommand, FakeQemu};
use json::{JsonStream, Limits, Parsed, QValue};
pub use script::{Mismatch, Script, ScriptError};
pub use state::ServerState;

use crate::transmit::{Transmit, TxBuffer};
use crate::QemuVersion;

/// How many in-band requests QEMU queues before it stops reading (with OOB enabled).
const QUEUE_LEN_MAX: usize = 8;

/// Configuration of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    version: QemuVersion,
    package: String,
    capabilities: Vec<String>,
    pretty: bool,
    epoch_micros: i64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            version: QemuVersion {
                major: 10,
                minor: 0,
                micro: 2,
            },
            package: String::new(),
            capabilities: vec!["oob".into()],
            pretty: false,
            epoch_micros: 1_700_000_000_000_000,
        }
    }
}

impl ServerConfig {
    /// The version announced in the greeting (default 10.0.2).
    pub fn version(mut self, major: u64, minor: u64, micro: u64) -> Self {
        self.version = QemuVersion {
            major,
            minor,
            micro,
        };
        self
    }

    /// The package string of the greeting (default empty).
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.package = package.into();
        self
    }

    /// The capabilities offered (default `["oob"]`).
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        self.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Print messages over many lines, as a monitor created with `pretty=on` does.
    pub fn pretty(mut self, pretty: bool) -> Self {
        self.pretty = pretty;
        self
    }

    /// The wall-clock time, in microseconds since the Unix epoch, that event timestamps
    /// show at the instant given to [`Server::accept`] first (default 1,700,000,000 s, so
    /// tests are deterministic; a server for real use sets the current time).
    pub fn epoch_micros(mut self, micros: i64) -> Self {
        self.epoch_micros = micros;
        self
    }

    /// The announced version.
    pub fn get_version(&self) -> QemuVersion {
        self.version
    }

    /// The announced package string.
    pub fn get_package(&self) -> &str {
        &self.package
    }
}

/// Identifies one dispatched command, to complete it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallToken {
    session: u64,
    n: u64,
}

/// What a handler says about a command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Whether the command may be run out of band (`"allow-oob": true` in the schema).
    pub allow_oob: bool,
}

/// A command to run.
#[derive(Debug)]
pub struct Call {
    /// The command name.
    pub name: String,
    /// Its arguments (an empty map when none were given).
    pub arguments: Map<String, Value>,
    /// Whether it came with `exec-oob`.
    pub oob: bool,
    /// Its token, for [`Server::complete`] or [`Context::complete`] after
    /// [`Outcome::Deferred`].
    pub token: CallToken,
    /// File descriptors received since the previous command.
    #[cfg(unix)]
    pub fds: Vec<OwnedFd>,
}

/// A handler's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `{"return": value}`. Object members are inserted in key order; use
    /// [`Outcome::Json`] to choose the insertion order, which decides the output order of
    /// members that share a bucket of QEMU's hash table.
    Return(Value),
    /// `{"return": value}` with the value given as JSON text, read with QEMU's own parser
    /// so that object members keep their order (the order in which QEMU's code inserts
    /// them, as in the QAPI schema). Text that does not parse is answered with the parse
    /// error.
    Json(String),
    /// `{"error": {"class": class, "desc": desc}}`.
    Error {
        /// The error class, such as `GenericError`.
        class: String,
        /// The description.
        desc: String,
    },
    /// The answer comes later, through [`Server::complete`] or [`Context::complete`]. An
    /// in-band command that defers holds up the in-band commands after it, as in QEMU.
    Deferred,
    /// No answer at all (like commands QEMU declares without a success response).
    NoResponse,
}

impl Outcome {
    /// A `GenericError`.
    pub fn generic_error(desc: impl Into<String>) -> Outcome {
        Outcome::Error {
            class: "GenericError".into(),
            desc: desc.into(),
        }
    }

    /// An empty return, `{}`.
    pub fn empty() -> Outcome {
        Outcome::Return(Value::Object(Map::new()))
    }
}

/// What a [`Server`] reports besides bytes, from [`Server::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The server ended the connection: the handler closed it (as after `quit`) and all its
    /// output has been taken from [`Server::poll_transmit`], or
    /// [`Server::drop_connection`] dropped it. Close the transport. It is the last output
    /// of the connection, emitted once; the server is then [`ServerState::Idle`] until the
    /// next [`Server::accept`]. A connection the client ends
    /// ([`Server::handle_eof`]) has no such event.
    Closed,
}

/// Serves commands for a [`Server`].
pub trait Handler {
    /// Describes the command `name`, or `None` if it does not exist.
    fn command(&self, name: &str) -> Option<CommandInfo>;

    /// Runs a command.
    fn execute(&mut self, ctx: &mut Context<'_>, call: Call) -> Outcome;

    /// Called when a deadline asked for with [`Context::wake_at`] has passed.
    fn on_timer(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// Called when a client has connected (after the greeting is queued).
    fn on_connect(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// The names of all commands, for `query-commands`-like introspection.
    fn command_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What a handler can do while it runs.
pub struct Context<'a> {
    core: &'a mut Core,
    now: Instant,
}

impl Context<'_> {
    /// The current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Emits an event (dropped, as QEMU does, while the client has not negotiated).
    pub fn emit_event(&mut self, name: &str, data: Option<Value>) {
        let data = data.as_ref().map(QValue::from_json);
        self.core.emit_event(self.now, name, data);
    }

    /// Emits an event whose data is JSON text, keeping its member order (see
    /// [`Outcome::Json`]). Text that does not parse is sent as a string.
    pub fn emit_event_json(&mut self, name: &str, data: &str) {
        let data = parse_ordered(data).unwrap_or_else(|_| QValue::str(data));
        self.core.emit_event(self.now, name, Some(data));
    }

    /// Closes the connection once the output so far (and the reply of the running command)
    /// is written.
    pub fn close(&mut self) {
        self.core.state.close();
    }

    /// Asks for [`Handler::on_timer`] at `at` (the earliest request wins until it fires).
    pub fn wake_at(&mut self, at: Instant) {
        self.core.wake = Some(self.core.wake.map_or(at, |w| w.min(at)));
    }

    /// Completes a deferred command.
    pub fn complete(&mut self, token: CallToken, outcome: Outcome) {
        self.core.complete(token, outcome);
    }

    /// Writes raw bytes to the client (for fault injection).
    pub fn inject_bytes(&mut self, bytes: &[u8]) {
        self.core.inject_bytes(bytes);
    }

    /// The server's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.core.config
    }
}

/// One request waiting in the in-band queue.
enum Queued {
    Value(QValue, Vec<Fd>),
    ParseError(Vec<u8>),
}

#[cfg(unix)]
type Fd = OwnedFd;
#[cfg(not(unix))]
type Fd = ();

/// The protocol state, apart from the handler so that a [`Context`] can borrow it.
struct Core {
    config: ServerConfig,
    session: u64,
    state: ServerState,
    oob: bool,
    stream: JsonStream,
    input: VecDeque<u8>,
    parsed: VecDeque<Parsed>,
    queue: VecDeque<Queued>,
    /// The in-band command running (deferred), if any.
    busy: Option<CallToken>,
    /// Deferred commands and the id to answer them with.
    deferred: Vec<(CallToken, Option<QValue>)>,
    next_call: u64,
    tx: TxBuffer,
    wake: Option<Instant>,
    fds: Vec<Fd>,
    epoch: Option<Instant>,
}

/// The sans-IO QMP server engine. See the [module documentation](self).
///
/// Its methods, by kind:
///
/// * getters: [`handler`](Self::handler), [`handler_mut`](Self::handler_mut),
///   [`state`](Self::state), [`negotiated`](Self::negotiated),
///   [`oob_enabled`](Self::oob_enabled), [`wants_input`](Self::wants_input),
///   [`pending_calls`](Self::pending_calls);
/// * inputs: [`accept`](Self::accept), [`handle_input`](Self::handle_input),
///   `handle_fds` (unix), [`handle_eof`](Self::handle_eof),
///   [`handle_timeout`](Self::handle_timeout);
/// * calls: [`complete`](Self::complete), [`emit_event`](Self::emit_event),
///   [`inject_bytes`](Self::inject_bytes), [`drop_connection`](Self::drop_connection);
/// * outputs, drained in this order: [`poll_transmit`](Self::poll_transmit) with
///   [`advance_transmit`](Self::advance_transmit) (or [`take_output`](Self::take_output)),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout).
pub struct Server<H> {
    core: Core,
    handler: H,
}

impl<H: Handler> Server<H> {
    /// A server with no client yet. Call [`accept`](Self::accept) when one connects.
    pub fn new(config: ServerConfig, handler: H) -> Self {
        Server {
            core: Core {
                config,
                session: 0,
                state: ServerState::Idle,
                oob: false,
                stream: JsonStream::new(Limits::default()),
                input: VecDeque::new(),
                parsed: VecDeque::new(),
                queue: VecDeque::new(),
                busy: None,
                deferred: Vec::new(),
                next_call: 0,
                tx: TxBuffer::default(),
                wake: None,
                fds: Vec::new(),
                epoch: None,
            },
            handler,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, to change it (add commands, inject faults).
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The state of the connection.
    pub fn state(&self) -> ServerState {
        self.core.state
    }

    /// Whether the client completed capabilities negotiation.
    pub fn negotiated(&self) -> bool {
        self.core.state.is_negotiated()
    }

    /// Whether OOB was enabled by the client.
    pub fn oob_enabled(&self) -> bool {
        self.core.oob
    }

    /// A client connected: the monitor starts afresh and queues the greeting.
    pub fn accept(&mut self, now: Instant) {
        let core = &mut self.core;
        core.disconnect();
        core.epoch.get_or_insert(now);
        core.session += 1;
        core.state.accept();
        let greeting = core.greeting();
        core.write_message(&greeting);
        let mut ctx = Context { core, now };
        self.handler.on_connect(&mut ctx);
    }

    /// Feeds bytes received from the client. Bytes that QEMU would not read yet (its queue
    /// is full) are kept and read once the queue drains.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if !self.core.state.reads() {
            return;
        }
        self.core.input.extend(data);
        self.pump(now);
    }

    /// File descriptors received from the client (`SCM_RIGHTS`); the next command read
    /// gets them.
    #[cfg(unix)]
    pub fn handle_fds(&mut self, fds: Vec<OwnedFd>) {
        if self.core.state.is_connected() {
            self.core.fds.extend(fds);
        }
    }

    /// The client went away. Queued requests are dropped without replies, as QEMU does;
    /// deferred commands still complete in the handler, but their replies are discarded.
    /// The state is [`ServerState::Idle`] again, without an event.
    pub fn handle_eof(&mut self, _now: Instant) {
        self.core.disconnect();
    }

    /// Runs the handler's timer if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.core.wake.is_some_and(|w| w <= now) {
            self.core.wake = None;
            let mut ctx = Context {
                core: &mut self.core,
                now,
            };
            self.handler.on_timer(&mut ctx);
            self.pump(now);
        }
    }

    /// Completes a command the handler deferred. Ignored for a token that is not pending
    /// (already completed, or from an earlier connection).
    pub fn complete(&mut self, now: Instant, token: CallToken, outcome: Outcome) {
        self.core.complete(token, outcome);
        self.pump(now);
    }

    /// Emits an event to the client (dropped while it has not negotiated, as QEMU does).
    pub fn emit_event(&mut self, now: Instant, name: &str, data: Option<Value>) {
        let data = data.as_ref().map(QValue::from_json);
        self.core.emit_event(now, name, data);
    }

    /// Writes raw bytes to the client (fault injection: garbage, half messages).
    pub fn inject_bytes(&mut self, bytes: &[u8]) {
        self.core.inject_bytes(bytes);
    }

    /// Drops the connection at once, unsent output included (fault injection):
    /// [`ServerEvent::Closed`] is the next output.
    pub fn drop_connection(&mut self) {
        self.core.state.drop_connection();
        if !self.core.state.writes() {
            self.core.tx.clear();
        }
    }

    /// The bytes to write next, if any (the server sends no file descriptors: `fds` is
    /// empty). Report how many were written with
    /// [`advance_transmit`](Self::advance_transmit).
    #[must_use]
    pub fn poll_transmit(&self) -> Option<Transmit<'_>> {
        if !self.core.state.writes() {
            return None;
        }
        self.core.tx.poll()
    }

    /// Marks `n` bytes of [`poll_transmit`](Self::poll_transmit) as written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.core.tx.advance(n);
    }

    /// Takes all pending output at once (convenient in tests).
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(t) = self.poll_transmit() {
            out.extend_from_slice(t.data);
            let n = t.data.len();
            self.advance_transmit(n);
        }
        out
    }

    /// The next event, if any: [`ServerEvent::Closed`] once the server has ended the
    /// connection (the handler closed it and its output is written, or it was dropped).
    /// Take it after [`poll_transmit`](Self::poll_transmit) returns `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        if !self.core.state.ends(self.core.tx.is_empty()) {
            return None;
        }
        self.core.disconnect();
        Some(ServerEvent::Closed)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.wake
    }

    /// Whether QEMU would read more input now (the connection is open and its request queue
    /// is not full). Bytes given while this is false are kept, not lost, unless the server
    /// is closing the connection.
    #[must_use]
    pub fn wants_input(&self) -> bool {
        self.core.state.reads() && !self.core.suspended()
    }

    /// Reads buffered input and runs what it completes, while QEMU would.
    fn pump(&mut self, now: Instant) {
        loop {
            self.run_queue(now);
            if let Some(p) = self.core.parsed.pop_front() {
                self.on_parsed(now, p);
                continue;
            }
            if !self.core.state.reads() || self.core.suspended() {
                return;
            }
            let Some(b) = self.core.input.pop_front() else {
                return;
            };
            let core = &mut self.core;
            core.stream.feed(b, &mut core.parsed);
        }
    }

    fn on_parsed(&mut self, now: Instant, parsed: Parsed) {
        match parsed {
            Err(msg) => self.core.queue.push_back(Queued::ParseError(msg)),
            Ok(v) => {
                let fds = std::mem::take(&mut self.core.fds);
                let is_oob = v.get("exec-oob").is_some() && v.get("execute").is_none();
                if is_oob {
                    // OOB requests are dispatched as soon as they are read.
                    self.dispatch(now, v, fds);
                } else {
                    self.core.queue.push_back(Queued::Value(v, fds));
                }
            }
        }
    }

    fn run_queue(&mut self, now: Instant) {
        while self.core.busy.is_none() && self.core.state.is_connected() {
            let Some(req) = self.core.queue.pop_front() else {
                return;
            };
            match req {
                Queued::ParseError(msg) => {
                    let rsp = error_response("GenericError", QValue::Str(msg), None);
                    self.core.write_message(&rsp);
                }
                Queued::Value(v, fds) => self.dispatch(now, v, fds),
            }
        }
    }

    /// `qmp_dispatch` and `monitor_qmp_dispatch`: the checks of [`check`](Self::check), then
    /// the run. A request that fails a check is answered with that check's error.
    fn dispatch(&mut self, now: Instant, req: QValue, fds: Vec<Fd>) {
        let id = req.get("id").cloned();
        match self.check(&req) {
            Ok(Checked::Negotiate { enable_oob }) => self.core.negotiate(enable_oob, id),
            Ok(Checked::Run(request)) => self.run(now, request, id, fds),
            Err(rejection) => self.core.reject(rejection, id),
        }
    }

    /// The checks a request goes through, in QEMU's order; the first that fails decides the
    /// error.
    fn check(&self, req: &QValue) -> Result<Checked, Rejection> {
        let request = check_envelope(req, self.core.oob)?;
        if request.name == "qmp_capabilities" {
            return self.core.check_capabilities(&request);
        }
        self.core.check_negotiated()?;
        let info = self.lookup(&request.name)?;
        check_oob(&request, info)?;
        Ok(Checked::Run(request))
    }

    /// The command, from the handler.
    fn lookup(&self, name: &str) -> Result<CommandInfo, Rejection> {
        self.handler.command(name).ok_or_else(|| Rejection {
            class: "CommandNotFound",
            desc: format!("The command {name} has not been found"),
        })
    }

    /// Runs a command that passed the checks, and answers it unless the handler defers the
    /// answer or gives none.
    fn run(&mut self, now: Instant, request: Request, id: Option<QValue>, fds: Vec<Fd>) {
        let core = &mut self.core;
        core.next_call += 1;
        let token = CallToken {
            session: core.session,
            n: core.next_call,
        };
        #[cfg(not(unix))]
        let _ = fds;
        let oob = request.oob;
        let call = Call {
            name: request.name,
            arguments: request.arguments,
            oob,
            token,
            #[cfg(unix)]
            fds,
        };
        let mut ctx = Context { core, now };
        match self.handler.execute(&mut ctx, call) {
            Outcome::Deferred => {
                core.deferred.push((token, id));
                if !oob {
                    core.busy = Some(token);
                }
            }
            Outcome::NoResponse => {}
            outcome => core.write_message(&outcome_response(outcome, id)),
        }
    }
}

fn return_response(value: QValue, id: Option<QValue>) -> QValue {
    let mut m = vec![("return".to_owned(), value)];
    if let Some(id) = id {
        m.push(("id".to_owned(), id));
    }
    QValue::Dict(m)
}

fn error_response(class: &str, desc: QValue, id: Option<QValue>) -> QValue {
    let mut m = vec![(
        "error".to_owned(),
        QValue::Dict(vec![
            ("class".to_owned(), QValue::str(class)),
            ("desc".to_owned(), desc),
        ]),
    )];
    if let Some(id) = id {
        m.push(("id".to_owned(), id));
    }
    QValue::Dict(m)
}

/// Parses JSON text with QEMU's parser (member order kept).
pub(crate) fn parse_ordered(text: &str) -> Result<QValue, String> {
    let mut stream = JsonStream::new(Limits::default());
    let mut out = VecDeque::new();
    for &b in text.as_bytes().iter().chain(b"\n") {
        stream.feed(b, &mut out);
    }
    match out.pop_front() {
        Some(Ok(v)) if out.is_empty() => Ok(v),
        Some(Err(e)) => Err(String::from_utf8_lossy(&e).into_owned()),
        _ => Err("expected exactly one JSON value".into()),
    }
}

fn outcome_response(outcome: Outcome, id: Option<QValue>) -> QValue {
    match outcome {
        Outcome::Return(v) => return_response(QValue::from_json(&v), id),
        Outcome::Json(text) => match parse_ordered(&text) {
            Ok(v) => return_response(v, id),
            Err(e) => error_response("GenericError", QValue::str(e), id),
        },
        Outcome::Error { class, desc } => error_response(&class, QValue::str(desc), id),
        Outcome::Deferred | Outcome::NoResponse => QValue::Null,
    }
}

impl Core {
    /// `qmp_capabilities` is refused once negotiated (with `CommandNotFound`, as QEMU
    /// does) and out of band; then its arguments are checked.
    fn check_capabilities(&self, request: &Request) -> Result<Checked, Rejection> {
        if self.state.is_negotiated() {
            return Err(Rejection {
                class: "CommandNotFound",
                desc: "Capabilities negotiation is already complete, command ignored".into(),
            });
        }
        check_oob(request, CommandInfo { allow_oob: false })?;
        let enable_oob = check_enable(&self.config.capabilities, &request.arguments)
            .map_err(Rejection::generic)?;
        Ok(Checked::Negotiate { enable_oob })
    }

    /// Before negotiation QEMU knows no command but `qmp_capabilities`, and says so.
    fn check_negotiated(&self) -> Result<(), Rejection> {
        if self.state.is_negotiated() {
            return Ok(());
        }
        Err(Rejection {
            class: "CommandNotFound",
            desc: "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
        })
    }

    /// Capabilities negotiation succeeded.
    fn negotiate(&mut self, enable_oob: bool, id: Option<QValue>) {
        self.state.negotiate();
        self.oob = enable_oob;
        self.write_message(&return_response(QValue::Dict(Vec::new()), id));
    }

    /// Answers a request that failed a check.
    fn reject(&mut self, rejection: Rejection, id: Option<QValue>) {
        let rsp = error_response(rejection.class, QValue::str(rejection.desc), id);
        self.write_message(&rsp);
    }

    fn suspended(&self) -> bool {
        if self.oob {
            self.queue.len() >= QUEUE_LEN_MAX
        } else {
            !self.queue.is_empty() || self.busy.is_some()
        }
    }

    fn greeting(&self) -> QValue {
        let v = self.config.version;
        QValue::Dict(vec![(
            "QMP".into(),
            QValue::Dict(vec![
                (
                    "version".into(),
                    QValue::Dict(vec![
                        (
                            "qemu".into(),
                            QValue::Dict(vec![
                                ("major".into(), QValue::UInt(v.major)),
                                ("minor".into(), QValue::UInt(v.minor)),
                                ("micro".into(), QValue::UInt(v.micro)),
                            ]),
                        ),
                        ("package".into(), QValue::str(self.config.package.as_str())),
                    ]),
                ),
                (
                    "capabilities".into(),
                    QValue::List(
                        self.config
                            .capabilities
                            .iter()
                            .map(|c| QValue::str(c.as_str()))
                            .collect(),
                    ),
                ),
            ]),
        )])
    }

    /// Writes one message as QEMU's monitor does: `\n` becomes `\r\n`, and a line end
    /// follows.
    fn write_message(&mut self, msg: &QValue) {
        if !self.state.writes() {
            return;
        }
        let mut text = Vec::new();
        json::write(&mut text, msg, self.config.pretty);
        let tx = self.tx.buf_mut();
        for b in text {
            if b == b'\n' {
                tx.push(b'\r');
            }
            tx.push(b);
        }
        tx.extend_from_slice(b"\r\n");
    }

    /// Raw bytes for the client, kept like a message.
    fn inject_bytes(&mut self, bytes: &[u8]) {
        if self.state.writes() {
            self.tx.buf_mut().extend_from_slice(bytes);
        }
    }

    fn emit_event(&mut self, now: Instant, name: &str, data: Option<QValue>) {
        if !self.state.is_negotiated() {
            return;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let since = now.saturating_duration_since(epoch);
        let micros = self.config.epoch_micros + since.as_micros() as i64;
        let mut m = vec![
            ("event".to_owned(), QValue::str(name)),
            (
                "timestamp".to_owned(),
                QValue::Dict(vec![
                    ("seconds".into(), QValue::Int(micros.div_euclid(1_000_000))),
                    (
                        "microseconds".into(),
                        QValue::Int(micros.rem_euclid(1_000_000)),
                    ),
                ]),
            ),
        ];
        if let Some(data) = data {
            m.push(("data".to_owned(), data));
        }
        self.write_message(&QValue::Dict(m));
    }

    fn complete(&mut self, token: CallToken, outcome: Outcome) {
        let Some(pos) = self.deferred.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, id) = self.deferred.remove(pos);
        if self.busy == Some(token) {
            self.busy = None;
        }
        if !matches!(outcome, Outcome::Deferred | Outcome::NoResponse) {
            let rsp = outcome_response(outcome, id);
            self.write_message(&rsp);
        }
    }

    /// Forgets the connection: the monitor starts afresh for the next client.
    fn disconnect(&mut self) {
        self.state.reset();
        self.oob = false;
        self.stream = JsonStream::new(Limits::default());
        self.input.clear();
        self.parsed.clear();
        self.queue.clear();
        self.busy = None;
        self.deferred.clear();
        self.tx.clear();
        self.fds.clear();
    }
}

impl<H> Server<H> {
    /// Tokens of deferred commands not yet completed.
    pub fn pending_calls(&self) -> BTreeSet<CallToken> {
        self.core.deferred.iter().map(|(t, _)| *t).collect()
    }
}
