//! The one-shot slot a call's result comes back in: one allocation and one uncontended lock
//! per call, where a bounded channel costs several allocations and its event listeners.
//! It only uses `std::sync` and `std::task::Waker`, so it works under any executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    state: Mutex<State<T>>,
    /// The receiver was dropped: nobody waits for the value any more.
    abandoned: AtomicBool,
}

struct State<T> {
    value: Option<T>,
    /// The sender was dropped (after sending, or without).
    closed: bool,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new slot: the driver keeps the sender, the caller awaits the receiver.
pub fn slot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            closed: false,
            waker: None,
        }),
        abandoned: AtomicBool::new(false),
    });
    (Sender(Arc::clone(&slot)), Receiver(slot))
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receiver(..)")
    }
}

/// The driver's end. Dropping it without [`send`](Self::send) ends the wait with `None`.
pub struct Sender<T>(Arc<Slot<T>>);

impl<T> Sender<T> {
    /// Whether the caller stopped waiting (its receiver was dropped).
    pub fn is_closed(&self) -> bool {
        self.0.abandoned.load(Ordering::Acquire)
    }

    /// Hands the value over and wakes the caller; the value is dropped when nobody waits.
    pub fn send(self, value: T) {
        let mut s = self.0.lock();
        if self.0.abandoned.load(Ordering::Acquire) {
            drop(s);
            drop(value);
            return;
        }
        s.value = Some(value);
        // Dropping `self` marks the slot closed and wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.lock();
            s.closed = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The caller's end: resolves to the value, or `None` when the sender was dropped without
/// sending one.
pub struct Receiver<T>(Arc<Slot<T>>);

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.0.lock();
        if let Some(value) = s.value.take() {
            return Poll::Ready(Some(value));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (value, waker) = {
            let mut s = self.0.lock();
            self.0.abandoned.store(true, Ordering::Release);
            (s.value.take(), s.waker.take())
        };
        // Outside the lock: the value's own drop runs no code of ours, but need not wait.
        drop(value);
        drop(waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn the_value_reaches_a_waiting_receiver() {
        let (tx, mut rx) = slot::<u32>();
        assert!(block_on(poll_once(&mut rx)).is_none(), "nothing sent yet");
        assert!(!tx.is_closed());
        tx.send(7);
        assert_eq!(block_on(rx), Some(7));
    }

    #[test]
    fn a_sender_dropped_without_sending_ends_the_wait() {
        let (tx, rx) = slot::<u32>();
        drop(tx);
        assert_eq!(block_on(rx), None);
    }

    #[test]
    fn a_dropped_receiver_closes_the_slot_and_drops_the_value() {
        let (tx, rx) = slot::<Arc<()>>();
        drop(rx);
        assert!(tx.is_closed());
        let value = Arc::new(());
        tx.send(Arc::clone(&value));
        assert_eq!(Arc::strong_count(&value), 1);
    }

    #[test]
    fn a_send_from_another_thread_wakes_the_receiver() {
        let (tx, rx) = slot::<u32>();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(3);
        });
        assert_eq!(block_on(rx), Some(3));
        sender.join().expect("the sender thread");
    }
}
