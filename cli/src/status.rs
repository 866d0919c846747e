//! `qmp status`: the VM's run status and the jobs, once or as they change; and the lines
//! that say them, which the shell prints too.

use std::io::Write;
use std::process::ExitCode;

use futures_lite::StreamExt;
use qmp_async::status::{Job, VmStatus};
use qmp_async::{Builder, JobChange, Qmp, VmStatusChange};
use qmp_proto::DisconnectReason;

use crate::target::Target;
use crate::EXIT_FAILURE;

/// The line for a VM status: `VM status: running`, or that the peer has none.
pub fn vm_status_line(status: Option<&VmStatus>) -> String {
    match status {
        Some(s) => format!("VM status: {s}"),
        None => "VM status: none (the peer has no query-status)".to_owned(),
    }
}

/// The line for a change of the VM status (`VM status: running -> paused`), or none when it
/// says nothing (unknown before and after).
pub fn vm_change_line(change: &VmStatusChange) -> Option<String> {
    vm_transition_line(change.from.as_ref(), change.to.as_ref())
}

fn vm_transition_line(from: Option<&VmStatus>, to: Option<&VmStatus>) -> Option<String> {
    match (from, to) {
        (Some(from), Some(to)) => Some(format!("VM status: {from} -> {to}")),
        (None, Some(to)) => Some(format!("VM status: {to}")),
        (Some(from), None) => Some(format!("VM status: {from} -> unknown")),
        (None, None) => None,
    }
}

/// `job ID (TYPE)`, the type left out while unknown.
fn job_head(id: &str, kind: Option<&Job>) -> String {
    match kind.and_then(|j| j.kind.as_ref()) {
        Some(kind) => format!("job {id} ({kind})"),
        None => format!("job {id}"),
    }
}

/// `STATUS CURRENT/TOTAL: ERROR`, the parts not known left out.
fn job_tail(job: &Job) -> String {
    let mut text = job.status.to_string();
    if let (Some(c), Some(t)) = (job.current_progress, job.total_progress) {
        text.push_str(&format!(" {c}/{t}"));
    }
    if let Some(error) = &job.error {
        text.push_str(&format!(": {error}"));
    }
    text
}

/// The line for a job as it is: `job j0 (backup): running 512/1024`.
pub fn job_line(job: &Job) -> String {
    format!("{}: {}", job_head(&job.id, Some(job)), job_tail(job))
}

/// The line for a change of a job: when it appears (`job j0: new, created`), changes status
/// (`job j0 (backup): running -> concluded 1024/1024`), fails, goes away
/// (`job j0 (backup): concluded -> gone`), or gets its final progress once ended. Other
/// changes (progress while it runs, its type becoming known) make no line.
pub fn job_change_line(change: &JobChange) -> Option<String> {
    job_transition_line(&change.id, change.from.as_ref(), change.to.as_ref())
}

fn job_transition_line(id: &str, from: Option<&Job>, to: Option<&Job>) -> Option<String> {
    let head = job_head(id, to.or(from));
    match (from, to) {
        (None, Some(to)) => Some(format!("{head}: new, {}", job_tail(to))),
        (Some(from), None) => Some(format!("{head}: {} -> gone", from.status)),
        (Some(from), Some(to)) if from.status != to.status => {
            Some(format!("{head}: {} -> {}", from.status, job_tail(to)))
        }
        (Some(from), Some(to))
            if (to.error.is_some() && from.error != to.error)
                || (to.status.is_ended()
                    && (from.current_progress, from.total_progress)
                        != (to.current_progress, to.total_progress)) =>
        {
            Some(format!("{head}: {}", job_tail(to)))
        }
        _ => None,
    }
}

/// Connects with status tracking on, and starts the driver.
async fn connect(target: &Target) -> Result<Qmp, qmp_async::Error> {
    let builder = Builder::new()
        .connect_timeout(crate::shell::CONNECT_TIMEOUT)
        .track_status(true);
    let (qmp, driver) = match target {
        Target::Unix(path) => builder.connect_unix(path).await?,
        Target::Tcp(addr) => builder.connect_tcp(addr.as_str()).await?,
    };
    smol::spawn(driver).detach();
    Ok(qmp)
}

