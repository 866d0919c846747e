//! Watching the connection: runstate transitions and connection status, never missing one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use qmp_proto::status::{Job, VmStatus};
use qmp_proto::{DisconnectReason, Greeting, RunState};

use super::shared::{Journal, Shared, State};
use crate::{Error, JobChange, VmStatusChange};

/// One change of the connection runstate (`Idle → Connecting → Running → Disconnecting →
/// Idle`), as the engine emitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Its sequence number: 1 for the first transition of the connection, then one more for
    /// each.
    pub seq: u64,
    /// The session it belongs to (1 for the first; a reconnection starts the next).
    pub session: u64,
    /// The previous runstate.
    pub from: RunState,
    /// The new runstate.
    pub to: RunState,
}

/// The connection's status, for the caller of a reconnecting connection, from an adapter's
/// `status` (made by [`Shared::status_stream`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Status {
    /// A session was negotiated and commands flow.
    Connected {
        /// The session number (1 for the first).
        session: u64,
        /// Its greeting.
        greeting: Greeting,
    },
    /// A session ended; every call pending in it failed with this reason.
    Disconnected {
        /// The session number.
        session: u64,
        /// Why it ended.
        reason: DisconnectReason,
    },
    /// The driver will try to connect again after `delay`.
    Reconnecting {
        /// The attempt about to be made: 1 for the first after a disconnection.
        attempt: u32,
        /// How long it waits first.
        delay: Duration,
    },
    /// An attempt to open the socket failed (a failed greeting or negotiation shows as
    /// [`Disconnected`](Self::Disconnected) instead).
    ConnectFailed {
        /// The attempt.
        attempt: u32,
        /// Why.
        error: Arc<io::Error>,
    },
    /// The driver stopped reconnecting after this many attempts and finished.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
    },
}

/// A reader of one journal in the shared state.
#[derive(Debug)]
struct Reader<T> {
    shared: Arc<Shared>,
    pick: fn(&mut State) -> &mut Journal<T>,
    cursor: u64,
    missed: u64,
}

impl<T: Clone> Reader<T> {
    /// A reader of the entries from now on.
    fn new(shared: Arc<Shared>, pick: fn(&mut State) -> &mut Journal<T>) -> (Self, RunState) {
        Self::with(shared, pick, |s| s.runstate)
    }

    /// A reader of the entries from now on, and what `now` reads of the state at that
    /// moment (under the same lock, so no entry falls between them).
    fn with<S>(
        shared: Arc<Shared>,
        pick: fn(&mut State) -> &mut Journal<T>,
        now: impl FnOnce(&State) -> S,
    ) -> (Self, S) {
        let (cursor, runstate) = {
            let mut s = shared.lock();
            (pick(&mut s).next_seq(), now(&s))
        };
        let reader = Reader {
            shared,
            pick,
            cursor,
            missed: 0,
        };
        (reader, runstate)
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.shared.lock();
        (self.pick)(&mut s).poll_read(&mut self.cursor, &mut self.missed, cx)
    }
}

/// Watches the connection runstate, from an adapter's `state_watch` (made by
/// [`Shared::state_watch`]).
///
/// It yields every [`Transition`] made after it was created, in order, however late it is
/// polled: transitions are kept in a sequence-numbered journal, and each watcher reads at its
/// own position. (Only a watcher more than 256 transitions behind can miss any; it is told
/// by [`missed`](Self::missed).) The stream ends when the driver has finished and every
/// transition was read.
///
/// ```
/// # async fn f(shared: std::sync::Arc<qmp_kit::fanout::Shared>) -> Result<(), qmp_kit::Error> {
/// use qmp_proto::RunState;
///
/// let mut watch = shared.state_watch(); // qmp.state_watch() in an adapter
/// watch.wait_for(RunState::Idle).await?; // Running -> Disconnecting -> Idle
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StateWatch {
    reader: Reader<Transition>,
    last: RunState,
}

impl StateWatch {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let (reader, last) = Reader::new(shared, |s| &mut s.transitions);
        StateWatch { reader, last }
    }

    /// The runstate after the last transition this watcher has read (at creation: the
    /// runstate then).
    pub fn current(&self) -> RunState {
        self.last
    }

    /// Transitions skipped because this watcher fell more than 256 behind.
    pub fn missed(&self) -> u64 {
        self.reader.missed
    }

    /// The next transition, or `None` once the driver has finished and all were read.
    pub async fn changed(&mut self) -> Option<Transition> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits until the runstate is `state`: returns at once if the last transition read
    /// reached it, else reads transitions until one does. Fails when the driver finishes
    /// first.
    pub async fn wait_for(&mut self, state: RunState) -> Result<(), Error> {
        while self.last != state {
            if self.changed().await.is_none() {
                return Err(self.reader.shared.gone_error());
            }
        }
        Ok(())
    }
}

impl Stream for StateWatch {
    type Item = Transition;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Transition>> {
        let t = std::task::ready!(self.reader.poll_next(cx));
        if let Some(t) = &t {
            self.last = t.to;
        }
        Poll::Ready(t)
    }
}

/// The connection's [`Status`] changes after it was created, in order, from an adapter's
/// `status` (made by [`Shared::status_stream`]). Ends when the driver has finished and every change
/// was read. Like [`StateWatch`], it reads a journal at its own position, so a slow reader
/// misses nothing (unless more than 256 behind: see [`missed`](Self::missed)).
#[derive(Debug)]
pub struct StatusStream {
    reader: Reader<Status>,
}

