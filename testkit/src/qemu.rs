//! Real QEMU processes: qemu-storage-daemon, qemu-system-x86_64 and qemu-ga, of the
//! installed QEMU (10.0) or of QEMU 7.2 unpacked beside it ([`QemuVersion`]).

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

/// The directory where the distribution's QEMU 7.2 packages are unpacked (`dpkg -x`, by
/// `.ci/run`): it holds `usr/bin/qemu-system-x86_64`, `usr/bin/qemu-storage-daemon`,
/// `usr/sbin/qemu-ga`, ... Unset, it is `$HOME/.cache/qmp-proto/qemu-7.2`, where `.ci/run`
/// puts them.
pub const QEMU72_VAR: &str = "QMP_QEMU72_DIR";

/// Selects the QEMU that [`Qemu`]'s plain constructors start: `7.2` for the unpacked 7.2
/// ([`QEMU72_VAR`]); unset, empty or `10.0`, the installed one. `.ci/run` runs the tests
/// that matter for compatibility a second time with `QMP_QEMU_VERSION=7.2`.
pub const VERSION_VAR: &str = "QMP_QEMU_VERSION";

/// Which QEMU a peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QemuVersion {
    /// QEMU 7.2, the distribution's own packages unpacked in a private directory
    /// ([`QEMU72_VAR`]) beside the installed QEMU. Its qemu-system-x86_64 is given
    /// `-L` options to find the installed firmware (SeaBIOS), and its own modules.
    V7_2,
    /// The installed QEMU (10.0.2 here and in CI), found on `PATH` or in `/usr/sbin`.
    V10_0,
}

impl QemuVersion {
    /// Both versions, oldest first.
    pub const ALL: [QemuVersion; 2] = [QemuVersion::V7_2, QemuVersion::V10_0];

    /// The version [`VERSION_VAR`] selects (the installed one by default); panics on a
    /// value it does not know.
    pub fn selected() -> Self {
        match std::env::var(VERSION_VAR).as_deref() {
            Err(_) | Ok("" | "10" | "10.0") => QemuVersion::V10_0,
            Ok("7.2") => QemuVersion::V7_2,
            Ok(other) => panic!("{VERSION_VAR}={other}: expected 7.2 or 10.0"),
        }
    }

    /// The major version, as the greeting and `query-version` give it.
    pub fn major(self) -> u64 {
        match self {
            QemuVersion::V7_2 => 7,
            QemuVersion::V10_0 => 10,
        }
    }

    /// The minor version.
    pub fn minor(self) -> u64 {
        match self {
            QemuVersion::V7_2 => 2,
            QemuVersion::V10_0 => 0,
        }
    }

    /// Whether a version string such as qemu-ga's `7.2.22` is of this version.
    pub fn matches(self, version: &str) -> bool {
        version.starts_with(&format!("{}.{}.", self.major(), self.minor()))
    }

    /// The directory where QEMU 7.2 is unpacked ([`QEMU72_VAR`]).
    pub fn qemu72_dir() -> PathBuf {
        match std::env::var_os(QEMU72_VAR) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                PathBuf::from(home).join(".cache/qmp-proto/qemu-7.2")
            }
        }
    }

    /// The binary `name` of this version with what it needs to run (arguments and
    /// environment); `None`, after [`skip_or_fail`], when it is not there.
    fn binary(self, name: &str) -> Option<Binary> {
        match self {
            QemuVersion::V10_0 => find_qemu(name).map(|bin| Binary {
                bin,
                args: Vec::new(),
                env: Vec::new(),
            }),
            QemuVersion::V7_2 => {
                let root = Self::qemu72_dir();
                let Some(bin) = ["usr/bin", "usr/sbin"]
                    .iter()
                    .map(|d| root.join(d).join(name))
                    .find(|p| p.is_file())
                else {
                    skip_or_fail(&format!(
                        "QEMU 7.2's {name} (unpacked by .ci/run in {}, or set {QEMU72_VAR})",
                        root.display()
                    ));
                    return None;
                };
                Some(Binary::unpacked(bin, &root, name))
            }
        }
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.minor())
    }
}

/// A QEMU binary and what it needs to run.
struct Binary {
    bin: PathBuf,
    /// Arguments before any other (`-L` directories).
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
}

impl Binary {
    /// A binary of a distribution's packages unpacked at `root`: its own modules, any
    /// library the packages brought, and (qemu-system) the firmware directories. QEMU
    /// finds its data relative to its binary (`root/usr/share/qemu`), where the SeaBIOS
    /// images are missing: they come from the installed seabios and qemu packages.
    fn unpacked(bin: PathBuf, root: &Path, name: &str) -> Self {
        let mut env = Vec::new();
        let libs: Vec<PathBuf> = std::fs::read_dir(root.join("usr/lib"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("qemu").is_dir() || p.is_dir() && has_shared_objects(p))
            .collect();
        if let Some(modules) = libs.iter().map(|l| l.join("qemu")).find(|m| m.is_dir()) {
            env.push(("QEMU_MODULE_DIR".to_owned(), modules));
        }
        if let Some(lib) = libs.iter().find(|l| has_shared_objects(l)) {
            env.push(("LD_LIBRARY_PATH".to_owned(), lib.clone()));
        }
        let mut args = Vec::new();
        if name.starts_with("qemu-system-") {
            let own = root.join("usr/share/qemu");
            for dir in [
                own.as_path(),
                Path::new("/usr/share/seabios"),
                Path::new("/usr/share/qemu"),
            ] {
                if dir.is_dir() {
                    args.extend(["-L".to_owned(), path_arg(dir)]);
                }
            }
        }
        Binary { bin, args, env }
    }
}

/// Whether a directory holds shared libraries (`*.so*`) of its own.
fn has_shared_objects(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().contains(".so")
                && e.file_type().is_ok_and(|t| !t.is_dir())
        })
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
/// The plain ones start the version [`QemuVersion::selected`] names; the `_of` ones take it.
/// The flavour `F` ([`Blocking`](crate::blocking::Blocking), or `Async` with the feature
/// `async`) gives it `connect` methods for that kind of client: use the aliases
/// [`blocking::Peer`](crate::blocking::Peer) and `asynchronous::Peer`.
pub struct Qemu<F> {
    child: Option<Child>,
    /// How it was started, to restart it.
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
    version: QemuVersion,
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
            .field("version", &self.version)
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

