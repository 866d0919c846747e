//! The adapter against the fake QEMU served in-process (a transcript replayed by `Script`,
//! or `FakeQemu`), for what real QEMU cannot show on demand: unexpected EOF, timeouts, close
//! and drop, a peer that does not read.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::FakePeer;
use qmp_blocking::{
    serve_tcp, Builder, CallOptions, ClientConfig, Connection, DisconnectReason, Error,
    EventFilter, IgnoredAny,
};
use qmp_proto::server::{FakeQemu, Outcome, Script, Server, ServerConfig};
use qmp_testkit::Recorded;
use serde_json::{json, Value};

#[test]
fn unexpected_eof_fails_every_pending_call() {
    // Gone without answering.
    let peer = FakePeer::script(
        r#"
        -> {"execute": "query-status"}
        -> {"execute": "query-version"}
        <- EOF
        "#,
    );
    let mut qmp = peer.connect();
    let a = qmp.send("query-status", &(), CallOptions::new()).unwrap();
    let b = qmp.send("query-version", &(), CallOptions::new()).unwrap();
    peer.assert_played();
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
fn command_timeout_then_late_reply_is_its_late_outcome() {
    let mut fake = FakeQemu::new();
    fake.add_command("slow", false, |_, _| Outcome::Return(json!("late")))
        .add_command("query-version", false, |_, _| {
            Outcome::Return(json!({"qemu": {"major": 10}}))
        })
        // Answered long after the client gave up, and before the next command.
        .delay("slow", Duration::from_millis(500));
    let peer = FakePeer::serve_handler(fake.server_config(), Recorded::new(fake));
    let mut qmp = peer.connect();
    let start = Instant::now();
    let opts = CallOptions::new().timeout(Duration::from_millis(100));
    let e = qmp.execute_with::<Value>("slow", &(), opts).unwrap_err();
    let Error::CommandTimeout(late) = e else {
        panic!("expected a command timeout, got {e:?}");
    };
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Not come yet: a short wait for it times out, and the handle can be waited on again.
    assert!(late.try_outcome().is_none());
    assert!(matches!(
        qmp.wait_late(&late, Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    // Its reply is its late outcome.
    let outcome = qmp.wait_late(&late, Duration::from_secs(5)).unwrap();
    assert_eq!(outcome.get(), r#""late""#);
    // The session goes on; the late reply does not answer the next command.
    let v: Value = qmp.execute("query-version", &()).unwrap();
    assert_eq!(v, json!({"qemu": {"major": 10}}));
    qmp.close();
    // Nothing more was sent.
    assert_eq!(peer.finish().handler().calls(), ["slow", "query-version"]);
}

#[test]
fn default_timeout_from_the_builder() {
    let peer = FakePeer::script(r#"-> {"execute": "never"}"#);
    let mut qmp = peer.connect_with(&Builder::new().timeout(Duration::from_millis(50)));
    let start = Instant::now();
    let e = qmp.execute::<Value>("never", &()).unwrap_err();
    assert!(matches!(e, Error::CommandTimeout(_)), "{e:?}");
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
    let peer = FakePeer::script(r#"-> {"execute": "query-status"}"#);
    let mut qmp = peer.connect();
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
    // The peer saw EOF, and nothing else.
    peer.assert_played();
}

#[test]
fn drop_is_fast_with_unsent_bytes_and_a_peer_that_does_not_read() {
    // Without OOB, QEMU reads nothing more while a command runs: this one runs for a minute.
    let mut fake = FakeQemu::new();
    fake.delay("query-status", Duration::from_secs(60));
    let peer = FakePeer::serve_handler(fake.server_config().capabilities(&[]), fake);
    let mut qmp = peer.connect();
    let _ = qmp.send("query-status", &(), CallOptions::new()).unwrap();
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
    // The peer saw the client go.
    peer.finish();
}

/// The peer writes megabytes of events and reads nothing until they are all taken (as a
/// single-threaded server with blocking writes does), while the client writes a
/// multi-megabyte command: a loop that only writes would block forever on both sides.
#[test]
fn reads_while_writing_against_a_peer_that_does_not_read() {
    const EVENTS: usize = 20_000;
    let (client, mut stream) = UnixStream::pair().unwrap();
    let peer = std::thread::spawn(move || {
        let mut fake = qmp_testkit::flooding_fake();
        fake.add_command("big", false, |_, args| {
            Outcome::Return(json!(args["data"].as_str().unwrap().len()))
        });
        let mut server = Server::new(fake.server_config(), fake);
        server.accept(Instant::now());
        let mut buf = vec![0; 64 * 1024];
        loop {
            // All of its output written before it reads again.
            stream.write_all(&server.take_output()).unwrap();
            match stream.read(&mut buf).unwrap() {
                0 => break,
                n => server.handle_input(Instant::now(), &buf[..n]),
            }
        }
    });
    let config = ClientConfig::default().max_buffered_events(100);
    let mut qmp = Builder::new().config(config).unix_stream(client).unwrap();
    let _ = qmp
        .send("flood", &json!({ "count": EVENTS }), CallOptions::new())
        .unwrap();
    let big = "x".repeat(4 << 20);
    let len: usize = qmp.execute("big", &json!({ "data": big })).unwrap();
    assert_eq!(len, 4 << 20);
    // Bounded: the first 100 events kept, the rest counted as lost.
    let events = qmp.drain_events();
    assert_eq!(events.len(), 100);
    assert_eq!(events[99].data_as::<Value>().unwrap()["n"], 99);
    assert_eq!(qmp.events_lost(), (EVENTS - 100) as u64);
    qmp.close();
    peer.join().unwrap();
}

#[test]
fn events_before_the_reply_are_found() {
    let script = Script::parse(
        r#"
        -> {"execute": "stop"}
        <- {"event": "OLD"}
        <- {"event": "STOP"}
        <- {"return": {}}
        -> {"execute": "cont"}
        <- {"event": "RESUME"}
        <- {"event": "OTHER"}
        <- {"return": {}}
        "#,
    )
    .unwrap();
    // Event timestamps start 3 s past the epoch.
    let config = ServerConfig::default().epoch_micros(3_000_000);
    let peer = FakePeer::serve_handler(config, script);
    let mut qmp = peer.connect();
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
    peer.assert_played();
}

#[test]
fn qmp_errors_are_typed() {
    let peer = FakePeer::serve(FakeQemu::new());
    let mut qmp = peer.connect();
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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Script::parse(
        r#"
        -> {"execute": "query-name"}
        <- {"return": {"name": "query-name"}}
        "#,
    )
    .unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut server = Server::new(ServerConfig::default().package("scripted"), script);
        serve_tcp(stream, &mut server).unwrap();
        server
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
    let server = server.join().unwrap();
    assert!(server.handler().mismatches().is_empty());
    assert_eq!(server.handler().remaining(), 0);
}

#[test]
fn results_are_taken_in_any_order() {
    // Several commands out at once, waited for out of order: each wait takes its own
    // command's result, whether it arrived while waiting for another or is awaited itself.
    let peer = FakePeer::serve(FakeQemu::new());
    let mut qmp = peer.connect();
    let status = qmp.send("query-status", &(), CallOptions::new()).unwrap();
    let version = qmp.send("query-version", &(), CallOptions::new()).unwrap();
    let nope = qmp.send("nope", &(), CallOptions::new()).unwrap();
    let name = qmp.send("query-name", &(), CallOptions::new()).unwrap();
    let version = qmp.wait(version).unwrap();
    assert!(version.get().contains("\"qemu\""), "{}", version.get());
    assert!(matches!(qmp.wait(nope), Err(Error::Qmp(e)) if e.class == "CommandNotFound"));
    // QEMU answers in order: the first command's result came before the second's.
    assert!(qmp.has_reply(status));
    let status = qmp.wait(status).unwrap();
    assert!(status.get().contains("\"status\""), "{}", status.get());
    assert_eq!(qmp.wait(name).unwrap().get(), "{}");
    // Taken once.
    assert!(matches!(qmp.wait(name), Err(Error::UnknownCommand(_))));
    // And the next call is awaited as usual.
    let again: Value = qmp.execute("query-name", &()).unwrap();
    assert_eq!(again, json!({}));
}
