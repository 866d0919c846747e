//! `qmp`: a QMP shell, one-shot commands, an event stream, a QEMU wrapper and a fake QEMU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use qmp_cli::exec::ExecOptions;
use qmp_cli::shell::{Connect, ShellOptions};
use qmp_cli::target::Target;

#[derive(Parser)]
#[command(
    name = "qmp",
    version,
    about = "Talk to QEMU over QMP: a shell, one-shot commands, events, the VM and job status, the QOM tree, a wrapper, a fake QEMU, and recording and replaying sessions"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The interactive shell (qmp-shell syntax: `command key=value ...`).
    ///
    /// Events print above the prompt as they come. On a QMP monitor (not a guest agent)
    /// the prompt shows the VM status when QEMU has one (`(QEMU paused) `), and changes of
    /// the VM status and of jobs print as lines (`VM status: running -> paused`,
    /// `job j0 (backup): running -> concluded 1048576/1048576`).
    Shell {
        /// A unix socket path, or HOST:PORT.
        #[arg(env = "QMP_SOCKET", required_unless_present = "fake")]
        target: Option<String>,
        /// Talk to an embedded fake QEMU instead.
        #[arg(long, conflicts_with_all = ["target", "agent"])]
        fake: bool,
        /// The socket is a QEMU guest agent's (qemu-ga).
        #[arg(long)]
        agent: bool,
        /// Do not reconnect when QEMU goes away.
        #[arg(long)]
        no_reconnect: bool,
        #[command(flatten)]
        common: ShellArgs,
    },
    /// Runs one command and prints its result as JSON.
    Exec {
        /// The socket is a QEMU guest agent's (qemu-ga).
        #[arg(long)]
        agent: bool,
        /// Seconds to wait for the reply (0: no limit).
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// Pretty-print the result.
        #[arg(short, long)]
        pretty: bool,
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// The command name, or a whole JSON request ('{"execute": ...}').
        command: String,
        /// Arguments as key=value (the shell's syntax).
        args: Vec<String>,
    },
    /// Prints QMP events as JSON lines until QEMU closes the connection.
    Events {
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// Only these events (all when none are given).
        names: Vec<String>,
    },
    /// Prints the VM's run status and the jobs; with --watch, then every change.
    ///
    /// One line `VM status: STATUS` (or `VM status: none ...` for a peer without
    /// query-status, such as qemu-storage-daemon), then one line per job:
    /// `job ID (TYPE): STATUS CURRENT/TOTAL: ERROR`. With --watch, one line per change
    /// follows as it happens (`VM status: running -> paused`,
    /// `job ID (TYPE): running -> concluded CURRENT/TOTAL`, `job ID: new, created`,
    /// `job ID (TYPE): concluded -> gone`), until QEMU closes the connection or exits
    /// (exit status 0) or the session fails (3); Ctrl-C stops it.
    Status {
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// Keep printing changes until the connection ends.
        #[arg(long)]
        watch: bool,
    },
    /// The QEMU Object Model: list, get, set and tree, as QEMU's scripts/qmp/qom-* do.
    ///
    /// Exit status: 0 success; 1 QEMU answered with an error (its class and description on
    /// stderr); 2 bad command line; 3 the command could not run, or a tree was cut short by
    /// --max-depth or --max-objects (what was shown is printed, a note says what was not).
    Qom {
        #[command(subcommand)]
        command: QomCmd,
    },
    /// Starts QEMU with a private QMP socket and runs the shell on it.
    Wrap {
        #[command(flatten)]
        common: ShellArgs,
        /// The QEMU command line, after `--`.
        #[arg(last = true, required = true)]
        qemu: Vec<String>,
    },
    /// Serves a fake QEMU on a socket, one client at a time, until a client runs `quit`.
    Fake {
        /// A unix socket path (created mode 0600, removed on exit and on SIGTERM, SIGHUP
        /// and SIGINT; a stale one is replaced, a live one refused), or HOST:PORT.
        #[arg(long, env = "QMP_SOCKET", default_value = "qmp-fake.sock")]
        listen: String,
        /// Start paused, as `qemu -S` does (status `prelaunch`).
        #[arg(long)]
        prelaunch: bool,
        /// Pretty-print output, as a `pretty=on` monitor does.
        #[arg(long)]
        pretty: bool,
    },
    /// Records one client session with QEMU as a transcript fixture, as a transparent proxy.
    ///
    /// Waits for one client on --listen, connects to QEMU at --connect and forwards bytes
    /// both ways unchanged (file descriptors too when both sockets are unix sockets; over
    /// TCP they are not forwarded, and a note says so). The transcript has `-> ` lines for
    /// what the client sent and `<- ` lines for what QEMU sent, one JSON message per line
    /// (cut by JSON structure), `<- EOF` when QEMU closed first, and `#` comments (date,
    /// peers). It is written when either side closes, or on SIGTERM, SIGHUP or SIGINT (what
    /// was seen so far; the listening socket is removed). `qmp replay` serves it again.
    Record {
        /// Where the client connects: a unix socket path (created mode 0600, removed on exit;
        /// a stale one is replaced, a live one refused), or HOST:PORT.
        #[arg(long)]
        listen: String,
        /// Where QEMU's QMP monitor is: a unix socket path, or HOST:PORT.
        #[arg(long)]
        connect: String,
        /// The transcript file [default: stdout].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Serves a transcript fixture (as `qmp record` writes) to one client, as QEMU did.
    ///
    /// The greeting is the recorded one; each request must be the next recorded one (same
    /// command and arguments; ids are the client's own), and gets the recorded events (with
    /// fresh timestamps) and reply. A request that does not match is answered with an error
    /// that shows what was expected, and printed on stderr. Exit status: 0 when every request
    /// matched and the whole transcript was played, 1 otherwise, 3 when it could not run.
    Replay {
        /// The transcript file.
        fixture: PathBuf,
        /// Where the client connects: a unix socket path (created mode 0600, removed on exit;
        /// a stale one is replaced, a live one refused), or HOST:PORT.
        #[arg(long)]
        listen: String,
    },
}

