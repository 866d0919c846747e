//! The tracked VM status and jobs against real QEMU: at every step, what the connection
//! tracks equals what `query-status` and `query-jobs` report on the same connection (their
//! replies come after the tracker's own queries, so the comparison is exact), and the changes
//! come in order, none missed, across a reconnection in the middle of a job.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Peer;
use qmp_blocking::status::{Job, JobStatus, JobType, VmStatus};
use qmp_blocking::{Builder, Change, Connection, IgnoredAny, Reconnect};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// What `query-status` says, asked on `qmp` itself, and the tracked status then.
fn vm_now(qmp: &mut Connection) -> (VmStatus, Option<VmStatus>) {
    let status: Value = qmp.execute("query-status", &()).unwrap();
    let reported = VmStatus::from_name(status["status"].as_str().unwrap());
    (reported, qmp.vm_status().cloned())
}

/// Checks the tracked VM status against `query-status`, and that it is `expected`.
fn check_vm(qmp: &mut Connection, expected: VmStatus) {
    let (reported, tracked) = vm_now(qmp);
    assert_eq!(tracked.as_ref(), Some(&reported), "tracked vs query-status");
    assert_eq!(reported, expected);
}

/// `query-jobs` as [`Job`]s.
fn jobs_of(reply: &Value) -> Vec<Job> {
    reply
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let mut job = Job::new(
                j["id"].as_str().unwrap(),
                JobStatus::from_name(j["status"].as_str().unwrap()),
            );
            job.kind = Some(JobType::from_name(j["type"].as_str().unwrap()));
            job.current_progress = j["current-progress"].as_i64();
            job.total_progress = j["total-progress"].as_i64();
            job.error = j["error"].as_str().map(str::to_owned);
            job
        })
        .collect()
}

/// Checks the tracked jobs against `query-jobs` asked on `qmp` itself: the same jobs, with
/// the same type, status and error; the same progress after a refresh. Returns them.
fn check_jobs(qmp: &mut Connection) -> Vec<Job> {
    let reply: Value = qmp.execute("query-jobs", &()).unwrap();
    let reported = jobs_of(&reply);
    let mut tracked = qmp.jobs().to_vec();
    tracked.sort_by(|a, b| a.id.cmp(&b.id));
    let mut sorted = reported.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let key = |j: &Job| {
        (
            j.id.clone(),
            j.kind.clone(),
            j.status.clone(),
            j.error.clone(),
        )
    };
    assert_eq!(
        tracked.iter().map(key).collect::<Vec<_>>(),
        sorted.iter().map(key).collect::<Vec<_>>(),
        "tracked jobs vs query-jobs"
    );
    qmp.refresh_status(T).unwrap();
    let reply: Value = qmp.execute("query-jobs", &()).unwrap();
    let mut reported = jobs_of(&reply);
    reported.sort_by(|a, b| a.id.cmp(&b.id));
    let mut tracked = qmp.jobs().to_vec();
    tracked.sort_by(|a, b| a.id.cmp(&b.id));
    if reported == tracked {
        return tracked;
    }
    // Progress may move between the two queries (a job that runs): only then may they
    // differ, and only in progress.
    let moving = reported
        .iter()
        .all(|j| matches!(j.status, JobStatus::Running));
    assert!(moving, "after a refresh: {tracked:?} vs {reported:?}");
    tracked
}

