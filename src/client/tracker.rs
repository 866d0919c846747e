//! The VM status and job trackers: fed by events and by the replies to the client's own
//! queries. The rules, and why they hold, are in [`crate::status`].
//!
//! The trackers decide; the client issues what they ask for ([`Asks`]) and routes the
//! replies of those commands back here ([`Trackers::on_reply`]) instead of to the
//! application.

use serde::Deserialize;

use crate::client::output::{Diagnostic, Event, Outputs};
use crate::error::CommandError;
use crate::id::CommandResult;
use crate::message::QmpEvent;
use crate::status::{Job, JobStatus, JobType, VmStatus};

/// A query the client issues for a tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Query {
    /// `query-status`, for the VM status.
    Status,
    /// `query-jobs`, for the job table.
    Jobs,
}

impl Query {
    /// The command's name.
    pub(super) fn command(self) -> &'static str {
        match self {
            Query::Status => "query-status",
            Query::Jobs => "query-jobs",
        }
    }
}

/// The queries a tracker wants sent now.
#[derive(Debug, Default, Clone, Copy)]
#[must_use]
pub(super) struct Asks {
    pub(super) status: bool,
    pub(super) jobs: bool,
}

impl Asks {
    fn status() -> Self {
        Asks {
            status: true,
            jobs: false,
        }
    }

    fn jobs() -> Self {
        Asks {
            status: false,
            jobs: true,
        }
    }

    fn or(self, other: Asks) -> Self {
        Asks {
            status: self.status || other.status,
            jobs: self.jobs || other.jobs,
        }
    }
}

/// One tracker's query: whether one is in flight, whether to ask again after it, whether the
/// peer has the command in this session.
#[derive(Debug, Default)]
struct Asking {
    in_flight: bool,
    again: bool,
    unsupported: bool,
}

impl Asking {
    /// A cause to ask: the query to send now, or none (one is in flight, and it asks again
    /// after it; or the peer has no such command).
    fn want(&mut self) -> bool {
        if self.unsupported {
            return false;
        }
        if self.in_flight {
            self.again = true;
            return false;
        }
        true
    }

    /// The reply came: whether to ask again now.
    fn answered(&mut self) -> bool {
        self.in_flight = false;
        std::mem::take(&mut self.again) && !self.unsupported
    }
}

#[derive(Debug)]
pub(super) struct Trackers {
    track_vm: bool,
    track_jobs: bool,
    max_jobs: usize,
    vm: Option<VmStatus>,
    vm_asking: Asking,
    jobs: Vec<Job>,
    jobs_asking: Asking,
    /// Jobs whose status an event set while `query-jobs` was in flight (its reply does not
    /// override it), and those it removed.
    window_status: Vec<String>,
    window_removed: Vec<String>,
    /// Jobs whose progress or error an event set while `query-jobs` was in flight.
    window_data: Vec<String>,
    /// Jobs left out because the table was full, each reported once.
    refused: Vec<String>,
}

/// `query-status`'s return (the member that matters).
#[derive(Deserialize)]
struct StatusInfo {
    status: VmStatus,
}

/// An entry of `query-jobs`' return.
#[derive(Deserialize)]
struct JobInfo {
    id: String,
    #[serde(rename = "type")]
    kind: JobType,
    status: JobStatus,
    #[serde(rename = "current-progress")]
    current_progress: i64,
    #[serde(rename = "total-progress")]
    total_progress: i64,
    error: Option<String>,
}

/// `JOB_STATUS_CHANGE`'s data.
#[derive(Deserialize)]
struct StatusChange {
    id: String,
    status: JobStatus,
}

/// The data of a `BLOCK_JOB_*` event (the members the tracker reads).
#[derive(Deserialize)]
struct BlockJobEvent {
    #[serde(rename = "type")]
    kind: Option<JobType>,
    /// The job id, in all but `BLOCK_JOB_PENDING`.
    device: Option<String>,
    /// The job id, in `BLOCK_JOB_PENDING`.
    id: Option<String>,
    len: Option<i64>,
    offset: Option<i64>,
    error: Option<String>,
}

