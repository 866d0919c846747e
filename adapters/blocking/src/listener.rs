//! Accept mode: listen on a socket path and let QEMU connect.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use qmp_kit::socket::Listening;

use crate::transport::wait;
use crate::{Builder, Connection, Error};

/// A unix socket that QEMU connects to, for `-qmp unix:PATH` (without `server=on`): QEMU is
/// the client of the socket and still the QMP server.
///
/// The socket file is owner-only (mode `0600`) before anyone can connect: it is bound,
/// `chmod`ed, and only then listened on. Dropping the listener removes the file if this
/// listener created it and it is still the same file; a path that was already there is
/// never removed (binding fails instead), nor one that was replaced since.
///
/// ```no_run
/// use std::time::Duration;
/// use qmp_blocking::Listener;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("/run/vm/qmp.sock")?;
/// let _qemu = std::process::Command::new("qemu-system-x86_64")
///     .args(["-machine", "none", "-display", "none", "-qmp", "unix:/run/vm/qmp.sock"])
///     .spawn()?;
/// let mut qmp = listener.accept(Duration::from_secs(10))?;
/// drop(listener); // removes the socket file; the connection stays up
/// qmp.quit(Duration::from_secs(5))?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    listening: Listening,
    builder: Builder,
}

impl Listener {
    /// Listens on `path` with the default [`Builder`] options. Fails if anything exists at
    /// `path` (a stale socket included: remove it first if it is yours).
    pub fn bind(path: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::new().listen(path)
    }

    pub(crate) fn bind_with(path: &Path, builder: Builder) -> Result<Self, Error> {
        let listening = qmp_kit::socket::listen(path)?;
        Ok(Listener { listening, builder })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        self.listening.path()
    }

    /// Waits up to `timeout` for QEMU to connect, then negotiates (within the builder's
    /// connect timeout). Fails with [`Error::Timeout`] when nobody connected in time. Can be
    /// called again for the next connection (QEMU reconnects with `reconnect-ms=`).
    pub fn accept(&self, timeout: Duration) -> Result<Connection, Error> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match self.listening.listener.accept() {
                Ok((stream, _)) => return self.builder.unix_stream(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.listening.accept_error(e)),
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(Error::Timeout);
            }
            let left = deadline.map(|d| d - now);
            wait(self.listening.listener.as_fd(), false, left)
                .map_err(|e| self.listening.accept_error(e))?;
        }
    }
}
