//! Accept mode: listen on a socket path and let QEMU connect.

use std::path::Path;

use qmp_kit::socket::Listening;
use tokio::net::UnixListener;

use crate::transport::Transport;
use crate::{Builder, Error, Qmp};

/// A unix socket that QEMU connects to, for `-qmp unix:PATH` (without `server=on`): QEMU is
/// the client of the socket and still the QMP server.
///
/// The socket file is owner-only (mode `0600`) before anyone can connect: it is bound,
/// `chmod`ed, and only then listened on ([`qmp_kit::socket::listen`]). Dropping the listener
/// removes the file if this listener created it and it is still the same file; a path that
/// was already there is never removed (binding fails instead), nor one that was replaced
/// since.
///
/// ```no_run
/// use qmp_tokio::Listener;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind("/run/vm/qmp.sock")?;
/// let _qemu = std::process::Command::new("qemu-system-x86_64")
///     .args(["-machine", "none", "-display", "none", "-qmp", "unix:/run/vm/qmp.sock"])
///     .spawn()?;
/// let qmp = listener.accept().await?;
/// drop(listener); // removes the socket file; the connection stays up
/// qmp.quit().await?;
/// qmp.closed().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    listening: Listening<UnixListener>,
    builder: Builder,
}

impl Listener {
    /// Listens on `path` with the default [`Builder`] options. Fails if anything exists at
    /// `path` (a stale socket included: remove it first if it is yours). Call it within a
    /// tokio runtime (the socket is registered with its reactor).
    pub fn bind(path: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::new().listen(path)
    }

    pub(crate) fn bind_with(path: &Path, builder: Builder) -> Result<Self, Error> {
        let listening = qmp_kit::socket::listen(path)?.wrap(UnixListener::from_std)?;
        Ok(Listener { listening, builder })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        self.listening.path()
    }

    /// Waits for QEMU to connect, then negotiates (within the builder's connect timeout).
    /// Can be called again for the next connection (QEMU reconnects with `reconnect-ms=`).
    /// Wrap it in `tokio::time::timeout` to bound the wait.
    pub async fn accept(&self) -> Result<Qmp, Error> {
        let (stream, _) = self
            .listening
            .listener
            .accept()
            .await
            .map_err(|e| self.listening.accept_error(e))?;
        self.builder.establish(Transport::Unix(stream)).await
    }
}