/// The `BLOCK_JOB_*` events whose data the job tracker reads.
fn is_block_job_event(name: &str) -> bool {
    matches!(
        name,
        "BLOCK_JOB_COMPLETED" | "BLOCK_JOB_CANCELLED" | "BLOCK_JOB_READY" | "BLOCK_JOB_PENDING"
    )
}

impl Trackers {
    pub(super) fn new(track_vm: bool, track_jobs: bool, max_jobs: usize) -> Self {
        Trackers {
            track_vm,
            track_jobs,
            max_jobs,
            vm: None,
            vm_asking: Asking::default(),
            jobs: Vec::new(),
            jobs_asking: Asking::default(),
            window_status: Vec::new(),
            window_removed: Vec::new(),
            window_data: Vec::new(),
            refused: Vec::new(),
        }
    }

    pub(super) fn vm(&self) -> Option<&VmStatus> {
        self.vm.as_ref()
    }

    pub(super) fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// Whether a query is in flight, or due after the one in flight.
    pub(super) fn refreshing(&self) -> bool {
        self.vm_asking.in_flight || self.jobs_asking.in_flight
    }

    /// A session became `Running`: ask everything again.
    pub(super) fn session_started(&mut self) -> Asks {
        self.vm_asking = Asking::default();
        self.jobs_asking = Asking::default();
        self.refused.clear();
        self.refresh()
    }

    /// The session ended: queries in flight are gone with it.
    pub(super) fn session_ended(&mut self) {
        self.vm_asking = Asking::default();
        self.jobs_asking = Asking::default();
        self.clear_window();
    }

    /// What to ask for everything the trackers hold.
    pub(super) fn refresh(&mut self) -> Asks {
        Asks {
            status: self.track_vm && self.vm_asking.want(),
            jobs: self.track_jobs && self.jobs_asking.want(),
        }
    }

    /// The query `q` is sent: its window opens.
    pub(super) fn sent(&mut self, q: Query) {
        match q {
            Query::Status => self.vm_asking.in_flight = true,
            Query::Jobs => {
                self.jobs_asking.in_flight = true;
                self.clear_window();
            }
        }
    }

    fn clear_window(&mut self) {
        self.window_status.clear();
        self.window_removed.clear();
        self.window_data.clear();
    }

    // ----- events -----

    /// Whether an event of this name may change what the trackers hold.
    pub(super) fn concerns(&self, name: &str) -> bool {
        (self.track_vm && (name == "RESUME" || crate::status::asks_vm_status(name)))
            || (self.track_jobs && (name == "JOB_STATUS_CHANGE" || is_block_job_event(name)))
    }

    /// A QMP event (already queued for the application).
    pub(super) fn on_event(&mut self, event: &QmpEvent, out: &mut Outputs) -> Asks {
        let mut asks = Asks::default();
        if self.track_vm && !self.vm_asking.unsupported {
            asks = asks.or(self.on_vm_event(&event.name, out));
        }
        if self.track_jobs {
            asks = asks.or(self.on_job_event(event, out));
        }
        asks
    }

    fn on_vm_event(&mut self, name: &str, out: &mut Outputs) -> Asks {
        match name {
            "RESUME" => {
                self.set_vm(Some(VmStatus::Running), out);
                Asks::default()
            }
            name if crate::status::asks_vm_status(name) => {
                if self.vm_asking.want() {
                    Asks::status()
                } else {
                    Asks::default()
                }
            }
            _ => Asks::default(),
        }
    }

