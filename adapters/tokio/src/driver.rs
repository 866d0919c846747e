//! The driver: the task that owns the engine and the socket and runs the engine's loop.
//!
//! # Theory of operation
//!
//! One tokio task per connection, spawned on the caller's runtime. Each turn of its loop:
//!
//! 1. cancels the calls whose callers stopped waiting ([`Hub::cancel_dropped`]: one still in
//!    the engine's local queue is never sent); this is done again right before each read,
//!    since a reply frees a slot and the engine sends the next queued command at once;
//! 2. writes what [`Client::poll_transmit`] returns, as far as the socket takes it without
//!    waiting (fds go as `SCM_RIGHTS` with the first byte of their command); a failed write
//!    goes to [`Client::handle_write_error`], and reading goes on: the engine decides how
//!    the session ends;
//! 3. takes the engine's outputs ([`Hub::drain`]: replies to callers, events to listeners,
//!    transitions to watchers; the kit logs them and feeds the traffic tap);
//! 4. waits for the first of: a request from a handle, the socket readable, the socket
//!    writable (only while bytes wait to be written), and the engine's next deadline
//!    ([`Client::poll_timeout`]) on `tokio::time`; then handles it (a read feeds
//!    [`Client::handle_input`] or [`Client::handle_eof`], the deadline
//!    [`Client::handle_timeout`]).
//!
//! Reading never stops while writing, so the driver cannot deadlock against a QEMU that
//! stops reading until its replies are consumed. The engine's clock is
//! `tokio::time::Instant::now()`, so a runtime with paused time (`tokio::time::pause`)
//! drives every deadline, the greeting's and the commands' included.
//!
//! When the session ends the driver shuts the socket and ends the session's listeners; then,
//! with [`Reconnect`], it waits the policy's jittered delay, opens the socket again and starts
//! a new session on the same engine (calls made meanwhile fail at once, or wait, held by the
//! [`Hub`], with [`Reconnect::calls_wait`]); without it, or when the policy gives up or the
//! connection is closed, it fails what is still queued, ends every listener and watcher, and
//! finishes. Dropped (its task aborted, its runtime shut down), it closes the connection the
//! same way.
//!
//! [`Client::poll_transmit`]: qmp_proto::Client::poll_transmit
//! [`Client::handle_write_error`]: qmp_proto::Client::handle_write_error
//! [`Client::poll_timeout`]: qmp_proto::Client::poll_timeout
//! [`Client::handle_input`]: qmp_proto::Client::handle_input
//! [`Client::handle_eof`]: qmp_proto::Client::handle_eof
//! [`Client::handle_timeout`]: qmp_proto::Client::handle_timeout

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use qmp_kit::buffer::{ReadBuf, READ_BUDGET, REQUEST_BUDGET, WRITE_BUDGET};
use qmp_kit::fanout::{queue, Hub, Request, Shared, Status};
use qmp_kit::{Engine, Redial, Settings};
use qmp_proto::{DisconnectReason, RunState};
use tokio::time::Sleep;

use crate::transport::Transport;

/// The log target of everything this crate logs.
pub(crate) const TARGET: &str = "qmp_tokio";

/// The adapter's clock, the engine's only time input: tokio's, so paused time drives it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// What woke the driver.
enum Wake {
    Request(Option<Request>),
    Readable(io::Result<()>),
    Writable,
    Deadline,
}

/// The connection's task state: the engine, the socket, the requests from the handles.
pub(crate) struct Driver {
    engine: Engine,
    /// The calls pending in the engine, and what the handles share.
    hub: Hub,
    transport: Option<Transport>,
    requests: queue::Receiver,
    /// Every handle was dropped: the channel is closed.
    requests_closed: bool,
    buf: ReadBuf,
    /// The last write was cut short by a full socket: wait for writability.
    blocked: bool,
    closing: bool,
    result: Option<DisconnectReason>,
    done: bool,
    redial: Option<Redial>,
    /// The session ended and a new one is to be opened.
    reconnecting: bool,
    /// The timer of the engine's deadline, kept from turn to turn.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the next wait looks at the socket before the requests (they alternate).
    socket_first: bool,
}

impl Driver {
    pub(crate) fn new(
        settings: &Settings,
        shared: Arc<Shared>,
        requests: queue::Receiver,
        redial: Option<Redial>,
    ) -> Self {
        let mut hub = Hub::new(shared);
        hub.hold_calls_between_sessions(redial.as_ref().is_some_and(|r| r.policy.get_calls_wait()));
        Driver {
            redial,
            reconnecting: false,
            timer: None,
            socket_first: false,
            engine: Engine::new(settings, TARGET),
            hub,
            transport: None,
            requests,
            requests_closed: false,
            buf: ReadBuf::new(),
            blocked: false,
            closing: false,
            result: None,
            done: false,
        }
    }

