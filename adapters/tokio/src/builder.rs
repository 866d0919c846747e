//! Options, and the ways to open a negotiated connection.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use qmp_kit::fanout::Shared;
use qmp_kit::{Redial, Settings};
use qmp_proto::RunState;
use tokio::net::{TcpStream, UnixStream};

use crate::driver::Driver;
use crate::transport::{Target, Transport};
use crate::{Error, Listener, Qmp};

/// Options for a connection, and the ways to open one. Each returns once the session is
/// negotiated, with a [`Qmp`] handle; the connection's driver runs as a task spawned with
/// `tokio::spawn` on the runtime of the caller (so call them within a tokio runtime, of
/// either flavour).
///
/// ```no_run
/// use std::time::Duration;
/// use qmp_tokio::Builder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), qmp_tokio::Error> {
/// let qmp = Builder::new()
///     .timeout(Duration::from_secs(10))        // default per-command timeout
///     .connect_timeout(Duration::from_secs(2)) // connect, greeting, negotiation
///     .label("vm0")
///     .tap(|traffic| eprintln!("{traffic}"))   // [vm0] -> {"execute": ...}
///     .connect_unix("/run/vm/qmp.sock")
///     .await?;
/// let version: serde_json::Value = qmp.execute("query-version", &()).await?;
/// # let _ = version;
/// # Ok(())
/// # }
/// ```
///
/// The options are the same in every adapter ([`qmp_kit::Settings`]): the engine
/// configuration, timeouts, guest agent mode, OOB, a label and a traffic tap. A guest agent
/// ([`guest_agent`](Self::guest_agent)): connecting succeeds once the agent answered the
/// first resynchronisation, and [`Qmp::greeting`] is an empty greeting.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    settings: Settings,
}

impl Builder {
    /// The defaults: no command timeout, 30 s for the greeting and for negotiation, OOB
    /// enabled when offered, and the engine's other defaults
    /// ([`ClientConfig::default`](qmp_proto::ClientConfig::default)).
    pub fn new() -> Self {
        Self::default()
    }

    qmp_kit::settings_methods!();

    /// Connects to a unix socket path (`-qmp unix:PATH,server=on,wait=off`) and negotiates.
    pub async fn connect_unix(&self, path: impl AsRef<Path>) -> Result<Qmp, Error> {
        self.connect_target(Target::Unix(path.as_ref().to_owned()))
            .await
    }

    /// Connects to a TCP address (`-qmp tcp:HOST:PORT,server=on,wait=off`), each resolved
    /// address in turn, and negotiates. Names are resolved here with the system resolver
    /// (which blocks).
    pub async fn connect_tcp(&self, addr: impl ToSocketAddrs) -> Result<Qmp, Error> {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("cannot resolve the QMP address", e))?;
        self.connect_target(Target::Tcp(addrs.collect())).await
    }

    async fn connect_target(&self, target: Target) -> Result<Qmp, Error> {
        let transport = crate::transport::open(&target, self.settings.get_connect_timeout())
            .await
            .map_err(|e| Error::io(format!("cannot connect to {}", target.describe()), e))?;
        let redial = Redial::from_settings(target, &self.settings);
        self.establish_with(transport, redial).await
    }

    /// Negotiates over a connected tokio unix stream (file descriptors can be passed on it).
    pub async fn unix_stream(&self, stream: UnixStream) -> Result<Qmp, Error> {
        self.establish(Transport::Unix(stream)).await
    }

    /// Negotiates over a connected tokio TCP stream.
    pub async fn tcp_stream(&self, stream: TcpStream) -> Result<Qmp, Error> {
        let transport =
            Transport::tcp(stream).map_err(|e| Error::io("cannot use the stream", e))?;
        self.establish(transport).await
    }

    /// Listens on a unix socket path for QEMU to connect (`-qmp unix:PATH` without
    /// `server=on`); connections accepted from it use these options. See [`Listener`].
    /// Call it within a tokio runtime.
    pub fn listen(&self, path: impl AsRef<Path>) -> Result<Listener, Error> {
        Listener::bind_with(path.as_ref(), self.clone())
    }

    /// Spawns the driver of a session on `transport`, and waits until the session is ready
    /// (negotiated, or a guest agent's first resynchronisation answered) or has ended.
    pub(crate) async fn establish(&self, transport: Transport) -> Result<Qmp, Error> {
        self.establish_with(transport, None).await
    }

    async fn establish_with(
        &self,
        transport: Transport,
        redial: Option<Redial>,
    ) -> Result<Qmp, Error> {
        let (tx, rx) = qmp_kit::fanout::queue::queue();
        let shared = Arc::new(Shared::new());
        let mut watch = shared.state_watch();
        let mut driver = Driver::new(&self.settings, Arc::clone(&shared), rx, redial);
        driver.start(transport);
        // Holding a handle keeps the driver from closing; dropping this future (and so the
        // handle) before the session is ready closes it.
        let qmp = Qmp::new(tx, shared);
        // The task owns the driver, and `run` borrows it: a future made by `driver.run()`
        // with `run(self)` would hold the driver twice (its argument and its local).
        tokio::spawn(async move { driver.run().await });
        loop {
            match watch.changed().await {
                Some(t) if t.to == RunState::Running => return Ok(qmp),
                Some(_) => {}
                None => return Err(qmp.gone_error()),
            }
        }
    }
}
