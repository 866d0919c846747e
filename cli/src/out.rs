//! Output that never garbles the line being typed: while the shell reads a line, other
//! threads' lines (events, connection status, the traffic echo) are printed above the
//! prompt by the line editor; otherwise they go straight to stdout, in order.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use rustyline::ExternalPrinter;

struct State {
    /// Whether the line editor is reading a line now.
    reading: bool,
    /// The editor's printer, when stdin is a terminal.
    external: Option<Box<dyn ExternalPrinter + Send>>,
}

/// A cloneable printer shared by the shell's threads.
#[derive(Clone)]
pub struct Printer {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").finish_non_exhaustive()
    }
}

impl Default for Printer {
    fn default() -> Self {
        Self::new()
    }
}

impl Printer {
    /// A printer to stdout.
    pub fn new() -> Self {
        Printer {
            state: Arc::new(Mutex::new(State {
                reading: false,
                external: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints through the line editor's printer while it reads a line.
    pub fn set_external(&self, printer: Box<dyn ExternalPrinter + Send>) {
        self.lock().external = Some(printer);
    }

    /// Marks the start and the end of reading a line.
    pub fn set_reading(&self, reading: bool) {
        self.lock().reading = reading;
    }

    /// Prints one message (which may span lines) and a line end.
    pub fn line(&self, text: impl Into<String>) {
        let text = text.into();
        let mut state = self.lock();
        if state.reading {
            if let Some(p) = state.external.as_mut() {
                // With its line end: just before the editor enters raw mode (or just after
                // it leaves it), its printer writes the text to the terminal as it is, and
                // the prompt drawn next would start on the same line and erase it. (In raw
                // mode the editor adds the line end only where it is missing.)
                let ended = if text.ends_with('\n') {
                    text.clone()
                } else {
                    format!("{text}\n")
                };
                if p.print(ended).is_ok() {
                    return;
                }
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}
