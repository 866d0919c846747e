//! The fake QEMU answers byte for byte as real QEMU does: the same inputs go to
//! qemu-storage-daemon 10.0.2 / qemu-system-x86_64 10.0.2 and to `Server<FakeQemu>`, and
//! the outputs must be identical (after the fake is given QEMU's package string, and with
//! event timestamps zeroed).
//!
//! Needs the QEMU binaries; without them the tests print why and pass, unless
//! `QMP_REQUIRE_QEMU=1` (set by CI), which makes a missing QEMU a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
// Real processes and sockets: this test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qmp_proto::server::{FakeQemu, Server};

const SENTINEL: &[u8] = b"\n{\"execute\": \"query-version\", \"id\": \"end\"}";
const NEGOTIATE: &[u8] = br#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#;

fn find(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(binary))
            .find(|p| p.is_file())
    })
}

fn require(binary: &str) -> Option<PathBuf> {
    match find(binary) {
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

/// A QEMU process with its monitor socket, killed on drop.
struct Peer {
    child: Child,
    sock: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("qmp-proto-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn spawn(binary: &Path, args: &[String], dir: TempDir, sock: PathBuf) -> Peer {
    let child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = Peer {
        child,
        sock,
        _dir: dir,
    };
    let start = Instant::now();
    while !peer.sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no monitor socket"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    peer
}

fn storage_daemon() -> Option<Peer> {
    let bin = require("qemu-storage-daemon")?;
    let dir = temp_dir("qsd");
    let sock = dir.0.join("qmp.sock");
    // qemu-storage-daemon 10.0.2 can crash (about one start in 60) when a client connects
    // the moment its socket appears; it is ready once it writes its pidfile.
    let pidfile = dir.0.join("qsd.pid");
    let args = vec![
        "--chardev".into(),
        format!("socket,id=m0,path={},server=on,wait=off", sock.display()),
        "--monitor".into(),
        "chardev=m0".into(),
        "--pidfile".into(),
        pidfile.display().to_string(),
    ];
    let peer = spawn(&bin, &args, dir, sock);
    let start = Instant::now();
    while !std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok()) {
        assert!(start.elapsed() < Duration::from_secs(10), "no pidfile");
        std::thread::sleep(Duration::from_millis(5));
    }
    Some(peer)
}

fn system(extra: &[&str]) -> Option<Peer> {
    let bin = require("qemu-system-x86_64")?;
    let dir = temp_dir(&format!("qsys{}", extra.len()));
    let sock = dir.0.join("qmp.sock");
    let mut args: Vec<String> = ["-nodefaults", "-display", "none", "-qmp"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(format!("unix:{},server=on,wait=off", sock.display()));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Some(spawn(&bin, &args, dir, sock))
}

/// Reads until `buf` ends with a complete line containing `marker`, or panics after 10 s.
fn read_until(s: &mut UnixStream, buf: &mut Vec<u8>, marker: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(at) = find_bytes(buf, marker) {
            if buf[at..].windows(2).any(|w| w == b"\r\n") {
                return;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {:?}; got {:?}",
            String::from_utf8_lossy(marker),
            String::from_utf8_lossy(buf)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => panic!("EOF; got {:?}", String::from_utf8_lossy(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs one case against real QEMU: greeting, optional negotiation, the input, then a
/// sentinel command; returns what came after the negotiation.
fn run_qemu(peer: &Peer, negotiate: bool, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut s = UnixStream::connect(&peer.sock).unwrap();
    let mut greeting = Vec::new();
    read_until(&mut s, &mut greeting, b"\"QMP\"");
    if negotiate {
        s.write_all(NEGOTIATE).unwrap();
        let mut buf = Vec::new();
        read_until(&mut s, &mut buf, b"\"return\"");
    }
    s.write_all(input).unwrap();
    s.write_all(SENTINEL).unwrap();
    let mut out = Vec::new();
    read_until(&mut s, &mut out, b"\"id\": \"end\"");
    (greeting, out)
}

fn package_of(greeting: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(&greeting[..greeting.len() - 2]).unwrap();
    v["QMP"]["version"]["package"].as_str().unwrap().to_owned()
}

fn run_fake(fake: FakeQemu, negotiate: bool, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut server = Server::new(fake.server_config(), fake);
    server.accept(now);
    let greeting = server.take_output();
    if negotiate {
        server.handle_input(now, NEGOTIATE);
        server.take_output();
    }
    server.handle_input(now, input);
    server.handle_input(now, SENTINEL);
    (greeting, server.take_output())
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "⏎\n")
}

/// Zeroes event timestamps.
fn zero_timestamps(b: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(b).into_owned();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"timestamp\": {") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').unwrap() + at + 1;
        out.push_str("\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Inputs whose answers are compared. `false` means: sent before negotiation.
fn cases() -> Vec<(&'static str, bool, Vec<u8>)> {
    let mut c: Vec<(&'static str, bool, Vec<u8>)> = vec![
        ("before negotiation: command", false, br#"{"execute": "query-version", "id": 1}"#.to_vec()),
        ("before negotiation: exec-oob", false, br#"{"exec-oob": "query-version", "id": 2}"#.to_vec()),
        ("before negotiation: unknown command", false, br#"{"execute": "nope", "id": 2}"#.to_vec()),
        ("negotiation twice", false, br#"{"execute": "qmp_capabilities", "id": 3}{"execute": "qmp_capabilities", "id": 4}"#.to_vec()),
        ("negotiation: bad capability", false, br#"{"execute": "qmp_capabilities", "arguments": {"enable": ["bogus"]}, "id": 5}"#.to_vec()),
        ("negotiation: enable not a list", false, br#"{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}, "id": 5}"#.to_vec()),
        ("negotiation: unknown argument", false, br#"{"execute": "qmp_capabilities", "arguments": {"foo": 1}, "id": 5}"#.to_vec()),
        ("parse errors resynchronise", true, b"{\"execute\": }\x01{\"execute\": \"query-version\", \"id\": 9}".to_vec()),
        ("not an object", true, b"[1, 2] 1 \"str\" null ".to_vec()),
        ("execute not a string", true, br#"{"execute": 1, "id": 1}"#.to_vec()),
        ("arguments not an object", true, br#"{"execute": "query-version", "arguments": [], "id": 2}"#.to_vec()),
        ("unexpected member", true, br#"{"execute": "query-version", "bogus": 1, "id": 3}"#.to_vec()),
        ("lacks execute", true, br#"{"id": 4}"#.to_vec()),
        ("execute clashes with exec-oob", true, br#"{"execute": "query-version", "exec-oob": "query-version", "id": 5}"#.to_vec()),
        ("unknown command", true, br#"{"execute": "nope", "id": 6}"#.to_vec()),
        ("command without OOB support", true, br#"{"exec-oob": "query-version", "id": 7}"#.to_vec()),
        ("ids are re-serialised", true, br#"{"execute": "query-version", "id": 1.0}{"execute": "query-version", "id": 1e2}{"execute": "query-version", "id": {"b": [1, 2], "a": 1}}{"execute": "query-version", "id": null}{"execute": "query-version", "id": [1, "x", true]}{"execute": "query-version", "id": 18446744073709551616}{"execute": "query-version", "id": -5}{"execute": "query-version", "id": 1E400}{"execute": "query-version", "id": 0.1}"#.to_vec()),
        ("non-ASCII ids come back escaped", true, "{\"execute\": \"query-version\", \"id\": \"\u{e9}\u{1F600}\\u00e9\"}".as_bytes().to_vec()),
        ("single-quoted strings", true, br#"{'execute': 'query-version', 'id': 'sq'}"#.to_vec()),
        ("keywords and recovery", true, b"nope xyz {\"a\": tru}\n".to_vec()),
        ("missing colon", true, br#"{"a" 1}"#.to_vec()),
        ("duplicate key", true, br#"{"execute": "query-version", "execute": "query-version"}"#.to_vec()),
        ("key not a string", true, br#"{1: 2}"#.to_vec()),
        ("missing separator", true, br#"[1 2]"#.to_vec()),
        ("lone surrogate", true, br#"{"execute": "query-version", "id": "\uD800"}"#.to_vec()),
        ("bad escape", true, br#"{"execute": "query-version", "id": "\q"}"#.to_vec()),
        ("invalid UTF-8 in a string", true, b"{\"execute\": \"query-version\", \"id\": \"\xc3\"}".to_vec()),
        ("stray bytes", true, b"\xff {\"execute\": \"query-version\", \"id\": 1} \xc3\xa9 }".to_vec()),
        ("stray structural characters", true, b"} ] , : ".to_vec()),
        ("unterminated string", true, b"{\"execute\": \"query-vers".to_vec()),
        ("bad numbers", true, b"[01] [-] [1.] [1e] [-0, 1.5e3, 1E+2] ".to_vec()),
        ("bracket quirk", true, b"[ } ]".to_vec()),
    ];
    let mut deep = b"[".repeat(1025);
    deep.extend(b"]".repeat(1025));
    c.push(("nesting 1025", true, deep));
    let mut ok = b"{\"execute\": \"query-version\", \"id\": ".to_vec();
    ok.extend(b"[".repeat(1023));
    ok.extend(b"]".repeat(1023));
    ok.push(b'}');
    c.push(("nesting 1024", true, ok));
    c
}

fn compare(peer: &Peer, label: &str, fake: impl Fn() -> FakeQemu) {
    let (greeting, _) = run_qemu(peer, true, b"");
    let package = package_of(&greeting);
    let mut failures = Vec::new();
    for (name, negotiate, input) in cases() {
        let (_, real) = run_qemu(peer, negotiate, &input);
        let (_, ours) = run_fake(fake().version(10, 0, 2, &package), negotiate, &input);
        if real != ours {
            failures.push(format!(
                "--- {label}: {name}\nQEMU:\n{}\nfake:\n{}",
                show(&real),
                show(&ours)
            ));
        }
    }
    // The greeting too.
    let (fake_greeting, _) = run_fake(fake().version(10, 0, 2, &package), true, b"");
    if fake_greeting != greeting {
        failures.push(format!(
            "--- {label}: greeting\nQEMU:\n{}\nfake:\n{}",
            show(&greeting),
            show(&fake_greeting)
        ));
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fake_answers_like_qemu_storage_daemon() {
    let Some(peer) = storage_daemon() else { return };
    compare(&peer, "qemu-storage-daemon", FakeQemu::new);
}

#[test]
fn fake_answers_like_qemu_system() {
    let Some(peer) = system(&["-machine", "none"]) else {
        return;
    };
    compare(&peer, "qemu-system-x86_64", FakeQemu::new);
}

/// A VM started with `-S`: status, cont/stop with their events, reset, fd errors. (OOB
/// overtaking is left out: on real QEMU it depends on timing.)
#[test]
fn fake_runs_a_vm_like_qemu_system() {
    let Some(peer) = system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    let (greeting, _) = run_qemu(&peer, true, b"");
    let package = package_of(&greeting);
    let script: &[u8] = br#"{"execute": "query-status", "id": 1}{"execute": "cont", "id": 2}{"execute": "query-status", "id": 3}{"execute": "cont", "id": 4}{"execute": "stop", "id": 5}{"execute": "query-status", "id": 6}{"execute": "system_reset", "id": 7}{"execute": "query-yank", "id": 8}{"execute": "getfd", "arguments": {"fdname": "x"}, "id": 10}{"execute": "closefd", "arguments": {"fdname": "x"}, "id": 11}{"execute": "blockdev-del", "arguments": {"node-name": "nope"}, "id": 12}"#;
    let (_, real) = run_qemu(&peer, true, script);
    let (_, ours) = run_fake(
        FakeQemu::new().prelaunch().version(10, 0, 2, &package),
        true,
        script,
    );
    let (real, ours) = (zero_timestamps(&real), zero_timestamps(&ours));
    assert_eq!(show(&real), show(&ours));
}