    fn on_job_event(&mut self, event: &QmpEvent, out: &mut Outputs) -> Asks {
        let data = event.data.as_deref().map(|d| d.get()).unwrap_or("null");
        match event.name.as_str() {
            "JOB_STATUS_CHANGE" => {
                let Ok(change) = serde_json::from_str::<StatusChange>(data) else {
                    return Asks::default();
                };
                self.on_job_status(change.id, change.status, out)
            }
            name if is_block_job_event(name) => {
                let Ok(e) = serde_json::from_str::<BlockJobEvent>(data) else {
                    return Asks::default();
                };
                let Some(id) = e.device.or(e.id) else {
                    return Asks::default();
                };
                let Some(i) = self.position(&id) else {
                    // Only JOB_STATUS_CHANGE adds a job: these follow one for the same job.
                    return Asks::default();
                };
                let mut job = self.jobs[i].clone();
                if e.kind.is_some() {
                    job.kind = e.kind;
                }
                if let (Some(len), Some(offset)) = (e.len, e.offset) {
                    job.current_progress = Some(offset);
                    job.total_progress = Some(len);
                    self.mark_data(&id);
                }
                if e.error.is_some() {
                    job.error = e.error;
                    self.mark_data(&id);
                }
                self.replace(i, job, out);
                Asks::default()
            }
            _ => Asks::default(),
        }
    }

    fn on_job_status(&mut self, id: String, status: JobStatus, out: &mut Outputs) -> Asks {
        let in_window = self.jobs_asking.in_flight;
        if in_window {
            if status == JobStatus::Null {
                if !self.window_removed.contains(&id) && self.window_removed.len() < self.max_jobs {
                    self.window_removed.push(id.clone());
                }
            } else {
                self.window_removed.retain(|r| *r != id);
            }
        }
        let ask = matches!(status, JobStatus::Concluded | JobStatus::Aborting);
        match (self.position(&id), status) {
            (Some(i), JobStatus::Null) => {
                let old = self.jobs.remove(i);
                out.push_peer(Event::JobChanged {
                    id,
                    from: Some(Box::new(old)),
                    to: None,
                });
                Asks::default()
            }
            (None, JobStatus::Null) => Asks::default(),
            (Some(i), status) => {
                if in_window {
                    self.mark_status(&id);
                }
                let mut job = self.jobs[i].clone();
                job.status = status;
                self.replace(i, job, out);
                if ask && self.jobs_asking.want() {
                    Asks::jobs()
                } else {
                    Asks::default()
                }
            }
            (None, status) => {
                if self.jobs.len() >= self.max_jobs {
                    self.refuse(id, out);
                    return Asks::default();
                }
                if in_window {
                    self.mark_status(&id);
                }
                let job = Job::new(id.clone(), status);
                self.jobs.push(job.clone());
                out.push_peer(Event::JobChanged {
                    id,
                    from: None,
                    to: Some(Box::new(job)),
                });
                // Its type and progress.
                if self.jobs_asking.want() {
                    Asks::jobs()
                } else {
                    Asks::default()
                }
            }
        }
    }

    fn refuse(&mut self, id: String, out: &mut Outputs) {
        if !self.refused.contains(&id) && self.refused.len() < self.max_jobs {
            self.refused.push(id.clone());
            out.diagnostic(Diagnostic::JobNotTracked { id });
        }
    }

    fn mark_status(&mut self, id: &str) {
        if !self.window_status.iter().any(|w| w == id) {
            self.window_status.push(id.to_owned());
        }
    }

    fn mark_data(&mut self, id: &str) {
        if self.jobs_asking.in_flight && !self.window_data.iter().any(|w| w == id) {
            self.window_data.push(id.to_owned());
        }
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.jobs.iter().position(|j| j.id == id)
    }

    /// Sets job `i` to `job`, reporting a change.
    fn replace(&mut self, i: usize, job: Job, out: &mut Outputs) {
        if self.jobs[i] != job {
            let old = std::mem::replace(&mut self.jobs[i], job.clone());
            out.push_peer(Event::JobChanged {
                id: job.id.clone(),
                from: Some(Box::new(old)),
                to: Some(Box::new(job)),
            });
        }
    }

    fn set_vm(&mut self, status: Option<VmStatus>, out: &mut Outputs) {
        if self.vm != status {
            let from = std::mem::replace(&mut self.vm, status.clone());
            out.push_peer(Event::VmStatusChanged { from, to: status });
        }
    }

    // ----- replies -----

