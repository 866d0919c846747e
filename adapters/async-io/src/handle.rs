//! The handle: the async adapters' one [`Handle`], on async-io.

use std::future::Future;
use std::time::{Duration, Instant};

use qmp_kit::fanout::{queue, Handle, Request, Runtime};

use crate::Error;

/// A cloneable, `Send + Sync` handle to a QMP connection run by a [`Driver`](crate::Driver):
/// the async adapters' one handle ([`qmp_kit::fanout::Handle`]), whose methods are listed
/// there, on async-io. A command's deadline counts from the call on the system clock.
pub type Qmp = Handle<AsyncIo>;

/// The async-io runtime of [`Qmp`]: the kit's [`queue`] to the driver, the system
/// clock, async-io's timers.
#[derive(Debug, Clone, Copy)]
pub struct AsyncIo;

impl Runtime for AsyncIo {
    type Sender = queue::Sender;
    const TARGET: &'static str = crate::driver::TARGET;

    fn send(tx: &Self::Sender, request: Request) -> Result<(), Request> {
        tx.send(request)
    }

    #[allow(clippy::disallowed_methods)]
    fn now() -> Instant {
        Instant::now()
    }

    fn timeout<F>(limit: Duration, fut: F) -> impl Future<Output = Result<F::Output, Error>> + Send
    where
        F: Future + Send,
        F::Output: Send,
    {
        crate::timeout(limit, fut)
    }
}
