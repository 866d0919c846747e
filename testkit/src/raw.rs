//! A hand-driven QMP server on a unix socket, for the inputs a well-behaved server never
//! sends: a test writes the exact bytes, reads what the client sent, and decides when to
//! answer or to close.
//!
//! ```
//! use qmp_testkit::raw::RawPeer;
//!
//! let peer = RawPeer::serve(|conn| {
//!     conn.greet_and_negotiate();
//!     let command = conn.recv().unwrap();
//!     conn.send(&format!("{{\"return\": {{}}, \"id\": {}}}\r\n", command["id"]));
//!     conn.wait_eof();
//! });
//! let mut qmp = qmp_blocking::Connection::connect_unix(&peer.sock).unwrap();
//! let _: serde_json::Value = qmp.execute("query-status", &()).unwrap();
//! drop(qmp);
//! peer.finish();
//! ```

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// QEMU 10.0.2's greeting, with its line end.
pub const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// The server end of one connection.
#[derive(Debug)]
pub struct RawConn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Writes `bytes` as they are. A client that went away is not an error here (the test
    /// looks at what the client saw).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Writes `text` as it is.
    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// The next JSON object the client sent, `None` at its end of the stream. A guest
    /// agent's `0xFF` delimiter is skipped.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|&b| b != 0xFF && !b.is_ascii_whitespace());
            if let Some(start) = start {
                self.buf.drain(..start);
                let mut objects = serde_json::Deserializer::from_slice(&self.buf).into_iter();
                if let Some(Ok(value)) = objects.next() {
                    let used = objects.byte_offset();
                    self.buf.drain(..used);
                    return Some(value);
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends QEMU's greeting and answers `qmp_capabilities`.
    pub fn greet_and_negotiate(&mut self) {
        self.send(GREETING);
        self.negotiate();
    }

    /// Answers the client's `qmp_capabilities`.
    pub fn negotiate(&mut self) {
        let request = self.recv().expect("qmp_capabilities");
        assert_eq!(request["execute"], "qmp_capabilities", "{request}");
        self.send(&reply(&request, "{}"));
    }

    /// Waits for the client to close its end (or reset it), reading and dropping what it
    /// sends meanwhile; gives up after 10 s.
    pub fn wait_eof(&mut self) {
        let _ = self.stream.set_read_timeout(Some(crate::T));
        let mut chunk = [0u8; 4096];
        while matches!(self.stream.read(&mut chunk), Ok(n) if n > 0) {}
    }

    /// Waits `d` before the next step.
    pub fn pause(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// `{"return": RESULT, "id": ID}` for `request`, with its id as the client sent it (none if
/// it had none), and the line end.
pub fn reply(request: &Value, result: &str) -> String {
    match request.get("id") {
        Some(id) => format!("{{\"return\": {result}, \"id\": {id}}}\r\n"),
        None => format!("{{\"return\": {result}}}\r\n"),
    }
}

/// A raw server for one client, on a socket in a private directory.
#[derive(Debug)]
pub struct RawPeer {
    _dir: tempfile::TempDir,
    /// The socket path to connect to.
    pub sock: PathBuf,
    thread: JoinHandle<()>,
}

impl RawPeer {
    /// Accepts one client and runs `script` on its connection, in a thread.
    pub fn serve(script: impl FnOnce(&mut RawConn) + Send + 'static) -> Self {
        let (dir, sock) = crate::socket_path();
        let listener = UnixListener::bind(&sock).expect("bind the raw server's socket");
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut conn = RawConn {
                stream,
                buf: Vec::new(),
            };
            script(&mut conn);
        });
        RawPeer {
            _dir: dir,
            sock,
            thread,
        }
    }

    /// Accepts `clients` clients in turn and runs `script` on each connection (then closes
    /// it), in a thread.
    pub fn serve_many(clients: usize, script: impl Fn(&mut RawConn) + Send + 'static) -> Self {
        let (dir, sock) = crate::socket_path();
        let listener = UnixListener::bind(&sock).expect("bind the raw server's socket");
        let thread = std::thread::spawn(move || {
            for _ in 0..clients {
                let (stream, _) = listener.accept().expect("accept");
                let mut conn = RawConn {
                    stream,
                    buf: Vec::new(),
                };
                script(&mut conn);
            }
        });
        RawPeer {
            _dir: dir,
            sock,
            thread,
        }
    }

    /// Waits for the script to finish; panics if it did.
    pub fn finish(self) {
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}
