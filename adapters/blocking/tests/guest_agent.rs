//! Guest agent connections against a real qemu-ga running on the host (`-m unix-listen`):
//! resynchronisation on connect, commands, a timed-out command followed by a resync whose
//! late reply is never taken for the next command's, the agent killed and restarted, and an
//! agent that answers nothing.

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use qmp_blocking::{Builder, CallOptions, Connection, DisconnectReason, Error, IgnoredAny};
use serde_json::Value;

mod common;
use common::{tempdir, Peer};

fn agent_builder() -> Builder {
    Builder::new()
        .guest_agent()
        .connect_timeout(Duration::from_secs(10))
}

#[test]
fn sync_ping_info_osinfo() {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let mut qga = agent.connect_with(&agent_builder());
    assert!(qga.is_guest_agent());
    assert_eq!(qga.greeting(), &qmp_blocking::Greeting::default());
    assert!(!qga.oob_enabled());

    let pong: Value = qga.execute("guest-ping", &()).unwrap();
    assert_eq!(pong, serde_json::json!({}));
    let info: Value = qga.execute("guest-info", &()).unwrap();
    assert!(
        qmp_testkit::is_qemu_version(info["version"].as_str().unwrap_or("")),
        "{info}"
    );
    let commands = info["supported_commands"].as_array().unwrap();
    assert!(commands
        .iter()
        .any(|c| c["name"] == "guest-sync-delimited" && c["enabled"] == true));
    let os: Value = qga.execute("guest-get-osinfo", &()).unwrap();
    assert!(os["kernel-release"].is_string(), "{os}");

    // An explicit resynchronisation, then commands go on.
    qga.resync(Duration::from_secs(10)).unwrap();
    let pong: Value = qga.execute("guest-ping", &()).unwrap();
    assert_eq!(pong, serde_json::json!({}));
    // An unknown command is the agent's error, the session goes on.
    common::qmp_error(qga.execute::<Value>("nope", &()), "CommandNotFound");
    qga.execute::<IgnoredAny>("guest-ping", &()).unwrap();
}

#[test]
fn timed_out_command_then_resync() {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let mut qga = agent.connect_with(&agent_builder());
    // A stopped agent answers nothing: the command times out.
    agent.signal("-STOP");
    let opts = CallOptions::new().timeout(Duration::from_millis(300));
    let r = qga.execute_with::<Value>("guest-info", &(), opts);
    assert!(matches!(r, Err(Error::CommandTimeout(_))), "{r:?}");
    // The next command is held until the resynchronisation that followed the timeout is
    // answered. The agent, once it runs again, first answers guest-info (dropped as late),
    // then the sync, then this command: it gets its own reply, not guest-info's.
    let resume = std::thread::spawn({
        let pid = agent.pid();
        move || {
            std::thread::sleep(Duration::from_millis(500));
            let ok = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
    });
    let pong: Value = qga.execute("guest-ping", &()).unwrap();
    resume.join().unwrap();
    assert_eq!(pong, serde_json::json!({}));
    let info: Value = qga.execute("guest-info", &()).unwrap();
    assert!(
        qmp_testkit::is_qemu_version(info["version"].as_str().unwrap_or("")),
        "{info}"
    );
}

#[test]
fn agent_killed_and_restarted() {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let mut qga = agent.connect_with(&agent_builder());
    qga.execute::<IgnoredAny>("guest-ping", &()).unwrap();
    agent.restart();
    let r = qga.execute::<Value>("guest-ping", &());
    assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
    assert!(!qga.is_connected());
    // The restarted agent, on the same socket path.
    let mut qga = agent.connect_with(&agent_builder());
    let pong: Value = qga.execute("guest-ping", &()).unwrap();
    assert_eq!(pong, serde_json::json!({}));
}

#[test]
fn an_agent_that_answers_nothing_fails_the_connect() {
    // A socket that accepts and never answers, like a virtio-serial port with no agent
    // running in the guest.
    let dir = tempdir();
    let sock = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let start = Instant::now();
    let r = Builder::new()
        .guest_agent()
        .connect_timeout(Duration::from_millis(300))
        .connect_unix(&sock);
    match r {
        Err(Error::Disconnected(DisconnectReason::SyncTimeout(t))) => {
            assert_eq!(t, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[test]
fn qmp_connections_cannot_resync() {
    let Some(mut qsd) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = qsd.connect();
    assert!(!qmp.is_guest_agent());
    let r = qmp.resync(Duration::from_secs(1));
    assert!(
        matches!(r, Err(Error::Call(qmp_blocking::CallError::NotGuestAgent))),
        "{r:?}"
    );
    let _: Value = qmp.execute("query-version", &()).unwrap();
    let _ = Connection::connect_guest_agent(dir_of(&qsd).join("missing.sock")).unwrap_err();
}

fn dir_of(peer: &Peer) -> std::path::PathBuf {
    peer.dir.path().to_path_buf()
}

#[test]
fn the_tap_shows_the_sync_without_its_delimiter_byte() {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tap = std::sync::Arc::clone(&seen);
    let builder = agent_builder().tap(move |t| tap.lock().unwrap().push(t.clone()));
    let mut qga = agent.connect_with(&builder);
    qga.execute::<IgnoredAny>("guest-ping", &()).unwrap();
    let seen = seen.lock().unwrap();
    let first = &seen[0];
    assert_eq!(first.direction, qmp_blocking::Direction::Out);
    assert!(first.delimited, "{first:?}");
    assert!(
        first
            .message
            .starts_with(r#"{"execute":"guest-sync-delimited","arguments":{"id":"#),
        "{first:?}"
    );
    assert!(
        seen.iter().all(|t| !t.message.contains('\u{fffd}')),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .any(|t| t.message == r#"{"execute":"guest-ping","id":1}"#));
}
