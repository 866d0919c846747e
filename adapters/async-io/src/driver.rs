//! The driver: the future that owns the engine and the socket and runs the engine's loop.
//!
//! # Theory of operation
//!
//! Each poll repeats one pass until a pass makes no progress (then every source has
//! registered the task's waker) or the pass budget is spent (then the driver wakes itself
//! and yields, so one busy connection cannot starve other tasks):
//!
//! 1. take requests from the handles and issue them to the engine;
//! 2. write what [`Client::poll_transmit`] returns, as far as the socket takes it (a failed
//!    write goes to [`Client::handle_write_error`], and reading goes on: the engine stops
//!    offering bytes and decides, through its own timer, how the session ends);
//! 3. read what has arrived and feed it to the engine, taking its outputs after each read
//!    (once a socket was found drained, it is read again after the reactor reports it
//!    readable or after the next write, not before; a read that drained it makes the driver
//!    yield once before it arms the reactor, as the input usually brings the next request);
//! 4. arm the timer for [`Client::poll_timeout`] and fire it when due;
//! 5. take the engine's outputs ([`Engine::next_output`], which logs them and feeds the
//!    traffic tap): replies to their callers, events to listeners, runstate transitions to
//!    watchers.
//!
//! Reading never stops while writing, so the driver cannot deadlock against a QEMU that
//! stops reading until its replies are consumed. Idle, it sleeps until the socket is
//! readable (or writable, with bytes pending), a request arrives, or the engine's next
//! deadline.
//!
//! When a session ends, the driver ends every listener's stream and either finishes or,
//! with [`Reconnect`], waits its backoff, opens the socket again and starts a new session on
//! the same engine (`connect()` again after `Disconnected`).
//!
//! [`Client::poll_transmit`]: qmp_proto::Client::poll_transmit
//! [`Client::handle_write_error`]: qmp_proto::Client::handle_write_error
//! [`Client::poll_timeout`]: qmp_proto::Client::poll_timeout

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::Timer;
use qmp_kit::buffer::{ReadBuf, READ_BUDGET, REQUEST_BUDGET, WRITE_BUDGET};
use qmp_kit::fanout::{queue, Hub, Request, Shared, Status};
use qmp_kit::{Engine, Error, Redial, Settings};
use qmp_proto::{DisconnectReason, RunState};

use crate::transport::Transport;

/// The log target of everything this crate logs.
pub(crate) const TARGET: &str = "qmp_async";

struct Budget {
    read: usize,
    write: usize,
    requests: usize,
}

impl Budget {
    fn spent(&self) -> bool {
        self.read == 0 || self.write == 0 || self.requests == 0
    }
}

type Opening = Pin<Box<dyn Future<Output = io::Result<Transport>> + Send>>;

enum Phase {
    /// A session is up (or being negotiated) on `Driver::transport`.
    Live,
    /// Waiting for the backoff timer before attempt `attempt`.
    Backoff {
        attempt: u32,
    },
    /// Opening the socket for attempt `attempt`.
    Opening {
        attempt: u32,
        fut: Opening,
    },
    Done,
}

