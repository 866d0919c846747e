//! Options, and the ways to open a negotiated connection.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use qmp_kit::fanout::Shared;
use qmp_kit::{Redial, Settings};

use crate::driver::Driver;
use crate::transport::{Target, Transport};
use crate::{Error, Listener, Qmp};

/// Options for a connection, and the ways to open one. Each returns once the session is
/// negotiated, with a [`Qmp`] handle and the [`Driver`] to spawn:
///
/// ```no_run
/// use std::time::Duration;
/// use qmp_async::{Builder, Reconnect};
///
/// # fn main() -> Result<(), qmp_async::Error> {
/// smol::block_on(async {
///     let (qmp, driver) = Builder::new()
///         .timeout(Duration::from_secs(10))        // default per-command timeout
///         .connect_timeout(Duration::from_secs(2)) // connect, greeting, negotiation
///         .reconnect(Reconnect::new())             // come back when QEMU restarts
///         .connect_unix("/run/vm/qmp.sock")
///         .await?;
///     smol::spawn(driver).detach();
///     let version: serde_json::Value = qmp.execute("query-version", &()).await?;
///     # let _ = version;
///     Ok(())
/// })
/// # }
/// ```
///
/// The options are the same in every adapter ([`qmp_kit::Settings`]): the engine
/// configuration, timeouts, guest agent mode, OOB, a label and a traffic tap:
///
/// ```no_run
/// # fn main() -> Result<(), qmp_async::Error> {
/// smol::block_on(async {
///     let (qmp, driver) = qmp_async::Builder::new()
///         .label("vm0")
///         .tap(|traffic| eprintln!("{traffic}")) // [vm0] -> {"execute": ...}
///         .connect_unix("/run/vm/qmp.sock")
///         .await?;
///     smol::spawn(driver).detach();
///     # let _ = qmp;
///     Ok(())
/// })
/// # }
/// ```
///
/// A guest agent ([`guest_agent`](Self::guest_agent)): connecting succeeds once the agent
/// answered the first resynchronisation ([`connect_timeout`](Self::connect_timeout) bounds
/// it); with [`reconnect`](Self::reconnect), every new session resynchronises again, and
/// [`Status::Connected`](crate::Status) and [`Qmp::greeting`] carry an empty greeting
/// ([`Greeting::default`](qmp_proto::Greeting)):
///
/// ```no_run
/// # fn main() -> Result<(), qmp_async::Error> {
/// smol::block_on(async {
///     let (agent, driver) = qmp_async::Builder::new()
///         .guest_agent()
///         .connect_unix("/run/vm/qga.sock")
///         .await?;
///     smol::spawn(driver).detach();
///     let info: serde_json::Value = agent.execute("guest-info", &()).await?;
///     println!("agent {}", info["version"]);
///     Ok(())
/// })
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    settings: Settings,
}

impl Builder {
    /// The defaults: no command timeout, 30 s for the greeting and for negotiation, OOB
    /// enabled when offered, no reconnection, and the engine's other defaults
    /// ([`ClientConfig::default`](qmp_proto::ClientConfig::default)).
    pub fn new() -> Self {
        Self::default()
    }

    qmp_kit::settings_methods!();

    /// Connects to a unix socket path (`-qmp unix:PATH,server=on,wait=off`) and negotiates.
    pub async fn connect_unix(&self, path: impl AsRef<Path>) -> Result<(Qmp, Driver), Error> {
        let target = Target::Unix(path.as_ref().to_owned());
        self.connect_target(target).await
    }

    /// Connects to a TCP address (`-qmp tcp:HOST:PORT,server=on,wait=off`), each resolved
    /// address in turn, and negotiates. Names are resolved once, here, with the system
    /// resolver (which blocks); reconnection reuses the addresses.
    pub async fn connect_tcp(&self, addr: impl ToSocketAddrs) -> Result<(Qmp, Driver), Error> {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("cannot resolve the QMP address", e))?;
        self.connect_target(Target::Tcp(addrs.collect())).await
    }

    async fn connect_target(&self, target: Target) -> Result<(Qmp, Driver), Error> {
        let transport = crate::transport::open(&target, self.settings.get_connect_timeout())
            .await
            .map_err(|e| Error::io(format!("cannot connect to {}", target.describe()), e))?;
        let redial = Redial::from_settings(target, &self.settings);
        self.establish(transport, redial).await
    }

    /// Negotiates over a connected unix stream (file descriptors can be passed on it).
    pub async fn unix_stream(&self, stream: UnixStream) -> Result<(Qmp, Driver), Error> {
        let transport =
            Transport::unix(stream).map_err(|e| Error::io("cannot use the stream", e))?;
        self.establish(transport, None).await
    }

    /// Negotiates over a connected TCP stream.
    pub async fn tcp_stream(&self, stream: TcpStream) -> Result<(Qmp, Driver), Error> {
        let transport =
            Transport::tcp(stream).map_err(|e| Error::io("cannot use the stream", e))?;
        self.establish(transport, None).await
    }

    /// Negotiates over any stream implementing the futures-io traits (a TLS stream, an SSH
    /// channel, an in-memory pipe, ...). File descriptors cannot be passed on it (calls with
    /// some fail with [`Error::FdsUnsupported`]), and it is not reconnected.
    pub async fn connect_stream<S>(&self, stream: S) -> Result<(Qmp, Driver), Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.establish(Transport::Other(Box::pin(stream)), None)
            .await
    }

    /// Listens on a unix socket path for QEMU to connect (`-qmp unix:PATH` without
    /// `server=on`); connections accepted from it use these options. See [`Listener`].
    pub fn listen(&self, path: impl AsRef<Path>) -> Result<Listener, Error> {
        Listener::bind_with(path.as_ref(), self.clone())
    }

    pub(crate) async fn establish(
        &self,
        transport: Transport,
        redial: Option<Redial>,
    ) -> Result<(Qmp, Driver), Error> {
        let (tx, rx) = qmp_kit::fanout::queue::queue();
        let shared = Arc::new(Shared::new());
        let mut driver = Driver::new(&self.settings, Arc::clone(&shared), rx);
        driver.establish(transport, redial).await?;
        Ok((Qmp::new(tx, shared), driver))
    }
}
