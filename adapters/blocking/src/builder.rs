//! Options, and the ways to get a connected, negotiated [`Connection`].

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

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
    config: ClientConfig,
    connect_timeout: Option<Duration>,
}

impl Builder {
    /// The defaults: no command timeout, 30 s for the greeting and for negotiation, OOB
    /// enabled when offered, and the engine's other defaults ([`ClientConfig::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the engine configuration (message size limit, in-flight cap, event buffer
    /// bound, timeouts, ...). Later setters of this builder adjust it further.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The default timeout of every command ([`ClientConfig::command_timeout`]);
    /// [`CallOptions::timeout`](crate::CallOptions::timeout) overrides it per call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.command_timeout(Some(timeout));
        self
    }

    /// How long each step of opening a session may take: the TCP connect, then waiting for
    /// the greeting, then negotiation ([`ClientConfig::greeting_timeout`] and
    /// [`ClientConfig::negotiation_timeout`]). A QMP monitor serves one client at a time and
    /// greets a second one only when the first leaves, so this is what fails when another
    /// client holds the monitor.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self.config = self
            .config
            .greeting_timeout(Some(timeout))
            .negotiation_timeout(Some(timeout))
            .sync_timeout(Some(timeout));
        self
    }

    /// Talks to a QEMU guest agent (`qemu-ga`) instead of a QMP monitor: no greeting, no
    /// negotiation, and a resynchronisation (`0xFF` + `guest-sync-delimited` with a random
    /// id) on connect, after a command times out and on
    /// [`Connection::resync`](crate::Connection::resync), as
    /// [`ClientConfig::guest_agent`] describes. Connecting succeeds once the agent answered
    /// the first resynchronisation ([`connect_timeout`](Self::connect_timeout) bounds it,
    /// default 10 s). Sets the default command timeout to
    /// [`GUEST_AGENT_COMMAND_TIMEOUT`](qmp_proto::GUEST_AGENT_COMMAND_TIMEOUT) (30 s) unless one is set: an agent that is not
    /// running in the guest answers nothing at all.
    ///
    /// ```no_run
    /// use qmp_blocking::Builder;
    ///
    /// # fn main() -> Result<(), qmp_blocking::Error> {
    /// // qemu-system-x86_64 ... -chardev socket,path=/run/vm/qga.sock,server=on,wait=off,id=qga0
    /// //   -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
    /// let mut agent = Builder::new().guest_agent().connect_unix("/run/vm/qga.sock")?;
    /// agent.execute::<qmp_blocking::IgnoredAny>("guest-ping", &())?;
    /// let info: serde_json::Value = agent.execute("guest-info", &())?;
    /// println!("agent {}", info["version"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn guest_agent(mut self) -> Self {
        self.config = self.config.with_guest_agent_defaults();
        self
    }

    /// Whether to enable out-of-band execution when QEMU offers it (default `true`).
    pub fn oob(mut self, enable: bool) -> Self {
        self.config = self.config.oob(enable);
        self
    }

    /// The engine configuration as set so far.
    pub fn get_config(&self) -> &ClientConfig {
        &self.config
    }

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
        let timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
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
        Connection::establish(Stream::Unix(stream), self.config.clone())
    }

    /// Negotiates over a connected TCP stream.
    pub fn tcp_stream(&self, stream: TcpStream) -> Result<Connection, Error> {
        Connection::establish(Stream::Tcp(stream), self.config.clone())
    }

    /// Listens on a unix socket path for QEMU to connect (`-qmp unix:PATH` without
    /// `server=on`); connections accepted from it use these options. See [`Listener`].
    pub fn listen(&self, path: impl AsRef<Path>) -> Result<Listener, Error> {
        Listener::bind_with(path.as_ref(), self.clone())
    }
}
