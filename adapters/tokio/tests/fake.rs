//! Against the fake QEMU served on a unix socket: concurrent callers, OOB overtaking, a
//! dropped call that is never sent, timeouts on paused time, the runstate watch and the end
//! of the session. Each scenario runs on a current-thread and a multi-thread runtime.

// Scenarios are plain async fns run by generated #[tokio::test]s, so the test allowances are
// spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::{on_both_runtimes, sent, tapped, within, FakePeer};
use qmp_proto::server::FakeQemu;
use qmp_testkit::{flooding_fake, Recorded};
use qmp_tokio::{
    Builder, CallOptions, ClientConfig, DisconnectReason, Error, EventFilter, IgnoredAny, Lagged,
    RunState,
};
use serde_json::{json, Value};

/// 100 tasks call at once on one connection: each gets its own result.
async fn hundred_concurrent_callers() {
    let peer = FakePeer::serve(FakeQemu::new().name("vm0"));
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let qmp = qmp.clone();
            tokio::spawn(async move {
                let name: Value = qmp.execute("query-name", &()).await?;
                let raw = qmp
                    .execute_raw(
                        json!({"execute": "query-status", "id": format!("c{i}")}),
                        CallOptions::new(),
                    )
                    .await?;
                Ok::<_, Error>((i, name, raw.get().to_owned()))
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (n, name, status) = within(task).await.unwrap().unwrap();
        assert_eq!(n, i);
        assert_eq!(name, json!({"name": "vm0"}));
        assert!(status.contains("running"), "{status}");
    }
    assert_eq!(qmp.pending(), 0);
    qmp.close();
    assert_eq!(within(qmp.closed()).await, DisconnectReason::Closed);
    peer.finish();
}

/// An out-of-band command overtakes an in-band one still running in QEMU.
async fn oob_overtakes_a_slow_command() {
    let mut fake = FakeQemu::new();
    fake.delay("query-status", Duration::from_millis(300));
    let peer = FakePeer::serve(fake);
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    assert!(qmp.oob_enabled());
    let slow = tokio::spawn(qmp.execute::<Value, _>("query-status", &()));
    let yank: Value = within(qmp.execute_with("query-yank", &(), CallOptions::new().oob(true)))
        .await
        .unwrap();
    assert_eq!(yank[0]["type"], "chardev");
    assert!(!slow.is_finished(), "the OOB reply came first");
    assert_eq!(within(slow).await.unwrap().unwrap()["status"], "running");
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

/// A call dropped while it waits in the engine's local queue (one command in flight at
/// most, behind a slow one) is never sent: the tap and the fake's record show no `stop`.
async fn dropped_queued_call_is_never_sent() {
    let mut fake = FakeQemu::new();
    fake.delay("query-status", Duration::from_millis(300));
    let config = fake.server_config();
    let peer = FakePeer::serve_handler(config, Recorded::new(fake));
    let (builder, record) = tapped(Builder::new().config(ClientConfig::default().max_in_flight(1)));
    let qmp = builder.connect_unix(&peer.sock).await.unwrap();
    let slow = tokio::spawn(qmp.execute::<Value, _>("query-status", &()));
    // Issued at the call; the driver hands it to the engine, which queues it.
    let stop = qmp.execute::<IgnoredAny, _>("stop", &());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(qmp.pending(), 2, "both issued to the engine");
    drop(stop);
    assert_eq!(within(slow).await.unwrap().unwrap()["status"], "running");
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(
        status["status"], "running",
        "the dropped stop was never sent"
    );
    assert!(
        !sent(&record).iter().any(|m| m.contains("stop")),
        "{:?}",
        sent(&record)
    );
    qmp.close();
    within(qmp.closed()).await;
    let server = peer.finish();
    assert_eq!(server.handler().calls(), ["query-status", "query-status"]);
    assert_eq!(server.handler().handler().status(), "running");
}

/// A listener that never reads holds at most its capacity and learns how many it missed;
/// the stream ends with the session.
async fn bounded_listener_counts_what_it_missed() {
    let peer = FakePeer::serve(flooding_fake());
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    let mut slow = qmp.subscribe(EventFilter::name("TICK").capacity(16));
    qmp.execute::<Value, _>("flood", &json!({"count": 1000}))
        .await
        .unwrap();
    assert_eq!(slow.len(), 16);
    assert_eq!(slow.missed_total(), 1000 - 16);
    qmp.close();
    within(qmp.closed()).await;
    for n in 0..16 {
        let event = slow.recv().await.unwrap().unwrap();
        assert_eq!(event.data_as::<Value>().unwrap()["n"], n);
    }
    assert_eq!(slow.recv().await, Some(Err(Lagged { missed: 1000 - 16 })));
    assert!(slow.recv().await.is_none());
    peer.finish();
}

/// `quit`: the watcher sees every transition, the session ends with EOF after quit, and
/// calls made afterwards fail with that reason.
async fn quit_and_state_watch() {
    let peer = FakePeer::serve(FakeQemu::new());
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    assert_eq!(qmp.state(), RunState::Running);
    assert_eq!(qmp.greeting().unwrap().version.major, 10);
    let mut watch = qmp.state_watch();
    let (_, stop) = qmp
        .execute_and_wait::<IgnoredAny, _>(
            "stop",
            &(),
            CallOptions::new(),
            EventFilter::name("STOP"),
        )
        .await
        .unwrap();
    assert_eq!(stop.name, "STOP");
    qmp.quit().await.unwrap();
    assert_eq!(
        within(qmp.closed()).await,
        DisconnectReason::Eof { after_quit: true }
    );
    let mut moves = Vec::new();
    while let Some(t) = watch.changed().await {
        moves.push((t.from, t.to, t.session));
    }
    assert_eq!(
        moves,
        [
            (RunState::Running, RunState::Disconnecting, 1),
            (RunState::Disconnecting, RunState::Idle, 1)
        ]
    );
    assert!(qmp.is_finished());
    assert_eq!(
        qmp.disconnect_reason(),
        Some(DisconnectReason::Eof { after_quit: true })
    );
    let after = qmp.execute::<Value, _>("query-status", &()).await;
    assert!(
        matches!(
            after,
            Err(Error::Disconnected(DisconnectReason::Eof {
                after_quit: true
            }))
        ),
        "{after:?}"
    );
    assert_eq!(peer.finish().handler().status(), "shutdown");
}

/// Every handle dropped: the driver closes the connection and finishes.
async fn dropping_every_handle_closes() {
    let peer = FakePeer::serve(FakeQemu::new());
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    let mut watch = qmp.state_watch();
    drop(qmp);
    within(watch.wait_for(RunState::Idle)).await.unwrap();
    peer.finish();
}

on_both_runtimes!(
    hundred_concurrent_callers,
    oob_overtakes_a_slow_command,
    dropped_queued_call_is_never_sent,
    bounded_listener_counts_what_it_missed,
    quit_and_state_watch,
    dropping_every_handle_closes,
);

/// A command timeout on `tokio::time`: with the runtime's time paused, a 10 s timeout
/// fires as soon as the runtime is idle, without waiting; the session goes on.
#[tokio::test(flavor = "current_thread")]
async fn command_timeout_on_paused_time() {
    let mut fake = FakeQemu::new();
    fake.delay("query-status", Duration::from_millis(500));
    let peer = FakePeer::serve(fake);
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    tokio::time::pause();
    let wall = Instant::now();
    let virtual_start = tokio::time::Instant::now();
    let opts = CallOptions::new().timeout(Duration::from_secs(10));
    let timed_out = qmp
        .execute_with::<Value, _>("query-status", &(), opts)
        .await;
    assert!(
        matches!(timed_out, Err(Error::CommandTimeout(_))),
        "{timed_out:?}"
    );
    assert!(virtual_start.elapsed() >= Duration::from_secs(10));
    assert!(
        wall.elapsed() < Duration::from_millis(400),
        "{:?}",
        wall.elapsed()
    );
    tokio::time::resume();
    // The reply, 500 ms after the call, is its late outcome; the next call gets its own.
    let Err(Error::CommandTimeout(late)) = timed_out else {
        unreachable!()
    };
    let outcome = within(late.outcome()).await.unwrap();
    assert!(outcome.get().contains("\"status\""), "{}", outcome.get());
    let version: Value = within(qmp.execute("query-version", &())).await.unwrap();
    assert_eq!(version["qemu"]["major"], 10);
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

/// The same on a multi-thread runtime (whose time cannot be paused), on real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_timeout_multi_thread() {
    let mut fake = FakeQemu::new();
    fake.delay("query-status", Duration::from_millis(300));
    let peer = FakePeer::serve(fake);
    let qmp = Builder::new().connect_unix(&peer.sock).await.unwrap();
    let wall = Instant::now();
    let opts = CallOptions::new().timeout(Duration::from_millis(50));
    let timed_out = qmp
        .execute_with::<Value, _>("query-status", &(), opts)
        .await;
    assert!(
        matches!(timed_out, Err(Error::CommandTimeout(_))),
        "{timed_out:?}"
    );
    assert!(
        wall.elapsed() < Duration::from_millis(290),
        "{:?}",
        wall.elapsed()
    );
    let version: Value = within(qmp.execute("query-version", &())).await.unwrap();
    assert_eq!(version["qemu"]["major"], 10);
    qmp.close();
    within(qmp.closed()).await;
    peer.finish();
}

/// A monitor that accepts the connection and never greets (another client holds it): the
/// greeting timeout, 30 s of paused time, ends the connect at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn greeting_timeout_on_paused_time() {
    let dir = common::tempdir();
    let path = dir.path().join("silent.sock");
    let _silent = UnixListener::bind(&path).unwrap();
    let wall = Instant::now();
    let refused = Builder::new()
        .connect_timeout(Duration::from_secs(30))
        .connect_unix(&path)
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Disconnected(DisconnectReason::GreetingTimeout(d))) if d == Duration::from_secs(30)
        ),
        "{refused:?}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "{:?}",
        wall.elapsed()
    );
}

/// The greeting timeout on a multi-thread runtime, on real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_timeout_multi_thread() {
    let dir = common::tempdir();
    let path = dir.path().join("silent.sock");
    let _silent = UnixListener::bind(&path).unwrap();
    let refused = Builder::new()
        .connect_timeout(Duration::from_millis(100))
        .connect_unix(&path)
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Disconnected(DisconnectReason::GreetingTimeout(_)))
        ),
        "{refused:?}"
    );
}
