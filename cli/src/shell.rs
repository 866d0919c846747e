//! `qmp shell`: the interactive shell.
//!
//! The main thread reads lines with the line editor and runs each command, waiting for its
//! reply (Ctrl-C abandons the wait; the reply is then discarded when it comes). The
//! adapter's driver, an event listener and a connection watcher run as tasks on smol's
//! executor, and print through the [`Printer`], which puts their lines above the prompt
//! while a line is being typed: events show as they arrive, without waiting for Enter.
//!
//! On a QMP monitor, in a terminal, the connection tracks the VM status and the jobs: the
//! prompt shows the status as of when it is drawn (after a command whose events may change
//! it, once the tracker has asked QEMU), and two more tasks print every change of the
//! status and every new status of a job above the prompt.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use qmp_async::{
    Builder, CallOptions, Driver, Error, EventFilter, EventStream, Lagged, Qmp, Reconnect, Status,
    StatusStream,
};
use qmp_proto::schema::Schema;
use qmp_proto::{DisconnectReason, QmpEvent, RawValue};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use serde_json::Value;

use crate::format;
use crate::out::Printer;
use crate::request::Request;
use crate::syntax::{self, Completion, Parsed, Parser};
use crate::target::Target;
use crate::traffic::{TrafficLog, Warnings};

/// How long each step of opening a session may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The shell's options.
#[derive(Debug, Clone, Default)]
pub struct ShellOptions {
    /// Pretty-print replies and events (`-p`).
    pub pretty: bool,
    /// Echo every message sent (`-v`).
    pub verbose: bool,
    /// Append a JSON-lines log of the traffic to this file (`-l`).
    pub log: Option<PathBuf>,
    /// Start in HMP mode (`--hmp`).
    pub hmp: bool,
    /// The history file; `None` keeps no history.
    pub history: Option<PathBuf>,
    /// A deadline for each command.
    pub timeout: Option<Duration>,
    /// Talk to a guest agent (`--agent`).
    pub agent: bool,
}

/// What the shell talks to.
pub enum Connect {
    /// A QMP socket, reconnecting (unless `reconnect` is false) when QEMU goes away.
    Target {
        /// The socket.
        target: Target,
        /// Whether to reconnect.
        reconnect: bool,
    },
    /// The fake QEMU, served in this process.
    Fake,
    /// A session opened already (`qmp wrap` accepts QEMU's connection).
    Session(Qmp, Box<Driver>),
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connect::Target { target, reconnect } => f
                .debug_struct("Target")
                .field("target", target)
                .field("reconnect", reconnect)
                .finish(),
            Connect::Fake => f.write_str("Fake"),
            Connect::Session(..) => f.write_str("Session"),
        }
    }
}

/// The names offered by tab completion, refreshed on every (re)connection.
#[derive(Debug, Default)]
struct Names {
    commands: Vec<String>,
    schema: Option<Schema>,
}

type SharedNames = Arc<Mutex<Names>>;

fn lock(names: &SharedNames) -> std::sync::MutexGuard<'_, Names> {
    names.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the shell sets up before it connects: the printer its threads share, and the
/// traffic log (`-v`, `-l`) whose tap goes on the connection's builder.
#[derive(Debug)]
pub struct Prepared {
    printer: Printer,
    traffic: Arc<TrafficLog>,
    /// Whether the VM status and the jobs are tracked: for a QMP monitor, in a terminal
    /// (a script's output stays as it was, and a guest agent has neither).
    track: bool,
}