impl StatusStream {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        StatusStream {
            reader: Reader::new(shared, |s| &mut s.status).0,
        }
    }

    /// Changes skipped because this reader fell more than 256 behind.
    pub fn missed(&self) -> u64 {
        self.reader.missed
    }

    /// The next change, or `None` once the driver has finished and all were read.
    pub async fn recv(&mut self) -> Option<Status> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for StatusStream {
    type Item = Status;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Status>> {
        self.reader.poll_next(cx)
    }
}

/// Watches the tracked VM status (with [`Settings::track_status`](crate::Settings::track_status)),
/// from an adapter's `vm_status_watch` (made by [`Shared::vm_status_watch`]): the status when
/// it was made, and every change after, in order, however late it is polled (unless more
/// than 256 behind: see [`missed`](Self::missed)). Ends when the driver has finished and
/// every change was read.
///
/// ```
/// # async fn f(shared: std::sync::Arc<qmp_kit::fanout::Shared>) -> Result<(), qmp_kit::Error> {
/// use qmp_proto::status::VmStatus;
///
/// let mut watch = shared.vm_status_watch(); // qmp.vm_status_watch() in an adapter
/// watch.wait_for(|s| s == Some(&VmStatus::Paused)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct VmStatusWatch {
    reader: Reader<VmStatusChange>,
    current: Option<VmStatus>,
}

impl VmStatusWatch {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let (reader, current) = Reader::with(
            shared,
            |s| &mut s.vm_changes,
            |s| s.tracked.vm_status().cloned(),
        );
        VmStatusWatch { reader, current }
    }

    /// The status after the last change this watcher has read (at creation: the status
    /// then). `None` while unknown, or when the peer has no `query-status`.
    pub fn current(&self) -> Option<&VmStatus> {
        self.current.as_ref()
    }

    /// Changes skipped because this watcher fell more than 256 behind.
    pub fn missed(&self) -> u64 {
        self.reader.missed
    }

    /// The next change, or `None` once the driver has finished and all were read.
    pub async fn changed(&mut self) -> Option<VmStatusChange> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits until `pred` holds for the status: at once if it holds for
    /// [`current`](Self::current), else reading changes until one makes it hold. Returns the
    /// status then. Fails when the driver finishes first. (Bound the wait with the
    /// adapter's timeout, or use its `wait_vm_status`.)
    pub async fn wait_for(
        &mut self,
        mut pred: impl FnMut(Option<&VmStatus>) -> bool,
    ) -> Result<Option<VmStatus>, Error> {
        while !pred(self.current.as_ref()) {
            if self.changed().await.is_none() {
                return Err(self.reader.shared.gone_error());
            }
        }
        Ok(self.current.clone())
    }
}

impl Stream for VmStatusWatch {
    type Item = VmStatusChange;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<VmStatusChange>> {
        let c = std::task::ready!(self.reader.poll_next(cx));
        if let Some(c) = &c {
            self.current = c.to.clone();
        }
        Poll::Ready(c)
    }
}

/// Watches the tracked jobs (with [`Settings::track_status`](crate::Settings::track_status)),
/// from an adapter's `job_watch` (made by [`Shared::job_watch`]): the job table when it was
/// made, kept up to date by every change it reads, in order, however late it is polled
/// (unless more than 256 behind: see [`missed`](Self::missed)). Ends when the driver has
/// finished and every change was read.
///
/// ```
/// # async fn f(shared: std::sync::Arc<qmp_kit::fanout::Shared>) -> Result<(), qmp_kit::Error> {
/// let mut jobs = shared.job_watch(); // qmp.job_watch() in an adapter
/// // ... start a job "backup0" ...
/// let last = jobs.wait_job("backup0", |j| j.map_or(true, |j| j.status.is_ended())).await?;
/// if let Some(error) = last.and_then(|j| j.error) {
///     eprintln!("backup failed: {error}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct JobWatch {
    reader: Reader<JobChange>,
    jobs: Vec<Job>,
}

impl JobWatch {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let (reader, jobs) = Reader::with(
            shared,
            |s| &mut s.job_changes,
            |s| s.tracked.jobs().to_vec(),
        );
        JobWatch { reader, jobs }
    }

    /// The jobs after the last change this watcher has read (at creation: the table then),
    /// in the order they appeared.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The job with this id, as of the last change read.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// Changes skipped because this watcher fell more than 256 behind (its table may then
    /// be stale: make a new watcher).
    pub fn missed(&self) -> u64 {
        self.reader.missed
    }

    /// The next change, or `None` once the driver has finished and all were read.
    pub async fn changed(&mut self) -> Option<JobChange> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits until `pred` holds for job `id` (`None`: not in the table, or gone from it): at
    /// once if it holds now, else reading changes until one makes it hold. Returns the job
    /// then, or, when the change removed it, the job as it was last (so that
    /// `|j| j.map_or(true, |j| j.status.is_ended())` returns how a job ended, dismissed at
    /// once or not). Fails when the driver finishes first.
    pub async fn wait_job(
        &mut self,
        id: &str,
        mut pred: impl FnMut(Option<&Job>) -> bool,
    ) -> Result<Option<Job>, Error> {
        if pred(self.job(id)) {
            return Ok(self.job(id).cloned());
        }
        loop {
            let Some(change) = self.changed().await else {
                return Err(self.reader.shared.gone_error());
            };
            if change.id == id && pred(change.to.as_ref()) {
                return Ok(change.to.or(change.from));
            }
        }
    }
}

impl Stream for JobWatch {
    type Item = JobChange;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<JobChange>> {
        let c = std::task::ready!(self.reader.poll_next(cx));
        if let Some(c) = &c {
            crate::tracked::apply_job(&mut self.jobs, &c.id, c.to.as_ref());
        }
        Poll::Ready(c)
    }
}
