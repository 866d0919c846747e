//! Real QEMU processes: qemu-storage-daemon, qemu-system-x86_64 and qemu-ga.

use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

use crate::{tempdir, POLL, T};

/// Set to `1` (as CI does) to make a missing QEMU binary (or another tool a test needs) a
/// failure instead of a skip.
pub const REQUIRE_VAR: &str = "QMP_REQUIRE_QEMU";

/// Reports that `what`, which a test needs, is not installed: a failure (a panic) when
/// [`REQUIRE_VAR`] is `1`, else the reason for skipping the test, printed.
#[allow(clippy::print_stderr)] // The reason a test is skipped goes next to its output.
pub fn skip_or_fail(what: &str) {
    assert!(
        std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
        "{what} is not installed, and {REQUIRE_VAR}=1 requires it"
    );
    eprintln!("skipping: {what} is not installed (set {REQUIRE_VAR}=1 to require it)");
}

/// The path of a QEMU binary, found on `PATH` or in `/usr/sbin` and `/sbin` (where qemu-ga
/// is installed); `None`, after [`skip_or_fail`], when it is not installed.
pub fn find_qemu(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip_or_fail(name);
    }
    found
}

/// Sends a signal (`"-STOP"`, `"-CONT"`, `"-KILL"`, ...) to a process.
pub fn signal_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A QEMU process in a private temporary directory, killed and reaped on drop.
///
/// Its constructors return `None` when the binary is not installed (see [`find_qemu`]).
/// The flavour `F` ([`Blocking`](crate::blocking::Blocking), or `Async` with the feature
/// `async`) gives it `connect` methods for that kind of client: use the aliases
/// [`blocking::Peer`](crate::blocking::Peer) and `asynchronous::Peer`.
pub struct Qemu<F> {
    child: Option<Child>,
    /// How it was started, to restart it.
    bin: PathBuf,
    args: Vec<String>,
    /// For qemu-storage-daemon: the pidfile it writes once it is ready, and the path it
    /// listens on until then.
    staging: Option<(PathBuf, PathBuf)>,
    /// Its directory: its stderr, its sockets, anything a test puts there.
    pub dir: tempfile::TempDir,
    /// Its QMP socket (the one it listens on, or the one it connects to).
    pub sock: PathBuf,
    flavour: PhantomData<F>,
}

impl<F> fmt::Debug for Qemu<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qemu")
            .field("bin", &self.bin)
            .field("args", &self.args)
            .field("sock", &self.sock)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish_non_exhaustive()
    }
}

impl<F> Qemu<F> {
    /// qemu-storage-daemon serving QMP on `dir/qmp.sock`, returned once it is ready.
    pub fn storage_daemon() -> Option<Self> {
        Self::storage_daemon_with(|_| Vec::new())
    }

    /// [`storage_daemon`](Self::storage_daemon) with more arguments, made from its
    /// directory (a second monitor's socket, ...).
    ///
    /// qemu-storage-daemon 10.0.2 sometimes crashes (SIGSEGV) when a client connects the
    /// moment its socket appears, before it has finished starting (about 1 start in 60;
    /// never once its pidfile is written). So it listens on a staging path, and the socket
    /// is renamed to `dir/qmp.sock` only when the pidfile says it is ready: clients, a
    /// reconnecting one included, never see it earlier.
    pub fn storage_daemon_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Option<Self> {
        let bin = find_qemu("qemu-storage-daemon")?;
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let staging = dir.path().join("qmp.sock.starting");
        let pidfile = dir.path().join("qsd.pid");
        let chardev = format!("socket,id=m0,path={},server=on,wait=off", staging.display());
        let pid = pidfile.display().to_string();
        let mut args: Vec<String> = [
            "--chardev",
            &chardev,
            "--monitor",
            "chardev=m0",
            "--pidfile",
            &pid,
        ]
        .map(str::to_owned)
        .into();
        args.extend(extra(dir.path()));
        let mut peer = Self::new(bin, args, dir, sock);
        peer.staging = Some((pidfile, staging));
        peer.start();
        Some(peer)
    }

