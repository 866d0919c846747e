//! Faults against real QEMU: SIGKILL mid-command and mid-reply, SIGSTOP for longer than the
//! command timeout (then SIGCONT), the socket deleted and recreated, QEMU restarted. Each
//! time, no call hangs and every pending call fails with an error that names the cause.

mod common;

use std::time::{Duration, Instant};

use common::Peer;
use qmp_blocking::{CallOptions, Connection, DisconnectReason, Error, ProtocolError};
use serde_json::Value;

fn version(qmp: &mut Connection) -> u64 {
    let v: Value = qmp.execute("query-version", &()).expect("query-version");
    v["qemu"]["major"].as_u64().expect("major")
}

/// A failure that names the end of the session.
fn disconnected(e: &Error) -> &DisconnectReason {
    match e {
        Error::Disconnected(reason) => reason,
        other => panic!("expected the session to end, got {other:?}"),
    }
}

#[test]
fn sigkill_mid_command_fails_every_pending_call_promptly() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect();
    // Stopped, QEMU cannot answer: the commands stay in flight.
    peer.signal("-STOP");
    let ids: Vec<_> = (0..5)
        .map(|_| {
            qmp.send("query-status", &(), CallOptions::new())
                .expect("send")
        })
        .collect();
    assert!(!qmp.has_reply(ids[0]));
    peer.signal("-KILL");
    let start = Instant::now();
    let mut causes = Vec::new();
    for id in ids {
        let e = qmp.wait(id).expect_err("a reply from a killed QEMU");
        let reason = disconnected(&e).clone();
        assert!(
            matches!(
                reason,
                DisconnectReason::Eof { after_quit: false } | DisconnectReason::Transport { .. }
            ),
            "{reason}"
        );
        let text = e.to_string();
        assert!(
            text.contains("closed the connection") || text.contains("reset"),
            "{text}"
        );
        causes.push(reason);
    }
    assert!(start.elapsed() < Duration::from_secs(5), "not prompt");
    assert!(causes.windows(2).all(|w| w[0] == w[1]), "one cause for all");
    // Later calls fail the same way, at once.
    assert_eq!(
        disconnected(
            &qmp.send("query-status", &(), CallOptions::new())
                .unwrap_err()
        ),
        &causes[0]
    );
}

#[test]
fn sigkill_mid_reply_reports_a_truncated_message() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect();
    // About 1 MB of replies, more than the socket holds: QEMU is still writing when killed.
    let ids: Vec<_> = (0..4)
        .map(|_| {
            qmp.send("query-qmp-schema", &(), CallOptions::new())
                .expect("send")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    peer.signal("-KILL");
    let mut failed = None;
    for id in ids {
        match qmp.wait(id) {
            Ok(schema) => assert!(failed.is_none() && schema.get().len() > 200_000),
            Err(e) => {
                let reason = disconnected(&e).clone();
                if let Some(first) = &failed {
                    assert_eq!(&reason, first);
                }
                failed = Some(reason);
            }
        }
    }
    match failed {
        Some(DisconnectReason::Protocol(ProtocolError::Truncated(excerpt))) => {
            assert!(excerpt.to_string().starts_with("{\"return\": [{"));
        }
        other => panic!("expected a truncated reply, got {other:?}"),
    }
}

#[test]
fn sigstop_beyond_the_timeout_then_sigcont() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    peer.signal("-STOP");
    let start = Instant::now();
    let late = qmp.execute_with::<Value>(
        "query-version",
        &(),
        CallOptions::new().timeout(Duration::from_millis(300)),
    );
    assert!(matches!(late, Err(Error::CommandTimeout(_))), "{late:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(Error::Timeout.to_string(), "timed out");
    peer.signal("-CONT");
    // The late reply is the late outcome; the next command gets its own.
    let Err(Error::CommandTimeout(late)) = late else {
        unreachable!()
    };
    let outcome = qmp
        .wait_late(&late, Duration::from_secs(5))
        .expect("late outcome");
    assert!(outcome.get().contains("\"qemu\""), "{}", outcome.get());
    assert_eq!(version(&mut qmp), 10);
    let status: Value = qmp.execute("query-commands", &()).expect("query-commands");
    assert!(status.as_array().is_some_and(|a| !a.is_empty()));
    peer.quit(&mut qmp);
}

#[test]
fn socket_deleted_and_recreated() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    std::fs::remove_file(&peer.sock).expect("remove the socket");
    // The established session does not need the path.
    assert_eq!(version(&mut qmp), 10);
    // A new connection fails at once, with the path in the error.
    let e = Connection::connect_unix(&peer.sock).expect_err("no socket");
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(&peer.sock.display().to_string()),
        "{e}"
    );
    // QEMU started again on the same path recreates it; the old session ended with the old
    // process.
    peer.restart();
    let mut again = peer.connect();
    assert_eq!(version(&mut again), 10);
    let e = qmp
        .execute::<Value>("query-version", &())
        .expect_err("old QEMU is gone");
    disconnected(&e);
    peer.quit(&mut again);
}

#[test]
fn qemu_restarted_under_a_session() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect();
    peer.signal("-STOP");
    let pending = qmp
        .send("query-status", &(), CallOptions::new())
        .expect("send");
    peer.restart();
    let e = qmp.wait(pending).expect_err("restarted under the call");
    let reason = disconnected(&e).clone();
    assert!(e.to_string().contains(&reason.to_string()));
    assert!(!qmp.is_connected());
    // A new session on the new QEMU: fresh greeting and negotiation.
    let mut again = peer.connect();
    assert!(again.oob_enabled());
    assert_eq!(version(&mut again), 10);
    peer.quit(&mut again);
}

/// The connection waits for replies in the read itself, with the socket's read timeout as
/// the limit: a shorter timeout after a longer one must still fire on time, and a wait with
/// no timeout after them must still get its reply.
#[test]
fn timeouts_of_every_length_fire_on_time() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut qmp = peer.connect();
    peer.signal("-STOP");
    let mut lates = Vec::new();
    for (timeout, most) in [
        (1000, 1600),
        (100, 600),
        (45, 400),
        (1000, 1600),
        (250, 800),
    ] {
        let start = Instant::now();
        let late = qmp.execute_with::<Value>(
            "query-version",
            &(),
            CallOptions::new().timeout(Duration::from_millis(timeout)),
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(timeout) && took < Duration::from_millis(most),
            "a {timeout} ms timeout fired after {took:?}"
        );
        match late {
            Err(Error::CommandTimeout(late)) => lates.push(late),
            other => panic!("expected a command timeout, got {other:?}"),
        }
    }
    let waker = std::thread::spawn({
        let pid = peer.pid();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            qmp_testkit::signal_pid(pid, "-CONT");
        }
    });
    // No timeout of its own: it waits for QEMU to continue.
    assert_eq!(version(&mut qmp), 10);
    waker.join().expect("waker");
    // QEMU answered the five in order before the last command: each has its late outcome.
    for late in &lates {
        let outcome = late.try_outcome().expect("answered").expect("a version");
        assert!(outcome.get().contains("\"qemu\""), "{}", outcome.get());
    }
    peer.quit(&mut qmp);
}
