//! The queue from the handles to the driver: unbounded (a call never waits to be queued;
//! the engine bounds what is in flight), closed when every handle is gone, and one
//! uncontended lock per request, with no allocation for a connection that makes no call and
//! a few slots for one that makes them one at a time. It only uses `std::sync` and
//! `std::task::Waker`, so it works under any executor.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Request;

struct Inner {
    state: Mutex<State>,
}

struct State {
    requests: VecDeque<Request>,
    /// The driver's waker, while it waits for a request.
    waker: Option<Waker>,
    /// Live senders: the queue ends when the last one is dropped.
    senders: usize,
    /// The driver stopped taking requests: sends fail.
    closed: bool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new queue: the handles keep the sender (cloned with them), the driver the receiver.
///
/// ```
/// use qmp_kit::fanout::{queue, Request};
///
/// let (tx, mut rx) = queue::queue();
/// assert!(tx.send(Request::Close).is_ok());
/// assert!(matches!(rx.try_recv(), Ok(Request::Close)));
/// assert_eq!(rx.try_recv().err(), Some(queue::Empty::Waiting));
/// drop(tx);
/// assert_eq!(rx.try_recv().err(), Some(queue::Empty::Ended));
/// ```
pub fn queue() -> (Sender, Receiver) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            requests: VecDeque::new(),
            waker: None,
            senders: 1,
            closed: false,
        }),
    });
    (Sender(Arc::clone(&inner)), Receiver(inner))
}

/// The handles' end.
pub struct Sender(Arc<Inner>);

impl Sender {
    /// Queues `request` and wakes the driver; gives it back if the driver stopped taking
    /// requests.
    pub fn send(&self, request: Request) -> Result<(), Request> {
        let mut s = self.0.lock();
        if s.closed {
            return Err(request);
        }
        s.requests.push_back(request);
        let waker = s.waker.take();
        drop(s);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(Arc::clone(&self.0))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.senders -= 1;
        let waker = if s.senders == 0 { s.waker.take() } else { None };
        drop(s);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue::Sender(..)")
    }
}

/// Why [`Receiver::try_recv`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// Nothing is queued now.
    Waiting,
    /// Nothing is queued, and every sender is gone (or the receiver was closed).
    Ended,
}

/// The driver's end. Dropping it closes the queue.
pub struct Receiver(Arc<Inner>);

impl Receiver {
    /// The next request; `Ready(None)` once the queue is empty and every sender is gone
    /// (or it was closed). Only the last task to poll is woken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Request>> {
        let mut s = self.0.lock();
        if let Some(request) = s.requests.pop_front() {
            return Poll::Ready(Some(request));
        }
        if s.senders == 0 || s.closed {
            return Poll::Ready(None);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next request without waiting.
    pub fn try_recv(&mut self) -> Result<Request, Empty> {
        let mut s = self.0.lock();
        match s.requests.pop_front() {
            Some(request) => Ok(request),
            None if s.senders == 0 || s.closed => Err(Empty::Ended),
            None => Err(Empty::Waiting),
        }
    }

    /// The next request, waiting for one; `None` when the queue has ended.
    pub async fn recv(&mut self) -> Option<Request> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Stops taking requests: later sends fail (the requests already queued can still be
    /// taken, to fail them).
    pub fn close(&mut self) {
        self.0.lock().closed = true;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Requests still queued are dropped with the queue's last reference, which drops
        // their reply slots: their callers are told the driver is gone.
        let requests = {
            let mut s = self.0.lock();
            s.closed = true;
            std::mem::take(&mut s.requests)
        };
        drop(requests);
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue::Receiver(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn a_send_wakes_the_waiting_driver_and_requests_come_in_order() {
        let (tx, mut rx) = queue();
        let (count, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(Request::Close).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let (request, _slot) = Request::call(
            crate::fanout::Body::execute("stop", &()).unwrap(),
            crate::CallOptions::new(),
            std::time::Instant::now(),
        );
        tx.clone().send(request).unwrap();
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Some(Request::Close))
        ));
        assert!(matches!(
            rx.poll_recv(&mut cx),
            Poll::Ready(Some(Request::Call { .. }))
        ));
        assert!(rx.poll_recv(&mut cx).is_pending());
    }

    #[test]
    fn the_last_sender_gone_ends_the_queue_and_wakes_the_driver() {
        let (tx, mut rx) = queue();
        let other = tx.clone();
        let (count, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "one sender is left");
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(other);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_closed_or_dropped_receiver_refuses_sends_and_queued_requests_can_be_failed() {
        let (tx, mut rx) = queue();
        tx.send(Request::Close).unwrap();
        rx.close();
        assert!(matches!(tx.send(Request::Close), Err(Request::Close)));
        assert!(matches!(rx.try_recv(), Ok(Request::Close)));
        assert_eq!(rx.try_recv().err(), Some(Empty::Ended));

        let (tx, rx) = queue();
        let (request, slot) = Request::call(
            crate::fanout::Body::execute("stop", &()).unwrap(),
            crate::CallOptions::new(),
            std::time::Instant::now(),
        );
        tx.send(request).unwrap();
        drop(rx);
        assert!(tx.send(Request::Close).is_err());
        // The queued call's reply slot was dropped with the queue: its caller is told.
        assert!(futures_lite::future::block_on(slot).is_none());
    }
}
