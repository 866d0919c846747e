//! Round trips of `query-version` over a unix socket: the blocking adapter, the async adapter
//! and the tokio adapter (one caller, and 100 concurrent callers on one connection), the
//! other Rust clients (with the `qapi` feature: the `qapi` crate's blocking and tokio
//! clients, the `qmp` crate's tokio client), and the floor, a hand-written loop with no
//! engine at all that writes the command bytes and reads up to the reply's `\r\n` (and the
//! reactor floor, the same loop waiting in `epoll_wait` before each read). All of
//! them run against the same peer: the fake QEMU served by this process (on one end of a
//! socket pair, with [`qmp_blocking::serve_unix`]), the [instant peer](crate::instant) served
//! by this process, or a socket path such as qemu-storage-daemon's or that of the `serve` and
//! `serve-instant` modes of the bench binary.
//!
//! Every sample opens a fresh connection (and, for the tokio clients, a fresh runtime) and
//! negotiates outside the measured part (a QEMU monitor serves one client at a time), then
//! times `n` round trips.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use qmp_blocking::IgnoredAny;
use qmp_proto::server::Server;

use crate::instant::{self, PeerCpu};

/// The command every client sends.
pub const COMMAND: &str = "query-version";

/// Concurrent callers in the concurrent measurements.
pub const CALLERS: usize = 100;

/// The peer the clients talk to.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A fresh fake QEMU per connection, served by a thread of this process on one end of a
    /// socket pair.
    InProcess,
    /// A fresh [instant peer](crate::instant) per connection, served by a thread of this
    /// process on one end of a socket pair; each connection's [`PeerCpu`] is sent on the
    /// channel, if there is one, when the client leaves.
    Instant(Option<Sender<PeerCpu>>),
    /// A unix socket path (qemu-storage-daemon, `qmp-bench serve` or `qmp-bench
    /// serve-instant`).
    Path(PathBuf),
}

/// A socket path to dial, for the clients that only connect by path (see [`Peer::dial`]);
/// the temporary socket, if it is one, is removed on drop.
#[derive(Debug)]
pub struct Dial {
    /// The socket path.
    pub path: PathBuf,
    dir: Option<PathBuf>,
}

