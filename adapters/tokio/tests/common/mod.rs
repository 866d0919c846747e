//! What the integration tests share: the test kit's peers (real QEMU, the fake QEMU on a
//! socket), waiting on `tokio::time`, and running each scenario on both runtime flavours.
#![allow(dead_code, unused_imports, unreachable_pub, unused_macros)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use qmp_testkit::blocking::{FakePeer, Peer};
pub use qmp_testkit::{exists, tempdir, T};
use qmp_tokio::{Builder, Qmp, Traffic};

/// Waits up to [`T`] for `fut` on `tokio::time`; panics after that. Not for paused time
/// (it would advance to the limit while real IO is under way).
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(T, fut).await.expect("timed out")
}

/// Connects with `builder` to a real peer's socket once it is there (within [`T`]).
pub async fn connect(peer: &Peer, builder: &Builder) -> Qmp {
    let deadline = Instant::now() + T;
    loop {
        let mut error = None;
        if exists(&peer.sock) {
            match builder.connect_unix(&peer.sock).await {
                Ok(qmp) => return qmp,
                Err(e) => error = Some(e.to_string()),
            }
        }
        assert!(
            Instant::now() < deadline,
            "cannot connect ({error:?}): {}",
            peer.stderr()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A builder with a 10 s connect timeout.
pub fn builder() -> Builder {
    Builder::new().connect_timeout(T)
}

/// A builder whose tap records every message, and the record.
pub fn tapped(builder: Builder) -> (Builder, Arc<Mutex<Vec<Traffic>>>) {
    let record = Arc::new(Mutex::new(Vec::new()));
    let tap = Arc::clone(&record);
    let builder = builder.tap(move |t| tap.lock().unwrap().push(t.clone()));
    (builder, record)
}

/// The messages sent so far, as they went on the wire.
pub fn sent(record: &Mutex<Vec<Traffic>>) -> Vec<String> {
    record
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.direction == qmp_tokio::Direction::Out)
        .map(|t| t.message.clone())
        .collect()
}

/// A runtime of either flavour, with time and IO: a current-thread one, or a multi-thread
/// one with two workers, for tests that run their own (a process-wide subscriber or counter
/// rules out running them side by side under `#[tokio::test]`).
pub fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("a tokio runtime")
}

/// For each `async fn NAME()` in scope, a module `NAME` with one test per tokio runtime
/// flavour: `current_thread` and `multi_thread`.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "current_thread")]
            async fn current_thread() {
                super::$name().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multi_thread() {
                super::$name().await;
            }
        }
    )*};
}
pub(crate) use on_both_runtimes;
