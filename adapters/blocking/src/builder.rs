//! Options, and the ways to get a connected, negotiated [`Connection`].

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use qmp_kit::Settings;
#[cfg(doc)]
use qmp_proto::ClientConfig;

use crate::transport::Stream;
use crate::{Connection, Error, Listener};

/// How long a TCP connect may take when no connect timeout is set.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for a [`Connection`], and the ways to open one: connect over a unix socket path
/// or a TCP address, negotiate over a stream you already have, or listen on a path and let
/// QEMU connect ([`listen`](Self::listen)).
///
/// ```no_run
/// use std::time::Duration;
/// use qmp_blocking::Builder;
///
/// # fn main() -> Result<(), qmp_blocking::Error> {
/// let mut qmp = Builder::new()
///     .timeout(Duration::from_secs(10))        // default per-command timeout
///     .connect_timeout(Duration::from_secs(2)) // connect, greeting, negotiation
///     .connect_unix("/run/vm/qmp.sock")?;
/// let version: serde_json::Value = qmp.execute("query-version", &())?;
/// # let _ = version;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    settings: Settings,
}

impl Builder {
    /// The defaults: no command timeout, 30 s for the greeting and for negotiation, OOB
    /// enabled when offered, and the engine's other defaults ([`ClientConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    qmp_kit::settings_methods!();

    /// Connects to a unix socket path and negotiates.
    pub fn connect_unix(&self, path: impl AsRef<Path>) -> Result<Connection, Error> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .map_err(|e| Error::io(format!("cannot connect to {}", path.display()), e))?;
        self.unix_stream(stream)
    }

    /// Connects to a TCP address (each resolved address in turn, each within the connect
    /// timeout) and negotiates.
    pub fn connect_tcp(&self, addr: impl ToSocketAddrs) -> Result<Connection, Error> {
        let timeout = self
            .settings
            .get_connect_timeout()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("cannot resolve the QMP address", e))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => return self.tcp_stream(stream),
                Err(e) => last = Some(Error::io(format!("cannot connect to {addr}"), e)),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::io(
                "cannot connect",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to connect to"),
            )
        }))
    }

    /// Negotiates over a connected unix stream (file descriptors can be passed on it).
    pub fn unix_stream(&self, stream: UnixStream) -> Result<Connection, Error> {
        Connection::establish(Stream::Unix(stream), &self.settings)
    }

    /// Negotiates over a connected TCP stream.
    pub fn tcp_stream(&self, stream: TcpStream) -> Result<Connection, Error> {
        Connection::establish(Stream::Tcp(stream), &self.settings)
    }

    /// Listens on a unix socket path for QEMU to connect (`-qmp unix:PATH` without
    /// `server=on`); connections accepted from it use these options. See [`Listener`].
    pub fn listen(&self, path: impl AsRef<Path>) -> Result<Listener, Error> {
        Listener::bind_with(path.as_ref(), self.clone())
    }
}