#[derive(Subcommand)]
enum QomCmd {
    /// Lists an object's properties, one a line: `name/` for a child, `@name/` for a link,
    /// else `name`.
    List {
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// The object's QOM path.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Prints a property's value: a string as it is, anything else as JSON.
    Get {
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// The object's QOM path and the property, split at the last `.` (`/machine.type`).
        #[arg(value_name = "PATH.PROPERTY")]
        path_property: String,
    },
    /// Sets a property; prints nothing on success.
    Set {
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// The object's QOM path and the property, split at the last `.` (`/objects/m0.prealloc`).
        #[arg(value_name = "PATH.PROPERTY")]
        path_property: String,
        /// The new value: JSON when it parses as JSON (`1048576`, `true`, `"1"`), else a string.
        value: String,
    },
    /// Prints the tree below an object, depth first.
    ///
    /// Each object's path, then `  name: value (type)` for each of its properties but its
    /// children (`<EXCEPTION: desc>` for a value QEMU refuses to give), a blank line, and
    /// then its children the same way.
    Tree {
        /// A unix socket path, or HOST:PORT.
        target: String,
        /// The root's QOM path.
        #[arg(default_value = "/")]
        path: String,
        /// Show no object deeper than this many levels below the root.
        #[arg(long, default_value_t = 64)]
        max_depth: usize,
        /// Show at most this many objects.
        #[arg(long, default_value_t = 10_000)]
        max_objects: usize,
    },
}

#[derive(Args)]
struct ShellArgs {
    /// Pretty-print replies and events.
    #[arg(short, long)]
    pretty: bool,
    /// Echo every message sent.
    #[arg(short, long)]
    verbose: bool,
    /// Append a JSON-lines log of every message sent and received to FILE.
    #[arg(short, long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Start in HMP mode (lines run through human-monitor-command).
    #[arg(long)]
    hmp: bool,
    /// The history file [default: ~/.qmp_history].
    #[arg(long, env = "QMP_HISTORY", value_name = "FILE")]
    history: Option<PathBuf>,
    /// Seconds to wait for each reply (default: no limit; Ctrl-C stops waiting).
    #[arg(long)]
    timeout: Option<f64>,
}

impl ShellArgs {
    fn options(self, agent: bool) -> Result<ShellOptions, String> {
        let history = self.history.or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".qmp_history"))
        });
        Ok(ShellOptions {
            pretty: self.pretty,
            verbose: self.verbose,
            log: self.log,
            hmp: self.hmp,
            history,
            timeout: self.timeout.map(seconds).transpose()?.flatten(),
            agent,
        })
    }
}