    /// The reply of the tracker's query `q`.
    pub(super) fn on_reply(&mut self, q: Query, result: CommandResult, out: &mut Outputs) -> Asks {
        let asking = match q {
            Query::Status => &mut self.vm_asking,
            Query::Jobs => &mut self.jobs_asking,
        };
        let raw = match result {
            Ok(raw) => raw,
            Err(CommandError::Qmp(e)) if e.class == "CommandNotFound" => {
                asking.unsupported = true;
                asking.answered();
                match q {
                    Query::Status => self.set_vm(None, out),
                    Query::Jobs => self.clear_window(),
                }
                return Asks::default();
            }
            Err(e) => {
                let again = asking.answered();
                out.diagnostic(Diagnostic::StatusQueryFailed {
                    command: q.command(),
                    error: e.to_string(),
                });
                if q == Query::Jobs {
                    self.clear_window();
                }
                return self.again(q, again);
            }
        };
        match q {
            Query::Status => {
                let again = self.vm_asking.answered();
                match serde_json::from_str::<StatusInfo>(raw.get()) {
                    Ok(info) => self.set_vm(Some(info.status), out),
                    Err(e) => out.diagnostic(Diagnostic::StatusQueryFailed {
                        command: q.command(),
                        error: format!("{e}: {}", crate::error::Excerpt::new(raw.get().as_bytes())),
                    }),
                }
                self.again(q, again)
            }
            Query::Jobs => {
                let again = self.jobs_asking.answered();
                match serde_json::from_str::<Vec<JobInfo>>(raw.get()) {
                    Ok(list) => self.apply_jobs(list, out),
                    Err(e) => out.diagnostic(Diagnostic::StatusQueryFailed {
                        command: q.command(),
                        error: format!("{e}: {}", crate::error::Excerpt::new(raw.get().as_bytes())),
                    }),
                }
                self.clear_window();
                self.again(q, again)
            }
        }
    }

    fn again(&mut self, q: Query, again: bool) -> Asks {
        match q {
            Query::Status if again => Asks::status(),
            Query::Jobs if again => Asks::jobs(),
            _ => Asks::default(),
        }
    }

    /// The job table from `query-jobs`' reply, refined by the events that came while it was
    /// in flight, with a change reported for each job that differs.
    fn apply_jobs(&mut self, list: Vec<JobInfo>, out: &mut Outputs) {
        let mut next: Vec<Job> = Vec::with_capacity(list.len().min(self.max_jobs));
        for info in list {
            if self.window_removed.contains(&info.id) || next.iter().any(|j| j.id == info.id) {
                continue;
            }
            if next.len() >= self.max_jobs {
                self.refuse(info.id, out);
                continue;
            }
            let mut job = Job {
                id: info.id,
                kind: Some(info.kind),
                status: info.status,
                current_progress: Some(info.current_progress),
                total_progress: Some(info.total_progress),
                error: info.error,
            };
            if let Some(old) = self.jobs.iter().find(|j| j.id == job.id) {
                if self.window_status.contains(&job.id) {
                    job.status = old.status.clone();
                }
                if self.window_data.contains(&job.id) {
                    job.current_progress = old.current_progress;
                    job.total_progress = old.total_progress;
                    job.error = job.error.or_else(|| old.error.clone());
                }
            }
            next.push(job);
        }
        // A job the reply does not list was dismissed before the query ran, unless an event
        // that came after it added the job.
        let old = std::mem::take(&mut self.jobs);
        for job in old.iter() {
            let listed = next.iter().any(|j| j.id == job.id);
            if !listed && self.window_status.contains(&job.id) && next.len() < self.max_jobs {
                next.push(job.clone());
            }
        }
        for job in &old {
            if !next.iter().any(|j| j.id == job.id) {
                out.push_peer(Event::JobChanged {
                    id: job.id.clone(),
                    from: Some(Box::new(job.clone())),
                    to: None,
                });
            }
        }
        for job in &next {
            let before = old.iter().find(|j| j.id == job.id);
            if before != Some(job) {
                out.push_peer(Event::JobChanged {
                    id: job.id.clone(),
                    from: before.cloned().map(Box::new),
                    to: Some(Box::new(job.clone())),
                });
            }
        }
        self.jobs = next;
    }
}