fn job_changes(changes: &[Change]) -> Vec<(String, Option<JobStatus>)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Job(j) if j.status_changed() => {
                Some((j.id.clone(), j.to.as_ref().map(|j| j.status.clone())))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn vm_status_follows_qemu_system_through_its_run_states() {
    let Some(mut peer) = Peer::system(&["-machine", "none", "-S"]) else {
        return;
    };
    let mut qmp = peer.connect_with(&Builder::new().connect_timeout(T).track_status(true));
    check_vm(&mut qmp, VmStatus::Prelaunch);
    let steps: [(&str, VmStatus); 7] = [
        ("cont", VmStatus::Running),
        ("stop", VmStatus::Paused),
        // A reset of a stopped VM leaves it in prelaunch.
        ("system_reset", VmStatus::Prelaunch),
        ("cont", VmStatus::Running),
        // A reset of a running VM leaves it running.
        ("system_reset", VmStatus::Running),
        ("stop", VmStatus::Paused),
        ("cont", VmStatus::Running),
    ];
    for (command, expected) in steps {
        qmp.execute::<IgnoredAny>(command, &()).unwrap();
        check_vm(&mut qmp, expected);
    }
    // Every change, in order, none missed: the status went through each step's (a reset of
    // a running VM changes nothing).
    let seen: Vec<(Option<VmStatus>, Option<VmStatus>)> = qmp
        .drain_changes()
        .into_iter()
        .filter_map(|c| match c {
            Change::Vm(v) => Some((v.from, v.to)),
            _ => None,
        })
        .collect();
    use VmStatus::*;
    let expected = [
        (None, Some(Prelaunch)),
        (Some(Prelaunch), Some(Running)),
        (Some(Running), Some(Paused)),
        (Some(Paused), Some(Prelaunch)),
        (Some(Prelaunch), Some(Running)),
        (Some(Running), Some(Paused)),
        (Some(Paused), Some(Running)),
    ];
    assert_eq!(seen, expected);
    // A wait that holds at once, and one that times out.
    qmp.wait_vm_status(|s| s == Some(&Running), T).unwrap();
    let e = qmp
        .wait_vm_status(|s| s == Some(&Paused), Duration::from_millis(200))
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    // quit: the status is kept as last known.
    peer.quit(&mut qmp);
    assert_eq!(qmp.vm_status(), Some(&Running));
}

#[test]
fn a_peer_without_query_status_has_jobs_but_no_vm_status() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect_with(&Builder::new().connect_timeout(T).track_status(true));
    let _: Value = qmp.execute("query-jobs", &()).unwrap();
    assert_eq!(qmp.vm_status(), None);
    assert!(qmp.jobs().is_empty());
    assert!(qmp.drain_changes().is_empty());
    peer.quit(&mut qmp);
}

/// A unix-socket proxy to `upstream` whose current link the test can cut, so that a
/// client's session ends while QEMU goes on.
struct Proxy {
    path: PathBuf,
    links: Arc<Mutex<Vec<UnixStream>>>,
}

impl Proxy {
    fn new(dir: &Path, upstream: PathBuf) -> Proxy {
        let path = dir.join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let links: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let kept = Arc::clone(&links);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = UnixStream::connect(&upstream) else {
                    continue;
                };
                kept.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { path, links }
    }