/// The future that runs a QMP connection: it owns the engine and the socket. Spawn it on any
/// executor (or `.await` it next to your work); the [`Qmp`](crate::Qmp) handles talk to it.
///
/// It finishes when the session ends and no reconnection is wanted: after
/// [`Qmp::close`](crate::Qmp::close), when every handle is dropped, when the peer goes away
/// (without [`Reconnect`](crate::Reconnect)), or when reconnecting gives up. Its output is why the last session
/// ended. Dropping it closes the connection: every pending call fails with
/// [`Error::Disconnected`]`(`[`DisconnectReason::Closed`]`)` and listeners end.
///
/// It uses async-io's reactor and timers, which run on their own thread when no async-io
/// `block_on` drives them, so it works under smol, `futures_lite::future::block_on`, tokio
/// and other executors alike.
#[must_use = "the connection makes no progress unless the driver is spawned or awaited"]
pub struct Driver {
    engine: Engine,
    /// The calls pending in the engine, and what the handles share.
    hub: Hub,
    transport: Option<Transport>,
    /// Pinned: a receiver is not `Unpin` (it holds a listener while waiting).
    requests: queue::Receiver,
    timer: Timer,
    timer_at: Option<Instant>,
    /// The earliest deadline of the calls held while no session is up.
    held_timer: Timer,
    held_at: Option<Instant>,
    buf: ReadBuf,
    /// The socket was found drained (a read came back empty or short) and nothing was
    /// written since: it is read again only once the reactor reports it readable, instead
    /// of making a system call that can only find it empty. A write clears it (a reply may
    /// already be there when the driver reads next).
    drained: bool,
    /// The socket was found drained by a read that brought input in this poll: before it is
    /// armed with the reactor (a system call with async-io's one-shot registrations), the
    /// driver yields once, since the input likely woke a caller whose next command will
    /// make the driver write, and then read, instead of sleeping.
    arm_later: bool,
    /// The driver woke itself to come back before arming (see `arm_later`).
    yielding: bool,
    /// Bytes were handed to the stream since it was last flushed (a wrapped stream may
    /// buffer them; flushing a socket does nothing).
    unflushed: bool,
    phase: Phase,
    redial: Option<Redial>,
    /// Failed attempts since the last session that reached `Running`.
    attempts: u32,
    closing: bool,
    result: Option<DisconnectReason>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("state", &self.engine.state())
            .field("transport", &self.transport)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Driver {
    pub(crate) fn new(settings: &Settings, shared: Arc<Shared>, requests: queue::Receiver) -> Self {
        Driver {
            engine: Engine::new(settings, TARGET),
            hub: Hub::new(shared),
            transport: None,
            requests,
            timer: Timer::never(),
            timer_at: None,
            held_timer: Timer::never(),
            held_at: None,
            buf: ReadBuf::new(),
            drained: false,
            arm_later: false,
            yielding: false,
            unflushed: false,
            phase: Phase::Done,
            redial: None,
            attempts: 0,
            closing: false,
            result: None,
        }
    }

    /// Starts a session on `transport`.
    fn start(&mut self, transport: Transport) {
        self.engine.peer(|| transport.describe());
        self.transport = Some(transport);
        self.drained = false;
        self.arm_later = false;
        self.unflushed = false;
        self.phase = Phase::Live;
        if let Err(e) = self.engine.connect(Instant::now()) {
            // The engine is idle whenever a session starts; this is a bug if it happens.
            self.engine.note(
                log::Level::Error,
                format_args!("cannot start a session: {e}"),
            );
        }
        // Calls made while no session was up go to this one.
        let passes_fds = self.transport.as_ref().is_some_and(Transport::passes_fds);
        self.hub.release_held(&mut self.engine, passes_fds);
        self.held_at = None;
        self.drain_outputs();
    }

    /// Runs the first session until it is ready (`Ok`: negotiated, or a guest agent's first
    /// resynchronisation answered) or has ended (`Err`), then enables reconnection for later
    /// sessions.
    pub(crate) async fn establish(
        &mut self,
        transport: Transport,
        redial: Option<Redial>,
    ) -> Result<(), Error> {
        self.start(transport);
        futures_lite::future::poll_fn(|cx| {
            let _ = self.poll_drive(cx);
            if self.engine.is_ready() {
                Poll::Ready(Ok(()))
            } else if self.engine.state() == RunState::Connecting {
                Poll::Pending
            } else {
                Poll::Ready(Err(self.hub.shared().gone_error()))
            }
        })
        .await?;
        self.hub.hold_calls_between_sessions(
            redial.as_ref().is_some_and(|r| r.policy.get_calls_wait()),
        );
        self.redial = redial;
        Ok(())
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        let mut budget = Budget {
            read: READ_BUDGET,
            write: WRITE_BUDGET,
            requests: REQUEST_BUDGET,
        };
        loop {
            let mut progress = self.take_requests(cx, &mut budget);
            progress |= match self.phase {
                Phase::Live => self.step_live(cx, &mut budget),
                Phase::Backoff { attempt } => self.poll_held(cx) | self.step_backoff(cx, attempt),
                Phase::Opening { .. } => self.poll_held(cx) | self.step_opening(cx),
                Phase::Done => {
                    let reason = self.result.clone().unwrap_or(DisconnectReason::Closed);
                    return Poll::Ready(reason);
                }
            };
            if !progress {
                if std::mem::take(&mut self.yielding) {
                    // Come back once the tasks this input woke have run (see `arm_later`).
                    cx.waker().wake_by_ref();
                }
                self.arm_later = false;
                return Poll::Pending;
            }
            if budget.spent() {
                // Fairness: let other tasks run, and come back at once.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    fn take_requests(&mut self, cx: &mut Context<'_>, budget: &mut Budget) -> bool {
        let mut progress = false;
        while budget.requests > 0 {
            match self.requests.poll_recv(cx) {
                Poll::Ready(Some(request)) => {
                    budget.requests -= 1;
                    progress = true;
                    self.on_request(request);
                }
                Poll::Ready(None) => {
                    // Every handle is gone: nobody can use the connection any more.
                    if !self.closing {
                        self.engine.note(
                            log::Level::Debug,
                            format_args!("every handle was dropped: closing"),
                        );
                        self.close();
                        progress = true;
                    }
                    break;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    fn on_request(&mut self, request: Request) {
        let passes_fds = self.transport.as_ref().is_some_and(Transport::passes_fds);
        if self.hub.on_request(&mut self.engine, request, passes_fds) {
            self.close();
        }
    }

    fn close(&mut self) {
        self.closing = true;
        match self.phase {
            Phase::Live => {
                self.engine.close();
                self.drain_outputs();
            }
            Phase::Backoff { .. } | Phase::Opening { .. } => self.finish(),
            Phase::Done => {}
        }
    }

    fn step_live(&mut self, cx: &mut Context<'_>, budget: &mut Budget) -> bool {
        self.cancel_dropped();
        let mut progress = self.write(cx, budget);
        progress |= self.read(cx, budget);
        progress |= self.poll_timer(cx);
        self.drain_outputs();
        progress
    }

    /// Cancels the commands whose callers stopped waiting (see [`Hub::cancel_dropped`]):
    /// runs before any input is read, so a slot freed by a reply goes to a command someone
    /// still waits for.
    fn cancel_dropped(&mut self) {
        if self.hub.cancel_dropped(&mut self.engine) {
            self.drain_outputs();
        }
    }

    fn write(&mut self, cx: &mut Context<'_>, budget: &mut Budget) -> bool {
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let mut progress = false;
        let mut failed = None;
        while budget.write > 0 {
            // After a failed write the engine offers nothing more.
            let Some(t) = self.engine.poll_transmit() else {
                // Everything is handed over; a wrapped stream may buffer it.
                if self.unflushed {
                    match transport.poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.unflushed = false,
                        Poll::Ready(Err(e)) => failed = Some(e),
                        Poll::Pending => {}
                    }
                }
                break;
            };
            match transport.poll_send(cx, t.data, t.fds) {
                Poll::Ready(Ok(0)) => {
                    failed = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Poll::Ready(Ok(n)) => {
                    self.engine.advance_transmit(n);
                    self.drained = false;
                    self.unflushed = true;
                    budget.write = budget.write.saturating_sub(n);
                    progress = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        if let Some(e) = failed {
            // The engine decides what follows; reading goes on meanwhile (the peer's EOF,
            // if it comes, says more than the write error).
            self.engine
                .note(log::Level::Debug, format_args!("write failed: {e}"));
            self.unflushed = false;
            self.engine.handle_write_error(Instant::now(), &e);
            progress = true;
        }
        progress
    }

    fn read(&mut self, cx: &mut Context<'_>, budget: &mut Budget) -> bool {
        let mut progress = false;
        while budget.read > 0 && self.engine.state() != RunState::Idle {
            let Some(transport) = self.transport.as_mut() else {
                break;
            };
            // Drained: wait for the reactor instead of reading.
            if self.drained {
                if self.arm_later {
                    // Not armed yet: the driver yields first (see `arm_later`).
                    self.yielding = true;
                    break;
                }
                if transport.poll_readable(cx).is_pending() {
                    break;
                }
                // Readable, or an error that the read will report.
                self.drained = false;
            }
            match transport.poll_read(cx, self.buf.space()) {
                Poll::Ready(Ok(0)) => {
                    self.engine.handle_eof(Instant::now());
                    progress = true;
                }
                Poll::Ready(Ok(n)) => {
                    self.engine.handle_input(Instant::now(), self.buf.data(n));
                    budget.read = budget.read.saturating_sub(n);
                    if !self.buf.filled(n) && transport.short_read_drains() {
                        // Everything that had arrived: wait for the reactor before reading
                        // again (a later turn of this loop registers the waker).
                        self.drained = true;
                        self.arm_later = true;
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.engine.handle_io_error(Instant::now(), &e);
                    progress = true;
                }
                Poll::Pending => {
                    self.drained = transport.short_read_drains();
                    break;
                }
            }
            // Take outputs after each read: replies and events leave as they come.
            self.drain_outputs();
        }
        progress
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.engine.poll_timeout() else {
            self.timer_at = None;
            return false;
        };
        if self.timer_at != Some(at) {
            self.timer.set_at(at);
            self.timer_at = Some(at);
        }
        if Pin::new(&mut self.timer).poll(cx).is_pending() {
            return false;
        }
        self.timer_at = None;
        self.engine.handle_timeout(Instant::now());
        true
    }

    /// Between sessions: fails the held calls whose deadline passed, and arms a timer for
    /// the next deadline.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.hub.expire_held(Instant::now()) else {
            self.held_at = None;
            return false;
        };
        if self.held_at != Some(at) {
            self.held_timer.set_at(at);
            self.held_at = Some(at);
        }
        if Pin::new(&mut self.held_timer).poll(cx).is_pending() {
            return false;
        }
        self.held_at = None;
        true
    }

    fn step_backoff(&mut self, cx: &mut Context<'_>, attempt: u32) -> bool {
        if Pin::new(&mut self.timer).poll(cx).is_pending() {
            return false;
        }
        let Some(redial) = &self.redial else {
            self.finish();
            return true;
        };
        self.engine.note(
            log::Level::Debug,
            format_args!(
                "reconnecting to {} (attempt {attempt})",
                redial.target.describe()
            ),
        );
        let target = redial.target.clone();
        let timeout = redial.connect_timeout;
        self.phase = Phase::Opening {
            attempt,
            fut: Box::pin(async move { crate::transport::open(&target, timeout).await }),
        };
        true
    }

    fn step_opening(&mut self, cx: &mut Context<'_>) -> bool {
        let Phase::Opening { attempt, fut } = &mut self.phase else {
            return false;
        };
        let attempt = *attempt;
        match fut.as_mut().poll(cx) {
            Poll::Pending => false,
            Poll::Ready(Ok(transport)) => {
                self.start(transport);
                true
            }
            Poll::Ready(Err(e)) => {
                self.engine.note(
                    log::Level::Debug,
                    format_args!("reconnect attempt {attempt} failed: {e}"),
                );
                self.push_status(Status::ConnectFailed {
                    attempt,
                    error: Arc::new(e),
                });
                self.retry_or_finish();
                true
            }
        }
    }

    /// Schedules the next attempt, or finishes when the policy says to stop.
    fn retry_or_finish(&mut self) {
        let Some(redial) = &self.redial else {
            return self.finish();
        };
        if self.closing {
            return self.finish();
        }
        self.attempts += 1;
        let attempt = self.attempts;
        match redial.policy.next_delay(attempt) {
            Some(delay) => {
                self.push_status(Status::Reconnecting { attempt, delay });
                self.timer.set_after(delay);
                self.timer_at = None;
                self.phase = Phase::Backoff { attempt };
            }
            None => {
                self.engine.note(
                    log::Level::Debug,
                    format_args!("giving up reconnecting after {} attempts", attempt - 1),
                );
                self.push_status(Status::GaveUp {
                    attempts: attempt - 1,
                });
                self.finish();
            }
        }
    }

    fn push_status(&self, status: Status) {
        self.hub.shared().push_status(status);
    }

    /// Takes every output of the engine (logged and tapped on the way): see [`Hub::drain`].
    fn drain_outputs(&mut self) {
        let drained = self.hub.drain(&mut self.engine);
        if drained.ready {
            self.attempts = 0;
        }
        if let Some(reason) = drained.ended {
            self.on_disconnected(reason);
        }
    }

    fn on_disconnected(&mut self, reason: DisconnectReason) {
        if let Some(t) = self.transport.take() {
            t.shutdown();
        }
        self.timer_at = None;
        self.result = Some(reason);
        self.retry_or_finish();
    }

    /// Ends the driver: no more sessions.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.hub.fail_held(&self.hub.shared().gone_error());
        self.requests.close();
        // Requests still queued fail now rather than when the driver is dropped.
        while let Ok(request) = self.requests.try_recv() {
            request.fail(self.hub.shared().gone_error());
        }
        self.hub.shared().finish();
    }
}

impl Future for Driver {
    type Output = DisconnectReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        self.get_mut().poll_drive(cx)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        self.closing = true;
        self.engine.close();
        self.drain_outputs();
        if !matches!(self.phase, Phase::Done) {
            self.finish();
        }
    }
}
