//! Guest agent connections against a real qemu-ga running on the host (`-m unix-listen`),
//! under smol, async-executor and tokio: resynchronisation on connect, concurrent commands,
//! a timed-out command followed by a resync whose late reply is never taken for the next
//! command's, the agent killed and restarted (with reconnection), and an agent that answers
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::{signal_pid, sleep, tempdir, within, Peer, Spawner, T};
use futures_lite::StreamExt;
use qmp_async::{Builder, CallOptions, DisconnectReason, Error, Reconnect, Status};
use qmp_testkit::on_every_executor;
use serde_json::{json, Value};

fn agent_builder() -> Builder {
    Builder::new().guest_agent().connect_timeout(T)
}

/// Sync on connect, then commands, ten of them at once.
async fn sync_and_commands(sp: Spawner) {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let (qga, driver) = agent.connect_with(&agent_builder(), &sp).await;
    // A guest agent sends no greeting: an empty one stands for it.
    assert_eq!(qga.greeting(), Some(qmp_async::Greeting::default()));
    assert!(!qga.oob_enabled());
    let info: Value = qga.execute("guest-info", &()).await.unwrap();
    assert!(
        qmp_testkit::is_qemu_version(info["version"].as_str().unwrap_or("")),
        "{info}"
    );
    let os: Value = qga.execute("guest-get-osinfo", &()).await.unwrap();
    assert!(os["kernel-release"].is_string(), "{os}");
    let pings: Vec<_> = (0..10)
        .map(|_| sp.spawn(qga.execute::<Value, _>("guest-ping", &())))
        .collect();
    for ping in pings {
        assert_eq!(within(ping).await.unwrap(), json!({}));
    }
    match qga.execute::<Value, _>("nope", &()).await {
        Err(Error::Qmp(e)) => assert_eq!(e.class, "CommandNotFound"),
        other => panic!("{other:?}"),
    }
    qga.close();
    assert_eq!(within(driver).await, DisconnectReason::Closed);
}

/// A stopped agent: the command times out; the resynchronisation that follows holds the
/// next command until the agent, running again, has answered everything before it.
async fn timed_out_command_then_resync(sp: Spawner) {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let (qga, _driver) = agent.connect_with(&agent_builder(), &sp).await;
    agent.signal("-STOP");
    let opts = CallOptions::new().timeout(Duration::from_millis(300));
    let r = qga.execute_with::<Value, _>("guest-info", &(), opts).await;
    assert!(matches!(r, Err(Error::CommandTimeout(_))), "{r:?}");
    let next = sp.spawn(qga.execute::<Value, _>("guest-ping", &()));
    sleep(Duration::from_millis(300)).await;
    signal_pid(agent.pid(), "-CONT");
    assert_eq!(within(next).await.unwrap(), json!({}));
    let info: Value = qga.execute("guest-info", &()).await.unwrap();
    assert!(
        qmp_testkit::is_qemu_version(info["version"].as_str().unwrap_or("")),
        "{info}"
    );
}

/// Killed and restarted on the same socket: the driver reconnects and resynchronises.
async fn killed_and_restarted(sp: Spawner) {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let builder = agent_builder().reconnect(
        Reconnect::new()
            .initial(Duration::from_millis(20))
            .max(Duration::from_millis(100)),
    );
    let (qga, _driver) = agent.connect_with(&builder, &sp).await;
    let mut status = qga.status();
    let _: Value = qga.execute("guest-ping", &()).await.unwrap();
    agent.kill();
    let _ = std::fs::remove_file(&agent.sock);
    agent.restart();
    // Wait for the second session.
    within(async {
        while let Some(s) = status.next().await {
            if let Status::Connected {
                session: 2,
                greeting,
            } = s
            {
                assert_eq!(greeting, qmp_async::Greeting::default());
                return;
            }
        }
        panic!("the status stream ended");
    })
    .await;
    let pong: Value = within(async {
        loop {
            match qga.execute("guest-ping", &()).await {
                Ok(v) => return v,
                Err(Error::Disconnected(_)) => sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert_eq!(pong, json!({}));
}

/// Nothing answers: the connect fails with the sync timeout.
async fn silent_agent_fails_the_connect(_sp: Spawner) {
    let dir = tempdir();
    let sock = dir.path().join("silent.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let r = Builder::new()
        .guest_agent()
        .connect_timeout(Duration::from_millis(300))
        .connect_unix(&sock)
        .await;
    match r {
        Err(Error::Disconnected(DisconnectReason::SyncTimeout(t))) => {
            assert_eq!(t, Duration::from_millis(300));
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("connected to a silent agent"),
    }
}

on_every_executor!(
    sync_and_commands,
    timed_out_command_then_resync,
    killed_and_restarted,
    silent_agent_fails_the_connect,
);
