//! Against a real qemu-system-x86_64 under TCG, under smol, async-executor and tokio.
//! Skipped with a printed reason when it is not installed, unless QMP_REQUIRE_QEMU=1.

// Scenarios are plain async fns run by generated #[test]s, so the test allowances are spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::{exists, tempdir, within, Peer, Spawner};
use futures_lite::{future, StreamExt};
use qmp_async::{
    Builder, CallOptions, DisconnectReason, Error, EventFilter, IgnoredAny, Listener, QmpEvent,
    RawValue, RunState,
};
use qmp_testkit::on_every_executor;
use serde_json::{json, Value};

use qmp_testkit::{MACHINE_NONE as NONE, PC_PAUSED};
type Status = qmp_testkit::VmStatus;

async fn status(qmp: &qmp_async::Qmp) -> Status {
    qmp.execute("query-status", &()).await.unwrap()
}

/// Runs `command` and waits for `event`, subscribed before the command is sent.
async fn run_and_wait(qmp: &qmp_async::Qmp, command: &str, event: &str) -> Arc<QmpEvent> {
    let opts = CallOptions::new().timeout(common::T);
    let (_, got) = qmp
        .execute_and_wait::<IgnoredAny, _>(command, &(), opts, EventFilter::name(event))
        .await
        .unwrap();
    assert_eq!(got.name, event);
    got
}

/// `cont` and `stop` on a paused PC: RESUME and STOP, each waited for without a race (STOP
/// comes before `stop`'s reply), and seen in order by a name-filtered listener.
async fn stop_and_resume(sp: Spawner) {
    let Some(mut peer) = Peer::system(PC_PAUSED) else {
        return;
    };
    let (qmp, _driver) = peer.connect(&sp).await;
    let mut runstate = qmp.subscribe(EventFilter::names(["STOP", "RESUME"]));
    assert_eq!(
        status(&qmp).await,
        Status {
            status: "prelaunch".into(),
            running: false
        }
    );
    let resume = run_and_wait(&qmp, "cont", "RESUME").await;
    assert!(resume.timestamp.is_some());
    assert!(status(&qmp).await.running);
    run_and_wait(&qmp, "stop", "STOP").await;
    assert_eq!(
        status(&qmp).await,
        Status {
            status: "paused".into(),
            running: false
        }
    );
    let names: Vec<String> = within(
        (&mut runstate)
            .take(2)
            .map(|e| e.unwrap().name.clone())
            .collect(),
    )
    .await;
    assert_eq!(names, ["RESUME", "STOP"]);
    assert!(runstate.is_empty());
}

/// Six pipelined `query-qmp-schema` (about 236 KB each), then `exec-oob query-yank`: QEMU
/// answers the OOB command while in-band ones are still queued.
async fn oob_overtakes_queued_commands(sp: Spawner) {
    let Some(mut peer) = Peer::system(NONE) else {
        return;
    };
    let (qmp, _driver) = peer.connect(&sp).await;
    assert!(qmp.oob_enabled());
    let mut schemas: Vec<_> = (0..6)
        .map(|_| Box::pin(qmp.execute::<Box<RawValue>, _>("query-qmp-schema", &())))
        .collect();
    let yanks: Vec<Value> = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .await
        .unwrap();
    assert!(yanks.iter().all(|y| y.get("type").is_some()), "{yanks:?}");
    let last = schemas.last_mut().unwrap();
    assert!(
        future::poll_once(last).await.is_none(),
        "the OOB reply should come before the last in-band reply"
    );
    assert!(qmp.pending() >= 1);
    for schema in schemas {
        let schema = within(schema).await.unwrap();
        assert!(
            (200_000..300_000).contains(&schema.get().len()),
            "{} bytes",
            schema.get().len()
        );
    }
    // Over the cap of 8 in flight, the local queue is overtaken too.
    let many: Vec<_> = (0..20)
        .map(|_| qmp.execute::<Box<RawValue>, _>("query-qmp-schema", &()))
        .collect();
    let _: Value = qmp
        .execute_with("query-yank", &(), CallOptions::new().oob(true))
        .await
        .unwrap();
    assert!(qmp.pending() >= 8, "{}", qmp.pending());
    for schema in many {
        within(schema).await.unwrap();
    }
}

