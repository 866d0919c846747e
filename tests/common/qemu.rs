//! Real QEMU for the tests that compare the fake with it: finding a binary (a missing one
//! skips the test, or fails it under `QMP_REQUIRE_QEMU=1`), private directories, and
//! qemu-system-x86_64 `-M pc -S` with a connected monitor.
// Real processes and sockets: these helpers read the clock for their own timeouts.
#![allow(clippy::disallowed_methods, clippy::print_stderr, clippy::panic)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary on `PATH`; `None`, after saying why, when it is not there, unless
/// `QMP_REQUIRE_QEMU=1`, which makes it a failure.
pub fn require(binary: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(binary))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var("QMP_REQUIRE_QEMU").as_deref() == Ok("1") => {
            panic!("{binary} is required (QMP_REQUIRE_QEMU=1) but not on PATH")
        }
        None => {
            eprintln!("skipping: {binary} not found on PATH");
            None
        }
    }
}

/// A private directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh private directory named after `tag`: tests run in parallel and may start several
/// peers of a kind, so each gets its own.
pub fn temp_dir(tag: &str) -> TempDir {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("qmp-proto-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Connects to a monitor socket, which can exist a moment before QEMU listens on it.
pub fn connect(sock: &Path) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(sock) {
            Ok(s) => return s,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "{e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A QEMU process in its directory, killed and reaped on drop.
pub struct Peer {
    pub child: Child,
    pub dir: TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// qemu-system-x86_64 `-M pc -accel tcg -S -nodefaults -display none` (the machine the fake
/// models) and a connection to its monitor (greeting not read, read timeout `timeout`).
pub fn system_pc(tag: &str, timeout: Duration) -> Option<(Peer, UnixStream)> {
    let bin = require("qemu-system-x86_64")?;
    let dir = temp_dir(tag);
    let sock = dir.0.join("qmp.sock");
    let child = Command::new(bin)
        .args([
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-S",
            "-nodefaults",
            "-display",
            "none",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = Peer { child, dir };
    let s = connect(&sock);
    s.set_read_timeout(Some(timeout)).unwrap();
    Some((peer, s))
}