/// Prints a line to stdout, flushed; false when stdout is gone (a closed pipe).
fn print(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Runs `qmp status`: the VM status and one line per job, after asking QEMU for them
/// afresh; with `watch`, then one line per change until QEMU closes the connection or
/// exits (exit status 0) or the session fails (3, the reason on stderr).
pub fn run(target: &Target, watch: bool) -> ExitCode {
    smol::block_on(async {
        let qmp = match connect(target).await {
            Ok(q) => q,
            Err(e) => {
                crate::fail(&format!("qmp status: {e}"));
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let code = report(&qmp, watch).await;
        qmp.close();
        code
    })
}

async fn report(qmp: &Qmp, watch: bool) -> ExitCode {
    match qmp_async::timeout(crate::shell::CONNECT_TIMEOUT, qmp.refresh_status()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            crate::fail(&format!("qmp status: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
        Err(_) => {
            crate::fail("qmp status: no answer to query-status and query-jobs");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    // The watchers are made before anything is printed: the snapshot is theirs, and every
    // change after it is theirs to report.
    let mut vm = qmp.vm_status_watch();
    let mut jobs = qmp.job_watch();
    let mut open = print(&vm_status_line(vm.current()));
    for job in jobs.jobs() {
        open = open && print(&job_line(job));
    }
    if !watch || !open {
        return ExitCode::SUCCESS;
    }
    // Each change as its line (`None`: it makes none); `None` when the watch has ended.
    enum Step {
        Vm(Option<Option<String>>),
        Job(Option<Option<String>>),
    }
    let (mut vm_open, mut jobs_open) = (true, true);
    while vm_open || jobs_open {
        let step = futures_lite::future::or(
            async {
                if vm_open {
                    Step::Vm(vm.next().await.map(|c| vm_change_line(&c)))
                } else {
                    futures_lite::future::pending().await
                }
            },
            async {
                if jobs_open {
                    Step::Job(jobs.next().await.map(|c| job_change_line(&c)))
                } else {
                    futures_lite::future::pending().await
                }
            },
        )
        .await;
        let line = match step {
            Step::Vm(Some(line)) | Step::Job(Some(line)) => line,
            Step::Vm(None) => {
                vm_open = false;
                None
            }
            Step::Job(None) => {
                jobs_open = false;
                None
            }
        };
        if let Some(line) = line {
            if !print(&line) {
                return ExitCode::SUCCESS;
            }
        }
    }
    // QEMU exiting (quit, or the guest powering off) ends the session with EOF, a reset
    // after its SHUTDOWN included.
    match qmp.closed().await {
        DisconnectReason::Eof { .. } => ExitCode::SUCCESS,
        reason => {
            crate::fail(&format!("qmp status: {reason}"));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qmp_async::status::{JobStatus, JobType};

    fn job(status: JobStatus, progress: Option<(i64, i64)>) -> Job {
        let mut j = Job::new("j0", status);
        j.kind = Some(JobType::Backup);
        if let Some((c, t)) = progress {
            j.current_progress = Some(c);
            j.total_progress = Some(t);
        }
        j
    }

    fn change(from: Option<Job>, to: Option<Job>) -> Option<String> {
        job_transition_line("j0", from.as_ref(), to.as_ref())
    }

    #[test]
    fn job_lines() {
        let running = job(JobStatus::Running, Some((0, 1024)));
        assert_eq!(job_line(&running), "job j0 (backup): running 0/1024");
        assert_eq!(
            change(None, Some(Job::new("j0", JobStatus::Created))).unwrap(),
            "job j0: new, created"
        );
        let done = job(JobStatus::Concluded, Some((1024, 1024)));
        assert_eq!(
            change(Some(running.clone()), Some(done.clone())).unwrap(),
            "job j0 (backup): running -> concluded 1024/1024"
        );
        // Progress while running: no line; the final figures of an ended job: a line.
        let later = job(JobStatus::Running, Some((512, 1024)));
        assert_eq!(change(Some(running.clone()), Some(later)), None);
        let early_end = job(JobStatus::Concluded, Some((0, 1024)));
        assert_eq!(
            change(Some(early_end), Some(done.clone())).unwrap(),
            "job j0 (backup): concluded 1024/1024"
        );
        let mut failed = done.clone();
        failed.error = Some("Input/output error".into());
        assert_eq!(
            change(Some(done.clone()), Some(failed)).unwrap(),
            "job j0 (backup): concluded 1024/1024: Input/output error"
        );
        assert_eq!(
            change(Some(done), None).unwrap(),
            "job j0 (backup): concluded -> gone"
        );
    }

    #[test]
    fn vm_lines() {
        let c = |from: Option<VmStatus>, to: Option<VmStatus>| {
            vm_transition_line(from.as_ref(), to.as_ref())
        };
        assert_eq!(
            c(Some(VmStatus::Running), Some(VmStatus::Paused)).unwrap(),
            "VM status: running -> paused"
        );
        assert_eq!(
            c(None, Some(VmStatus::Prelaunch)).unwrap(),
            "VM status: prelaunch"
        );
        assert_eq!(c(None, None), None);
        assert_eq!(
            vm_status_line(None),
            "VM status: none (the peer has no query-status)"
        );
    }
}
