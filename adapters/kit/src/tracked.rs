//! Changes of what a connection tracks ([`Settings::track_status`](crate::Settings::track_status)):
//! the VM's run status and the jobs, as the engine reports them
//! ([`qmp_proto::status`] has the rules), numbered and tagged with their session.

use qmp_proto::status::{Job, VmStatus};

/// A change of the tracked VM status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmStatusChange {
    /// Its sequence number among this connection's VM status changes, from 1.
    pub seq: u64,
    /// The session it happened in (1 for the first).
    pub session: u64,
    /// The status before (`None`: not known yet).
    pub from: Option<VmStatus>,
    /// The status now (`None`: the peer has no `query-status`).
    pub to: Option<VmStatus>,
}

/// A tracked job appeared, changed or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobChange {
    /// Its sequence number among this connection's job changes, from 1.
    pub seq: u64,
    /// The session it happened in (1 for the first).
    pub session: u64,
    /// The job's id.
    pub id: String,
    /// The job before (`None`: new to the table).
    pub from: Option<Job>,
    /// The job now (`None`: dismissed, or ended while nobody was looking).
    pub to: Option<Job>,
}

impl JobChange {
    /// Whether the job's status changed (or the job appeared or went away), as opposed to
    /// its progress, type or error alone.
    pub fn status_changed(&self) -> bool {
        self.from.as_ref().map(|j| &j.status) != self.to.as_ref().map(|j| &j.status)
    }
}

/// A change of either, in the order they happened.
// Changes are few (one per status change), so a job change is not boxed for the enum's size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The VM status changed.
    Vm(VmStatusChange),
    /// A job changed.
    Job(JobChange),
}

/// The VM status and the job table as last reported, and the sequence numbers of the next
/// changes: what an adapter keeps for its readers.
#[derive(Debug, Clone, Default)]
pub struct TrackedState {
    vm: Option<VmStatus>,
    jobs: Vec<Job>,
    vm_seq: u64,
    job_seq: u64,
}

impl TrackedState {
    /// The VM status.
    pub fn vm_status(&self) -> Option<&VmStatus> {
        self.vm.as_ref()
    }

    /// The jobs, in the order they appeared.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The job with this id.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// Records a change of the VM status in `session`, and returns it numbered.
    pub fn vm_changed(
        &mut self,
        session: u64,
        from: Option<VmStatus>,
        to: Option<VmStatus>,
    ) -> VmStatusChange {
        self.vm = to.clone();
        self.vm_seq += 1;
        VmStatusChange {
            seq: self.vm_seq,
            session,
            from,
            to,
        }
    }

    /// Records a change of a job in `session`, and returns it numbered.
    pub fn job_changed(
        &mut self,
        session: u64,
        id: String,
        from: Option<Job>,
        to: Option<Job>,
    ) -> JobChange {
        apply_job(&mut self.jobs, &id, to.as_ref());
        self.job_seq += 1;
        JobChange {
            seq: self.job_seq,
            session,
            id,
            from,
            to,
        }
    }
}

/// Sets job `id` in `jobs` to `to` (`None` removes it; a new job goes last).
pub(crate) fn apply_job(jobs: &mut Vec<Job>, id: &str, to: Option<&Job>) {
    match (jobs.iter().position(|j| j.id == id), to) {
        (Some(i), Some(job)) => jobs[i] = job.clone(),
        (Some(i), None) => {
            jobs.remove(i);
        }
        (None, Some(job)) => jobs.push(job.clone()),
        (None, None) => {}
    }
}
