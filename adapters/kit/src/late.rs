//! The late outcome of a command that timed out after it was sent.
//!
//! QEMU runs a command it was sent even when its caller stopped waiting: a `blockdev-add`
//! that timed out may well have created its node. The command keeps its id, and its reply,
//! when it comes, is its late outcome: [`Error::CommandTimeout`] carries a [`Late`] handle
//! to it. The handle is filled by whoever runs the connection (an async adapter's driver,
//! or a blocking connection's own calls), with the reply's result, or with the error that
//! ended the session before the reply came, so a wait on it always ends.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use qmp_proto::{CommandId, RawValue};

use crate::Error;

/// A late outcome: the reply's `return` value, or the error it carried (or the end of the
/// session before it came).
pub type Outcome = Result<Box<RawValue>, Error>;

/// The late outcome of a command that timed out after it was sent, as it stands and to
/// come: found in [`Error::CommandTimeout`].
///
/// ```
/// use qmp_kit::Error;
///
/// # async fn example(result: Result<serde_json::Value, Error>) {
/// match result {
///     Err(Error::CommandTimeout(late)) => {
///         // Waits for QEMU's reply (or the end of the session); never forever.
///         match late.outcome().await {
///             Ok(value) => println!("command {} did succeed: {value}", late.id()),
///             Err(e) => println!("command {} failed after all: {e}", late.id()),
///         }
///     }
///     _ => {}
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Late {
    id: CommandId,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    outcome: Option<Outcome>,
    wakers: Vec<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Late {
    /// A handle for command `id`, not filled yet.
    pub(crate) fn new(id: CommandId) -> Self {
        Late {
            id,
            slot: Arc::default(),
        }
    }

    /// The command.
    pub fn id(&self) -> CommandId {
        self.id
    }

    /// The late outcome if it came (its reply, or the end of the session), without waiting.
    /// A blocking connection fills it while it reads: see its `wait_late`.
    pub fn try_outcome(&self) -> Option<Outcome> {
        self.slot.lock().outcome.clone()
    }

    /// Waits for the late outcome: the reply's result, or the error that ended the session
    /// first. It is filled by whoever runs the connection: with an async adapter its driver;
    /// with a blocking connection, only while one of its calls runs (use its `wait_late`).
    pub fn outcome(&self) -> impl Future<Output = Outcome> + Send + 'static {
        Wait(Arc::clone(&self.slot))
    }

    /// Fills the handle (once; later fills are ignored) and wakes its waiters.
    pub(crate) fn fill(&self, outcome: Outcome) {
        let wakers = {
            let mut state = self.slot.lock();
            if state.outcome.is_some() {
                return;
            }
            state.outcome = Some(outcome);
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl fmt::Debug for Late {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.slot.lock();
        let outcome = match &state.outcome {
            None => "to come",
            Some(Ok(_)) => "succeeded",
            Some(Err(_)) => "failed",
        };
        f.debug_struct("Late")
            .field("id", &self.id)
            .field("outcome", &outcome)
            .finish()
    }
}

struct Wait(Arc<Slot>);

impl Future for Wait {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut state = self.0.lock();
        if let Some(outcome) = &state.outcome {
            return Poll::Ready(outcome.clone());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_once_and_seen_by_every_clone() {
        let mut client = qmp_proto::Client::new(qmp_proto::ClientConfig::default());
        let now = std::time::Instant::now();
        client.connect(now).expect("connect");
        let id = client
            .execute(now, "query-status", &(), qmp_proto::CallOptions::new())
            .expect("issued");
        let late = Late::new(id);
        let other = late.clone();
        assert!(late.try_outcome().is_none());
        assert_eq!(
            format!("{late:?}"),
            format!("Late {{ id: {id:?}, outcome: \"to come\" }}")
        );
        let value = RawValue::from_string("{}".to_owned()).expect("json");
        late.fill(Ok(value));
        late.fill(Err(Error::Timeout));
        assert!(matches!(other.try_outcome(), Some(Ok(v)) if v.get() == "{}"));
        let outcome = futures_lite_block_on(other.outcome());
        assert!(matches!(outcome, Ok(v) if v.get() == "{}"));
    }

    /// Polls a future that is ready at once.
    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("not ready"),
        }
    }
}