    /// Cuts every link: the client sees EOF, QEMU sees its client go.
    fn cut(&self) {
        for s in self.links.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn jobs_follow_qemu_storage_daemon_across_a_reconnection() {
    // A second monitor for the test's own commands while the tracking client is away.
    let Some(mut peer) = Peer::storage_daemon_with(|dir| {
        let chardev = format!(
            "socket,id=m1,path={},server=on,wait=off",
            dir.join("ctl.sock").display()
        );
        ["--chardev", &chardev, "--monitor", "chardev=m1"]
            .map(str::to_owned)
            .to_vec()
    }) else {
        return;
    };
    // Connect once directly, so the daemon is known to be up, then through the proxy.
    let mut ctl = peer.connect_with(&Builder::new().connect_timeout(T));
    drop(ctl);
    let proxy = Proxy::new(peer.dir.path(), peer.sock.clone());
    let mut qmp = Builder::new()
        .connect_timeout(T)
        .track_status(true)
        .reconnect(
            Reconnect::new()
                .calls_wait(true)
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(200)),
        )
        .connect_unix(&proxy.path)
        .unwrap();
    ctl = Builder::new()
        .connect_timeout(T)
        .connect_unix(peer.dir.path().join("ctl.sock"))
        .unwrap();
    let node = |name: &str| json!({"driver": "null-co", "node-name": name, "size": 1048576});
    for name in ["src", "dst", "dst2"] {
        qmp.execute::<IgnoredAny>("blockdev-add", &node(name))
            .unwrap();
    }
    assert!(check_jobs(&mut qmp).is_empty());
    let ended = |j: Option<&Job>| j.map_or(true, |j| j.status.is_ended());
    let ready = |j: Option<&Job>| j.is_some_and(|j| j.status == JobStatus::Ready);
    let concluded = |j: Option<&Job>| j.is_some_and(|j| j.status == JobStatus::Concluded);

    // A backup kept until dismissed.
    let backup = json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full",
        "auto-dismiss": false});
    qmp.execute::<IgnoredAny>("blockdev-backup", &backup)
        .unwrap();
    let last = qmp.wait_job("j0", concluded, T).unwrap().unwrap();
    assert_eq!(last.error, None);
    let jobs = check_jobs(&mut qmp);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, Some(JobType::Backup));
    assert_eq!(jobs[0].current_progress, Some(1048576));
    qmp.execute::<IgnoredAny>("job-dismiss", &json!({"id": "j0"}))
        .unwrap();
    assert!(check_jobs(&mut qmp).is_empty());

    // A mirror to ready, then completed (dismissed at once).
    let mirror = |id: &str, target: &str| json!({"job-id": id, "device": "src", "target": target, "sync": "full"});
    qmp.execute::<IgnoredAny>("blockdev-mirror", &mirror("m0", "dst"))
        .unwrap();
    let job = qmp.wait_job("m0", ready, T).unwrap().unwrap();
    assert_eq!(job.kind, Some(JobType::Mirror));
    check_jobs(&mut qmp);
    qmp.execute::<IgnoredAny>("job-complete", &json!({"id": "m0"}))
        .unwrap();
    // Its last events may come before job-complete's reply: the wait may hold at once.
    qmp.wait_job("m0", ended, T).unwrap();
    assert!(check_jobs(&mut qmp).is_empty());
    let seen = job_changes(&qmp.drain_changes());
    let m0: Vec<_> = seen
        .iter()
        .filter(|(id, _)| id == "m0")
        .map(|(_, s)| s.clone())
        .collect();
    assert_eq!(
        m0,
        [
            Some(JobStatus::Created),
            Some(JobStatus::Running),
            Some(JobStatus::Ready),
            Some(JobStatus::Waiting),
            Some(JobStatus::Pending),
            Some(JobStatus::Concluded),
            None
        ]
    );

    // A mirror cancelled.
    qmp.execute::<IgnoredAny>("blockdev-mirror", &mirror("m1", "dst"))
        .unwrap();
    qmp.wait_job("m1", ready, T).unwrap();
    qmp.execute::<IgnoredAny>("job-cancel", &json!({"id": "m1"}))
        .unwrap();
    qmp.wait_job("m1", ended, T).unwrap();
    assert!(check_jobs(&mut qmp).is_empty());

    // A failing job, kept: its error is tracked as query-jobs reports it.
    let create = json!({"job-id": "c0", "options": {"driver": "qcow2", "file": "no-such-node",
        "size": 1048576}});
    let _: Value = qmp.execute("blockdev-create", &create).unwrap();
    // Kept (blockdev-create's jobs are dismissed by hand): its events may come after the
    // reply, so the wait is for the job seen concluded.
    qmp.wait_job("c0", concluded, T).unwrap();
    let jobs = check_jobs(&mut qmp);
    assert_eq!(jobs[0].kind, Some(JobType::Create));
    let error = jobs[0].error.clone().expect("the job failed");
    assert!(error.contains("no-such-node"), "{error}");
    qmp.execute::<IgnoredAny>("job-dismiss", &json!({"id": "c0"}))
        .unwrap();
    assert!(check_jobs(&mut qmp).is_empty());

    // A mirror in the middle of its work when the connection drops. While the client is
    // away, the mirror is completed (and goes away) and a backup runs to its end; the next
    // session brings the table up to date and reports both.
    qmp.execute::<IgnoredAny>("blockdev-mirror", &mirror("m2", "dst"))
        .unwrap();
    qmp.wait_job("m2", ready, T).unwrap();
    qmp.drain_changes();
    assert_eq!(qmp.session(), 1);
    proxy.cut();
    let backup = json!({"job-id": "b9", "device": "src", "target": "dst2", "sync": "full",
        "auto-dismiss": false});
    ctl.execute::<IgnoredAny>("job-complete", &json!({"id": "m2"}))
        .unwrap();
    ctl.execute::<IgnoredAny>("blockdev-backup", &backup)
        .unwrap();
    let away: Value = ctl.execute("query-jobs", &()).unwrap();
    assert_eq!(jobs_of(&away).len(), 1, "{away}");
    // The wait goes on in the next session, whose first query-jobs says the mirror is gone.
    // (It returns the job as it was last seen.)
    let last = qmp.wait_job("m2", |j| j.is_none(), T).unwrap().unwrap();
    assert_eq!(last.status, JobStatus::Ready);
    assert_eq!(qmp.job("m2"), None);
    let jobs = check_jobs(&mut qmp);
    assert_eq!(qmp.session(), 2);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, "b9");
    assert_eq!(jobs[0].status, JobStatus::Concluded);
    let changes = qmp.drain_changes();
    assert_eq!(
        job_changes(&changes),
        [
            ("m2".to_owned(), None),
            ("b9".to_owned(), Some(JobStatus::Concluded))
        ],
        "{changes:?}"
    );
    assert!(changes.iter().all(|c| match c {
        Change::Job(j) => j.session == 2,
        _ => true,
    }));
    drop(ctl);
    peer.quit(&mut qmp);
}
