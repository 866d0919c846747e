//! The adapter against an in-process scripted peer, for what real QEMU cannot show on
//! demand: unexpected EOF, timeouts, close and drop, a peer that does not read.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{scripted, GREETING};
use qmp_blocking::{
    Builder, CallOptions, ClientConfig, Connection, DisconnectReason, Error, EventFilter,
    IgnoredAny,
};
use serde_json::{json, Value};

#[test]
fn unexpected_eof_fails_every_pending_call() {
    let (mut qmp, peer) = scripted(&Builder::new(), |mut p| {
        p.expect("query-status");
        p.expect("query-version");
        // Gone without answering.
    });
    let a = qmp.send("query-status", &(), CallOptions::new()).unwrap();
    let b = qmp.send("query-version", &(), CallOptions::new()).unwrap();
    peer.join().unwrap();
    for id in [a, b] {
        match qmp.wait(id) {
            Err(Error::Disconnected(DisconnectReason::Eof { after_quit: false })) => {}
            other => panic!("expected an unexpected-EOF error, got {other:?}"),
        }
    }
    assert!(!qmp.is_connected());
    let e = qmp
        .execute::<Box<qmp_proto::RawValue>>("query-status", &())
        .unwrap_err();
    assert!(matches!(e, Error::Disconnected(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the QMP session ended: the server closed the connection"
    );
}

#[test]
fn command_timeout_then_late_reply_is_dropped() {
    let (mut qmp, peer) = scripted(&Builder::new(), |mut p| {
        let slow = p.expect("slow");
        let next = p.expect("query-version");
        p.reply(&slow, json!("late"));
        p.reply(&next, json!({"qemu": {"major": 10}}));
        p.until_eof()
    });
    let start = Instant::now();
    let opts = CallOptions::new().timeout(Duration::from_millis(100));
    let e = qmp.execute_with::<Value>("slow", &(), opts).unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The session goes on; the late reply does not answer the next command.
    let v: Value = qmp.execute("query-version", &()).unwrap();
    assert_eq!(v, json!({"qemu": {"major": 10}}));
    qmp.close();
    assert_eq!(peer.join().unwrap(), 0);
}

#[test]
fn default_timeout_from_the_builder() {
    let (mut qmp, _peer) = scripted(
        &Builder::new().timeout(Duration::from_millis(50)),
        |mut p| p.until_eof(),
    );
    let start = Instant::now();
    let e = qmp.execute::<Value>("never", &()).unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn greeting_timeout() {
    let (client, _server) = UnixStream::pair().unwrap();
    let start = Instant::now();
    let e = Builder::new()
        .connect_timeout(Duration::from_millis(100))
        .unix_stream(client)
        .unwrap_err();
    assert!(
        matches!(e, Error::Disconnected(DisconnectReason::GreetingTimeout(_))),
        "{e:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn close_is_idempotent_and_fails_pending_calls() {
    let (mut qmp, peer) = scripted(&Builder::new(), |mut p| {
        p.expect("query-status");
        p.until_eof()
    });
    let id = qmp.send("query-status", &(), CallOptions::new()).unwrap();
    qmp.close();
    qmp.close();
    assert_eq!(qmp.disconnect_reason(), Some(&DisconnectReason::Closed));
    assert!(matches!(
        qmp.wait(id),
        Err(Error::Disconnected(DisconnectReason::Closed))
    ));
    // The result was taken: the id is no longer known.
    assert!(matches!(qmp.wait(id), Err(Error::UnknownCommand(_))));
    assert!(matches!(
        qmp.execute::<Value>("query-status", &()),
        Err(Error::Disconnected(DisconnectReason::Closed))
    ));
    qmp.close();
    // The peer saw EOF.
    assert_eq!(peer.join().unwrap(), 0);
}

#[test]
fn drop_is_fast_with_unsent_bytes_and_a_peer_that_does_not_read() {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let (mut qmp, peer) = scripted(&Builder::new(), move |p| {
        // Not reading, and still there until the client is dropped.
        let _ = wait.recv();
        drop(p);
    });
    let big = "x".repeat(8 << 20);
    let _ = qmp
        .send("big", &json!({ "data": big }), CallOptions::new())
        .unwrap();
    assert!(qmp.engine().poll_transmit().is_some(), "bytes still unsent");
    let start = Instant::now();
    drop(qmp);
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    done.send(()).unwrap();
    peer.join().unwrap();
}

/// The peer writes megabytes of events before it reads anything, while the client writes a
/// multi-megabyte command: a loop that only writes would block forever on both sides.
#[test]
fn reads_while_writing_against_a_peer_that_does_not_read() {
    const EVENTS: usize = 20_000;
    let config = ClientConfig::default().max_buffered_events(100);
    let (mut qmp, peer) = scripted(&Builder::new().config(config), |mut p| {
        let pad = "p".repeat(300);
        let mut burst = String::new();
        for i in 0..EVENTS {
            burst.push_str(&format!(
                r#"{{"event": "E", "data": {{"i": {i}, "pad": "{pad}"}}, "timestamp": {{"seconds": 1, "microseconds": 2}}}}"#
            ));
            burst.push_str("\r\n");
        }
        p.stream.write_all(burst.as_bytes()).unwrap();
        let cmd = p.expect("big");
        let len = cmd["arguments"]["data"].as_str().unwrap().len();
        p.reply(&cmd, json!(len));
        p.until_eof()
    });
    let big = "x".repeat(4 << 20);
    let len: usize = qmp.execute("big", &json!({ "data": big })).unwrap();
    assert_eq!(len, 4 << 20);
    // Bounded: the first 100 events kept, the rest counted as lost.
    let events = qmp.drain_events();
    assert_eq!(events.len(), 100);
    assert_eq!(events[99].data_as::<Value>().unwrap()["i"], 99);
    assert_eq!(qmp.events_lost(), (EVENTS - 100) as u64);
    qmp.close();
    peer.join().unwrap();
}

#[test]
fn events_before_the_reply_are_found() {
    let (mut qmp, peer) = scripted(&Builder::new(), |mut p| {
        p.send(r#"{"event": "OLD", "timestamp": {"seconds": 1, "microseconds": 0}}"#);
        let cmd = p.expect("stop");
        p.send(r#"{"event": "STOP", "timestamp": {"seconds": 2, "microseconds": 0}}"#);
        p.reply(&cmd, json!({}));
        let cmd = p.expect("cont");
        p.send(r#"{"event": "RESUME", "timestamp": {"seconds": 3, "microseconds": 0}}"#);
        p.send(r#"{"event": "OTHER", "timestamp": {"seconds": 4, "microseconds": 0}}"#);
        p.reply(&cmd, json!({}));
        p.until_eof()
    });
    let t = Duration::from_secs(5);
    qmp.execute::<IgnoredAny>("stop", &()).unwrap();
    // STOP came before the reply; OLD stays buffered.
    assert_eq!(qmp.wait_event("STOP", t).unwrap().name, "STOP");
    assert_eq!(qmp.buffered_events(), 1);
    let (_, e): (IgnoredAny, _) = qmp
        .execute_and_wait(
            "cont",
            &(),
            CallOptions::new().timeout(t),
            EventFilter::name("RESUME"),
        )
        .unwrap();
    assert_eq!(e.timestamp.unwrap().seconds, 3);
    // Events arrived after the mark only: OLD is not matched even by a catch-all.
    let names: Vec<String> = qmp.drain_events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["OLD", "OTHER"]);
    assert!(qmp.next_event(Duration::from_millis(20)).unwrap().is_none());
    assert!(matches!(
        qmp.wait_event("NEVER", Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    qmp.close();
    assert!(matches!(
        qmp.next_event(Duration::ZERO),
        Err(Error::Disconnected(DisconnectReason::Closed))
    ));
    peer.join().unwrap();
}

#[test]
fn qmp_errors_are_typed() {
    let (mut qmp, _peer) = scripted(&Builder::new(), |mut p| {
        let cmd = p.expect("nope");
        let msg = json!({"id": cmd["id"], "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}});
        p.send(&msg.to_string());
        p.until_eof()
    });
    match qmp.execute::<Value>("nope", &()) {
        Err(Error::Qmp(e)) => {
            assert_eq!(e.class, "CommandNotFound");
            assert_eq!(e.desc, "The command nope has not been found");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        qmp.execute::<Value>("x", &[1, 2]),
        Err(Error::Call(_))
    ));
}

#[test]
fn tcp_connect_and_no_fds_over_tcp() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(GREETING.as_bytes()).unwrap();
        let mut de =
            serde_json::Deserializer::from_reader(s.try_clone().unwrap()).into_iter::<Value>();
        for _ in 0..2 {
            let cmd = de.next().unwrap().unwrap();
            let reply = json!({"return": {"name": cmd["execute"]}, "id": cmd["id"]});
            s.write_all(reply.to_string().as_bytes()).unwrap();
        }
        de.take_while(Result::is_ok).count()
    });
    let mut qmp = Connection::connect_tcp(addr).unwrap();
    assert_eq!(qmp.greeting().package, "scripted");
    assert!(qmp.oob_enabled());
    let v: Value = qmp.execute("query-name", &()).unwrap();
    assert_eq!(v, json!({"name": "query-name"}));
    let null = std::fs::File::open("/dev/null").unwrap();
    assert!(matches!(
        qmp.execute_with::<Value>("getfd", &(), CallOptions::new().fd(null)),
        Err(Error::FdsUnsupported)
    ));
    drop(qmp);
    assert_eq!(server.join().unwrap(), 0);
}
