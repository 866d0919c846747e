//! Accept mode: listen on a socket path and let QEMU connect.

use std::fs::{self, Permissions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

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
    listener: UnixListener,
    path: PathBuf,
    /// The socket file this listener created: `(device, inode)`.
    file: (u64, u64),
    builder: Builder,
}

impl Listener {
    /// Listens on `path` with the default [`Builder`] options. Fails if anything exists at
    /// `path` (a stale socket included: remove it first if it is yours).
    pub fn bind(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::bind_with(path.as_ref(), Builder::new())
    }

    pub(crate) fn bind_with(path: &Path, builder: Builder) -> Result<Self, Error> {
        let context = || format!("cannot listen on {}", path.display());
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::io(context(), e.into()))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| Error::io(context(), e.into()))?;
        rustix::net::bind(&fd, &addr).map_err(|e| Error::io(context(), e.into()))?;
        let meta = fs::symlink_metadata(path).map_err(|e| Error::io(context(), e))?;
        let listener = Listener {
            listener: UnixListener::from(fd),
            path: path.to_owned(),
            file: (meta.dev(), meta.ino()),
            builder,
        };
        // From here on, a failure drops `listener`, which removes the file it created.
        // Nobody can connect before `listen`, so the mode is set before anyone can.
        fs::set_permissions(path, Permissions::from_mode(0o600))
            .map_err(|e| Error::io(context(), e))?;
        rustix::net::listen(&listener.listener, 1).map_err(|e| Error::io(context(), e.into()))?;
        listener
            .listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(context(), e))?;
        Ok(listener)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for QEMU to connect, then negotiates (within the builder's
    /// connect timeout). Fails with [`Error::Timeout`] when nobody connected in time. Can be
    /// called again for the next connection (QEMU reconnects with `reconnect-ms=`).
    pub fn accept(&self, timeout: Duration) -> Result<Connection, Error> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return self.builder.unix_stream(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot accept on {}", self.path.display()),
                        e,
                    ))
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Err(Error::Timeout);
            }
            let left = deadline.map(|d| d - now);
            wait(self.listener.as_fd(), false, left)
                .map_err(|e| Error::io(format!("cannot accept on {}", self.path.display()), e))?;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.file && m.file_type().is_socket());
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                log::warn!(target: crate::connection::TARGET, "cannot remove {}: {e}", self.path.display());
            }
        }
    }
}
