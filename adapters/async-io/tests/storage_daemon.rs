//! Against a real qemu-storage-daemon (from qemu-utils), under smol, async-executor and
//! tokio. Skipped with a printed reason when it is not installed, unless QMP_REQUIRE_QEMU=1.

// Scenarios are plain async fns run by generated #[test]s, so the test allowances are spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::{within, Peer, Spawner, T};
use futures_lite::StreamExt;
use qmp_async::{
    Builder, CallOptions, DisconnectReason, Error, EventFilter, IgnoredAny, QemuVersion, RawValue,
    Reconnect, RunState, SessionItem, Status,
};
use qmp_testkit::on_every_executor;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Version {
    qemu: QemuVersion,
    package: String,
}

#[derive(Deserialize)]
struct Node {
    #[serde(rename = "node-name")]
    node_name: String,
}

/// Negotiation with OOB, typed results and typed errors.
async fn negotiates_with_oob(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let greeting = qmp.greeting().unwrap();
    assert_eq!(greeting.version.major, qmp_testkit::qemu_major());
    assert!(greeting.has_capability("oob"));
    assert!(qmp.oob_enabled());
    assert_eq!(qmp.state(), RunState::Running);

    let v: Version = qmp.execute("query-version", &()).await.unwrap();
    assert_eq!(v.qemu, greeting.version);
    assert_eq!(v.package, greeting.package);

    match qmp
        .execute::<Value, _>("blockdev-del", &json!({"node-name": "nope"}))
        .await
    {
        Err(Error::Qmp(e)) => {
            assert_eq!(e.class, "GenericError");
            assert!(e.desc.contains("nope"), "{}", e.desc);
        }
        other => panic!("expected a QMP error, got {other:?}"),
    }
    // qemu-storage-daemon offers OOB but has no OOB-capable command.
    match qmp
        .execute_with::<Value, _>("query-version", &(), CallOptions::new().oob(true))
        .await
    {
        Err(Error::Qmp(e)) => assert!(e.desc.contains("does not support OOB"), "{}", e.desc),
        other => panic!("expected an OOB refusal, got {other:?}"),
    }
    let schema = qmp
        .execute_raw(json!({"execute": "query-qmp-schema"}), CallOptions::new())
        .await
        .unwrap();
    assert!((100_000..150_000).contains(&schema.get().len()));
    qmp.quit().await.unwrap();
    assert_eq!(
        within(driver).await,
        DisconnectReason::Eof { after_quit: true }
    );
    assert!(peer.wait_exit().await.success());
}

/// 100 tasks execute at once on one connection: every one gets its own result.
async fn hundred_concurrent_executes(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let (qmp, _driver) = peer.connect(&sp).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let qmp = qmp.clone();
            sp.spawn(async move {
                let node = format!("n{i}");
                let args = json!({"driver": "null-co", "node-name": node, "size": 4096 * (i + 1)});
                qmp.execute::<IgnoredAny, _>("blockdev-add", &args).await?;
                let v: Version = qmp.execute("query-version", &()).await?;
                Ok::<_, Error>((node, v.qemu.major))
            })
        })
        .collect();
    let started = Instant::now();
    for (i, task) in tasks.into_iter().enumerate() {
        let (node, major) = within(task).await.unwrap();
        assert_eq!(node, format!("n{i}"));
        assert_eq!(major, qmp_testkit::qemu_major());
    }
    eprintln!("200 commands from 100 tasks in {:?}", started.elapsed());
    let nodes: Vec<Node> = qmp.execute("query-named-block-nodes", &()).await.unwrap();
    let mut names: Vec<String> = nodes.into_iter().map(|n| n.node_name).collect();
    names.sort();
    let mut expected: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(qmp.pending(), 0);
}

