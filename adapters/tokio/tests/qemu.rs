//! Against real peers: qemu-storage-daemon, qemu-system-x86_64 (TCG) and qemu-ga. A test
//! whose binary is missing is skipped with the reason printed, unless `QMP_REQUIRE_QEMU=1`
//! makes it a failure. Each scenario runs on a current-thread and a multi-thread runtime.

// Scenarios are plain async fns run by generated #[tokio::test]s, so the test allowances are
// spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{builder, connect, exists, on_both_runtimes, within, Peer, T};
use qmp_testkit::MACHINE_NONE;
use qmp_tokio::{
    Builder, CallOptions, DisconnectReason, Error, EventFilter, IgnoredAny, Listener, RawValue,
    Reconnect, RunState, SessionItem, Status,
};
use serde_json::{json, Value};

/// 100 tasks run commands at once on one connection: each gets its own result.
async fn hundred_concurrent_callers() {
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let qmp = qmp.clone();
            tokio::spawn(async move {
                let node = format!("n{i}");
                let args = json!({"driver": "null-co", "node-name": node, "size": 4096 * (i + 1)});
                qmp.execute::<IgnoredAny, _>("blockdev-add", &args).await?;
                let v: Value = qmp.execute("query-version", &()).await?;
                Ok::<_, Error>((node, v["qemu"]["major"].as_u64()))
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (node, major) = within(task).await.unwrap().unwrap();
        assert_eq!(node, format!("n{i}"));
        assert_eq!(major, Some(qmp_testkit::qemu_major()));
    }
    let nodes: Vec<Value> = qmp.execute("query-named-block-nodes", &()).await.unwrap();
    assert_eq!(nodes.len(), 100);
    assert_eq!(qmp.pending(), 0);
    qmp.quit().await.unwrap();
    assert_eq!(
        within(qmp.closed()).await,
        DisconnectReason::Eof { after_quit: true }
    );
}

/// A backup job: its JOB_STATUS_CHANGE events (all sent before the reply) reach a listener
/// filtered by a predicate, and execute_and_wait gets BLOCK_JOB_COMPLETED.
async fn job_events() {
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    for node in ["src", "dst"] {
        let args = json!({"driver": "null-co", "node-name": node, "size": 1_048_576});
        qmp.execute::<IgnoredAny, _>("blockdev-add", &args)
            .await
            .unwrap();
    }
    let mut statuses = qmp.subscribe(
        EventFilter::name("JOB_STATUS_CHANGE")
            .predicate(|e| e.data_as::<Value>().is_ok_and(|d| d["id"] == "j0")),
    );
    let args = json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full"});
    let (_, done) = qmp
        .execute_and_wait::<IgnoredAny, _>(
            "blockdev-backup",
            &args,
            CallOptions::new().timeout(T),
            EventFilter::name("BLOCK_JOB_COMPLETED"),
        )
        .await
        .unwrap();
    assert_eq!(done.data_as::<Value>().unwrap()["device"], "j0");
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("null") {
        let e = within(statuses.recv()).await.unwrap().unwrap();
        seen.push(
            e.data_as::<Value>().unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.first().map(String::as_str), Some("created"));
    assert_eq!(
        seen[seen.len() - 4..],
        ["waiting", "pending", "concluded", "null"],
        "{seen:?}"
    );
    assert_eq!(statuses.missed_total(), 0);
    qmp.close();
    assert!(within(statuses.recv()).await.is_none());
}

/// QEMU killed with SIGKILL while commands are in flight and queued: every pending call
/// fails promptly with the end of the session, listeners end, later calls fail at once.
async fn killed_mid_command() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    let mut events = qmp.subscribe(EventFilter::all());
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(qmp.execute::<Box<RawValue>, _>("query-qmp-schema", &())))
        .collect();
    let mut calls = calls.into_iter();
    within(calls.next().unwrap()).await.unwrap().unwrap();
    let killed = Instant::now();
    peer.kill();
    let mut failed = 0;
    for call in calls {
        match within(call).await.unwrap() {
            Ok(_) => {}
            Err(Error::Disconnected(
                DisconnectReason::Eof { after_quit: false } | DisconnectReason::Transport { .. },
            )) => failed += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(failed > 0, "every call finished before the kill");
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    let after = qmp.execute::<Value, _>("query-version", &()).await;
    assert!(matches!(after, Err(Error::Disconnected(_))), "{after:?}");
    assert!(within(events.recv()).await.is_none());
    assert!(matches!(
        within(qmp.closed()).await,
        DisconnectReason::Eof { after_quit: false } | DisconnectReason::Transport { .. }
    ));
    assert_eq!(qmp.state(), RunState::Idle);
    assert_eq!(qmp.pending(), 0);
}

/// Late outcomes: a `blockdev-add` sent to a stopped qemu-storage-daemon times out, and once
/// QEMU continues its reply reaches the caller through the handle in the timeout error (the
/// node was created: a retry is refused as a duplicate). A command that times out and whose
/// QEMU is then killed gets the end of the session as its late outcome.
async fn late_outcomes_after_sigstop() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    peer.signal("-STOP");
    let args = json!({"driver": "null-co", "node-name": "late0"});
    let short = || CallOptions::new().timeout(Duration::from_millis(300));
    let timed_out = qmp
        .execute_with::<Value, _>("blockdev-add", &args, short())
        .await;
    let Err(Error::CommandTimeout(late)) = timed_out else {
        panic!("expected a command timeout, got {timed_out:?}");
    };
    assert!(late.try_outcome().is_none());
    peer.signal("-CONT");
    let outcome = within(late.outcome()).await.expect("the node was created");
    assert_eq!(outcome.get(), "{}");
    // The handle keeps its outcome.
    assert!(matches!(late.try_outcome(), Some(Ok(_))));
    let retry = qmp.execute::<Value, _>("blockdev-add", &args).await;
    assert!(
        matches!(&retry, Err(Error::Qmp(e)) if e.desc.contains("Duplicate")),
        "{retry:?}"
    );
    // Timed out, then QEMU killed: the late outcome is the end of the session.
    peer.signal("-STOP");
    let timed_out = qmp
        .execute_with::<Value, _>("query-version", &(), short())
        .await;
    let Err(Error::CommandTimeout(late)) = timed_out else {
        panic!("expected a command timeout, got {timed_out:?}");
    };
    peer.kill();
    let outcome = within(late.outcome()).await;
    assert!(
        matches!(outcome, Err(Error::Disconnected(_))),
        "{outcome:?}"
    );
}

/// A typed wait with a predicate: two USB devices unplugged back to back (USB unplug needs no
/// guest), and the wait for the second's `DEVICE_DELETED` is not ended by the first's.
async fn device_deleted_with_a_predicate() {
    use qmp_types::qmp::{DeviceAdd, DeviceDel, DeviceDeleted};
    let Some(peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S", "-usb"]) else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    // Device properties beyond the schema's members go in `properties`: a bad one is
    // refused by QEMU, which shows they are sent.
    let bad = DeviceAdd::new("usb-kbd".into()).with_property("no-such-property", 1);
    let refused = qmp.call(bad).await;
    assert!(
        matches!(&refused, Err(Error::Qmp(e)) if e.desc.contains("no-such-property")),
        "{refused:?}"
    );
    for (driver, id) in [("usb-kbd", "kbd1"), ("usb-mouse", "mouse1")] {
        let add = DeviceAdd::new(driver.into())
            .with_id(id.into())
            .with_property("serial", format!("{id}-serial"));
        qmp.call(add).await.unwrap();
    }
    let mut deleted = qmp.subscribe(EventFilter::name("DEVICE_DELETED"));
    // Issued first: its event comes first, after the wait below has subscribed.
    let kbd = qmp.call(DeviceDel::new("kbd1".into()));
    let mouse = qmp.call_and_wait(
        DeviceDel::new("mouse1".into()),
        CallOptions::new().timeout(T),
        |e: &DeviceDeleted| e.device.as_deref() == Some("mouse1"),
    );
    within(kbd).await.unwrap();
    let (_, event) = within(mouse).await.unwrap();
    assert_eq!(event.device.as_deref(), Some("mouse1"));
    assert!(event.path.ends_with("mouse1"), "{}", event.path);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = within(deleted.recv()).await.unwrap().unwrap();
        seen.push(e.decode::<DeviceDeleted>().unwrap().unwrap().device);
    }
    assert_eq!(seen, [Some("kbd1".to_owned()), Some("mouse1".to_owned())]);
    qmp.quit().await.unwrap();
}

/// Six pipelined `query-qmp-schema` (about 236 KB each), then `exec-oob query-yank`: QEMU
/// answers the OOB command while in-band ones are still queued.
async fn oob_overtakes_queued_commands() {
    let Some(peer) = Peer::system(MACHINE_NONE) else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    assert!(qmp.oob_enabled());
    let schemas: Vec<_> = (0..6)
        .map(|_| tokio::spawn(qmp.execute::<Box<RawValue>, _>("query-qmp-schema", &())))
        .collect();
    let yanks: Vec<Value> = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .await
        .unwrap();
    assert!(yanks.iter().all(|y| y.get("type").is_some()), "{yanks:?}");
    assert!(
        !schemas.last().unwrap().is_finished(),
        "the OOB reply should come before the last in-band reply"
    );
    for schema in schemas {
        let schema = within(schema).await.unwrap().unwrap();
        assert!((200_000..300_000).contains(&schema.get().len()));
    }
    qmp.close();
    within(qmp.closed()).await;
}

/// `getfd` with a real descriptor passed as SCM_RIGHTS with the command, pipelined behind
/// another; `closefd`.
async fn getfd_with_a_real_fd() {
    let Some(peer) = Peer::system(MACHINE_NONE) else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    let name = json!({"fdname": "fd0"});
    match qmp.execute::<Value, _>("getfd", &name).await {
        Err(Error::Qmp(e)) => assert!(e.desc.contains("SCM_RIGHTS"), "{}", e.desc),
        other => panic!("expected a refusal without a descriptor, got {other:?}"),
    }
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let before = qmp.execute::<Value, _>("query-version", &());
    let getfd = qmp.execute_with::<IgnoredAny, _>("getfd", &name, CallOptions::new().fd(null));
    let (before, getfd) = tokio::join!(before, getfd);
    before.unwrap();
    getfd.unwrap();
    qmp.execute::<IgnoredAny, _>("closefd", &name)
        .await
        .unwrap();
    qmp.close();
    within(qmp.closed()).await;
}

/// `quit`: SHUTDOWN reaches the listener, which then ends; the session ends with EOF after
/// quit; QEMU exits cleanly.
async fn quit_with_shutdown() {
    let Some(mut peer) = Peer::system(MACHINE_NONE) else {
        return;
    };
    let qmp = connect(&peer, &builder()).await;
    let mut events = qmp.subscribe(EventFilter::all());
    let mut watch = qmp.state_watch();
    qmp.quit().await.unwrap();
    let shutdown = within(events.recv()).await.unwrap().unwrap();
    assert_eq!(shutdown.name, "SHUTDOWN");
    assert!(within(events.recv()).await.is_none(), "end of stream");
    assert_eq!(
        within(qmp.closed()).await,
        DisconnectReason::Eof { after_quit: true }
    );
    within(watch.wait_for(RunState::Idle)).await.unwrap();
    assert!(peer.wait_exit(T).success(), "{}", peer.stderr());
}

/// Over TCP: commands work; a file descriptor is refused before anything is sent.
async fn tcp_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = common::tempdir();
    let sock = dir.path().join("unused");
    let qmp_arg = format!("tcp:127.0.0.1:{port},server=on,wait=off");
    let Some(mut peer) = Peer::system_with(MACHINE_NONE, &qmp_arg, dir, sock) else {
        return;
    };
    let qmp = within(async {
        loop {
            match builder().connect_tcp(("127.0.0.1", port)).await {
                Ok(qmp) => break qmp,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(status["running"], true);
    let null = std::fs::File::open("/dev/null").unwrap();
    let refused = qmp
        .execute_with::<Value, _>(
            "getfd",
            &json!({"fdname": "x"}),
            CallOptions::new().fd(null),
        )
        .await;
    assert!(matches!(refused, Err(Error::FdsUnsupported)), "{refused:?}");
    qmp.quit().await.unwrap();
    within(qmp.closed()).await;
    assert!(peer.wait_exit(T).success());
}

/// Accept mode: an owner-only socket that QEMU connects to, removed on drop because this
/// listener created it; a path already there is never taken over nor removed.
async fn accept_mode() {
    let dir = common::tempdir();
    let path = dir.path().join("accept.sock");
    let listener = builder().listen(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let Some(mut peer) = Peer::system_with(
        MACHINE_NONE,
        &format!("unix:{}", path.display()),
        dir,
        path.clone(),
    ) else {
        return;
    };
    let qmp = within(listener.accept()).await.unwrap();
    drop(listener);
    assert!(!exists(&path), "the listener removes the socket it created");
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(status["status"], "running");
    qmp.quit().await.unwrap();
    within(qmp.closed()).await;
    assert!(peer.wait_exit(T).success());

    let taken = peer.dir.path().join("taken");
    std::fs::write(&taken, b"not a socket").unwrap();
    let refused = Listener::bind(&taken);
    assert!(matches!(refused, Err(Error::Io { .. })), "{refused:?}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"not a socket");
}

/// The guest agent: synchronised on connect, then commands, ten of them at once.
async fn guest_agent_commands() {
    let Some(agent) = Peer::guest_agent() else {
        return;
    };
    let qga = connect(&agent, &Builder::new().guest_agent().connect_timeout(T)).await;
    assert_eq!(qga.greeting(), Some(qmp_tokio::Greeting::default()));
    assert!(!qga.oob_enabled());
    let info: Value = qga.execute("guest-info", &()).await.unwrap();
    assert!(info["version"].is_string(), "{info}");
    let pings: Vec<_> = (0..10)
        .map(|_| tokio::spawn(qga.execute::<Value, _>("guest-ping", &())))
        .collect();
    for ping in pings {
        assert_eq!(within(ping).await.unwrap().unwrap(), json!({}));
    }
    match qga.execute::<Value, _>("nope", &()).await {
        Err(Error::Qmp(e)) => assert_eq!(e.class, "CommandNotFound"),
        other => panic!("{other:?}"),
    }
    qga.close();
    assert_eq!(within(qga.closed()).await, DisconnectReason::Closed);
}

/// With a reconnect policy, the driver comes back when QEMU is restarted on the same socket:
/// a call made meanwhile waits for the new session (`calls_wait`), the status stream shows
/// the attempts, a listener across sessions sees the marker, and the handle goes on.
async fn reconnects_after_restart() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let policy = Reconnect::new()
        .initial(Duration::from_millis(10))
        .max(Duration::from_millis(100))
        .calls_wait(true);
    let qmp = connect(&peer, &builder().reconnect(policy)).await;
    let mut statuses = qmp.status();
    let mut across = qmp.subscribe_across_sessions(EventFilter::all());
    peer.kill();
    loop {
        match within(statuses.recv()).await {
            Some(Status::Disconnected { session: 1, .. }) => break,
            Some(_) => {}
            None => panic!("the status stream ended"),
        }
    }
    let restarter = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(200));
        peer.restart();
        peer
    });
    let long = CallOptions::new().timeout(Duration::from_secs(20));
    let v: Value = within(qmp.execute_with("query-version", &(), long))
        .await
        .unwrap();
    assert_eq!(v["qemu"]["major"], qmp_testkit::qemu_major());
    let mut peer = restarter.await.unwrap();
    let mut attempts = 0;
    loop {
        match within(statuses.recv()).await {
            Some(Status::Reconnecting { attempt, .. }) => {
                attempts += 1;
                assert_eq!(attempt, attempts);
            }
            Some(Status::Connected { session, .. }) => {
                assert_eq!(session, 2);
                break;
            }
            Some(_) => {}
            None => panic!("the status stream ended"),
        }
    }
    assert!(attempts >= 1);
    assert_eq!(
        within(across.recv()).await,
        Some(SessionItem::NewSession { session: 2 })
    );
    assert_eq!(qmp.state(), RunState::Running);
    // A local close is not reconnected: the driver finishes.
    qmp.close();
    assert_eq!(within(qmp.closed()).await, DisconnectReason::Closed);
    assert_eq!(within(across.recv()).await, None);
    peer.kill();
}

/// The tracked VM status through a watch: its value at creation, every change in order,
/// and the waits; each step equal to query-status asked on the same connection.
async fn vm_status_watch() {
    use qmp_tokio::status::VmStatus;
    let Some(peer) = Peer::system(&[MACHINE_NONE[0], MACHINE_NONE[1], "-S"]) else {
        return;
    };
    let qmp = connect(&peer, &builder().track_status(true)).await;
    // The session's own query-status may be answered before or after the watch is made;
    // settle it first so the watch starts from the known value.
    within(qmp.status_settled()).await.unwrap();
    let mut watch = qmp.vm_status_watch();
    assert_eq!(watch.current(), Some(&VmStatus::Prelaunch));
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(change) = watch.changed().await {
            seen.push(change.to.clone());
            assert_eq!(watch.current(), change.to.as_ref());
        }
        seen
    });
    for (command, expected) in [
        ("query-status", VmStatus::Prelaunch),
        ("cont", VmStatus::Running),
        ("stop", VmStatus::Paused),
        ("system_reset", VmStatus::Prelaunch),
    ] {
        qmp.execute::<IgnoredAny, _>(command, &()).await.unwrap();
        let status: Value = qmp.execute("query-status", &()).await.unwrap();
        assert_eq!(status["status"], expected.as_str());
        assert_eq!(qmp.vm_status(), Some(expected));
    }
    let now = qmp
        .wait_vm_status(|s| s == Some(&VmStatus::Prelaunch), T)
        .await
        .unwrap();
    assert_eq!(now, Some(VmStatus::Prelaunch));
    // Nothing in flight: settled at once; a refresh asks and comes back.
    within(qmp.status_settled()).await.unwrap();
    within(qmp.refresh_status()).await.unwrap();
    assert_eq!(qmp.vm_status(), Some(VmStatus::Prelaunch));
    let late = qmp.wait_vm_status(
        |s| s == Some(&VmStatus::Running),
        Duration::from_millis(100),
    );
    assert!(matches!(late.await, Err(Error::Timeout)));
    qmp.quit().await.unwrap();
    within(qmp.closed()).await;
    let seen = within(seen).await.unwrap();
    use VmStatus::*;
    assert_eq!(seen, [Some(Running), Some(Paused), Some(Prelaunch)]);
}

