//! `qmp events`: QMP events as JSON lines, until interrupted or until QEMU closes the
//! connection.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use qmp_blocking::Error;
use qmp_proto::DisconnectReason;

use crate::target::Target;
use crate::{format, EXIT_FAILURE};

/// Streams events named in `names` (all when empty) to stdout, one JSON object a line,
/// flushed as each arrives. Exit status 0 when QEMU closes the connection, 3 when it
/// cannot be reached or the session fails.
pub fn run(target: &Target, names: &[String]) -> ExitCode {
    let mut conn = match crate::exec::connect(target, false, None) {
        Ok(c) => c,
        Err(e) => {
            crate::fail(&format!("qmp events: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    loop {
        match conn.next_event(Duration::MAX) {
            Ok(Some(event)) => {
                if names.is_empty() || names.contains(&event.name) {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{}", format::event_json(&event))
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        // The reader went away (a closed pipe): nothing more to do.
                        return ExitCode::SUCCESS;
                    }
                }
            }
            Ok(None) => {}
            Err(Error::Disconnected(DisconnectReason::Eof { .. })) => return ExitCode::SUCCESS,
            Err(e) => {
                crate::fail(&format!("qmp events: {e}"));
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
}