/// A backup job: its JOB_STATUS_CHANGE events (all sent before the reply) reach a listener
/// filtered by a predicate, and execute_and_wait gets BLOCK_JOB_COMPLETED.
async fn backup_job_events(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let (qmp, _driver) = peer.connect(&sp).await;
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
    let mut unrelated = qmp.subscribe(EventFilter::name("SHUTDOWN"));
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
    let data: Value = done.data_as().unwrap();
    assert_eq!(data["device"], "j0");
    assert_eq!(data["offset"], 1_048_576);

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("null") {
        let e = within(statuses.next()).await.unwrap().unwrap();
        assert!(e.timestamp.is_some_and(|t| t.seconds > 0));
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
    assert!(unrelated.is_empty());
    qmp.close();
    assert!(within(unrelated.next()).await.is_none());
}

/// QEMU killed with SIGKILL while commands are in flight and queued: every pending call
/// fails promptly with the end of the session, listeners end, later calls fail at once.
/// Late outcomes: a `blockdev-add` sent to a stopped qemu-storage-daemon times out, and once
/// QEMU continues its reply reaches the caller through the handle in the timeout error (the
/// node was created: a retry is refused as a duplicate). A command that times out and whose
/// QEMU is then killed gets the end of the session as its late outcome.
async fn late_outcomes_after_sigstop(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
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
    let retry = qmp.execute::<Value, _>("blockdev-add", &args).await;
    assert!(
        matches!(&retry, Err(Error::Qmp(e)) if e.desc.contains("Duplicate")),
        "{retry:?}"
    );
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
    within(driver).await;
}

async fn killed_mid_command(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let mut events = qmp.subscribe(EventFilter::all());
    let mut watch = qmp.state_watch();
    let calls: Vec<_> = (0..100)
        .map(|_| sp.spawn(qmp.execute::<Box<RawValue>, _>("query-qmp-schema", &())))
        .collect();
    let mut calls = calls.into_iter();
    within(calls.next().unwrap()).await.unwrap();
    assert!(qmp.pending() > 0);
    let killed = Instant::now();
    peer.kill();
    let mut failed = 0;
    for call in calls {
        match within(call).await {
            Ok(_) => {}
            Err(Error::Disconnected(DisconnectReason::Eof { after_quit: false })) => failed += 1,
            Err(Error::Disconnected(DisconnectReason::Transport { .. })) => failed += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    let took = killed.elapsed();
    assert!(failed > 0, "every call finished before the kill");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let message = qmp
        .execute::<Value, _>("query-version", &())
        .await
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("the QMP session ended: "), "{message}");
    assert!(within(events.next()).await.is_none());
    within(watch.wait_for(RunState::Idle)).await.unwrap();
    assert!(matches!(
        within(driver).await,
        DisconnectReason::Eof { after_quit: false } | DisconnectReason::Transport { .. }
    ));
    assert_eq!(qmp.pending(), 0);
}

/// With a reconnect policy, the driver comes back when QEMU is restarted on the same
/// socket, negotiates again, and tells the caller; the handle keeps working.
async fn reconnects_after_restart(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let builder = Builder::new().connect_timeout(T).reconnect(
        Reconnect::new()
            .initial(Duration::from_millis(10))
            .max(Duration::from_millis(100)),
    );
    let (qmp, driver) = peer.connect_with(&builder, &sp).await;
    let mut status = qmp.status();
    let mut first = qmp.subscribe(EventFilter::all());
    let mut across = qmp.subscribe_across_sessions(EventFilter::all());
    let mut watch = qmp.state_watch();

    peer.restart();
    match within(status.next()).await.unwrap() {
        Status::Disconnected { session: 1, reason } => {
            assert!(matches!(
                reason,
                DisconnectReason::Eof { .. } | DisconnectReason::Transport { .. }
            ));
        }
        other => panic!("expected the first session to end, got {other:?}"),
    }
    assert!(
        within(first.next()).await.is_none(),
        "listeners end with their session"
    );
    let mut attempts = 0;
    let greeting = loop {
        match within(status.next()).await.unwrap() {
            Status::Reconnecting { attempt, .. } => {
                attempts += 1;
                assert_eq!(attempt, attempts);
            }
            Status::ConnectFailed { .. } | Status::Disconnected { .. } => {}
            Status::Connected { session, greeting } => {
                assert_eq!(session, 2);
                break greeting;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(attempts >= 1);
    assert_eq!(greeting.version.major, qmp_testkit::qemu_major());
    let v: Version = qmp.execute("query-version", &()).await.unwrap();
    assert_eq!(v.qemu, greeting.version);
    within(watch.wait_for(RunState::Running)).await.unwrap();
    assert!(qmp.oob_enabled());
    // A listener across sessions went on, with a marker for the new session.
    assert!(!across.is_closed());
    assert_eq!(
        within(across.next()).await,
        Some(SessionItem::NewSession { session: 2 })
    );

    // close() stops reconnecting: the driver finishes and the status stream ends.
    qmp.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
    match within(status.next()).await.unwrap() {
        Status::Disconnected {
            reason: DisconnectReason::Closed,
            ..
        } => {}
        other => panic!("expected the close, got {other:?}"),
    }
    assert!(within(status.next()).await.is_none());
    // It ends when the driver finishes.
    assert_eq!(within(across.next()).await, None);
}

/// With `Reconnect::calls_wait`, a call made while QEMU is away waits for the next session,
/// up to its own timeout.
async fn calls_wait_for_the_next_session(sp: Spawner) {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let builder = Builder::new().connect_timeout(T).reconnect(
        Reconnect::new()
            .initial(Duration::from_millis(10))
            .max(Duration::from_millis(100))
            .calls_wait(true),
    );
    let (qmp, driver) = peer.connect_with(&builder, &sp).await;
    let mut status = qmp.status();
    peer.kill();
    while !matches!(
        within(status.next()).await,
        Some(Status::Disconnected { .. })
    ) {}
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        peer.restart();
        peer
    });
    let long = CallOptions::new().timeout(Duration::from_secs(20));
    let v: Value = within(qmp.execute_with("query-version", &(), long))
        .await
        .unwrap();
    assert_eq!(v["qemu"]["major"], qmp_testkit::qemu_major());
    let mut peer = restarter.join().unwrap();

    // Nothing comes back: the waiting call fails at its own deadline.
    peer.kill();
    let _ = std::fs::remove_file(&peer.sock);
    while !matches!(
        within(status.next()).await,
        Some(Status::Disconnected { .. })
    ) {}
    let started = std::time::Instant::now();
    let short = CallOptions::new().timeout(Duration::from_millis(300));
    let e = within(qmp.execute_with::<Value, _>("query-version", &(), short))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Closed between sessions: the driver's output is why the last session ended.
    qmp.close();
    assert!(matches!(
        within(driver).await,
        DisconnectReason::Eof { .. } | DisconnectReason::Transport { .. }
    ));
}

on_every_executor!(
    late_outcomes_after_sigstop,
    calls_wait_for_the_next_session,
    negotiates_with_oob,
    hundred_concurrent_executes,
    backup_job_events,
    killed_mid_command,
    reconnects_after_restart,
);