/// The tracked jobs through a watch on qemu-storage-daemon: a mirror to ready (waited for),
/// its progress refreshed, then cancelled; the watch's table follows.
async fn job_watch() {
    use qmp_tokio::status::{JobStatus, JobType};
    let Some(peer) = Peer::storage_daemon() else {
        return;
    };
    let qmp = connect(&peer, &builder().track_status(true)).await;
    let mut watch = qmp.job_watch();
    for name in ["src", "dst"] {
        let node = json!({"driver": "null-co", "node-name": name, "size": 1048576});
        qmp.execute::<IgnoredAny, _>("blockdev-add", &node)
            .await
            .unwrap();
    }
    let mirror = json!({"job-id": "m0", "device": "src", "target": "dst", "sync": "full"});
    qmp.execute::<IgnoredAny, _>("blockdev-mirror", &mirror)
        .await
        .unwrap();
    let ready = qmp
        .wait_job("m0", |j| j.is_some_and(|j| j.status == JobStatus::Ready), T)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.id, "m0");
    qmp.refresh_status().await.unwrap();
    let jobs: Value = qmp.execute("query-jobs", &()).await.unwrap();
    let tracked = qmp.jobs();
    assert_eq!(tracked.len(), 1);
    assert_eq!(tracked[0].kind, Some(JobType::Mirror));
    assert_eq!(jobs[0]["status"], tracked[0].status.as_str());
    assert_eq!(
        jobs[0]["current-progress"].as_i64(),
        tracked[0].current_progress
    );
    assert_eq!(
        jobs[0]["total-progress"].as_i64(),
        tracked[0].total_progress
    );
    qmp.execute::<IgnoredAny, _>("job-cancel", &json!({"id": "m0"}))
        .await
        .unwrap();
    qmp.wait_job("m0", |j| j.is_none(), T).await.unwrap();
    assert!(qmp.jobs().is_empty());
    // The watch read every change: its table is the connection's, and the statuses came in
    // order.
    let mut statuses = Vec::new();
    while statuses.last() != Some(&None) {
        let change = within(watch.changed()).await.unwrap();
        if change.status_changed() {
            statuses.push(change.to.map(|j| j.status));
        }
    }
    assert!(watch.jobs().is_empty());
    assert_eq!(
        statuses,
        [
            Some(JobStatus::Created),
            Some(JobStatus::Running),
            Some(JobStatus::Ready),
            Some(JobStatus::Aborting),
            Some(JobStatus::Concluded),
            None
        ]
    );
    assert_eq!(qmp.vm_status(), None);
    qmp.quit().await.unwrap();
}

on_both_runtimes!(
    vm_status_watch,
    job_watch,
    device_deleted_with_a_predicate,
    late_outcomes_after_sigstop,
    reconnects_after_restart,
    hundred_concurrent_callers,
    job_events,
    killed_mid_command,
    oob_overtakes_queued_commands,
    getfd_with_a_real_fd,
    quit_with_shutdown,
    tcp_connection,
    accept_mode,
    guest_agent_commands,
);
