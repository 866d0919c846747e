//! The traffic log: every QMP message sent and received, tapped from the adapters'
//! trace-level log (`-> {...}`, `<- {...}`), echoed to the terminal (`-v`) and appended to
//! a JSON-lines file (`-l`). The adapters' warnings (a reply nobody waited for, events
//! dropped) are shown too.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::format;
use crate::out::Printer;

/// Where traffic goes.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Echo sent messages here (`-v`), pretty-printed or not.
    pub echo: Option<(Printer, bool)>,
    /// Warnings go here (else to stderr).
    pub warnings: Option<Printer>,
    /// Append every message, both ways, to this file (`-l`).
    pub file: Option<Mutex<File>>,
}

impl Traffic {
    /// Opens (creates or appends to) the log file. The path is only ever opened for
    /// appending: nothing else is created, removed or replaced.
    pub fn open_log(path: &Path) -> std::io::Result<Mutex<File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Mutex::new(file))
    }

    /// Installs this as the process's logger. Messages are copied for the log only when it
    /// wants them (`-v` or `-l`).
    pub fn install(self) {
        let wants_messages = self.echo.is_some() || self.file.is_some();
        if log::set_boxed_logger(Box::new(self)).is_ok() {
            log::set_max_level(if wants_messages {
                log::LevelFilter::Trace
            } else {
                log::LevelFilter::Warn
            });
        }
    }

    fn message(&self, sent: bool, text: &str) {
        if sent {
            if let Some((printer, pretty)) = &self.echo {
                printer.line(format::json(text, *pretty));
            }
        }
        if let Some(file) = &self.file {
            // A message that is not JSON (garbage from the peer) is logged as a string.
            let message = serde_json::from_str::<&serde_json::value::RawValue>(text)
                .map(|raw| raw.get().to_owned())
                .unwrap_or_else(|_| serde_json::Value::String(text.to_owned()).to_string());
            let line = format!(
                "{{\"time\": \"{}\", \"direction\": \"{}\", \"message\": {message}}}\n",
                format::now(),
                if sent { "sent" } else { "received" }
            );
            let mut f = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
    }
}

impl log::Log for Traffic {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("qmp_")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            log::Level::Trace => {
                let text = record.args().to_string();
                if let Some(m) = text.strip_prefix("-> ") {
                    self.message(true, m);
                } else if let Some(m) = text.strip_prefix("<- ") {
                    self.message(false, m);
                }
            }
            log::Level::Warn | log::Level::Error => {
                let text = format!("warning: {}", record.args());
                match &self.warnings {
                    Some(p) => p.line(text),
                    None => {
                        let _ = writeln!(std::io::stderr(), "{text}");
                    }
                }
            }
            _ => {}
        }
    }

    fn flush(&self) {}
}
