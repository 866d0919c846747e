//! The send buffer: partial writes, and file descriptors pinned to a command's first byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use common::*;
use qmp_proto::{CallOptions, ClientConfig};

/// One end of a socket pair, and a probe that tells whether that end is still open
/// anywhere: reading the other end gives EOF only once every copy is closed. (Checking that
/// a closed fd's number is reused would race with other tests opening files.)
fn watched_fd() -> (OwnedFd, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    (a.into(), b)
}

fn is_closed_everywhere(probe: &mut UnixStream) -> bool {
    let mut buf = [0u8; 1];
    match probe.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected data"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    }
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

#[test]
fn partial_writes_resume_where_they_stopped() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    c.execute(now, "query-status", &(), CallOptions::new())
        .unwrap();
    c.execute(now, "query-version", &(), CallOptions::new())
        .unwrap();
    let mut written = Vec::new();
    // A transport that takes 3 bytes at a time.
    while let Some(t) = c.poll_transmit() {
        let n = t.data.len().min(3);
        written.extend_from_slice(&t.data[..n]);
        c.advance_transmit(n);
    }
    assert_eq!(
        written,
        br#"{"execute":"query-status","id":2}{"execute":"query-version","id":3}"#
    );
    // A zero-byte write changes nothing; too large an advance is clamped.
    c.execute(now, "x", &(), CallOptions::new()).unwrap();
    c.advance_transmit(0);
    assert_eq!(
        c.poll_transmit().unwrap().data,
        br#"{"execute":"x","id":4}"#
    );
    c.advance_transmit(1_000_000);
    assert!(c.poll_transmit().is_none());
}

#[test]
fn fds_travel_with_the_first_byte_of_their_command() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    let (fd, mut probe) = watched_fd();
    let raw = fd.as_raw_fd();
    c.execute(now, "query-status", &(), CallOptions::new())
        .unwrap();
    c.execute(
        now,
        "getfd",
        &serde_json::json!({"fdname": "f"}),
        CallOptions::new().fd(fd),
    )
    .unwrap();
    c.execute(now, "query-version", &(), CallOptions::new())
        .unwrap();

    // The first transmit stops before the command that carries fds.
    let t = c.poll_transmit().unwrap();
    assert_eq!(t.data, br#"{"execute":"query-status","id":2}"#);
    assert!(t.fds.is_empty());
    let n = t.data.len();
    c.advance_transmit(n);

    // The next one starts with it, fds attached, and runs on past it.
    let t = c.poll_transmit().unwrap();
    assert!(t.data.starts_with(br#"{"execute":"getfd""#));
    assert!(t.data.ends_with(br#"{"execute":"query-version","id":4}"#));
    assert_eq!(t.fds.len(), 1);
    assert_eq!(t.fds[0].as_raw_fd(), raw);

    // A write that did not take the first byte keeps the fds for the retry.
    c.advance_transmit(0);
    assert_eq!(c.poll_transmit().unwrap().fds.len(), 1);
    assert!(!is_closed_everywhere(&mut probe));

    // Once the first byte is written, the fds were sent: they are not handed out again, and
    // the engine's copy is closed.
    c.advance_transmit(5);
    let t = c.poll_transmit().unwrap();
    assert!(t.fds.is_empty());
    assert!(t.data.starts_with(br#"cute":"getfd""#));
    let n = t.data.len();
    c.advance_transmit(n);
    assert!(c.poll_transmit().is_none());
    // The engine closed its copy: no copy of that end is left open.
    assert!(is_closed_everywhere(&mut probe));
}

#[test]
fn fds_of_a_queued_command_wait_with_it() {
    let now = t0();
    let mut c = running(ClientConfig::default().max_in_flight(1), now);
    c.execute(now, "a", &(), CallOptions::new()).unwrap();
    c.execute(now, "getfd", &(), CallOptions::new().fd(devnull()))
        .unwrap();
    let t = c.poll_transmit().unwrap();
    assert!(t.fds.is_empty());
    assert_eq!(t.data, br#"{"execute":"a","id":2}"#);
    let n = t.data.len();
    c.advance_transmit(n);
    assert!(c.poll_transmit().is_none());
    c.handle_input(now, br#"{"return": {}, "id": 2}"#);
    let t = c.poll_transmit().unwrap();
    assert_eq!(t.fds.len(), 1);
    assert_eq!(t.data, br#"{"execute":"getfd","id":3}"#);
}

#[test]
fn unsent_fds_are_closed_when_the_session_ends() {
    let now = t0();
    let mut c = running(ClientConfig::default(), now);
    let (fd, mut probe) = watched_fd();
    c.execute(now, "getfd", &(), CallOptions::new().fd(fd))
        .unwrap();
    assert!(!is_closed_everywhere(&mut probe));
    c.close();
    assert!(c.poll_transmit().is_none());
    assert!(is_closed_everywhere(&mut probe));
}
