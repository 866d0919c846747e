//! Helpers shared by the integration tests: real QEMU peers and an in-process scripted peer.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qmp_blocking::{Builder, Connection, DisconnectReason};
use serde_json::{json, Value};

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
        if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
            panic!("{name} is not installed, and {REQUIRE_VAR}=1 requires it");
        }
        eprintln!("skipping: {name} is not installed (set {REQUIRE_VAR}=1 to require it)");
    }
    found
}

/// A QEMU process in a private temporary directory, killed and reaped on drop.
pub struct Peer {
    child: Option<Child>,
    /// How it was started, to restart it on the same socket.
    bin: PathBuf,
    args: Vec<String>,
    /// A file the peer writes once it is ready for clients, if it has one.
    ready: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    /// Its QMP socket (the one it listens on, or the one it connects to).
    pub sock: PathBuf,
}

impl Peer {
    /// qemu-storage-daemon serving QMP on `dir/qmp.sock`.
    pub fn storage_daemon() -> Option<Peer> {
        Peer::storage_daemon_with(|_| Vec::new())
    }

    /// [`storage_daemon`](Self::storage_daemon) with more arguments, made from its
    /// directory (a second monitor's socket, ...).
    pub fn storage_daemon_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Option<Peer> {
        let bin = find_qemu("qemu-storage-daemon")?;
        let dir = tempdir();
        let sock = dir.path().join("qmp.sock");
        let chardev = format!("socket,id=m0,path={},server=on,wait=off", sock.display());
        // qemu-storage-daemon 10.0.2 can crash (about one start in 60) when a client
        // connects the moment its socket appears; it is ready once it writes its pidfile.
        let pidfile = dir.path().join("qsd.pid");
        let pidfile_arg = pidfile.display().to_string();
        let mut args = vec![
            "--chardev",
            &chardev,
            "--monitor",
            "chardev=m0",
            "--pidfile",
            &pidfile_arg,
        ];
        let extra = extra(dir.path());
        args.extend(extra.iter().map(String::as_str));
        let mut peer = Peer::spawn(&bin, &args, dir, sock);
        peer.ready = Some(pidfile);
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
        Some(Peer::spawn(&bin, &args, dir, sock))
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
        Some(Peer::spawn(&bin, &args, dir, sock))
    }

    fn spawn(bin: &Path, args: &[&str], dir: tempfile::TempDir, sock: PathBuf) -> Peer {
        let stderr = File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Peer {
            child: Some(child),
            bin: bin.to_path_buf(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ready: None,
            dir,
            sock,
        }
    }

    /// Whether the peer is ready for clients: its socket exists and, if it writes a pidfile,
    /// the pidfile is written.
    fn is_ready(&self) -> bool {
        self.sock.exists()
            && self.ready.as_ref().map_or(true, |p| {
                std::fs::read_to_string(p).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
            })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Sends a signal (`"-STOP"`, `"-CONT"`, `"-KILL"`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts it again, listening on the same socket path.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.sock);
        if let Some(p) = &self.ready {
            let _ = std::fs::remove_file(p);
        }
        let stderr = File::create(self.dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("restart");
        self.child = Some(child);
    }

    /// What the peer wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Connects to the peer's socket once it appears (within 10 s), with `builder`.
    pub fn connect_with(&mut self, builder: &Builder) -> Connection {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.is_ready() {
                match builder.connect_unix(&self.sock) {
                    Ok(c) => return c,
                    Err(e) if Instant::now() > deadline => {
                        panic!("cannot connect: {e}; stderr: {}", self.stderr())
                    }
                    Err(_) => {}
                }
            }
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!("QEMU exited early ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after 10 s: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connects with the default options.
    pub fn connect(&mut self) -> Connection {
        self.connect_with(&Builder::new().connect_timeout(Duration::from_secs(10)))
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child")
    }

    /// Sends `quit` and checks the clean end: EOF after quit, and the process exits with
    /// success.
    pub fn quit(&mut self, qmp: &mut Connection) {
        let t = Duration::from_secs(10);
        qmp.quit(t).expect("quit");
        assert_eq!(
            qmp.disconnect_reason(),
            Some(&DisconnectReason::Eof { after_quit: true })
        );
        assert!(self.wait_exit(t).success(), "{}", self.stderr());
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "QEMU did not exit in time");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The QMP error of a call that must fail with one, checking its class.
pub fn qmp_error<T: std::fmt::Debug>(
    result: Result<T, qmp_blocking::Error>,
    class: &str,
) -> qmp_blocking::QmpError {
    match result {
        Err(qmp_blocking::Error::Qmp(e)) => {
            assert_eq!(e.class, class, "{e}");
            e
        }
        other => panic!("expected a QMP error of class {class}, got {other:?}"),
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qmp-blocking-")
        .tempdir()
        .expect("temporary directory")
}

// ----- an in-process scripted peer -----

pub const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "scripted"}, "capabilities": ["oob"]}}"#;

/// The server end of a socket pair, driven by a test script in a thread.
pub struct Script {
    pub stream: UnixStream,
    reader: serde_json::StreamDeserializer<
        'static,
        serde_json::de::IoRead<BufReader<UnixStream>>,
        Value,
    >,
}

impl Script {
    /// Reads the next command.
    pub fn recv(&mut self) -> Value {
        self.reader
            .next()
            .expect("a command, not EOF")
            .expect("a JSON command")
    }

    /// Reads the next command and checks its name.
    pub fn expect(&mut self, name: &str) -> Value {
        let cmd = self.recv();
        let got = cmd.get("execute").or_else(|| cmd.get("exec-oob"));
        assert_eq!(got, Some(&json!(name)), "{cmd}");
        cmd
    }

    pub fn send(&mut self, message: &str) {
        // The client may be gone already; the test checks its side.
        let _ = self.stream.write_all(message.as_bytes());
        let _ = self.stream.write_all(b"\r\n");
    }

    /// Answers `cmd` with `ret`.
    pub fn reply(&mut self, cmd: &Value, ret: Value) {
        let msg = json!({"return": ret, "id": cmd["id"]});
        self.send(&msg.to_string());
    }

    /// Reads until EOF, returning how many commands came.
    pub fn until_eof(&mut self) -> usize {
        self.reader.by_ref().take_while(Result::is_ok).count()
    }
}

/// Starts a scripted peer on one end of a socket pair: it greets and accepts
/// `qmp_capabilities`, then runs `script`. Returns the client end, negotiated with
/// `builder`, and the script's thread.
pub fn scripted<T: Send + 'static>(
    builder: &Builder,
    script: impl FnOnce(Script) -> T + Send + 'static,
) -> (Connection, JoinHandle<T>) {
    let (client, server) = UnixStream::pair().expect("socket pair");
    let handle = std::thread::spawn(move || {
        let read_half = BufReader::new(server.try_clone().expect("clone"));
        let reader = serde_json::Deserializer::from_reader(read_half).into_iter::<Value>();
        let mut peer = Script {
            stream: server,
            reader,
        };
        peer.send(GREETING);
        let cmd = peer.expect("qmp_capabilities");
        peer.reply(&cmd, json!({}));
        script(peer)
    });
    let conn = builder.unix_stream(client).expect("negotiated");
    (conn, handle)
}