    /// qemu-ga, the QEMU guest agent, run on the host and listening on `dir/qga.sock`
    /// (`-m unix-listen`), with its state directory in `dir`.
    pub fn guest_agent() -> Option<Self> {
        let bin = find_qemu("qemu-ga")?;
        let dir = tempdir();
        let sock = dir.path().join("qga.sock");
        let args = [
            "-m",
            "unix-listen",
            "-p",
            &path_arg(&sock),
            "-t",
            &path_arg(dir.path()),
        ]
        .map(str::to_owned)
        .into();
        let mut peer = Self::new(bin, args, dir, sock);
        peer.start();
        Some(peer)
    }

    /// qemu-system-x86_64 (TCG, no display, no default devices) serving QMP on
    /// `dir/qmp.sock`, with `machine` arguments such as `["-machine", "none"]`.
    pub fn system(machine: &[&str]) -> Option<Self> {
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let qmp = format!("unix:{},server=on,wait=off", sock.display());
        Self::system_with(machine, &qmp, dir, sock)
    }

    /// qemu-system-x86_64 with `-qmp QMP` (a TCP monitor, or a socket QEMU connects to),
    /// in `dir`, its QMP socket being `sock`.
    pub fn system_with(
        machine: &[&str],
        qmp: &str,
        dir: tempfile::TempDir,
        sock: PathBuf,
    ) -> Option<Self> {
        let bin = find_qemu("qemu-system-x86_64")?;
        let mut args: Vec<String> = machine.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["-nodefaults", "-display", "none", "-qmp", qmp].map(str::to_owned));
        let mut peer = Self::new(bin, args, dir, sock);
        peer.start();
        Some(peer)
    }

    fn new(bin: PathBuf, args: Vec<String>, dir: tempfile::TempDir, sock: PathBuf) -> Self {
        Qemu {
            child: None,
            bin,
            args,
            staging: None,
            dir,
            sock,
            flavour: PhantomData,
        }
    }

    /// Starts the process; with a staging socket, waits until it is ready and then moves
    /// the socket into place.
    fn start(&mut self) {
        if let Some((pidfile, _)) = &self.staging {
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
        let Some((pidfile, staging)) = self.staging.clone() else {
            return;
        };
        let deadline = Instant::now() + T;
        while !std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok()) {
            self.not_yet(deadline, None);
            std::thread::sleep(POLL);
        }
        std::fs::rename(&staging, &self.sock).expect("move the socket into place");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running process").id()
    }

    /// Sends a signal (`"-STOP"`, `"-CONT"`, `"-KILL"`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        signal_pid(self.pid(), signal);
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("wait for the killed process");
        }
    }

    /// Kills the process and starts it again with the same arguments, on the same socket
    /// path (a stale socket file is removed first, or replaced once the new process is
    /// ready).
    pub fn restart(&mut self) {
        self.kill();
        if self.staging.is_none() {
            let _ = std::fs::remove_file(&self.sock);
        }
        self.start();
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// A step of waiting for the peer to be ready: panics, with what the process wrote to
    /// stderr, if it has exited or `deadline` has passed (naming the last `error`).
    pub(crate) fn not_yet(&mut self, deadline: Instant, error: Option<String>) {
        let child = self.child.as_mut().expect("a running process");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("QEMU exited early ({status}): {}", self.stderr());
        }
        if Instant::now() > deadline {
            match error {
                Some(e) => panic!("cannot connect: {e}; stderr: {}", self.stderr()),
                None => panic!("not ready after {T:?}: {}", self.stderr()),
            }
        }
    }

    /// The exit status once the process has exited by itself (it is then reaped); panics
    /// once `deadline` has passed.
    pub(crate) fn exited_by(&mut self, deadline: Instant) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("a running process");
        if let Some(status) = child.try_wait().expect("try_wait") {
            self.child = None;
            return Some(status);
        }
        assert!(
            Instant::now() < deadline,
            "QEMU did not exit in time: {}",
            self.stderr()
        );
        None
    }
}

impl<F> Drop for Qemu<F> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}
