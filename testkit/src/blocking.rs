//! The blocking flavour: peers that a [`qmp_blocking::Connection`] connects to.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use qmp_blocking::{Builder, Connection, DisconnectReason};
use qmp_proto::server::FakeQemu;

use crate::{Fake, Qemu, POLL, T};

/// The flavour of peers that blocking clients connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking;

/// A real QEMU that blocking clients connect to.
pub type Peer = Qemu<Blocking>;

/// The fake QEMU (or another handler) on a socket that blocking clients connect to.
pub type FakePeer<H = FakeQemu> = Fake<H, Blocking>;

impl Qemu<Blocking> {
    /// Connects to the peer's socket once it is there (within 10 s), with `builder`.
    pub fn connect_with(&mut self, builder: &Builder) -> Connection {
        let deadline = Instant::now() + T;
        loop {
            let mut error = None;
            if self.sock.exists() {
                match builder.connect_unix(&self.sock) {
                    Ok(c) => return c,
                    Err(e) => error = Some(e.to_string()),
                }
            }
            self.not_yet(deadline, error);
            std::thread::sleep(POLL);
        }
    }

    /// Connects with a 10 s connect timeout.
    pub fn connect(&mut self) -> Connection {
        self.connect_with(&Builder::new().connect_timeout(T))
    }

    /// Sends `quit` and checks the clean end: EOF after quit, and the process exits with
    /// success.
    pub fn quit(&mut self, qmp: &mut Connection) {
        qmp.quit(T).expect("quit");
        assert_eq!(
            qmp.disconnect_reason(),
            Some(&DisconnectReason::Eof { after_quit: true })
        );
        let status = self.wait_exit(T);
        assert!(status.success(), "{status:?}: {}", self.stderr());
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited_by(deadline) {
                return status;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl<H> Fake<H, Blocking> {
    /// Connects with `builder`.
    pub fn connect_with(&self, builder: &Builder) -> Connection {
        builder
            .connect_unix(&self.sock)
            .expect("connect to the fake QEMU")
    }

    /// Connects with the default options.
    pub fn connect(&self) -> Connection {
        self.connect_with(&Builder::new())
    }
}
