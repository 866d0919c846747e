//! Reconnection against real qemu-system-x86_64, SIGKILLed and started again on the same
//! socket: a call made while disconnected fails at once (by default) or waits for the next
//! session (`Reconnect::calls_wait`); the session count grows; a local close is never
//! reconnected; a policy that gives up ends it.

mod common;

use std::time::{Duration, Instant};

use common::Peer;
use qmp_blocking::{Builder, CallOptions, DisconnectReason, Error, Reconnect, SessionItem};
use serde_json::Value;

fn builder(policy: Reconnect) -> Builder {
    Builder::new()
        .connect_timeout(Duration::from_secs(10))
        .reconnect(
            policy
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(400)),
        )
}

#[test]
fn calls_wait_for_the_next_session() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect_with(&builder(Reconnect::new().calls_wait(true)));
    assert_eq!(qmp.session(), 1);
    let _: Value = qmp.execute("query-version", &()).unwrap();
    // A command in flight when QEMU dies fails with the cause; the next call waits for the
    // new QEMU and runs there.
    let pending = qmp.send("query-status", &(), CallOptions::new()).unwrap();
    peer.kill();
    let e = qmp
        .wait(pending)
        .expect_err("QEMU was killed under the call");
    assert!(matches!(e, Error::Disconnected(_)), "{e:?}");
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        peer.restart();
        peer
    });
    let started = Instant::now();
    let status: Value = qmp
        .execute_with(
            "query-status",
            &(),
            CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .unwrap();
    assert_eq!(status["status"], "running");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(qmp.session(), 2);
    assert!(qmp.is_connected());
    assert_eq!(qmp.greeting().version.major, qmp_testkit::qemu_major());
    let mut peer = restarter.join().unwrap();
    peer.quit(&mut qmp);
}

#[test]
fn calls_fail_at_once_while_disconnected_then_reconnect() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect_with(&builder(Reconnect::new()));
    peer.restart();
    // Until the session's end is read and the delay has passed, calls fail at once.
    let started = Instant::now();
    let e = loop {
        match qmp.execute::<Value>("query-version", &()) {
            Err(e) => break e,
            Ok(_) => assert_eq!(qmp.session(), 1, "answered by the killed QEMU?"),
        }
    };
    assert!(matches!(e, Error::Disconnected(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A later call, once the delay passed, finds the restarted QEMU.
    let deadline = Instant::now() + Duration::from_secs(20);
    let version = loop {
        match qmp.execute::<Value>("query-version", &()) {
            Ok(v) => break v,
            Err(Error::Disconnected(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no reconnection: {e:?}"),
        }
    };
    assert_eq!(version["qemu"]["major"], qmp_testkit::qemu_major());
    assert_eq!(qmp.session(), 2);
    peer.quit(&mut qmp);
}

#[test]
fn a_local_close_is_not_reconnected_and_a_policy_gives_up() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect_with(&builder(Reconnect::new().calls_wait(true)));
    qmp.close();
    let e = qmp.execute::<Value>("query-version", &()).unwrap_err();
    assert!(
        matches!(e, Error::Disconnected(DisconnectReason::Closed)),
        "{e:?}"
    );
    assert_eq!(qmp.session(), 1);

    // Two attempts at most, against a socket that is gone: the call fails with the reason
    // the session ended, having waited for the attempts only.
    let mut qmp = peer.connect_with(&builder(Reconnect::new().calls_wait(true).max_attempts(2)));
    peer.kill();
    std::fs::remove_file(&peer.sock).ok();
    while qmp.is_connected() {
        qmp.drain_events();
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let e = qmp
        .execute_with::<Value>(
            "query-version",
            &(),
            CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Disconnected(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(qmp.session(), 1);
}

#[test]
fn a_waiting_call_times_out_when_nothing_comes_back() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    let mut qmp = peer.connect_with(&builder(Reconnect::new().calls_wait(true)));
    peer.kill();
    std::fs::remove_file(&peer.sock).ok();
    // The client reads the end of the session (a call racing with it would fail with it).
    while qmp.is_connected() {
        qmp.drain_events();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Waiting for an event goes on into the next session, which does not come.
    assert!(matches!(
        qmp.next_event(Duration::from_millis(300)),
        Ok(None)
    ));
    let started = Instant::now();
    let e = qmp
        .execute_with::<Value>(
            "query-version",
            &(),
            CallOptions::new().timeout(Duration::from_millis(800)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn events_of_an_ended_session_stay_before_a_marker_and_are_not_waited_for() {
    let Some(mut peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    let mut qmp = peer.connect_with(&builder(Reconnect::new().calls_wait(true)));
    // RESUME comes before the reply of `cont`: it is buffered, unread.
    qmp.execute::<Value>("cont", &()).unwrap();
    assert_eq!(qmp.buffered_events(), 1);
    peer.restart();
    // A call racing with the end of the session fails with it; the next one waits for the
    // new session.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status: Value = loop {
        let opts = CallOptions::new().timeout(Duration::from_secs(20));
        match qmp.execute_with("query-status", &(), opts) {
            Ok(v) => break v,
            Err(Error::Disconnected(_)) if Instant::now() < deadline => {}
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(status["status"], "prelaunch");
    assert_eq!(qmp.session(), 2);
    // The old RESUME is not taken for the new session's.
    let e = qmp
        .wait_event("RESUME", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    match qmp.next_item(Duration::ZERO).unwrap() {
        Some(SessionItem::Event(e)) => assert_eq!(e.name, "RESUME"),
        other => panic!("expected the old RESUME, got {other:?}"),
    }
    assert_eq!(
        qmp.next_item(Duration::ZERO).unwrap(),
        Some(SessionItem::NewSession { session: 2 })
    );
    qmp.execute::<Value>("cont", &()).unwrap();
    qmp.wait_event("RESUME", Duration::from_secs(5)).unwrap();
    peer.quit(&mut qmp);
}