    /// [`storage_daemon`](Self::storage_daemon) of QEMU `version`.
    pub fn storage_daemon_of(version: QemuVersion) -> Option<Self> {
        Self::storage_daemon_of_with(version, |_| Vec::new())
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
        Self::storage_daemon_of_with(QemuVersion::selected(), extra)
    }

    /// [`storage_daemon_with`](Self::storage_daemon_with) of QEMU `version`.
    pub fn storage_daemon_of_with(
        version: QemuVersion,
        extra: impl FnOnce(&Path) -> Vec<String>,
    ) -> Option<Self> {
        let bin = version.binary("qemu-storage-daemon")?;
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let staging = dir.path().join("qmp.sock.starting");
        let pidfile = dir.path().join("qsd.pid");
        let chardev = format!("socket,id=m0,path={},server=on,wait=off", staging.display());
        let pid = pidfile.display().to_string();
        let mut args: Vec<String> = bin.args.clone();
        args.extend(
            [
                "--chardev",
                &chardev,
                "--monitor",
                "chardev=m0",
                "--pidfile",
                &pid,
            ]
            .map(str::to_owned),
        );
        args.extend(extra(dir.path()));
        let mut peer = Self::new(version, bin, args, dir, sock);
        peer.staging = Some((pidfile, staging));
        peer.start();
        Some(peer)
    }

    /// qemu-ga, the QEMU guest agent, run on the host and listening on `dir/qga.sock`
    /// (`-m unix-listen`), with its state directory in `dir`.
    pub fn guest_agent() -> Option<Self> {
        Self::guest_agent_of(QemuVersion::selected())
    }

    /// [`guest_agent`](Self::guest_agent) of QEMU `version`.
    pub fn guest_agent_of(version: QemuVersion) -> Option<Self> {
        let bin = version.binary("qemu-ga")?;
        let dir = tempdir();
        let sock = dir.path().join("qga.sock");
        let mut args = bin.args.clone();
        args.extend(
            [
                "-m",
                "unix-listen",
                "-p",
                &path_arg(&sock),
                "-t",
                &path_arg(dir.path()),
            ]
            .map(str::to_owned),
        );
        let mut peer = Self::new(version, bin, args, dir, sock);
        peer.start();
        Some(peer)
    }

    /// qemu-system-x86_64 (TCG, no display, no default devices) serving QMP on
    /// `dir/qmp.sock`, with `machine` arguments such as `["-machine", "none"]`.
    pub fn system(machine: &[&str]) -> Option<Self> {
        Self::system_of(QemuVersion::selected(), machine)
    }

    /// [`system`](Self::system) of QEMU `version`.
    pub fn system_of(version: QemuVersion, machine: &[&str]) -> Option<Self> {
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let qmp = format!("unix:{},server=on,wait=off", sock.display());
        Self::system_of_with(version, machine, &qmp, dir, sock)
    }

    /// qemu-system-x86_64 with `-qmp QMP` (a TCP monitor, or a socket QEMU connects to),
    /// in `dir`, its QMP socket being `sock`.
    pub fn system_with(
        machine: &[&str],
        qmp: &str,
        dir: tempfile::TempDir,
        sock: PathBuf,
    ) -> Option<Self> {
        Self::system_of_with(QemuVersion::selected(), machine, qmp, dir, sock)
    }

    /// [`system_with`](Self::system_with) of QEMU `version`.
    pub fn system_of_with(
        version: QemuVersion,
        machine: &[&str],
        qmp: &str,
        dir: tempfile::TempDir,
        sock: PathBuf,
    ) -> Option<Self> {
        let bin = version.binary("qemu-system-x86_64")?;
        let mut args = bin.args.clone();
        args.extend(machine.iter().map(|a| (*a).to_owned()));
        args.extend(["-nodefaults", "-display", "none", "-qmp", qmp].map(str::to_owned));
        let mut peer = Self::new(version, bin, args, dir, sock);
        peer.start();
        Some(peer)
    }

    fn new(
        version: QemuVersion,
        bin: Binary,
        args: Vec<String>,
        dir: tempfile::TempDir,
        sock: PathBuf,
    ) -> Self {
        Qemu {
            child: None,
            bin: bin.bin,
            args,
            env: bin.env,
            version,
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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

    /// The QEMU version it runs.
    pub fn version(&self) -> QemuVersion {
        self.version
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
