//! Helpers shared by the integration tests: three executors, real QEMU peers, and the fake
//! QEMU served in-process on a unix socket.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::fs::File;
use std::future::Future;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::Timer;
use qmp_async::{Builder, DisconnectReason, Qmp};
use qmp_proto::server::{FakeQemu, Server};

/// A generous limit for anything a test waits for.
pub const T: Duration = Duration::from_secs(10);

// ----- executors -----

/// A spawned task's output.
pub type Join<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Spawns on the executor a scenario runs under.
#[derive(Clone)]
pub enum Spawner {
    Smol,
    Executor(Arc<async_executor::Executor<'static>>),
    Tokio(tokio::runtime::Handle),
}

impl Spawner {
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Join<T> {
        match self {
            Spawner::Smol => Box::pin(smol::spawn(fut)),
            Spawner::Executor(ex) => Box::pin(ex.spawn(fut)),
            Spawner::Tokio(handle) => {
                let task = handle.spawn(fut);
                Box::pin(async move { task.await.expect("the task panicked") })
            }
        }
    }
}

/// Runs a scenario under smol: `smol::block_on`, tasks on smol's global executor.
pub fn under_smol<F: Future<Output = ()>>(scenario: impl FnOnce(Spawner) -> F) {
    smol::block_on(scenario(Spawner::Smol));
}

/// Runs a scenario under `futures_lite::future::block_on` driving an `async_executor`.
pub fn under_async_executor<F: Future<Output = ()>>(scenario: impl FnOnce(Spawner) -> F) {
    let ex = Arc::new(async_executor::Executor::new());
    futures_lite::future::block_on(ex.run(scenario(Spawner::Executor(Arc::clone(&ex)))));
}

/// Runs a scenario under a tokio multi-thread runtime (async-io's reactor runs on its own
/// thread meanwhile).
pub fn under_tokio<F: Future<Output = ()>>(scenario: impl FnOnce(Spawner) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let spawner = Spawner::Tokio(rt.handle().clone());
    rt.block_on(scenario(spawner));
}

/// For each `async fn NAME(Spawner)`, a module `NAME` with one test per executor.
#[macro_export]
macro_rules! on_every_executor {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn smol() {
                $crate::common::under_smol(super::$name);
            }
            #[test]
            fn async_executor() {
                $crate::common::under_async_executor(super::$name);
            }
            #[test]
            fn tokio() {
                $crate::common::under_tokio(super::$name);
            }
        }
    )*};
}

/// Sleeps on async-io's timer (blocking the thread would stall a single-threaded executor).
pub async fn sleep(d: Duration) {
    Timer::after(d).await;
}

/// Waits up to [`T`] for `fut`.
pub async fn within<F: Future>(fut: F) -> F::Output {
    qmp_async::timeout(T, fut).await.expect("timed out")
}

// ----- real QEMU -----

/// Set to `1` (as CI does) to make a missing QEMU binary a failure instead of a skip.
pub const REQUIRE_VAR: &str = "QMP_REQUIRE_QEMU";

/// The path of a QEMU binary, or `None` (with the reason printed) when it is not installed
/// and not required.
pub fn find_qemu(name: &str) -> Option<PathBuf> {
    // qemu-ga is installed in /usr/sbin, which is not on every PATH.
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
            "{name} is not installed, and {REQUIRE_VAR}=1 requires it"
        );
        eprintln!("skipping: {name} is not installed (set {REQUIRE_VAR}=1 to require it)");
    }
    found
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qmp-async-")
        .tempdir()
        .expect("temporary directory")
}

/// A QEMU process in a private temporary directory, killed and reaped on drop.
pub struct Peer {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
    /// Its QMP socket (the one it listens on, or the one it connects to).
    pub sock: PathBuf,
    /// A pidfile written when the process is ready, and the path it listens on until then.
    ready: Option<(PathBuf, PathBuf)>,
}

impl Peer {
    /// qemu-storage-daemon serving QMP on `dir/qmp.sock`.
    ///
    /// qemu-storage-daemon 10.0.2 sometimes crashes (SIGSEGV) when a client connects the
    /// moment its socket appears, before it has finished starting (about 1 start in 60 here;
    /// never once its pidfile is written). So it listens on a staging path, and the socket is
    /// renamed to `dir/qmp.sock` only when the pidfile says it is ready: clients, the
    /// reconnecting driver included, never see it earlier.
    pub fn storage_daemon() -> Option<Peer> {
        let bin = find_qemu("qemu-storage-daemon")?;
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let staging = dir.path().join("qmp.sock.starting");
        let pidfile = dir.path().join("qsd.pid");
        let chardev = format!("socket,id=m0,path={},server=on,wait=off", staging.display());
        let pid = pidfile.display().to_string();
        let args = [
            "--chardev",
            &chardev,
            "--monitor",
            "chardev=m0",
            "--pidfile",
            &pid,
        ];
        let mut peer = Peer::new(bin, &args, dir, sock);
        peer.ready = Some((pidfile, staging));
        peer.start();
        Some(peer)
    }

    /// qemu-ga, the QEMU guest agent, run on the host and listening on `dir/qga.sock`
    /// (`-m unix-listen`), with its state directory in `dir`.
    pub fn guest_agent() -> Option<Peer> {
        let bin = find_qemu("qemu-ga")?;
        let dir = tempdir();
        let sock = dir.path().join("qga.sock");
        let sock_arg = sock.display().to_string();
        let state = dir.path().display().to_string();
        let args = ["-m", "unix-listen", "-p", &sock_arg, "-t", &state];
        let mut peer = Peer::new(bin, &args, dir, sock);
        peer.start();
        Some(peer)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Sends a signal (`"-STOP"`, `"-CONT"`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.pid(), signal);
    }

