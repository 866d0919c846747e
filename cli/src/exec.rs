//! `qmp exec`: one command, its result on stdout as JSON.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use qmp_blocking::{Builder, CallOptions, Connection, Error, RawValue};

use crate::request::Request;
use crate::syntax::{self, Parsed, Parser};
use crate::target::Target;
use crate::{format, EXIT_FAILURE, EXIT_QMP_ERROR, EXIT_USAGE};

/// What `qmp exec` was asked.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Where.
    pub target: Target,
    /// A guest agent socket.
    pub agent: bool,
    /// The command's deadline (connecting has its own).
    pub timeout: Option<Duration>,
    /// Pretty-print the result.
    pub pretty: bool,
    /// The command name, or a raw JSON request.
    pub command: String,
    /// `key=value` arguments.
    pub args: Vec<String>,
}

/// Connects with the tool's defaults.
pub fn connect(
    target: &Target,
    agent: bool,
    timeout: Option<Duration>,
) -> Result<Connection, Error> {
    let mut builder = Builder::new().connect_timeout(crate::shell::CONNECT_TIMEOUT);
    if agent {
        builder = builder.guest_agent();
    }
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    match target {
        Target::Unix(path) => builder.connect_unix(path),
        Target::Tcp(addr) => builder.connect_tcp(addr.as_str()),
    }
}

/// The request `qmp exec` sends: a raw JSON request, or a command with `key=value` words.
pub fn request(command: &str, args: &[String]) -> Result<Request, String> {
    let object = if command.trim_start().starts_with('{') {
        if !args.is_empty() {
            return Err("a raw JSON request takes no key=value arguments".into());
        }
        match Parser::new()
            .parse_line(command)
            .map_err(|e| e.to_string())?
        {
            Parsed::Request(object) => object,
            Parsed::Nothing => return Err("empty request".into()),
        }
    } else {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        syntax::build_request(command, &words).map_err(|e| e.to_string())?
    };
    Request::from_object(object)
}

/// Runs `qmp exec`: exit status 0 with the result on stdout; 1 with the QMP error's class
/// and description on stderr; 2 for a bad command line; 3 when the command could not run
/// (no connection, a timeout, the session ended).
pub fn run(opts: &ExecOptions) -> ExitCode {
    let request = match request(&opts.command, &opts.args) {
        Ok(r) => r,
        Err(e) => {
            crate::fail(&format!("qmp exec: {e}"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut conn = match connect(&opts.target, opts.agent, opts.timeout) {
        Ok(c) => c,
        Err(e) => {
            crate::fail(&format!("qmp exec: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let call = CallOptions::new().oob(request.oob);
    let result =
        conn.execute_with::<Box<RawValue>>(&request.name, &request.arguments_value(), call);
    let code = match result {
        Ok(ret) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", format::json(ret.get(), opts.pretty));
            ExitCode::SUCCESS
        }
        // EOF after quit is its success: QEMU may exit before it replies.
        Err(Error::Disconnected(qmp_proto::DisconnectReason::Eof { after_quit: true }))
            if request.name == "quit" =>
        {
            ExitCode::SUCCESS
        }
        Err(Error::Qmp(e)) => {
            crate::fail(&format!("{}: {}", e.class, e.desc));
            ExitCode::from(EXIT_QMP_ERROR)
        }
        Err(e) => {
            crate::fail(&format!("qmp exec: {}: {e}", request.name));
            ExitCode::from(EXIT_FAILURE)
        }
    };
    conn.close();
    code
}