    /// Starts a session on `transport`.
    pub(crate) fn start(&mut self, transport: Transport) {
        self.engine.peer(|| transport.describe());
        self.transport = Some(transport);
        self.blocked = false;
        if let Err(e) = self.engine.connect(now()) {
            // The engine is idle whenever a session starts; this is a bug if it happens.
            self.engine.note(
                log::Level::Error,
                format_args!("cannot start a session: {e}"),
            );
        }
        // Calls made while no session was up go to this one.
        let passes_fds = self.transport.as_ref().is_some_and(Transport::passes_fds);
        self.hub.release_held(&mut self.engine, passes_fds);
        self.drain();
    }

    /// Runs the connection to its end.
    pub(crate) async fn run(&mut self) {
        while !self.done {
            if self.reconnecting {
                // Boxed: its state is only allocated between sessions, not held by every
                // driver's task.
                Box::pin(self.reconnect()).await;
                continue;
            }
            self.step();
            if self.done {
                break;
            }
            let wake = self.wait().await;
            self.on_wake(wake);
        }
    }

    /// Cancels, writes and drains: everything that needs no waiting.
    fn step(&mut self) {
        if self.hub.cancel_dropped(&mut self.engine) {
            self.drain();
        }
        self.write();
        self.drain();
    }

    /// Waits for the first of: the socket readable (while a session is up), a request from
    /// a handle, the socket writable (while bytes wait to be written), the engine's next
    /// deadline. One hand-written poll rather than `select!`: no future is built per turn
    /// (the socket's readiness is polled in place, the timer is kept and reset only when
    /// the deadline moves), and the socket and the requests take turns at being looked at
    /// first, so that neither an endless input nor an endless stream of calls starves the
    /// other.
    async fn wait(&mut self) -> Wake {
        let deadline = self
            .engine
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        if let Some(at) = deadline {
            match &mut self.timer {
                Some(timer) if timer.deadline() == at => {}
                Some(timer) => timer.as_mut().reset(at),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        let transport = self.transport.as_ref();
        let reading = transport.filter(|_| self.engine.state() != RunState::Idle);
        let writing = transport.filter(|_| self.blocked);
        let requests = (!self.requests_closed).then_some(&mut self.requests);
        let timer = self.timer.as_mut().filter(|_| deadline.is_some());
        if reading.is_none() && writing.is_none() && requests.is_none() && timer.is_none() {
            // Nothing to wait for: no handle and no socket. The session is over.
            return Wake::Request(None);
        }
        self.socket_first = !self.socket_first;
        let socket_first = self.socket_first;
        let (mut requests, mut timer) = (requests, timer);
        std::future::poll_fn(move |cx| {
            let read = |cx: &mut Context<'_>| match reading {
                Some(t) => t.poll_read_ready(cx).map(Wake::Readable),
                None => Poll::Pending,
            };
            if socket_first {
                if let Poll::Ready(wake) = read(cx) {
                    return Poll::Ready(wake);
                }
            }
            if let Some(requests) = requests.as_mut() {
                if let Poll::Ready(r) = requests.poll_recv(cx) {
                    return Poll::Ready(Wake::Request(r));
                }
            }
            if !socket_first {
                if let Poll::Ready(wake) = read(cx) {
                    return Poll::Ready(wake);
                }
            }
            if let Some(t) = writing {
                // An error shows in the next write.
                if t.poll_write_ready(cx).is_ready() {
                    return Poll::Ready(Wake::Writable);
                }
            }
            if let Some(timer) = timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Deadline);
                }
            }
            Poll::Pending
        })
        .await
    }

    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Request(Some(request)) => {
                self.on_request(request);
                // Take what else is queued, up to a budget, before writing.
                for _ in 1..REQUEST_BUDGET {
                    match self.requests.try_recv() {
                        Ok(request) => self.on_request(request),
                        Err(_) => break,
                    }
                }
            }
            Wake::Request(None) => {
                // Every handle is gone: nobody can use the connection any more.
                self.requests_closed = true;
                if !self.closing {
                    self.engine.note(
                        log::Level::Debug,
                        format_args!("every handle was dropped: closing"),
                    );
                    self.close();
                }
            }
            Wake::Readable(Ok(())) => self.read(),
            Wake::Readable(Err(e)) => {
                self.engine.handle_io_error(now(), &e);
                self.drain();
            }
            Wake::Writable => self.blocked = false,
            Wake::Deadline => {
                self.engine.handle_timeout(now());
                self.drain();
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        let passes_fds = self.transport.as_ref().is_some_and(Transport::passes_fds);
        if self.hub.on_request(&mut self.engine, request, passes_fds) {
            self.close();
        }
    }

    fn close(&mut self) {
        self.closing = true;
        if !self.done && !self.reconnecting {
            self.engine.close();
            self.drain();
        }
    }

    fn write(&mut self) {
        let Some(transport) = self.transport.as_ref() else {
            return;
        };
        self.blocked = false;
        let mut budget = WRITE_BUDGET;
        let mut failed = None;
        while budget > 0 {
            // After a failed write the engine offers nothing more.
            let Some(t) = self.engine.poll_transmit() else {
                break;
            };
            match transport.try_send(t.data, t.fds) {
                Ok(0) => {
                    failed = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => {
                    self.engine.advance_transmit(n);
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if budget == 0 {
            // More to write: come back through a writability check, which is ready at once.
            self.blocked = true;
        }
        if let Some(e) = failed {
            // The engine decides what follows; reading goes on meanwhile (the peer's EOF,
            // if it comes, says more than the write error).
            self.engine
                .note(log::Level::Debug, format_args!("write failed: {e}"));
            self.engine.handle_write_error(now(), &e);
        }
    }

    fn read(&mut self) {
        // The input may free a slot in QEMU's queue, and the engine then sends the next
        // queued command at once: first cancel those whose callers stopped waiting (they
        // may have while the driver waited).
        if self.hub.cancel_dropped(&mut self.engine) {
            self.drain();
        }
        let mut budget = READ_BUDGET;
        while budget > 0 && self.engine.state() != RunState::Idle {
            let Some(transport) = self.transport.as_ref() else {
                break;
            };
            match transport.try_read(self.buf.space()) {
                Ok((0, _)) => {
                    self.engine.handle_eof(now());
                    self.drain();
                    break;
                }
                Ok((n, drained)) => {
                    self.engine.handle_input(now(), self.buf.data(n));
                    budget = budget.saturating_sub(n);
                    self.buf.filled(n);
                    // Take outputs after each read: replies and events leave as they come.
                    self.drain();
                    if drained {
                        // Everything that had arrived: wait for readiness again.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.engine.handle_io_error(now(), &e);
                    self.drain();
                    break;
                }
            }
        }
    }

    /// Takes every output of the engine (see [`Hub::drain`]).
    fn drain(&mut self) {
        let drained = self.hub.drain(&mut self.engine);
        if let Some(reason) = drained.ended {
            // Dropping the socket closes it.
            self.transport = None;
            self.blocked = false;
            let closed = self.closing || reason == DisconnectReason::Closed;
            self.result = Some(reason);
            if self.redial.is_some() && !closed {
                self.reconnecting = true;
            } else {
                self.finish();
            }
        }
    }

    /// Between sessions: waits the policy's delay before each attempt and opens the socket
    /// again, taking requests meanwhile (held or failed by the [`Hub`]) and failing held
    /// calls at their deadlines; starts the new session, or finishes when the policy gives
    /// up or the connection is closed.
    async fn reconnect(&mut self) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(redial) = &self.redial else {
                return self.finish();
            };
            let Some(delay) = redial.policy.next_delay(attempt) else {
                self.engine.note(
                    log::Level::Debug,
                    format_args!("giving up reconnecting after {} attempts", attempt - 1),
                );
                self.hub.shared().push_status(Status::GaveUp {
                    attempts: attempt - 1,
                });
                self.reconnecting = false;
                return self.finish();
            };
            self.hub
                .shared()
                .push_status(Status::Reconnecting { attempt, delay });
            let at = tokio::time::Instant::now() + delay;
            if !self.wait_between_sessions(at).await {
                self.reconnecting = false;
                return self.finish();
            }
            let Some(redial) = &self.redial else {
                return self.finish();
            };
            self.engine.note(
                log::Level::Debug,
                format_args!(
                    "reconnecting to {} (attempt {attempt})",
                    redial.target.describe()
                ),
            );
            match crate::transport::open(&redial.target, redial.connect_timeout).await {
                Ok(transport) => {
                    self.reconnecting = false;
                    self.start(transport);
                    return;
                }
                Err(e) => {
                    self.engine.note(
                        log::Level::Debug,
                        format_args!("reconnect attempt {attempt} failed: {e}"),
                    );
                    self.hub.shared().push_status(Status::ConnectFailed {
                        attempt,
                        error: Arc::new(e),
                    });
                }
            }
        }
    }

    /// Waits until `at`, taking requests and failing held calls at their deadlines. Returns
    /// `false` if the connection was closed (or every handle dropped) meanwhile.
    async fn wait_between_sessions(&mut self, at: tokio::time::Instant) -> bool {
        loop {
            if self.closing {
                return false;
            }
            let held = self
                .hub
                .expire_held(now())
                .map(tokio::time::Instant::from_std);
            let taking = !self.requests_closed;
            tokio::select! {
                r = self.requests.recv(), if taking => match r {
                    Some(request) => self.on_request(request),
                    None => {
                        self.requests_closed = true;
                        self.closing = true;
                    }
                },
                () = sleep_until(held), if held.is_some() => {}
                () = tokio::time::sleep_until(at) => return true,
            }
        }
    }

    /// Ends the driver: no more sessions.
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.hub.fail_held(&self.hub.shared().gone_error());
        self.requests.close();
        // Requests still queued fail now rather than when the driver is dropped.
        while let Ok(request) = self.requests.try_recv() {
            request.fail(self.hub.shared().gone_error());
        }
        self.hub.shared().finish();
        self.engine.note(
            log::Level::Debug,
            format_args!(
                "driver finished: {}",
                self.result.as_ref().unwrap_or(&DisconnectReason::Closed)
            ),
        );
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The task was aborted or its runtime shut down mid-session.
        self.closing = true;
        self.engine.close();
        self.drain();
        self.finish();
    }
}

/// Sleeps until `deadline` (forever without one) on `tokio::time`.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
