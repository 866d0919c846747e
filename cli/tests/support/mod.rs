//! What the CLI tests share: the `qmp` binary, a terminal to type into (tmux), and the test
//! kit's real QEMU peers (blocking flavour).
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use qmp_testkit::blocking::Peer;
pub use qmp_testkit::{find_qemu, tempdir};

/// How long a test waits for something to show on the screen.
pub const WAIT: Duration = Duration::from_secs(15);

/// The `qmp` binary under test.
pub fn qmp_bin() -> &'static str {
    env!("CARGO_BIN_EXE_qmp")
}

/// Runs `qmp ARGS...` to completion, with a timeout.
pub fn qmp(args: &[&str]) -> Output {
    let mut child = Command::new(qmp_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qmp");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("qmp {args:?} did not finish in {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// A terminal: a private tmux server running one command in a 200x50 window.
pub struct Term {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Term {
    /// Starts `command` (run by `sh -c`, with `EXITED <status>` printed when it ends) in a
    /// terminal, or `None` (with the reason printed) when tmux is not installed and not
    /// required.
    pub fn start(command: &str) -> Option<Term> {
        if Command::new("tmux").arg("-V").output().is_err() {
            qmp_testkit::skip_or_fail("tmux");
            return None;
        }
        let dir = tempdir();
        let socket = dir.path().join("tmux.sock");
        let script = format!("{command}; echo EXITED $?; sleep 600");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
            ])
            .arg(&script)
            .env("HOME", dir.path())
            .status()
            .expect("tmux new-session");
        assert!(status.success(), "tmux new-session failed");
        Some(Term { socket, _dir: dir })
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    /// Types text (no Enter).
    pub fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-l", text]);
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    /// Presses keys by tmux name (`Enter`, `Tab`, `Up`, `C-d`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    /// Types a line and presses Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    /// The screen, scrollback included, with wrapped lines joined.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-S", "-2000"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last line of the screen that is not empty (the prompt line, while one shows).
    pub fn last_line(&self) -> String {
        self.screen()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the last line of the screen is `prompt` and what is typed after it
    /// (trailing spaces aside).
    pub fn wait_prompt(&self, prompt: &str) {
        self.wait_until(&format!("the prompt {prompt:?}"), |_| {
            self.last_line().trim_end() == prompt
        });
    }

    /// Waits until `pred` holds for the screen, and returns it.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the screen contains `needle` at least `count` times.
    pub fn wait_count(&self, needle: &str, count: usize) -> String {
        self.wait_until(&format!("{count} x {needle:?}"), |s| {
            s.matches(needle).count() >= count
        })
    }

    /// Waits until the screen contains `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_count(needle, 1)
    }

    /// Waits for the command to end and returns its exit status.
    pub fn wait_exit(&self) -> i32 {
        let screen = self.wait_for("EXITED ");
        let tail = screen.rsplit("EXITED ").next().unwrap_or_default();
        tail.split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exit status in:\n{screen}"))
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// A shell-quoted word.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The command line that runs `qmp ARGS...` in a terminal.
pub fn qmp_command(args: &[&str]) -> String {
    let mut cmd = quote(qmp_bin());
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    cmd
}

/// A path as a `&str`.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `qmp fake --prelaunch` listening on a unix socket, killed when dropped.
pub struct Fake {
    child: std::process::Child,
    /// Its socket.
    pub sock: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real `qemu-system-x86_64` 10.0 `-M pc -accel tcg -S -nodefaults` (the machine the fake models)
/// and `qmp fake --prelaunch` beside it, in QEMU's directory; `None` (after saying why)
/// when QEMU is not installed. Neither socket need be ready yet.
pub fn qemu_and_fake() -> Option<(Peer, Fake)> {
    let peer = Peer::system_of(
        qmp_testkit::QemuVersion::V10_0,
        &["-M", "pc", "-accel", "tcg", "-S"],
    )?;
    let sock = peer.dir.path().join("fake.sock");
    let child = Command::new(qmp_bin())
        .args(["fake", "--prelaunch", "--listen"])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qmp fake");
    Some((peer, Fake { child, sock }))
}

/// Waits until something listens on the unix socket `sock`.
pub fn wait_listening(sock: &Path) {
    drop(connect(sock));
}

/// A connection to the unix socket `sock`, waiting (up to [`WAIT`]) until something listens
/// on it.
pub fn connect(sock: &Path) -> std::os::unix::net::UnixStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match std::os::unix::net::UnixStream::connect(sock) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "nothing listens on {}: {e}",
                    sock.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