/// Seconds as a duration; 0 is no limit.
fn seconds(s: f64) -> Result<Option<Duration>, String> {
    if s == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(s)
        .map(Some)
        .map_err(|_| format!("invalid timeout: {s}"))
}

fn usage(message: &str) -> ExitCode {
    qmp_cli::fail(&format!("qmp: {message}"));
    ExitCode::from(qmp_cli::EXIT_USAGE)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Shell {
            target,
            fake,
            agent,
            no_reconnect,
            common,
        } => {
            let opts = match common.options(agent) {
                Ok(o) => o,
                Err(e) => return usage(&e),
            };
            let connect = match (fake, target) {
                (true, _) => Connect::Fake,
                (false, Some(t)) => Connect::Target {
                    target: Target::parse(&t),
                    reconnect: !no_reconnect,
                },
                (false, None) => return usage("no socket given (or set QMP_SOCKET)"),
            };
            qmp_cli::shell::exit(qmp_cli::shell::run(connect, opts))
        }
        Cmd::Exec {
            agent,
            timeout,
            pretty,
            target,
            command,
            args,
        } => {
            let timeout = match seconds(timeout) {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            qmp_cli::exec::run(&ExecOptions {
                target: Target::parse(&target),
                agent,
                timeout,
                pretty,
                command,
                args,
            })
        }
        Cmd::Events { target, names } => qmp_cli::events::run(&Target::parse(&target), &names),
        Cmd::Status { target, watch } => qmp_cli::status::run(&Target::parse(&target), watch),
        Cmd::Qom { command } => {
            use qmp_cli::qom::QomCommand;
            let (target, command) = match command {
                QomCmd::List { target, path } => (target, QomCommand::List { path }),
                QomCmd::Get {
                    target,
                    path_property,
                } => (target, QomCommand::Get { path_property }),
                QomCmd::Set {
                    target,
                    path_property,
                    value,
                } => (
                    target,
                    QomCommand::Set {
                        path_property,
                        value,
                    },
                ),
                QomCmd::Tree {
                    target,
                    path,
                    max_depth,
                    max_objects,
                } => (
                    target,
                    QomCommand::Tree {
                        path,
                        max_depth,
                        max_objects,
                    },
                ),
            };
            qmp_cli::qom::run(&Target::parse(&target), &command)
        }
        Cmd::Wrap { common, qemu } => match common.options(false) {
            Ok(opts) => qmp_cli::wrap::run(opts, &qemu),
            Err(e) => usage(&e),
        },
        Cmd::Fake {
            listen,
            prelaunch,
            pretty,
        } => match qmp_cli::fake::serve(&Target::parse(&listen), prelaunch, pretty) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                qmp_cli::fail(&format!("qmp fake: {e}"));
                ExitCode::from(qmp_cli::EXIT_FAILURE)
            }
        },
        Cmd::Record {
            listen,
            connect,
            output,
        } => match qmp_cli::record::run(&qmp_cli::record::RecordOptions {
            listen: Target::parse(&listen),
            connect: Target::parse(&connect),
            output,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                qmp_cli::fail(&format!("qmp record: {e}"));
                ExitCode::from(qmp_cli::EXIT_FAILURE)
            }
        },
        Cmd::Replay { fixture, listen } => qmp_cli::replay::run(&qmp_cli::replay::ReplayOptions {
            fixture,
            listen: Target::parse(&listen),
        }),
    }
}