impl Prepared {
    /// Sets up the printer, the warnings and the traffic log of `opts`.
    pub fn new(opts: &ShellOptions) -> Result<Prepared, String> {
        let printer = Printer::new();
        let file = match &opts.log {
            Some(path) => Some(
                TrafficLog::open_log(path)
                    .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Warnings {
            printer: Some(printer.clone()),
        }
        .install();
        let traffic = Arc::new(TrafficLog {
            echo: opts.verbose.then(|| (printer.clone(), opts.pretty)),
            file,
        });
        let track = !opts.agent && std::io::stdin().is_terminal();
        Ok(Prepared {
            printer,
            traffic,
            track,
        })
    }

    /// A builder with the shell's defaults, the options of `opts` and the traffic tap.
    pub fn builder(&self, opts: &ShellOptions) -> Builder {
        let mut builder = Builder::new().connect_timeout(CONNECT_TIMEOUT);
        if opts.agent {
            builder = builder.guest_agent();
        }
        if let Some(t) = opts.timeout {
            builder = builder.timeout(t);
        }
        if self.traffic.is_active() {
            builder = builder.tap(self.traffic.tap());
        }
        if self.track {
            builder = builder.track_status(true);
        }
        builder
    }
}

/// Opens the session the shell talks to.
pub fn open(
    connect: Connect,
    opts: &ShellOptions,
    prepared: &Prepared,
) -> Result<(Qmp, Driver, bool), String> {
    let mut builder = prepared.builder(opts);
    match connect {
        Connect::Target { target, reconnect } => {
            if reconnect {
                builder = builder.reconnect(
                    Reconnect::new()
                        .initial(Duration::from_millis(100))
                        .max(Duration::from_secs(2)),
                );
            }
            let opened = smol::block_on(async {
                match &target {
                    Target::Unix(path) => builder.connect_unix(path).await,
                    Target::Tcp(addr) => builder.connect_tcp(addr.as_str()).await,
                }
            });
            let (qmp, driver) = opened.map_err(|e| e.to_string())?;
            Ok((qmp, driver, reconnect))
        }
        Connect::Fake => {
            let stream = crate::fake::spawn_in_process(false).map_err(|e| e.to_string())?;
            let (qmp, driver) =
                smol::block_on(builder.unix_stream(stream)).map_err(|e| e.to_string())?;
            Ok((qmp, driver, false))
        }
        Connect::Session(qmp, driver) => Ok((qmp, *driver, false)),
    }
}

/// Runs the shell until Ctrl-D (or the end of its input), or until the session ends for
/// good. Returns the handle, still open unless the session ended, so that a caller such as
/// `qmp wrap` can end it its own way.
pub fn run(connect: Connect, opts: ShellOptions) -> Result<Qmp, String> {
    let prepared = Prepared::new(&opts)?;
    run_prepared(connect, opts, prepared)
}

/// [`run`] with the set-up done beforehand (`qmp wrap` builds its listener with it, so that
/// the traffic of the accepted session is logged from its first message).
pub fn run_prepared(
    connect: Connect,
    opts: ShellOptions,
    prepared: Prepared,
) -> Result<Qmp, String> {
    let (qmp, driver, reconnecting) = open(connect, &opts, &prepared)?;
    let printer = prepared.printer;
    let track = prepared.track;
    // Listening from the start: no event or status change is missed while the shell sets up.
    let events = qmp.subscribe(all_events());
    let status = qmp.status();
    smol::spawn(async move {
        driver.await;
    })
    .detach();

    let mut shell = Shell::new(qmp, opts, printer, reconnecting)?;
    shell.track = track;
    shell.banner();
    shell.refresh_names_now();
    if track {
        // The first prompt shows the status, and the watchers report changes from it.
        shell.settle_status(CONNECT_TIMEOUT);
        shell.spawn_status_listeners();
    }
    shell.spawn_listeners(events, status);
    shell.read_loop();
    Ok(shell.qmp)
}

struct Shell {
    /// Whether the input is a terminal (else a script from a pipe, kept out of the history).
    interactive: bool,
    qmp: Qmp,
    opts: ShellOptions,
    printer: Printer,
    editor: Editor<ShellHelper, FileHistory>,
    parser: Arc<Mutex<Parser>>,
    names: SharedNames,
    hmp: bool,
    pretty: bool,
    reconnecting: bool,
    /// Commands for the session task.
    jobs: Option<smol::channel::Sender<Job>>,
    /// Whether the session task pretty-prints events (`/pretty` toggles it).
    pretty_events: Arc<AtomicBool>,
    /// Whether the VM status and the jobs are tracked (shown in the prompt and reported).
    track: bool,
    /// Set by the session task when an event that may change the VM status comes.
    status_cause: Arc<AtomicBool>,
}

impl Shell {
    fn new(
        qmp: Qmp,
        opts: ShellOptions,
        printer: Printer,
        reconnecting: bool,
    ) -> Result<Shell, String> {
        let config = Config::builder()
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            // Everything the shell prints ends its line, and asking the terminal where the
            // cursor is would race with typed-ahead input (pasted lines).
            .check_cursor_position(false)
            .max_history_size(10_000)
            .map_err(|e| e.to_string())?
            .build();
        let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)
            .map_err(|e| format!("cannot start the line editor: {e}"))?;
        let names = SharedNames::default();
        let parser = Arc::new(Mutex::new(Parser::new()));
        editor.set_helper(Some(ShellHelper {
            names: Arc::clone(&names),
            parser: Arc::clone(&parser),
        }));
        if let Some(path) = &opts.history {
            // A missing history file is a first run, not an error.
            let _ = editor.load_history(path);
        }
        let interactive = std::io::stdin().is_terminal();
        if interactive {
            if let Ok(p) = editor.create_external_printer() {
                printer.set_external(Box::new(p));
            }
        }
        let opts_pretty = opts.pretty;
        Ok(Shell {
            interactive,
            hmp: opts.hmp,
            pretty: opts.pretty,
            qmp,
            opts,
            printer,
            editor,
            parser,
            names,
            reconnecting,
            jobs: None,
            pretty_events: Arc::new(AtomicBool::new(opts_pretty)),
            track: false,
            status_cause: Arc::new(AtomicBool::new(false)),
        })
    }

    fn banner(&self) {
        let text = if self.opts.agent {
            "Connected to the guest agent.".to_owned()
        } else {
            match self.qmp.greeting() {
                Some(g) => format!(
                    "Connected to QEMU {}{}.",
                    g.version,
                    if self.qmp.oob_enabled() {
                        " (out-of-band enabled)"
                    } else {
                        ""
                    }
                ),
                None => "Connected.".to_owned(),
            }
        };
        self.printer.line(format!(
            "Welcome to the QMP shell. {text}\nType /help for help, Ctrl-D to leave."
        ));
    }

    fn parser(&self) -> std::sync::MutexGuard<'_, Parser> {
        self.parser.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The prompt: the mode, and the VM status when it is known (as of when the prompt is
    /// drawn: changes while a line is typed are printed above it).
    fn prompt(&self) -> String {
        if self.parser().in_transaction() {
            return "TRANS> ".to_owned();
        }
        let mode = if self.hmp {
            "HMP"
        } else if self.opts.agent {
            "QGA"
        } else {
            "QEMU"
        };
        match self.qmp.vm_status().filter(|_| self.track) {
            Some(status) => format!("({mode} {status}) "),
            None => format!("({mode}) "),
        }
    }

    /// Waits (a little) until the tracked status has taken in what QEMU said so far: its
    /// queries are answered and their changes reported.
    fn settle_status(&self, limit: Duration) {
        self.status_cause.store(false, Ordering::Relaxed);
        let _ = smol::block_on(qmp_async::timeout(limit, self.qmp.status_settled()));
    }

    /// Prints the changes of the VM status and of the jobs, above the prompt.
    fn spawn_status_listeners(&self) {
        let mut vm = self.qmp.vm_status_watch();
        let printer = self.printer.clone();
        smol::spawn(async move {
            while let Some(change) = vm.next().await {
                if let Some(line) = crate::status::vm_change_line(&change) {
                    printer.line(line);
                }
            }
        })
        .detach();
        let mut jobs = self.qmp.job_watch();
        let printer = self.printer.clone();
        smol::spawn(async move {
            while let Some(change) = jobs.next().await {
                if let Some(line) = crate::status::job_change_line(&change) {
                    printer.line(line);
                }
            }
        })
        .detach();
    }

    /// Fetches the completion names before the first prompt.
    fn refresh_names_now(&self) {
        smol::block_on(refresh_names(
            self.qmp.clone(),
            self.opts.agent,
            Arc::clone(&self.names),
        ));
    }

    /// Starts the session task (commands and events, printed in the order they came) and
    /// the connection watcher.
    fn spawn_listeners(&mut self, events: EventStream, mut status: StatusStream) {
        let (jobs, rx) = smol::channel::unbounded();
        self.jobs = Some(jobs);
        let (tx, interrupts) = smol::channel::unbounded();
        // While a line is read, the terminal is raw and Ctrl-C is a key; while a command
        // runs, it is a signal, which abandons the wait.
        let _ = ctrlc::set_handler(move || {
            let _ = tx.try_send(());
        });
        smol::spawn(session(
            self.qmp.clone(),
            events,
            rx,
            interrupts,
            Output {
                printer: self.printer.clone(),
                pretty_events: Arc::clone(&self.pretty_events),
                status_cause: Arc::clone(&self.status_cause),
            },
        ))
        .detach();

        let qmp = self.qmp.clone();
        let printer = self.printer.clone();
        let names = Arc::clone(&self.names);
        let agent = self.opts.agent;
        smol::spawn(async move {
            while let Some(change) = status.next().await {
                match change {
                    Status::Connected { greeting, .. } => {
                        if agent {
                            printer.line("*** connected to the guest agent again");
                        } else {
                            printer
                                .line(format!("*** connected to QEMU {} again", greeting.version));
                        }
                        smol::spawn(refresh_names(qmp.clone(), agent, Arc::clone(&names))).detach();
                    }
                    // Closed here: the shell is leaving.
                    Status::Disconnected {
                        reason: DisconnectReason::Closed,
                        ..
                    } => {}
                    Status::Disconnected { reason, .. } => {
                        printer.line(format!("*** disconnected: {reason}"));
                    }
                    Status::Reconnecting { attempt: 1, .. } => {
                        printer.line("*** reconnecting (Ctrl-D leaves the shell)");
                    }
                    Status::GaveUp { attempts } => {
                        printer.line(format!(
                            "*** gave up reconnecting after {attempts} attempts"
                        ));
                    }
                    _ => {}
                }
            }
        })
        .detach();
    }

    fn read_loop(&mut self) {
        loop {
            if self.qmp.is_finished() {
                self.printer.line("*** the session ended");
                break;
            }
            self.printer.set_reading(true);
            let prompt = self.prompt();
            let line = self.editor.readline(&prompt);
            self.printer.set_reading(false);
            match line {
                Ok(line) => {
                    // Lines of a script read from a pipe are not the user's history.
                    if self.interactive && !line.trim().is_empty() {
                        let _ = self.editor.add_history_entry(line.as_str());
                        if let Some(path) = &self.opts.history {
                            // Saved after every line: a shell that is killed keeps it.
                            let _ = self.editor.save_history(path);
                        }
                    }
                    if !self.handle_line(&line) {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => {
                    let mut parser = self.parser();
                    if parser.in_transaction() {
                        let n = parser.cancel_transaction();
                        drop(parser);
                        self.printer
                            .line(format!("*** transaction abandoned ({n} actions dropped)"));
                    }
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    self.printer.line(format!("error: cannot read input: {e}"));
                    break;
                }
            }
        }
    }

    /// Runs one line; false to leave the shell.
    fn handle_line(&mut self, line: &str) -> bool {
        let trimmed = line.trim();
        if let Some(meta) = trimmed.strip_prefix('/') {
            return self.meta(meta.trim());
        }
        if self.hmp && !self.parser().in_transaction() {
            if trimmed.is_empty() {
                return true;
            }
            let request = syntax::hmp_request(trimmed);
            if let Ok(request) = Request::from_object(request) {
                self.run(request);
            }
            return true;
        }
        let parsed = self.parser().parse_line(line);
        match parsed {
            Ok(Parsed::Nothing) => {}
            Ok(Parsed::Request(object)) => match Request::from_object(object) {
                Ok(request) => self.run(request),
                Err(e) => self.printer.line(format!("error: {e}")),
            },
            Err(e) => self.printer.line(format!("error: {e}")),
        }
        true
    }

    fn meta(&mut self, command: &str) -> bool {
        match command {
            "quit" | "exit" => return false,
            "hmp" => {
                self.hmp = true;
                self.printer
                    .line("HMP mode: lines run through human-monitor-command (/qmp to go back)");
            }
            "qmp" => {
                self.hmp = false;
                self.printer.line("QMP mode");
            }
            "pretty" => {
                self.pretty = !self.pretty;
                self.pretty_events.store(self.pretty, Ordering::Relaxed);
                self.printer.line(format!(
                    "pretty printing {}",
                    if self.pretty { "on" } else { "off" }
                ));
            }
            "help" | "" => self.printer.line(HELP),
            other => self.printer.line(format!(
                "error: unknown shell command '/{other}' (try /help)"
            )),
        }
        true
    }

    /// Runs a request in the session task, which prints its outcome.
    fn run(&mut self, request: Request) {
        let mut opts = CallOptions::new().oob(request.oob);
        if let Some(t) = self.opts.timeout {
            opts = opts.timeout(t);
        }
        let quit = request.name == "quit";
        let (done, finished) = smol::channel::bounded(1);
        let job = Job {
            request,
            opts,
            hmp: self.hmp,
            pretty: self.pretty,
            done,
        };
        self.status_cause.store(false, Ordering::Relaxed);
        match &self.jobs {
            Some(jobs) if jobs.try_send(job).is_ok() => {
                let _ = smol::block_on(finished.recv());
            }
            _ => self.printer.line("error: the session is gone"),
        }
        // A STOP (say) makes the tracker ask query-status, whose answer comes after the
        // command's reply: the next prompt waits for it.
        if self.track
            && !quit
            && self.status_cause.load(Ordering::Relaxed)
            && !self.qmp.is_finished()
        {
            self.settle_status(STATUS_WAIT);
        }
        if quit && !self.reconnecting {
            // QEMU closes the connection after quit: leave once the driver has seen it.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !self.qmp.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A command for the session task.
struct Job {
    request: Request,
    opts: CallOptions,
    hmp: bool,
    pretty: bool,
    /// Told when the outcome is printed.
    done: smol::channel::Sender<()>,
}

type EventItem = Option<Result<Arc<QmpEvent>, Lagged>>;

fn all_events() -> EventFilter {
    EventFilter::all().capacity(4096)
}

/// The next item of the listener, or never when there is none.
async fn next_event(events: &mut Option<EventStream>) -> EventItem {
    match events.as_mut() {
        Some(stream) => stream.next().await,
        None => futures_lite::future::pending().await,
    }
}

/// Ends at the first Ctrl-C (never, if no handler could be installed).
async fn interrupted(interrupts: &smol::channel::Receiver<()>) {
    if interrupts.recv().await.is_err() {
        futures_lite::future::pending::<()>().await;
    }
}

/// How long the prompt waits for the tracked status to settle.
const STATUS_WAIT: Duration = Duration::from_secs(2);

/// Where the session task prints, and what it tells the shell.
struct Output {
    printer: Printer,
    /// Whether events are pretty-printed (`/pretty` toggles it).
    pretty_events: Arc<AtomicBool>,
    /// Set when an event that makes the tracker ask `query-status` comes
    /// ([`qmp_proto::status::asks_vm_status`]).
    status_cause: Arc<AtomicBool>,
}

impl Output {
    fn event(&self, item: Result<Arc<QmpEvent>, Lagged>) {
        let pretty = self.pretty_events.load(Ordering::Relaxed);
        match item {
            Ok(event) => {
                if qmp_proto::status::asks_vm_status(&event.name) {
                    self.status_cause.store(true, Ordering::Relaxed);
                }
                self.printer.line(format::event_line(&event, pretty));
            }
            Err(lagged) => {
                self.status_cause.store(true, Ordering::Relaxed);
                self.printer
                    .line(format!("*** {} events were missed", lagged.missed));
            }
        }
    }
}

/// The task that runs the commands and prints the events. Both come from one place, and
/// events are taken before a reply whenever both are ready, so they print in the order
/// QEMU sent them (`STOP` before `stop`'s reply). A listener made while no session is up
/// belongs to the next one, so nothing is missed across a reconnection.
async fn session(
    qmp: Qmp,
    events: EventStream,
    jobs: smol::channel::Receiver<Job>,
    interrupts: smol::channel::Receiver<()>,
    out: Output,
) {
    enum Step {
        Event(EventItem),
        Job(Option<Job>),
    }
    let mut events = Some(events);
    loop {
        let step = futures_lite::future::or(
            async { Step::Event(next_event(&mut events).await) },
            async { Step::Job(jobs.recv().await.ok()) },
        )
        .await;
        match step {
            Step::Event(Some(item)) => {
                out.event(item);
            }
            Step::Event(None) => events = None,
            Step::Job(Some(job)) => {
                run_job(&qmp, job, &mut events, &interrupts, &out).await;
            }
            Step::Job(None) => break,
        }
        if events.is_none() && !qmp.is_finished() {
            events = Some(qmp.subscribe(all_events()));
        }
    }
}

async fn run_job(
    qmp: &Qmp,
    mut job: Job,
    events: &mut Option<EventStream>,
    interrupts: &smol::channel::Receiver<()>,
    out: &Output,
) {
    enum Race {
        Event(EventItem),
        Done(Result<Box<RawValue>, Error>),
        Interrupted,
    }
    while interrupts.try_recv().is_ok() {}
    let opts = std::mem::take(&mut job.opts);
    let call = qmp.execute_with::<Box<RawValue>, _>(
        &job.request.name,
        &job.request.arguments_value(),
        opts,
    );
    let mut call = std::pin::pin!(call);
    let outcome = loop {
        let race = futures_lite::future::or(
            async { Race::Event(next_event(events).await) },
            futures_lite::future::or(async { Race::Done((&mut call).await) }, async {
                interrupted(interrupts).await;
                Race::Interrupted
            }),
        )
        .await;
        match race {
            Race::Event(Some(item)) => {
                out.event(item);
            }
            Race::Event(None) => *events = None,
            Race::Done(result) => break Some(result),
            Race::Interrupted => break None,
        }
    };
    match outcome {
        Some(result) => print_outcome(&out.printer, &job, result),
        None => out
            .printer
            .line("*** interrupted: no longer waiting (the reply will be discarded)"),
    }
    let _ = job.done.try_send(());
}

fn print_outcome(printer: &Printer, job: &Job, result: Result<Box<RawValue>, Error>) {
    let pretty = job.pretty;
    match result {
        Ok(ret) if job.hmp && job.request.name == "human-monitor-command" => {
            // HMP output is text in a JSON string: print it as text.
            match serde_json::from_str::<String>(ret.get()) {
                Ok(text) => {
                    let text = text.replace("\r\n", "\n");
                    let text = text.trim_end_matches('\n');
                    if !text.is_empty() {
                        printer.line(text);
                    }
                }
                Err(_) => printer.line(format::json(&format::reply(ret.get()), pretty)),
            }
        }
        Ok(ret) => printer.line(format::json(&format::reply(ret.get()), pretty)),
        Err(Error::Qmp(e)) => {
            printer.line(format::json(
                &format::error_reply(&e.class, &e.desc),
                pretty,
            ));
        }
        Err(e) => printer.line(format!("error: {e}")),
    }
}

/// Fetches the command names (`query-commands`, or `guest-info` from a guest agent) and
/// the schema (`query-qmp-schema`) for completion. Failures leave the names as they were.
async fn refresh_names(qmp: Qmp, agent: bool, names: SharedNames) {
    let limit = CallOptions::new().timeout(CONNECT_TIMEOUT);
    if agent {
        if let Ok(info) = qmp.execute_with::<Value, _>("guest-info", &(), limit).await {
            let commands = info["supported_commands"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter(|c| c["enabled"].as_bool().unwrap_or(true))
                        .filter_map(|c| c["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            lock(&names).commands = sorted(commands);
        }
        return;
    }
    let commands = qmp.execute_with::<Value, _>("query-commands", &(), limit);
    let schema = qmp.execute_with::<Schema, _>(
        "query-qmp-schema",
        &(),
        CallOptions::new().timeout(CONNECT_TIMEOUT),
    );
    if let Ok(list) = commands.await {
        let commands = list
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        lock(&names).commands = sorted(commands);
    }
    if let Ok(schema) = schema.await {
        lock(&names).schema = Some(schema);
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

const HELP: &str = "\
Commands:   command-name [key=value ...]
            values: integers and floats are numbers, true/false booleans, {..} and [..]
            JSON (or Python literals), \"quoted\" or bare words strings; a.b=1 nests
Raw JSON:   {\"execute\": \"query-status\"}   (any line starting with {)
Transaction:
            transaction(
            action-type key=value ...
            )                             (or on one line: transaction( a x=1 ... ))
Shell:      /hmp   run lines as HMP commands (human-monitor-command)
            /qmp   back to QMP commands
            /pretty  toggle pretty printing
            /quit  leave (or Ctrl-D)
The prompt shows the VM status, as of when it is drawn: (QEMU paused). Changes of
the VM status and of jobs print as lines (VM status: ..., job ID (TYPE): ...).
Tab completes command names, argument names and enum values. Ctrl-C abandons a
transaction being typed, or stops waiting for a reply.";

/// Tab completion from the names the connected QEMU reported.
struct ShellHelper {
    names: SharedNames,
    parser: Arc<Mutex<Parser>>,
}

impl ShellHelper {
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let context = self
            .parser
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .completion_context(line, pos);
        let names = lock(&self.names);
        let schema = names.schema.as_ref();
        let from_schema = |f: &dyn Fn(&Schema) -> Vec<String>| schema.map(f).unwrap_or_default();
        // The words that may complete here, and what follows a completed one.
        let (start, prefix, words, suffix) = match context {
            Completion::Command { start, prefix } => {
                let mut words = names.commands.clone();
                words.push("transaction(".to_owned());
                (start, prefix, words, " ")
            }
            Completion::ActionType { start, prefix } => {
                let words =
                    from_schema(&|s| s.argument_values("transaction", &["actions", "type"]));
                (start, prefix, words, " ")
            }
            Completion::Argument {
                start,
                command,
                path,
                prefix,
            } => {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                // What the line says already narrows flat unions: with `driver=qcow2`,
                // only qcow2's members are offered.
                let given = given_values(&line[..start]);
                let given: Vec<(&str, &str)> = given
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let words = from_schema(&|s| s.argument_names_given(&command, &path, &given));
                (start, prefix, words, "=")
            }
            Completion::Value {
                start,
                command,
                key,
                prefix,
            } => {
                let key: Vec<&str> = key.iter().map(String::as_str).collect();
                let words = from_schema(&|s| s.argument_values(&command, &key));
                (start, prefix, words, " ")
            }
            Completion::None => return (pos, Vec::new()),
        };
        let pairs = words
            .into_iter()
            .filter(|w| w.starts_with(&prefix))
            .map(|w| Pair {
                replacement: if w.ends_with('(') {
                    w.clone()
                } else {
                    format!("{w}{suffix}")
                },
                display: w,
            })
            .collect();
        (start, pairs)
    }
}

/// The `key=value` pairs with plain values typed on a line (quotes removed).
fn given_values(text: &str) -> Vec<(String, String)> {
    let Ok(words) = syntax::split_words(text) else {
        return Vec::new();
    };
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .filter(|(_, v)| !v.starts_with(['{', '[']))
        .map(|(k, v)| (k.to_owned(), v.trim_matches(['"', '\'']).to_owned()))
        .collect()
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

/// `qmp shell`'s exit status for a result of [`run`].
pub fn exit(result: Result<Qmp, String>) -> ExitCode {
    match result {
        Ok(qmp) => {
            qmp.close();
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::fail(&format!("qmp shell: {e}"));
            ExitCode::from(crate::EXIT_FAILURE)
        }
    }
}
