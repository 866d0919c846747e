//! `qmp fake --listen SOCK` and its socket file: removed on SIGTERM, SIGHUP and SIGINT (the
//! next start on the same path works), a stale one replaced at start, a live one refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real processes: the test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::WAIT;

/// A `qmp fake` process, killed when the test ends, passed or not.
struct Fake(Child);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Fake {
    fn start(sock: &Path) -> Fake {
        Fake(
            Command::new(env!("CARGO_BIN_EXE_qmp"))
                .arg("fake")
                .arg("--listen")
                .arg(sock)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "qmp fake did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

/// Connects to `sock` and reads QEMU's greeting (the fake serves there), waiting for the
/// socket to appear.
fn greeting(sock: &Path) -> String {
    let mut s = support::connect(sock);
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(b"\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF before the greeting");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn signals_remove_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    for signal in ["TERM", "HUP", "INT"] {
        let mut fake = Fake::start(&sock);
        assert!(greeting(&sock).contains("\"QMP\""));
        fake.signal(signal);
        let status = fake.wait();
        assert!(
            status.success(),
            "SIG{signal}: {status:?} {}",
            fake.stderr()
        );
        assert!(!sock.exists(), "SIG{signal} left the socket behind");
    }
    // The path is free for the next start.
    let mut fake = Fake::start(&sock);
    assert!(greeting(&sock).contains("\"QMP\""));
    fake.signal("TERM");
    assert!(fake.wait().success());
    assert!(!sock.exists());
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    // A socket whose listener is gone: the file stays behind. (Another test's child may hold
    // the listener for a moment, between its fork and its exec: wait until it is gone.)
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let deadline = Instant::now() + WAIT;
    while UnixStream::connect(&sock).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the stale socket still takes connections"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut fake = Fake::start(&sock);
    assert!(greeting(&sock).contains("\"QMP\""));
    fake.signal("TERM");
    assert!(fake.wait().success());
    assert!(!sock.exists());
}

#[test]
fn a_live_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut fake = Fake::start(&sock);
    let status = fake.wait();
    let err = fake.stderr();
    assert!(!status.success(), "{status:?}");
    assert!(err.contains("another process listens"), "{err}");
    // The other process's socket still works.
    let _client = UnixStream::connect(&sock).unwrap();
    assert!(listener.accept().is_ok());
}

#[test]
fn another_fake_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let mut first = Fake::start(&sock);
    assert!(greeting(&sock).contains("\"QMP\""));
    let mut second = Fake::start(&sock);
    assert!(!second.wait().success());
    assert!(second.stderr().contains("another process listens"));
    // The first one still serves, and cleans up after itself.
    assert!(greeting(&sock).contains("\"QMP\""));
    first.signal("TERM");
    assert!(first.wait().success());
    assert!(!sock.exists());
}
