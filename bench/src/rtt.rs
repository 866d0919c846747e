//! Round trips of `query-version` over a unix socket: the blocking adapter, the async adapter
//! (one caller, and 100 concurrent callers on one connection), and the floor, a hand-written
//! loop with no engine at all that writes the command bytes and reads up to the reply's
//! `\r\n`. All of them run against the same peer: the fake QEMU served by this process (on
//! one end of a socket pair, with [`qmp_blocking::serve_unix`]), a socket path such as
//! qemu-storage-daemon's, or the `serve` mode of the bench binary.
//!
//! Every sample opens a fresh connection and negotiates outside the measured part (a QEMU
//! monitor serves one client at a time), then times `n` round trips.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qmp_blocking::IgnoredAny;
use qmp_proto::server::Server;

/// The command every client sends.
pub const COMMAND: &str = "query-version";

/// Concurrent callers in the concurrent async measurement.
pub const CALLERS: usize = 100;

/// The peer the clients talk to.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A fresh fake QEMU per connection, served by a thread of this process on one end of a
    /// socket pair.
    InProcess,
    /// A unix socket path (qemu-storage-daemon, or `qmp-bench serve`).
    Path(PathBuf),
}

impl Peer {
    /// A connected stream.
    pub fn connect(&self) -> UnixStream {
        match self {
            Peer::InProcess => {
                let (client, server) = UnixStream::pair().expect("a socket pair");
                std::thread::spawn(move || serve_one(server));
                client
            }
            Peer::Path(path) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match UnixStream::connect(path) {
                        Ok(s) => return s,
                        Err(e) if Instant::now() > deadline => {
                            panic!("cannot connect to {}: {e}", path.display())
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        }
    }
}

/// Serves one client with a fresh fake QEMU until it leaves: the stock
/// [`FakeQemu`](qmp_proto::server::FakeQemu) plus `flood {"count": N}`, which emits `N`
/// numbered `TICK` events before its reply ([`qmp_testkit::flooding_fake`]).
pub fn serve_one(stream: UnixStream) {
    let fake = qmp_testkit::flooding_fake();
    let mut server = Server::new(fake.server_config(), fake);
    // A client that goes away mid-session is the end of a benchmark, not a failure.
    let _ = qmp_blocking::serve_unix(stream, &mut server);
}

/// The clients measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The hand-written loop without an engine.
    Floor,
    /// `qmp_blocking::Connection::execute`.
    Blocking,
    /// `qmp_async::Qmp::execute`, one caller.
    AsyncSequential,
    /// `qmp_async::Qmp::execute`, [`CALLERS`] callers at once on one connection.
    AsyncConcurrent,
}

impl Client {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Client::Floor => "hand-written loop, no engine (floor)",
            Client::Blocking => "qmp-blocking",
            Client::AsyncSequential => "qmp-async, sequential",
            Client::AsyncConcurrent => "qmp-async, 100 concurrent callers",
        }
    }

    /// Its name on the command line.
    pub fn short_name(self) -> &'static str {
        match self {
            Client::Floor => "floor",
            Client::Blocking => "blocking",
            Client::AsyncSequential => "async",
            Client::AsyncConcurrent => "async-concurrent",
        }
    }

    /// Connects to `peer`, negotiates, then times `n` round trips.
    pub fn sample(self, peer: &Peer, n: u64) -> (u64, Duration) {
        let stream = peer.connect();
        match self {
            Client::Floor => floor(stream, n),
            Client::Blocking => blocking(stream, n),
            Client::AsyncSequential => asynchronous(stream, n, 1),
            Client::AsyncConcurrent => asynchronous(stream, n, CALLERS),
        }
    }
}

/// Reads until `buf` holds a `\r\n`; returns the length up to and including it.
fn read_line(stream: &mut UnixStream, buf: &mut Vec<u8>) -> usize {
    let mut scanned = 0;
    loop {
        if let Some(at) = buf[scanned..].windows(2).position(|w| w == b"\r\n") {
            return scanned + at + 2;
        }
        scanned = buf.len().saturating_sub(1);
        let mut chunk = [0u8; 4096];
        let got = stream.read(&mut chunk).expect("read from the peer");
        assert!(got > 0, "the peer closed the connection");
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// The floor: `n` times, write the command bytes and read one reply line.
pub fn floor(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    let mut buf = Vec::with_capacity(4096);
    let end = read_line(&mut stream, &mut buf);
    buf.drain(..end);
    stream
        .write_all(br#"{"execute":"qmp_capabilities"}"#)
        .expect("write");
    let end = read_line(&mut stream, &mut buf);
    buf.drain(..end);
    let command = format!(r#"{{"execute":"{COMMAND}","id":1}}"#);
    let start = Instant::now();
    for _ in 0..n {
        stream.write_all(command.as_bytes()).expect("write");
        let end = read_line(&mut stream, &mut buf);
        buf.drain(..end);
    }
    (n, start.elapsed())
}

/// The blocking adapter.
pub fn blocking(stream: UnixStream, n: u64) -> (u64, Duration) {
    let mut qmp = qmp_blocking::Builder::new()
        .unix_stream(stream)
        .expect("negotiated");
    let start = Instant::now();
    for _ in 0..n {
        qmp.execute::<IgnoredAny>(COMMAND, &()).expect("a reply");
    }
    (n, start.elapsed())
}

/// The async adapter on a single-threaded executor (driving async-io's reactor itself),
/// with `callers` tasks sharing `n` calls.
pub fn asynchronous(stream: UnixStream, n: u64, callers: usize) -> (u64, Duration) {
    let ex = async_executor::Executor::new();
    async_io::block_on(ex.run(async {
        let (qmp, driver) = qmp_async::Builder::new()
            .unix_stream(stream)
            .await
            .expect("negotiated");
        let driver = ex.spawn(driver);
        let per_caller = n / callers as u64;
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let qmp = qmp.clone();
                ex.spawn(async move {
                    for _ in 0..per_caller {
                        qmp.execute::<qmp_async::IgnoredAny, _>(COMMAND, &())
                            .await
                            .expect("a reply");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let took = start.elapsed();
        drop(qmp);
        driver.await;
        (per_caller * callers as u64, took)
    }))
}

/// The Rust `qapi` crate (0.15, its synchronous `qapi::Qmp` over a std `UnixStream`).
#[cfg(feature = "qapi")]
pub fn qapi(stream: UnixStream, n: u64) -> (u64, Duration) {
    let mut qmp = qapi::Qmp::from_stream(&stream);
    qmp.handshake().expect("negotiated");
    let start = Instant::now();
    for _ in 0..n {
        qmp.execute(&qapi::qmp::query_version {}).expect("a reply");
    }
    (n, start.elapsed())
}

/// The Python reference client `qemu.qmp`, run by `python` (a virtualenv's interpreter) as
/// `bench/qemu_qmp_rtt.py SOCK MODE N`, which times `n` round trips after connecting and
/// prints how many it did and the seconds they took. `mode` is `sequential` or `concurrent`
/// ([`CALLERS`] tasks).
pub fn python(
    python: &std::path::Path,
    sock: &std::path::Path,
    mode: &str,
    n: u64,
) -> (u64, Duration) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/qemu_qmp_rtt.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(sock)
        .arg(mode)
        .arg(n.to_string())
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let done: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("a count of round trips");
    let secs: f64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("a duration in seconds");
    (done, Duration::from_secs_f64(secs))
}

/// Serves fake QEMUs (see [`serve_one`]) on a unix socket path, one thread per connection, forever.
pub fn serve(path: &std::path::Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || serve_one(stream));
    }
    Ok(())
}