impl Drop for Dial {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Peer {
    /// A connected stream.
    pub fn connect(&self) -> UnixStream {
        match self {
            Peer::InProcess | Peer::Instant(_) => {
                let (client, server) = UnixStream::pair().expect("a socket pair");
                self.serve_in_thread(server);
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

    /// A socket path for one connection: the path itself, or for a peer served in this
    /// process, a temporary socket whose first connection a thread of this process accepts
    /// and serves (the same server as [`connect`](Self::connect)'s).
    pub fn dial(&self) -> Dial {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        match self {
            Peer::Path(path) => Dial {
                path: path.clone(),
                dir: None,
            },
            Peer::InProcess | Peer::Instant(_) => {
                let dir = std::env::temp_dir().join(format!(
                    "qmp-bench-dial-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir).expect("a temporary directory");
                let path = dir.join("peer.sock");
                let listener = UnixListener::bind(&path).expect("a temporary socket");
                let peer = self.clone();
                std::thread::spawn(move || {
                    if let Ok((stream, _)) = listener.accept() {
                        drop(listener);
                        peer.serve(stream);
                    }
                });
                Dial {
                    path,
                    dir: Some(dir),
                }
            }
        }
    }

    fn serve_in_thread(&self, stream: UnixStream) {
        let peer = self.clone();
        std::thread::spawn(move || peer.serve(stream));
    }

    /// Serves one connection (peers served in this process only).
    fn serve(self, stream: UnixStream) {
        match self {
            Peer::Instant(tally) => instant::serve_one(stream, tally),
            _ => serve_one(stream),
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
    /// The same loop waiting in `epoll_wait` before each read (the reactor floor).
    FloorEpoll,
    /// The floor's loop on a tokio `UnixStream`, in `block_on` on a current-thread runtime:
    /// what tokio itself costs.
    TokioFloor,
    /// The least a tokio client that serves events and concurrent callers does: a reader
    /// task that completes each call's oneshot, the caller writing its command itself.
    TokioFloorTask,
    /// The floor numbering each command and checking each reply: the reply parsed with
    /// serde_json (its `return` as a `&RawValue`, validated, and its `id`, compared), the
    /// value copied out. What a blocking client that hands out validated results cannot
    /// avoid.
    FloorValidating,
    /// The floor's loop on async-io's `Async<UnixStream>` in `async_io::block_on`: what
    /// async-io itself costs.
    AsyncIoFloor,
    /// The async-io floor's loop in a task spawned with `smol::spawn`, the caller in
    /// `smol::block_on` handing it each command and taking each reply over channels: what
    /// the spawned-driver shape costs with no engine.
    AsyncIoFloorSpawned,
    /// `qmp_blocking::Connection::execute`.
    Blocking,
    /// `qmp_async::Qmp::execute`, one caller.
    AsyncSequential,
    /// `qmp_async::Qmp::execute`, [`CALLERS`] callers at once on one connection.
    AsyncConcurrent,
    /// `qmp_async::Qmp::execute` as the README shows it: one caller in `smol::block_on`, the
    /// driver spawned with `smol::spawn` (smol's global executor, on its own thread).
    AsyncSmolSpawn,
    /// `qmp_tokio::Qmp::execute`, one caller, on a current-thread runtime.
    TokioSequential,
    /// `qmp_tokio::Qmp::execute`, [`CALLERS`] tasks at once on one connection, on a
    /// current-thread runtime.
    TokioConcurrent,
    /// `qmp_tokio::Qmp::execute`, one caller (in `block_on`, as in `#[tokio::main]`) on a
    /// multi-thread runtime, whose worker runs the driver.
    TokioMultiThread,
    /// `qmp_tokio::Qmp::execute`, one caller spawned as a task on a current-thread runtime
    /// (rather than in `block_on`, whose wake-ups from a task tokio defers to an extra
    /// non-blocking `epoll_wait`).
    TokioSpawned,
    /// The `qapi` crate's blocking `qapi::Qmp`.
    #[cfg(feature = "qapi")]
    QapiBlocking,
    /// The `qapi` crate's tokio client (`QmpStreamTokio`, its reader spawned with
    /// `spawn_tokio`), one caller, on a current-thread runtime.
    #[cfg(feature = "qapi")]
    QapiTokioSequential,
    /// The same, [`CALLERS`] tasks at once sharing its `QapiService` (it pipelines: commands
    /// carry ids when the greeting offers OOB).
    #[cfg(feature = "qapi")]
    QapiTokioConcurrent,
    /// The `qmp` crate's tokio `qmp::Client`, one caller, on a current-thread runtime (it
    /// connects by path only; its default 30 s command timeout).
    #[cfg(feature = "qapi")]
    QmpCrateSequential,
    /// The same, [`CALLERS`] tasks at once sharing the (cloneable) client.
    #[cfg(feature = "qapi")]
    QmpCrateConcurrent,
}

impl Client {
    /// Every client this build has, the floor first.
    pub const ALL: &'static [Client] = &[
        Client::Floor,
        Client::FloorEpoll,
        Client::TokioFloor,
        Client::TokioFloorTask,
        Client::AsyncIoFloor,
        Client::AsyncIoFloorSpawned,
        Client::FloorValidating,
        Client::Blocking,
        Client::AsyncSequential,
        Client::AsyncConcurrent,
        Client::AsyncSmolSpawn,
        Client::TokioSequential,
        Client::TokioConcurrent,
        Client::TokioMultiThread,
        Client::TokioSpawned,
        #[cfg(feature = "qapi")]
        Client::QapiBlocking,
        #[cfg(feature = "qapi")]
        Client::QapiTokioSequential,
        #[cfg(feature = "qapi")]
        Client::QapiTokioConcurrent,
        #[cfg(feature = "qapi")]
        Client::QmpCrateSequential,
        #[cfg(feature = "qapi")]
        Client::QmpCrateConcurrent,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Client::Floor => "hand-written loop, no engine (floor)",
            Client::FloorEpoll => "hand-written loop waiting in epoll, no engine (reactor floor)",
            Client::TokioFloor => "hand-written loop on tokio, no engine (tokio floor)",
            Client::TokioFloorTask => {
                "hand-written tokio client: reader task and oneshot per call, no engine"
            }
            Client::AsyncIoFloor => "hand-written loop on async-io, no engine (async-io floor)",
            Client::AsyncIoFloorSpawned => {
                "async-io floor in smol::spawn, caller in smol::block_on, no engine"
            }
            Client::FloorValidating => {
                "hand-written loop numbering commands and validating replies, no engine (validating floor)"
            }
            Client::Blocking => "qmp-blocking",
            Client::AsyncSequential => "qmp-async, sequential",
            Client::AsyncConcurrent => "qmp-async, 100 concurrent callers",
            Client::AsyncSmolSpawn => "qmp-async, caller in smol::block_on, driver in smol::spawn",
            Client::TokioSequential => "qmp-tokio, sequential",
            Client::TokioConcurrent => "qmp-tokio, 100 concurrent callers",
            Client::TokioMultiThread => "qmp-tokio, multi-thread runtime, sequential",
            Client::TokioSpawned => "qmp-tokio, one caller task (not in block_on)",
            #[cfg(feature = "qapi")]
            Client::QapiBlocking => "qapi 0.15.0 (Rust), blocking, sequential",
            #[cfg(feature = "qapi")]
            Client::QapiTokioSequential => "qapi 0.15.0 (Rust), tokio, sequential",
            #[cfg(feature = "qapi")]
            Client::QapiTokioConcurrent => "qapi 0.15.0 (Rust), tokio, 100 concurrent callers",
            #[cfg(feature = "qapi")]
            Client::QmpCrateSequential => "qmp 0.1.1 (Rust), tokio, sequential",
            #[cfg(feature = "qapi")]
            Client::QmpCrateConcurrent => "qmp 0.1.1 (Rust), tokio, 100 concurrent callers",
        }
    }

    /// Its name on the command line.
    pub fn short_name(self) -> &'static str {
        match self {
            Client::Floor => "floor",
            Client::FloorEpoll => "floor-epoll",
            Client::TokioFloor => "tokio-floor",
            Client::TokioFloorTask => "tokio-floor-task",
            Client::AsyncIoFloor => "async-io-floor",
            Client::AsyncIoFloorSpawned => "async-io-floor-spawned",
            Client::FloorValidating => "floor-validating",
            Client::Blocking => "blocking",
            Client::AsyncSequential => "async",
            Client::AsyncConcurrent => "async-concurrent",
            Client::AsyncSmolSpawn => "async-smol-spawn",
            Client::TokioSequential => "tokio",
            Client::TokioConcurrent => "tokio-concurrent",
            Client::TokioMultiThread => "tokio-mt",
            Client::TokioSpawned => "tokio-spawned",
            #[cfg(feature = "qapi")]
            Client::QapiBlocking => "qapi",
            #[cfg(feature = "qapi")]
            Client::QapiTokioSequential => "qapi-tokio",
            #[cfg(feature = "qapi")]
            Client::QapiTokioConcurrent => "qapi-tokio-concurrent",
            #[cfg(feature = "qapi")]
            Client::QmpCrateSequential => "qmp-crate",
            #[cfg(feature = "qapi")]
            Client::QmpCrateConcurrent => "qmp-crate-concurrent",
        }
    }

    /// Connects to `peer`, negotiates, then times `n` round trips.
    pub fn sample(self, peer: &Peer, n: u64) -> (u64, Duration) {
        match self {
            Client::Floor => floor(peer.connect(), n),
            Client::FloorEpoll => floor_epoll(peer.connect(), n),
            Client::TokioFloor => tokio_floor(peer.connect(), n),
            Client::TokioFloorTask => tokio_floor_task(peer.connect(), n),
            Client::AsyncIoFloor => async_io_floor(peer.connect(), n),
            Client::AsyncIoFloorSpawned => async_io_floor_spawned(peer.connect(), n),
            Client::FloorValidating => floor_validating(peer.connect(), n),
            Client::Blocking => blocking(peer.connect(), n),
            Client::AsyncSequential => asynchronous(peer.connect(), n, 1),
            Client::AsyncConcurrent => asynchronous(peer.connect(), n, CALLERS),
            Client::AsyncSmolSpawn => async_smol_spawn(peer.connect(), n),
            Client::TokioSequential => tokio_adapter(peer.connect(), n, Callers::InBlockOn, false),
            Client::TokioConcurrent => {
                tokio_adapter(peer.connect(), n, Callers::Tasks(CALLERS), false)
            }
            Client::TokioMultiThread => tokio_adapter(peer.connect(), n, Callers::InBlockOn, true),
            Client::TokioSpawned => tokio_adapter(peer.connect(), n, Callers::Tasks(1), false),
            #[cfg(feature = "qapi")]
            Client::QapiBlocking => qapi(peer.connect(), n),
            #[cfg(feature = "qapi")]
            Client::QapiTokioSequential => qapi_tokio(peer.connect(), n, Callers::InBlockOn),
            #[cfg(feature = "qapi")]
            Client::QapiTokioConcurrent => qapi_tokio(peer.connect(), n, Callers::Tasks(CALLERS)),
            #[cfg(feature = "qapi")]
            Client::QmpCrateSequential => qmp_crate(&peer.dial(), n, Callers::InBlockOn),
            #[cfg(feature = "qapi")]
            Client::QmpCrateConcurrent => qmp_crate(&peer.dial(), n, Callers::Tasks(CALLERS)),
        }
    }
}

/// Reads until `buf` holds a `\r\n`; returns the length up to and including it. Reads go
/// through `chunk`, a buffer kept across calls (a fresh zeroed one per read cost more than
/// the rest of the loop).
fn read_line(stream: &mut UnixStream, buf: &mut Vec<u8>, chunk: &mut [u8]) -> usize {
    let mut scanned = 0;
    loop {
        if let Some(at) = buf[scanned..].windows(2).position(|w| w == b"\r\n") {
            return scanned + at + 2;
        }
        scanned = buf.len().saturating_sub(1);
        let got = stream.read(chunk).expect("read from the peer");
        assert!(got > 0, "the peer closed the connection");
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Takes one `\r\n`-terminated line off the front of `buf` if it holds one. `scanned` is
/// how far the calls since the last line have looked (it starts at 0 and is reset to 0).
#[inline]
fn take_line(buf: &mut Vec<u8>, scanned: &mut usize) -> bool {
    if let Some(at) = buf[*scanned..].windows(2).position(|w| w == b"\r\n") {
        buf.drain(..*scanned + at + 2);
        *scanned = 0;
        return true;
    }
    *scanned = buf.len().saturating_sub(1);
    false
}

/// The floor: `n` times, write the command bytes and read one reply line.
pub fn floor(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let command = negotiate_plain(&mut stream, &mut buf, &mut chunk);
    let start = Instant::now();
    for _ in 0..n {
        stream.write_all(command.as_bytes()).expect("write");
        let end = read_line(&mut stream, &mut buf, &mut chunk);
        buf.drain(..end);
    }
    (n, start.elapsed())
}

/// The validating floor: `n` times, write the command with the next id, read one reply line,
/// parse it with serde_json (its `return` validated as a `&RawValue`, its `id` compared with
/// the command's) and copy the value out.
pub fn floor_validating(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(rename = "return", borrow)]
        ret: &'a RawValue,
        id: u64,
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    negotiate_plain(&mut stream, &mut buf, &mut chunk);
    let head = format!(r#"{{"execute":"{COMMAND}","id":"#);
    let mut command = Vec::with_capacity(64);
    let start = Instant::now();
    for id in 1..=n {
        command.clear();
        command.extend_from_slice(head.as_bytes());
        push_decimal(&mut command, id);
        command.push(b'}');
        stream.write_all(&command).expect("write");
        let end = read_line(&mut stream, &mut buf, &mut chunk);
        let reply: Reply<'_> = serde_json::from_slice(&buf[..end]).expect("a reply");
        assert_eq!(reply.id, id, "the reply to this command");
        std::hint::black_box(reply.ret.to_owned());
        buf.drain(..end);
    }
    (n, start.elapsed())
}

/// `n` in decimal, appended to `out`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The floor's greeting and negotiation (blocking reads); returns the command to send.
fn negotiate_plain(stream: &mut UnixStream, buf: &mut Vec<u8>, chunk: &mut [u8]) -> String {
    let end = read_line(stream, buf, chunk);
    buf.drain(..end);
    stream
        .write_all(br#"{"execute":"qmp_capabilities"}"#)
        .expect("write");
    let end = read_line(stream, buf, chunk);
    buf.drain(..end);
    format!(r#"{{"execute":"{COMMAND}","id":1}}"#)
}

/// The reactor floor: the floor's loop on a non-blocking socket that waits in `epoll_wait`
/// (registered once, level-triggered) before each read, as an event loop does: three system
/// calls per round trip (send, `epoll_wait`, read), and the peer's write wakes an epoll
/// waiter rather than a blocked read. No client that waits in a reactor does less.
pub fn floor_epoll(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    use rustix::event::epoll;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let command = negotiate_plain(&mut stream, &mut buf, &mut chunk);
    stream.set_nonblocking(true).expect("a non-blocking socket");
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create");
    epoll::add(
        &ep,
        &stream,
        epoll::EventData::new_u64(0),
        epoll::EventFlags::IN,
    )
    .expect("epoll_ctl");
    let mut events = [epoll::Event {
        flags: epoll::EventFlags::empty(),
        data: epoll::EventData::new_u64(0),
    }; 4];
    let start = Instant::now();
    for _ in 0..n {
        stream.write_all(command.as_bytes()).expect("write");
        let mut scanned = 0;
        while !take_line(&mut buf, &mut scanned) {
            epoll::wait(&ep, &mut events[..], None).expect("epoll_wait");
            match stream.read(&mut chunk) {
                Ok(0) => panic!("the peer closed the connection"),
                Ok(got) => buf.extend_from_slice(&chunk[..got]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read from the peer: {e}"),
            }
        }
    }
    (n, start.elapsed())
}

/// The floor's loop on tokio: `n` times, write the command and read until a reply line,
/// on a tokio `UnixStream` in `block_on` on a current-thread runtime (negotiated blocking,
/// as the floor does).
pub fn tokio_floor(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let command = negotiate_plain(&mut stream, &mut buf, &mut chunk);
    runtime(false).block_on(async move {
        let mut stream = tokio_stream(stream);
        let start = Instant::now();
        for _ in 0..n {
            stream.write_all(command.as_bytes()).await.expect("write");
            let mut scanned = 0;
            while !take_line(&mut buf, &mut scanned) {
                let got = stream.read(&mut chunk).await.expect("read");
                assert!(got > 0, "the peer closed the connection");
                buf.extend_from_slice(&chunk[..got]);
            }
        }
        (n, start.elapsed())
    })
}

/// The least a tokio client that serves events and concurrent callers does: a reader task
/// owns the read half and completes each call's `oneshot` (taken from a shared queue) when
/// a reply line arrives; the caller, in `block_on`, writes its command on the write half
/// and awaits its `oneshot`. No engine, no ids.
pub fn tokio_floor_task(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let command = negotiate_plain(&mut stream, &mut buf, &mut chunk);
    runtime(false).block_on(async move {
        let (mut read, mut write) = tokio_stream(stream).into_split();
        let waiting: Arc<Mutex<std::collections::VecDeque<oneshot::Sender<()>>>> = Arc::default();
        let queue = waiting.clone();
        let reader = tokio::spawn(async move {
            loop {
                let mut scanned = 0;
                while !take_line(&mut buf, &mut scanned) {
                    match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(got) => buf.extend_from_slice(&chunk[..got]),
                    }
                }
                if let Some(tx) = queue.lock().expect("the queue").pop_front() {
                    let _ = tx.send(());
                }
            }
        });
        let start = Instant::now();
        for _ in 0..n {
            let (tx, rx) = oneshot::channel();
            waiting.lock().expect("the queue").push_back(tx);
            write.write_all(command.as_bytes()).await.expect("write");
            rx.await.expect("a reply");
        }
        let took = start.elapsed();
        drop(write);
        reader.abort();
        (n, took)
    })
}

/// The floor's loop on async-io: `n` times, write the command and read until a reply line,
/// on an `Async<UnixStream>` in `async_io::block_on` (negotiated blocking, as the floor
/// does).
pub fn async_io_floor(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let command = negotiate_plain(&mut stream, &mut buf, &mut chunk);
    async_io::block_on(async move {
        let mut stream = async_io::Async::new(stream).expect("an async socket");
        let start = Instant::now();
        for _ in 0..n {
            async_io_round_trip(&mut stream, &command, &mut buf, &mut chunk).await;
        }
        (n, start.elapsed())
    })
}

/// The async-io floors' round trip: writes `command`, then reads until a reply line is in
/// `buf` (and takes it off).
async fn async_io_round_trip(
    stream: &mut async_io::Async<UnixStream>,
    command: &str,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(command.as_bytes()).await.expect("write");
    let mut scanned = 0;
    while !take_line(buf, &mut scanned) {
        let got = stream.read(chunk).await.expect("read");
        assert!(got > 0, "the peer closed the connection");
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// The async-io floor's loop in a task on smol's global executor (its own thread); the
/// caller, in `smol::block_on`, hands it each command and waits for each reply over
/// channels, as a caller of a spawned driver does.
pub fn async_io_floor_spawned(mut stream: UnixStream, n: u64) -> (u64, Duration) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 4096];
    let command = negotiate_plain(&mut stream, &mut buf, &mut chunk);
    let (to_io, requests) = smol::channel::bounded::<()>(1);
    let (to_caller, replies) = smol::channel::bounded::<()>(1);
    let io = smol::spawn(async move {
        let mut stream = async_io::Async::new(stream).expect("an async socket");
        while requests.recv().await.is_ok() {
            async_io_round_trip(&mut stream, &command, &mut buf, &mut chunk).await;
            if to_caller.send(()).await.is_err() {
                break;
            }
        }
    });
    smol::block_on(async move {
        let start = Instant::now();
        for _ in 0..n {
            to_io.send(()).await.expect("the I/O task runs");
            replies.recv().await.expect("a reply");
        }
        let took = start.elapsed();
        drop(to_io);
        io.await;
        (n, took)
    })
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

/// The async adapter as the README runs it: the caller in `smol::block_on`, the driver on
/// smol's global executor (a thread of its own, so each reply wakes the caller across
/// threads).
pub fn async_smol_spawn(stream: UnixStream, n: u64) -> (u64, Duration) {
    smol::block_on(async {
        let (qmp, driver) = qmp_async::Builder::new()
            .unix_stream(stream)
            .await
            .expect("negotiated");
        let driver = smol::spawn(driver);
        let start = Instant::now();
        for _ in 0..n {
            qmp.execute::<qmp_async::IgnoredAny, _>(COMMAND, &())
                .await
                .expect("a reply");
        }
        let took = start.elapsed();
        drop(qmp);
        driver.await;
        (n, took)
    })
}

/// A tokio runtime: current-thread, or multi-thread (its workers as many as the CPUs this
/// process may use: one when pinned).
fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("a tokio runtime")
}

/// A std stream as a tokio stream (within a runtime).
fn tokio_stream(stream: UnixStream) -> tokio::net::UnixStream {
    stream.set_nonblocking(true).expect("a non-blocking socket");
    tokio::net::UnixStream::from_std(stream).expect("a tokio socket")
}

/// Who makes the calls of a tokio client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// The future in `block_on` (the body of `#[tokio::main]`), one call after the other.
    InBlockOn,
    /// That many tasks spawned on the runtime, sharing the calls.
    Tasks(usize),
}

/// Makes `n` calls (each made by `call`) as `callers` says, on the current runtime; returns
/// how many were made and how long they took.
async fn run_calls<F, Fut>(callers: Callers, n: u64, call: F) -> (u64, Duration)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    match callers {
        Callers::InBlockOn => {
            for _ in 0..n {
                call().await;
            }
            (n, start.elapsed())
        }
        Callers::Tasks(count) => {
            let per_caller = n / count as u64;
            let tasks: Vec<_> = (0..count)
                .map(|_| {
                    let call = call.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_caller {
                            call().await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a caller task");
            }
            (per_caller * count as u64, start.elapsed())
        }
    }
}

/// The tokio adapter, on a current-thread or multi-thread runtime made for the sample, its
/// `n` calls made by `callers`.
pub fn tokio_adapter(
    stream: UnixStream,
    n: u64,
    callers: Callers,
    multi_thread: bool,
) -> (u64, Duration) {
    let rt = runtime(multi_thread);
    rt.block_on(async {
        let qmp = qmp_tokio::Builder::new()
            .unix_stream(tokio_stream(stream))
            .await
            .expect("negotiated");
        let handle = qmp.clone();
        let measured = run_calls(callers, n, move || {
            let call = handle.execute::<qmp_tokio::IgnoredAny, _>(COMMAND, &());
            async move {
                call.await.expect("a reply");
            }
        })
        .await;
        qmp.close();
        qmp.closed().await;
        measured
    })
}

/// The `qapi` crate's tokio client: `QmpStreamTokio::open` on the stream, negotiated, its
/// reader spawned with `spawn_tokio`, its `QapiService` shared by `callers` on a
/// current-thread runtime.
#[cfg(feature = "qapi")]
pub fn qapi_tokio(stream: UnixStream, n: u64, callers: Callers) -> (u64, Duration) {
    let rt = runtime(false);
    rt.block_on(async {
        let negotiation = qapi::futures::QmpStreamTokio::open(tokio_stream(stream))
            .await
            .expect("a greeting");
        let stream = negotiation.negotiate().await.expect("negotiated");
        let (service, reader) = stream.spawn_tokio();
        let service = std::sync::Arc::new(service);
        let shared = std::sync::Arc::clone(&service);
        let measured = run_calls(callers, n, move || {
            let call = shared.execute(qapi::qmp::query_version {});
            async move {
                call.await.expect("a reply");
            }
        })
        .await;
        drop(service);
        reader.abort();
        measured
    })
}

/// The `qmp` crate's tokio client (`qmp::Client::connect`, by path), shared by `callers` on
/// a current-thread runtime.
#[cfg(feature = "qapi")]
pub fn qmp_crate(dial: &Dial, n: u64, callers: Callers) -> (u64, Duration) {
    let rt = runtime(false);
    rt.block_on(async {
        let client = qmp::Client::connect(qmp::Endpoint::unix(&dial.path))
            .await
            .expect("negotiated");
        let shared = client.clone();
        run_calls(callers, n, move || {
            let client = shared.clone();
            async move {
                client
                    .execute::<(), qmp_tokio::IgnoredAny>(COMMAND, None)
                    .await
                    .expect("a reply");
            }
        })
        .await
    })
}

/// The Rust `qapi` crate (0.15.0, its synchronous `qapi::Qmp` over a std `UnixStream`).
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
