//! The handle: the async adapters' one [`Handle`], on tokio.

use std::future::Future;
use std::time::{Duration, Instant};

use qmp_kit::fanout::{queue, Handle, Request, Runtime};

use crate::Error;

/// A cloneable, `Send + Sync` handle to a QMP connection, whose driver task runs on the
/// tokio runtime that opened it: the async adapters' one handle
/// ([`qmp_kit::fanout::Handle`]), whose methods are listed there, on tokio. A command's
/// deadline is counted on `tokio::time`, from the moment of the call: with paused time
/// (`tokio::time::pause`), timeouts fire as the runtime's clock advances.
pub type Qmp = Handle<Tokio>;

/// The tokio runtime of [`Qmp`]: the kit's [`queue`] to the driver task,
/// `tokio::time`'s clock and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl Runtime for Tokio {
    type Sender = queue::Sender;
    const TARGET: &'static str = crate::driver::TARGET;

    fn send(tx: &Self::Sender, request: Request) -> Result<(), Request> {
        tx.send(request)
    }

    fn now() -> Instant {
        crate::driver::now()
    }

    async fn timeout<F>(limit: Duration, fut: F) -> Result<F::Output, Error>
    where
        F: Future + Send,
        F::Output: Send,
    {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| Error::Timeout)
    }
}
