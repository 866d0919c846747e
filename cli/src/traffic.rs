//! The traffic log: every QMP message sent and received, from the adapters' typed traffic
//! tap ([`qmp_kit::Traffic`]), echoed to the terminal (`-v`: sent messages) and appended to
//! a JSON-lines file (`-l`: both ways). The adapters' warnings (a reply nobody waited for,
//! events dropped) are shown through [`Warnings`].

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use qmp_kit::{Direction, Traffic};

use crate::format;
use crate::out::Printer;

/// Where traffic goes.
#[derive(Debug, Default)]
pub struct TrafficLog {
    /// Echo sent messages here (`-v`), pretty-printed or not.
    pub echo: Option<(Printer, bool)>,
    /// Append every message, both ways, to this file (`-l`).
    pub file: Option<Mutex<File>>,
}

impl TrafficLog {
    /// Opens (creates or appends to) the log file. The path is only ever opened for
    /// appending: nothing else is created, removed or replaced.
    pub fn open_log(path: &Path) -> std::io::Result<Mutex<File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Mutex::new(file))
    }

    /// Whether it records anything at all.
    pub fn is_active(&self) -> bool {
        self.echo.is_some() || self.file.is_some()
    }

    /// The tap to give a connection's builder.
    pub fn tap(self: &Arc<Self>) -> impl Fn(&Traffic) + Send + Sync + 'static {
        let log = Arc::clone(self);
        move |t| log.record(t)
    }

    /// Records one message.
    pub fn record(&self, traffic: &Traffic) {
        let sent = traffic.direction == Direction::Out;
        let text = traffic.message.as_str();
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

/// The adapters' warnings, shown above the prompt (or on stderr).
#[derive(Debug, Default)]
pub struct Warnings {
    /// Where they go (else to stderr).
    pub printer: Option<Printer>,
}

impl Warnings {
    /// Installs this as the process's logger, for warnings and errors.
    pub fn install(self) {
        if log::set_boxed_logger(Box::new(self)).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    }
}

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("qmp_") && metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = format!("warning: {}", record.args());
        match &self.printer {
            Some(p) => p.line(text),
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }

    fn flush(&self) {}
}
