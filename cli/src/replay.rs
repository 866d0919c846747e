//! `qmp replay`: serves a transcript fixture (as `qmp record` writes them) to one client with
//! the server engine's `Script`, and reports the requests that did not match.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use qmp_proto::server::{Script, Server, ServerConfig};
use serde_json::Value;

use crate::record::{Conn, Listening};
use crate::target::Target;

/// Options of `qmp replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The transcript.
    pub fixture: PathBuf,
    /// Where the client connects.
    pub listen: Target,
}

/// The greeting the transcript recorded (its first `<- {"QMP": ...}` line), as the server's
/// configuration: version, package and capabilities. The default configuration without one.
pub fn server_config(text: &str) -> ServerConfig {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let mut config = ServerConfig::default().epoch_micros(micros);
    let greeting = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<-"))
        .filter_map(|body| serde_json::from_str::<Value>(body.trim()).ok())
        .find_map(|v| v.get("QMP").cloned());
    let Some(g) = greeting else {
        return config;
    };
    let q = &g["version"]["qemu"];
    if let (Some(major), Some(minor), Some(micro)) = (
        q["major"].as_u64(),
        q["minor"].as_u64(),
        q["micro"].as_u64(),
    ) {
        config = config.version(major, minor, micro);
    }
    if let Some(p) = g["version"]["package"].as_str() {
        config = config.package(p);
    }
    if let Some(caps) = g["capabilities"].as_array() {
        let caps: Vec<&str> = caps.iter().filter_map(Value::as_str).collect();
        config = config.capabilities(&caps);
    }
    config
}

/// Serves the fixture to one client, then reports: exit status 0 when every request matched
/// and the whole script was played, 1 otherwise (mismatches on stderr), 3 when it could not
/// run.
pub fn run(opts: &ReplayOptions) -> ExitCode {
    let text = match std::fs::read_to_string(&opts.fixture) {
        Ok(t) => t,
        Err(e) => return failure(&format!("cannot read {}: {e}", opts.fixture.display())),
    };
    let script = match Script::parse(&text) {
        Ok(s) => s,
        Err(e) => return failure(&format!("{}: {e}", opts.fixture.display())),
    };
    let mut server = Server::new(server_config(&text), script);
    let listening = match Listening::bind(&opts.listen, |signal| {
        crate::note(&format!("qmp replay: stopped by {signal}"));
        i32::from(crate::EXIT_FAILURE)
    }) {
        Ok(l) => l,
        Err(e) => return failure(&e.to_string()),
    };
    crate::note(&format!(
        "replaying {}: listening on {} (Ctrl-C stops)",
        opts.fixture.display(),
        listening.shown
    ));
    let served: io::Result<()> = listening.accept().and_then(|client| match client {
        Conn::Unix(s) => qmp_blocking::serve_unix(s, &mut server),
        Conn::Tcp(s) => qmp_blocking::serve_tcp(s, &mut server),
    });
    listening.close();
    if let Err(e) = served {
        return failure(&format!("the client connection failed: {e}"));
    }
    let script = server.handler();
    let mut ok = true;
    for m in script.mismatches() {
        crate::fail(&format!("mismatch: {m}"));
        ok = false;
    }
    if script.remaining() > 0 {
        crate::fail(&format!(
            "the client left with {} expected request(s) not sent",
            script.remaining()
        ));
        ok = false;
    }
    if ok {
        crate::note("replay complete: every request matched");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_QMP_ERROR)
    }
}

fn failure(message: &str) -> ExitCode {
    crate::fail(&format!("qmp replay: {message}"));
    ExitCode::from(crate::EXIT_FAILURE)
}
