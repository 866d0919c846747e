//! `serve_unix` / `serve_tcp`: the fake QEMU on a real socket, driven by this crate's client.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::Duration;

use qmp_blocking::{serve_tcp, serve_unix, CallOptions, Connection, Error, IgnoredAny};
use qmp_proto::server::{FakeQemu, Server};
use serde_json::{json, Value};

mod common;

fn fake_server() -> Server<FakeQemu> {
    let fake = FakeQemu::new();
    Server::new(fake.server_config(), fake)
}

#[test]
fn serves_a_session_over_unix_with_fds_and_quit() {
    let dir = common::tempdir();
    let sock = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let serving = thread::spawn(move || {
        let mut server = fake_server();
        let (stream, _) = listener.accept().unwrap();
        serve_unix(stream, &mut server).unwrap();
        server.handler().status().to_owned()
    });
    let mut qmp = Connection::builder()
        .timeout(Duration::from_secs(10))
        .connect_unix(&sock)
        .unwrap();
    assert_eq!(qmp.greeting().version.major, 10);
    let status: Value = qmp.execute("query-status", &()).unwrap();
    assert_eq!(status, json!({"status": "running", "running": true}));
    qmp.execute::<IgnoredAny>("stop", &()).unwrap();
    qmp.wait_event("STOP", Duration::from_secs(5)).unwrap();

    // The fd travels with getfd and reaches the fake, which names it.
    let null = std::fs::File::open("/dev/null").unwrap();
    let opts = CallOptions::new().fd(null);
    qmp.execute_with::<IgnoredAny>("getfd", &json!({"fdname": "n"}), opts)
        .unwrap();
    qmp.execute::<IgnoredAny>("closefd", &json!({"fdname": "n"}))
        .unwrap();
    match qmp.execute::<IgnoredAny>("closefd", &json!({"fdname": "n"})) {
        Err(Error::Qmp(e)) => assert_eq!(e.class, "GenericError"),
        other => panic!("{other:?}"),
    }
    // A large command is read while replies are written.
    let big = "x".repeat(1 << 20);
    match qmp.execute::<IgnoredAny>("nope", &json!({ "arg": big })) {
        Err(Error::Qmp(e)) => assert_eq!(e.class, "CommandNotFound"),
        other => panic!("{other:?}"),
    }
    qmp.quit(Duration::from_secs(5)).unwrap();
    assert_eq!(serving.join().unwrap(), "shutdown");
}

#[test]
fn returns_when_the_client_leaves_and_serves_the_next_one() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = thread::spawn(move || {
        let mut server = fake_server();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            serve_tcp(stream, &mut server).unwrap();
        }
        server.handler().status().to_owned()
    });
    for expected in ["running", "paused"] {
        let mut qmp = Connection::connect_tcp(addr).unwrap();
        let status: Value = qmp.execute("query-status", &()).unwrap();
        assert_eq!(status["status"], expected);
        qmp.execute::<IgnoredAny>("stop", &()).unwrap();
        drop(qmp); // a plain disconnect, no quit
    }
    assert_eq!(serving.join().unwrap(), "paused");
}