/// `getfd` with a real descriptor passed as SCM_RIGHTS with the command; `closefd`.
async fn getfd_with_a_real_fd(sp: Spawner) {
    let Some(mut peer) = Peer::system(NONE) else {
        return;
    };
    let (qmp, _driver) = peer.connect(&sp).await;
    let name = json!({"fdname": "fd0"});
    match qmp.execute::<Value, _>("getfd", &name).await {
        Err(Error::Qmp(e)) => assert!(e.desc.contains("SCM_RIGHTS"), "{}", e.desc),
        other => panic!("expected a refusal without a descriptor, got {other:?}"),
    }
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    // Pipelined behind other commands: the descriptor travels with its own command.
    let before = qmp.execute::<Value, _>("query-version", &());
    let getfd = qmp.execute_with::<IgnoredAny, _>("getfd", &name, CallOptions::new().fd(null));
    let (before, getfd) = future::zip(before, getfd).await;
    before.unwrap();
    getfd.unwrap();
    qmp.execute::<IgnoredAny, _>("closefd", &name)
        .await
        .unwrap();
    match qmp.execute::<Value, _>("closefd", &name).await {
        Err(Error::Qmp(e)) => assert_eq!(e.class, "GenericError"),
        other => panic!("expected an error for a closed fd, got {other:?}"),
    }
}

/// `quit`: SHUTDOWN reaches the listener, which then ends; the watcher sees the session
/// end; the driver reports EOF after quit; QEMU exits cleanly.
async fn quit_with_shutdown_and_end_of_stream(sp: Spawner) {
    let Some(mut peer) = Peer::system(NONE) else {
        return;
    };
    let (qmp, driver) = peer.connect(&sp).await;
    let mut events = qmp.subscribe(EventFilter::all());
    let mut watch = qmp.state_watch();
    qmp.quit().await.unwrap();
    let shutdown = within(events.next()).await.unwrap().unwrap();
    assert_eq!(shutdown.name, "SHUTDOWN");
    let data: Value = shutdown.data_as().unwrap();
    assert_eq!(data["reason"], "host-qmp-quit");
    assert_eq!(data["guest"], false);
    assert!(within(events.next()).await.is_none(), "end of stream");
    assert_eq!(
        within(driver).await,
        DisconnectReason::Eof { after_quit: true }
    );
    let moves: Vec<_> = within((&mut watch).map(|t| (t.from, t.to)).collect::<Vec<_>>()).await;
    assert_eq!(
        moves,
        [
            (RunState::Running, RunState::Disconnecting),
            (RunState::Disconnecting, RunState::Idle)
        ]
    );
    assert!(peer.wait_exit().await.success(), "{}", peer.stderr());
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
}

/// Over TCP: commands work; a file descriptor is refused before anything is sent.
async fn tcp_connection(sp: Spawner) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempdir();
    let sock = dir.path().join("unused");
    let qmp_arg = format!("tcp:127.0.0.1:{port},server=on,wait=off");
    let Some(mut peer) = Peer::system_with(NONE, &qmp_arg, dir, sock) else {
        return;
    };
    let builder = Builder::new().connect_timeout(common::T);
    let (qmp, driver) = within(async {
        loop {
            match builder.connect_tcp(("127.0.0.1", port)).await {
                Ok(pair) => break pair,
                Err(_) => common::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    let driver = sp.spawn(driver);
    assert!(qmp.oob_enabled());
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(status["running"], true);
    common::assert_fds_refused(&qmp).await;
    qmp.quit().await.unwrap();
    within(driver).await;
    assert!(peer.wait_exit().await.success());
}

/// Accept mode: an owner-only socket that QEMU connects to; removed on drop only because
/// this listener created it.
async fn accept_mode(sp: Spawner) {
    let dir = tempdir();
    let path = dir.path().join("accept.sock");
    let listener = Builder::new()
        .connect_timeout(common::T)
        .listen(&path)
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let Some(mut peer) =
        Peer::system_with(NONE, &format!("unix:{}", path.display()), dir, path.clone())
    else {
        return;
    };
    let (qmp, driver) = within(listener.accept()).await.unwrap();
    let driver = sp.spawn(driver);
    drop(listener);
    assert!(!exists(&path), "the listener removes the socket it created");
    let status: Value = qmp.execute("query-status", &()).await.unwrap();
    assert_eq!(status["status"], "running");
    qmp.quit().await.unwrap();
    within(driver).await;
    assert!(peer.wait_exit().await.success());

    // A path that is already there is never taken over nor removed.
    let taken = peer.dir.path().join("taken");
    std::fs::write(&taken, b"not a socket").unwrap();
    let refused = Listener::bind(&taken);
    assert!(matches!(refused, Err(Error::Io { .. })), "{refused:?}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"not a socket");
}

on_every_executor!(
    stop_and_resume,
    oob_overtakes_queued_commands,
    getfd_with_a_real_fd,
    quit_with_shutdown_and_end_of_stream,
    tcp_connection,
    accept_mode,
);
