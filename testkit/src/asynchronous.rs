//! The async flavour (feature `async`): peers that a [`qmp_async::Qmp`] connects to, and the
//! executor matrix.
//!
//! An async scenario is a plain `async fn NAME(Spawner)`;
//! [`on_every_executor!`](crate::on_every_executor) makes it one test per executor: smol
//! ([`under_smol`]), async-executor ([`under_async_executor`]) and tokio ([`under_tokio`]).
//! The scenario spawns on the executor it runs under with its [`Spawner`] (drivers,
//! concurrent callers), and waits with [`within`] and [`sleep`], which never block the
//! thread.
//!
//! ```
//! use qmp_testkit::asynchronous::{within, FakePeer, Spawner};
//! use qmp_proto::server::FakeQemu;
//!
//! async fn stop(sp: Spawner) {
//!     let peer = FakePeer::serve(FakeQemu::new());
//!     let (qmp, driver) = peer.connect(&sp).await;
//!     let _: serde_json::Value = qmp.execute("stop", &()).await.unwrap();
//!     qmp.close();
//!     within(driver).await;
//!     assert_eq!(peer.finish().handler().status(), "paused");
//! }
//!
//! // In a test file, `on_every_executor!(stop);` makes the tests `stop::smol`,
//! // `stop::async_executor` and `stop::tokio`. By hand:
//! qmp_testkit::asynchronous::under_smol(stop);
//! qmp_testkit::asynchronous::under_tokio(stop);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qmp_async::{Builder, DisconnectReason, Qmp};
use qmp_proto::server::FakeQemu;

use crate::{Fake, Qemu, POLL, T};

/// The flavour of peers that async clients connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Async;

/// A real QEMU that async clients connect to.
pub type Peer = Qemu<Async>;

/// The fake QEMU (or another handler) on a socket that async clients connect to.
pub type FakePeer<H = FakeQemu> = Fake<H, Async>;

/// A spawned task's output.
pub type Join<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Spawns on the executor a scenario runs under.
#[derive(Clone)]
pub enum Spawner {
    /// smol's global executor.
    Smol,
    /// An `async_executor::Executor` run by the scenario's thread.
    Executor(Arc<async_executor::Executor<'static>>),
    /// A tokio runtime.
    Tokio(tokio::runtime::Handle),
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Spawner::Smol => "Spawner::Smol",
            Spawner::Executor(_) => "Spawner::Executor",
            Spawner::Tokio(_) => "Spawner::Tokio",
        })
    }
}

impl Spawner {
    /// Spawns `fut`; its output is awaited through the returned future (a task that panics
    /// makes the await panic).
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Join<T> {
        match self {
            Spawner::Smol => Box::pin(smol::spawn(fut)),
            Spawner::Executor(ex) => Box::pin(ex.spawn(fut)),
            Spawner::Tokio(handle) => {
                let task = handle.spawn(fut);
                Box::pin(async move { task.await.expect("the task panicked") })
            }
        }
    }
}

/// Runs a scenario under smol: `smol::block_on`, tasks on smol's global executor.
pub fn under_smol<F: Future<Output = ()>>(scenario: impl FnOnce(Spawner) -> F) {
    smol::block_on(scenario(Spawner::Smol));
}

/// Runs a scenario under `futures_lite::future::block_on` driving an `async_executor`
/// (one thread for the scenario and its tasks).
pub fn under_async_executor<F: Future<Output = ()>>(scenario: impl FnOnce(Spawner) -> F) {
    let ex = Arc::new(async_executor::Executor::new());
    futures_lite::future::block_on(ex.run(scenario(Spawner::Executor(Arc::clone(&ex)))));
}

/// Runs a scenario under a tokio multi-thread runtime (async-io's reactor runs on its own
/// thread meanwhile).
pub fn under_tokio<F: Future<Output = ()>>(scenario: impl FnOnce(Spawner) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let spawner = Spawner::Tokio(rt.handle().clone());
    rt.block_on(scenario(spawner));
}

/// For each `async fn NAME(Spawner)` in scope, a module `NAME` with one test per executor:
/// `smol`, `async_executor` and `tokio`.
#[macro_export]
macro_rules! on_every_executor {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn smol() {
                $crate::asynchronous::under_smol(super::$name);
            }
            #[test]
            fn async_executor() {
                $crate::asynchronous::under_async_executor(super::$name);
            }
            #[test]
            fn tokio() {
                $crate::asynchronous::under_tokio(super::$name);
            }
        }
    )*};
}

/// Sleeps on async-io's timer (blocking the thread would stall a single-threaded executor).
pub async fn sleep(d: Duration) {
    async_io::Timer::after(d).await;
}

/// Waits up to [`T`] for `fut`; panics after that.
pub async fn within<F: Future>(fut: F) -> F::Output {
    qmp_async::timeout(T, fut).await.expect("timed out")
}

impl Qemu<Async> {
    /// Connects to the peer's socket once it is there (within 10 s) with `builder`, and
    /// spawns the driver.
    pub async fn connect_with(
        &mut self,
        builder: &Builder,
        sp: &Spawner,
    ) -> (Qmp, Join<DisconnectReason>) {
        let deadline = Instant::now() + T;
        loop {
            let mut error = None;
            if self.sock.exists() {
                match builder.connect_unix(&self.sock).await {
                    Ok((qmp, driver)) => return (qmp, sp.spawn(driver)),
                    Err(e) => error = Some(e.to_string()),
                }
            }
            self.not_yet(deadline, error);
            sleep(POLL).await;
        }
    }

    /// Connects with a 10 s connect timeout, and spawns the driver.
    pub async fn connect(&mut self, sp: &Spawner) -> (Qmp, Join<DisconnectReason>) {
        self.connect_with(&Builder::new().connect_timeout(T), sp)
            .await
    }

    /// Waits up to 10 s for the process to exit by itself.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            if let Some(status) = self.exited_by(deadline) {
                return status;
            }
            sleep(POLL).await;
        }
    }
}

impl<H> Fake<H, Async> {
    /// Connects with `builder` and spawns the driver.
    pub async fn connect_with(
        &self,
        builder: &Builder,
        sp: &Spawner,
    ) -> (Qmp, Join<DisconnectReason>) {
        let (qmp, driver) = builder
            .connect_unix(&self.sock)
            .await
            .expect("connect to the fake QEMU");
        (qmp, sp.spawn(driver))
    }

    /// Connects with the default options and spawns the driver.
    pub async fn connect(&self, sp: &Spawner) -> (Qmp, Join<DisconnectReason>) {
        self.connect_with(&Builder::new(), sp).await
    }
}