    /// qemu-system-x86_64 (TCG, no display, no default devices) serving QMP on
    /// `dir/qmp.sock`, with `machine` arguments such as `["-machine", "none"]`.
    pub fn system(machine: &[&str]) -> Option<Peer> {
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let qmp = format!("unix:{},server=on,wait=off", sock.display());
        Peer::system_with(machine, &qmp, dir, sock)
    }

    /// qemu-system-x86_64 with `-qmp QMP`.
    pub fn system_with(
        machine: &[&str],
        qmp: &str,
        dir: tempfile::TempDir,
        sock: PathBuf,
    ) -> Option<Peer> {
        let bin = find_qemu("qemu-system-x86_64")?;
        let mut args = machine.to_vec();
        args.extend(["-nodefaults", "-display", "none", "-qmp", qmp]);
        let mut peer = Peer::new(bin, &args, dir, sock);
        peer.start();
        Some(peer)
    }

    fn new(bin: PathBuf, args: &[&str], dir: tempfile::TempDir, sock: PathBuf) -> Peer {
        Peer {
            child: None,
            bin,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            dir,
            sock,
            ready: None,
        }
    }

    /// Starts the process; with a readiness pidfile, waits for it and then moves the socket
    /// from its staging path into place.
    fn start(&mut self) {
        if let Some((pidfile, _)) = &self.ready {
            let _ = std::fs::remove_file(pidfile);
        }
        let stderr = File::create(self.dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let Some((pidfile, staging)) = self.ready.clone() else {
            return;
        };
        let deadline = Instant::now() + T;
        while std::fs::metadata(&pidfile).map_or(true, |m| m.len() == 0) {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!("QEMU exited while starting ({status}): {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "not ready: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(1));
        }
        std::fs::rename(&staging, &self.sock).expect("move the socket into place");
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Kills the process and starts it again with the same arguments, on the same socket.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// What the peer wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child")
    }

    /// Connects to the peer's socket once it appears (within 10 s) with `builder`, and
    /// spawns the driver.
    pub async fn connect_with(
        &mut self,
        builder: &Builder,
        sp: &Spawner,
    ) -> (Qmp, Join<DisconnectReason>) {
        let deadline = Instant::now() + T;
        loop {
            if self.sock.exists() {
                match builder.connect_unix(&self.sock).await {
                    Ok((qmp, driver)) => return (qmp, sp.spawn(driver)),
                    Err(e) if Instant::now() > deadline => {
                        panic!("cannot connect: {e}; stderr: {}", self.stderr())
                    }
                    Err(_) => {}
                }
            }
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!("QEMU exited early ({status}): {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no socket: {}", self.stderr());
            sleep(Duration::from_millis(5)).await;
        }
    }

    /// Connects with a 10 s connect timeout.
    pub async fn connect(&mut self, sp: &Spawner) -> (Qmp, Join<DisconnectReason>) {
        self.connect_with(&Builder::new().connect_timeout(T), sp)
            .await
    }

    /// Waits up to 10 s for the process to exit by itself.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "QEMU did not exit in time");
            sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ----- the fake QEMU -----

/// Sends a signal (`"-STOP"`, `"-CONT"`, ...) to a process.
pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} failed");
}

/// The fake QEMU serving one connection on a unix socket from a thread, as a minimal std
/// loop would.
pub struct FakePeer {
    _dir: tempfile::TempDir,
    pub sock: PathBuf,
    thread: Option<JoinHandle<String>>,
}

impl FakePeer {
    pub fn serve(fake: FakeQemu) -> FakePeer {
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).expect("bind");
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut server = Server::new(fake.server_config(), fake);
            qmp_blocking::serve_unix(stream, &mut server).expect("serve");
            server.handler().status().to_owned()
        });
        FakePeer {
            _dir: dir,
            sock,
            thread: Some(thread),
        }
    }

    /// Connects with `builder` and spawns the driver.
    pub async fn connect_with(
        &self,
        builder: &Builder,
        sp: &Spawner,
    ) -> (Qmp, Join<DisconnectReason>) {
        let (qmp, driver) = builder.connect_unix(&self.sock).await.expect("connect");
        (qmp, sp.spawn(driver))
    }

    pub async fn connect(&self, sp: &Spawner) -> (Qmp, Join<DisconnectReason>) {
        self.connect_with(&Builder::new(), sp).await
    }

    /// Waits for the server thread (after the client went away); returns the fake's run
    /// status at the end.
    pub fn finish(mut self) -> String {
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("server thread")
    }
}

/// A call with a file descriptor on a stream that cannot carry one fails before anything
/// is sent.
pub async fn assert_fds_refused(qmp: &Qmp) {
    let null = File::open("/dev/null").expect("/dev/null");
    let opts = qmp_async::CallOptions::new().fd(null);
    let refused = qmp
        .execute_with::<serde_json::Value, _>("getfd", &serde_json::json!({"fdname": "x"}), opts)
        .await;
    assert!(
        matches!(refused, Err(qmp_async::Error::FdsUnsupported)),
        "{refused:?}"
    );
}

/// Whether `path` exists (for socket-file checks).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
