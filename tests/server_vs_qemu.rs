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

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::qemu::{connect, require, temp_dir, TempDir};
use qmp_proto::server::{FakeQemu, Server};

const SENTINEL: &[u8] = b"\n{\"execute\": \"query-version\", \"id\": \"end\"}";
const NEGOTIATE: &[u8] = br#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#;

/// A QEMU process with its monitor socket, killed on drop.
struct Peer {
    child: Child,
    sock: PathBuf,
    _dir: TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Reads until `buf` holds `count` complete lines containing `marker`, or panics after 10 s.
fn read_until_count(s: &mut UnixStream, buf: &mut Vec<u8>, marker: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_events_text(buf, marker) < count {
        read_more(s, buf, deadline, marker);
    }
}

/// Reads what comes next into `buf`, or nothing after a timeout; panics past `deadline`,
/// or at the end of the stream.
fn read_more(s: &mut UnixStream, buf: &mut Vec<u8>, deadline: Instant, waiting_for: &str) {
    let left = deadline.saturating_duration_since(Instant::now());
    assert!(
        !left.is_zero(),
        "timed out waiting for {waiting_for:?}; got {:?}",
        String::from_utf8_lossy(buf)
    );
    s.set_read_timeout(Some(left)).unwrap();
    let mut chunk = [0u8; 65536];
    match s.read(&mut chunk) {
        Ok(0) => panic!("EOF; got {:?}", String::from_utf8_lossy(buf)),
        Ok(n) => buf.extend_from_slice(&chunk[..n]),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut => {}
        Err(e) => panic!("{e}"),
    }
}

/// How many complete lines of `out` contain `marker`.
fn count_events_text(out: &[u8], marker: &str) -> usize {
    out.split_inclusive(|&c| c == b'\n')
        .filter(|l| l.ends_with(b"\n") && find_bytes(l, marker.as_bytes()).is_some())
        .count()
}

/// Reads until `buf` ends with a complete line containing `marker`, or panics after 10 s.
fn read_until(s: &mut UnixStream, buf: &mut Vec<u8>, marker: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(at) = find_bytes(buf, marker) {
            if buf[at..].windows(2).any(|w| w == b"\r\n") {
                return;
            }
        }
        read_more(s, buf, deadline, &String::from_utf8_lossy(marker));
    }
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs one case against real QEMU: greeting, optional negotiation, the input, then a
/// sentinel command; returns what came after the negotiation.
fn run_qemu(peer: &Peer, negotiate: bool, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut s = connect(&peer.sock);
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
        // QEMU names the bad token as a C string: its text stops at a NUL byte.
        ("NUL byte alone", true, b"\x00".to_vec()),
        ("NUL byte in keywords", true, b"a\x00b tr\x00ue ".to_vec()),
        ("NUL byte in a string", true, b"{\"execute\": \"a\x00b\"}".to_vec()),
        ("NUL byte after stray bytes", true, b"\xff\x00\xfe \xc3\x00 ".to_vec()),
        ("NUL byte in escapes", true, b"\"\\u00\x00\" \"\\uD800\x00\" ".to_vec()),
        ("NUL byte in numbers", true, b"1\x002 -\x00 [1, -\x00] ".to_vec()),
        ("escaped NUL in an id", true, br#"{"execute": "query-version", "id": "\u0000"}"#.to_vec()),
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
    let real = without_guest_events(&real);
    let (_, ours) = run_fake(
        FakeQemu::new().prelaunch().version(10, 0, 2, &package),
        true,
        script,
    );
    let (real, ours) = (zero_timestamps(&real), zero_timestamps(&ours));
    assert_eq!(show(&real), show(&ours));
}

/// Drops the events a guest caused (`"guest": true`: the firmware of a `-M pc` VM resets
/// it soon after it starts), which a fake without a guest never sends, at any time.
fn without_guest_events(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in b.split_inclusive(|&c| c == b'\n') {
        if !(find_bytes(line, b"\"event\"").is_some()
            && find_bytes(line, b"\"guest\": true").is_some())
        {
            out.extend_from_slice(line);
        }
    }
    out
}

/// One step of a run-state sequence: the command, then `query-status` and HMP
/// `info status` (`quit` alone: it ends the connection).
fn step_input(i: usize, command: &str) -> (Vec<u8>, Option<String>) {
    let cmd = format!(r#"{{"execute": "{command}", "id": "step-{i}"}}"#);
    if command == "quit" {
        return (cmd.into_bytes(), None);
    }
    let input = format!(
        r#"{cmd}{{"execute": "query-status", "id": "status-{i}"}}{{"execute": "human-monitor-command", "arguments": {{"command-line": "info status"}}, "id": "info-{i}"}}"#
    );
    (input.into_bytes(), Some(format!(r#""id": "info-{i}""#)))
}

/// Reads until EOF (after `quit`), or panics after 10 s.
fn read_to_eof(s: &mut UnixStream, buf: &mut Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no EOF; got {:?}",
            String::from_utf8_lossy(buf)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            // QEMU may reset the connection as it exits.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A new `-M pc -accel tcg -S` VM, a connection to its monitor, negotiated (OOB on), and
/// its package string (for the fake's greeting).
fn negotiated_pc() -> Option<(Peer, UnixStream, String)> {
    let peer = system(&["-M", "pc", "-accel", "tcg", "-S"])?;
    let mut s = connect(&peer.sock);
    let mut greeting = Vec::new();
    read_until(&mut s, &mut greeting, b"\"QMP\"");
    let package = package_of(&greeting);
    s.write_all(NEGOTIATE).unwrap();
    read_until(&mut s, &mut Vec::new(), b"\"return\"");
    Some((peer, s, package))
}

/// Runs a sequence of run-state commands on a new `-M pc -accel tcg -S` VM and on a fake in
/// `prelaunch`; returns both transcripts (guest events dropped, timestamps zeroed, `<EOF>`
/// where the connection ended).
fn run_state_transcripts(commands: &[&str]) -> Option<(String, String)> {
    let (_peer, mut s, package) = negotiated_pc()?;

    let fake = FakeQemu::new().prelaunch().version(10, 0, 2, &package);
    let now = Instant::now();
    let mut server = Server::new(fake.server_config(), fake);
    server.accept(now);
    server.take_output();
    server.handle_input(now, NEGOTIATE);
    server.take_output();

    let (mut real, mut ours) = (String::new(), String::new());
    for (i, command) in commands.iter().enumerate() {
        let (input, marker) = step_input(i, command);
        let header = format!("-> {command}\n");
        real.push_str(&header);
        ours.push_str(&header);

        s.write_all(&input).unwrap();
        let mut got = Vec::new();
        match &marker {
            Some(m) => read_until(&mut s, &mut got, m.as_bytes()),
            None => read_to_eof(&mut s, &mut got),
        }
        real.push_str(&show(&zero_timestamps(&without_guest_events(&got))));
        if marker.is_none() {
            real.push_str("<EOF>\n");
        }

        server.handle_input(now, &input);
        ours.push_str(&show(&zero_timestamps(&server.take_output())));
        if server.poll_event().is_some() {
            ours.push_str("<EOF>\n");
        }
    }
    Some((real, ours))
}

/// QEMU's run-state rules: `stop`, `cont`, `system_reset`, `system_powerdown` and `quit`
/// in sequences from `prelaunch`, each followed by `query-status` and HMP `info status`.
/// The replies, the events (names and data) and their order relative to the replies must
/// be QEMU's.
#[test]
fn fake_follows_qemu_run_state_rules() {
    let sequences: &[&[&str]] = &[
        &[
            "stop",
            "system_reset",
            "system_powerdown",
            "cont",
            "cont",
            "system_powerdown",
            "system_reset",
            "stop",
            "stop",
            "system_powerdown",
            "cont",
            "stop",
            "system_reset",
            "stop",
            "cont",
            "quit",
        ],
        &["quit"],
        &["cont", "stop", "quit"],
        &["system_reset", "cont", "system_reset", "quit"],
    ];
    let mut failures = Vec::new();
    for commands in sequences {
        let Some((real, ours)) = run_state_transcripts(commands) else {
            return;
        };
        if real != ours {
            failures.push(format!("QEMU:\n{real}\nfake:\n{ours}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n=====\n"));
}

/// The steps of the QOM comparison: a command and its arguments (JSON text).
const QOM_STEPS: &[(&str, &str)] = &[
    ("query-chardev", "{}"),
    ("qom-list", r#"{"path": "/"}"#),
    ("qom-list", r#"{"path": "/objects"}"#),
    (
        "qom-get",
        r#"{"path": "/objects/pc.ram", "property": "size"}"#,
    ),
    // Objects.
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m0", "size": 1048576}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s0", "data": "abc"}"#,
    ),
    ("object-add", r#"{"qom-type": "secret", "id": "s1"}"#),
    ("object-add", r#"{"qom-type": "secret", "id": "1bad"}"#),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "m1", "size": 0}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "m0", "data": "x"}"#,
    ),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s2", "data": "x", "file": "/nonexistent"}"#,
    ),
    ("object-add", r#"{"qom-type": "nope", "id": "x"}"#),
    (
        "object-add",
        r#"{"qom-type": "memory-backend-ram", "id": "big", "size": 67108864}"#,
    ),
    ("qom-list", r#"{"path": "/objects"}"#),
    ("qom-list", r#"{"path": "/objects/m0"}"#),
    ("qom-list", r#"{"path": "/objects/s0"}"#),
    ("qom-get", r#"{"path": "/objects/m0", "property": "size"}"#),
    ("qom-get", r#"{"path": "/objects/m0", "property": "type"}"#),
    ("qom-get", r#"{"path": "/objects/s0", "property": "data"}"#),
    ("qom-get", r#"{"path": "/objects/s0", "property": "nope"}"#),
    ("qom-get", r#"{"path": "/objects/m0", "property": "nope"}"#),
    ("qom-get", r#"{"path": "/objects/zz", "property": "type"}"#),
    ("qom-get", r#"{"path": "/objects", "property": "m0"}"#),
    ("qom-get", r#"{"path": "/objects", "property": "type"}"#),
    ("qom-get", r#"{"path": "/objects", "property": "zz"}"#),
    ("qom-get", r#"{"path": "/nope", "property": "type"}"#),
    ("qom-get", r#"{"path": "/nope/deeper", "property": "type"}"#),
    ("qom-get", r#"{"path": "/machine", "property": "type"}"#),
    ("qom-get", r#"{"path": "/machine/", "property": "type"}"#),
    (
        "qom-get",
        r#"{"path": "//machine//peripheral", "property": "type"}"#,
    ),
    ("qom-get", r#"{"path": "/", "property": "type"}"#),
    ("qom-get", r#"{"path": "/", "property": "machine"}"#),
    ("qom-get", r#"{"path": "/", "property": "nope"}"#),
    (
        "qom-set",
        r#"{"path": "/objects/m0", "property": "size", "value": 2}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/objects/m0", "property": "type", "value": "x"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/objects/m0", "property": "nope", "value": "x"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/nope", "property": "nope", "value": "x"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/objects", "property": "type", "value": "x"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/objects", "property": "nope", "value": "x"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/machine", "property": "type", "value": "x"}"#,
    ),
    ("object-del", r#"{"id": "nope"}"#),
    ("object-del", r#"{"id": "pc.ram"}"#),
    ("object-del", r#"{"id": "s0"}"#),
    ("object-del", r#"{"id": "s0"}"#),
    ("qom-list", r#"{"path": "/objects"}"#),
    (
        "object-add",
        r#"{"qom-type": "secret", "id": "s0", "data": "again"}"#,
    ),
    ("qom-list", r#"{"path": "/objects"}"#),
    ("qom-get", r#"{"path": "/objects/s0", "property": "data"}"#),
    // Devices.
    ("device_add", r#"{"driver": "pci-testdev", "id": "d0"}"#),
    ("device_add", r#"{"driver": "pci-testdev", "id": "d0"}"#),
    (
        "device_add",
        r#"{"driver": "pci-testdev", "id": "d0", "bogus": 1}"#,
    ),
    ("device_add", r#"{"driver": "nope", "id": "x"}"#),
    ("device_add", r#"{"driver": "pci-device", "id": "x"}"#),
    (
        "device_add",
        r#"{"driver": "memory-backend-ram", "id": "x"}"#,
    ),
    ("device_add", r#"{"driver": "pci-testdev"}"#),
    (
        "device_add",
        r#"{"driver": "pci-testdev", "id": "d1", "bogus": 1}"#,
    ),
    ("device_add", r#"{"driver": "pci-testdev", "bogus": 1}"#),
    (
        "device_add",
        r#"{"driver": "pci-testdev", "id": "d 2", "bus": "pci.0"}"#,
    ),
    (
        "device_add",
        r#"{"driver": "virtio-rng-pci", "id": "rng0"}"#,
    ),
    ("device_add", r#"{"driver": "usb-tablet", "id": "t0"}"#),
    (
        "device_add",
        r#"{"driver": "piix3-usb-uhci", "id": "usb0"}"#,
    ),
    ("device_add", r#"{"driver": "usb-tablet", "id": "t0"}"#),
    ("device_add", r#"{"driver": "usb-kbd"}"#),
    ("query-pci", "{}"),
    ("query-mice", "{}"),
    ("query-memdev", "{}"),
    ("query-iothreads", "{}"),
    ("qom-list", r#"{"path": "/machine"}"#),
    ("qom-get", r#"{"path": "/machine", "property": "smp"}"#),
    ("qom-get", r#"{"path": "/machine", "property": "boot"}"#),
    ("qom-get", r#"{"path": "/machine", "property": "nope"}"#),
    (
        "qom-set",
        r#"{"path": "/machine", "property": "i440fx", "value": "x"}"#,
    ),
    ("qom-list", r#"{"path": "/machine/peripheral"}"#),
    ("qom-list", r#"{"path": "/machine/peripheral-anon"}"#),
    ("qom-list", r#"{"path": "/machine/peripheral/d0"}"#),
    ("qom-list", r#"{"path": "/objects"}"#),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/d0", "property": "type"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/d0", "property": "realized"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/d0", "property": "hotplugged"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/d0", "property": "nope"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/t0", "property": "type"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral-anon/device[2]", "property": "type"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral", "property": "d0"}"#,
    ),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/zz", "property": "type"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/machine/peripheral/d0", "property": "realized", "value": true}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/machine/peripheral/d0", "property": "type", "value": "x"}"#,
    ),
    (
        "qom-set",
        r#"{"path": "/machine/peripheral/d0", "property": "nope", "value": 1}"#,
    ),
    ("device_del", r#"{"id": "nope"}"#),
    ("device_del", r#"{"id": "device[0]"}"#),
    ("device_del", r#"{"id": "/nope"}"#),
    ("device_del", r#"{"id": "/machine"}"#),
    ("device_del", r#"{"id": "/objects/pc.ram"}"#),
    ("device_del", r#"{"id": "d0"}"#),
    ("device_del", r#"{"id": "d0"}"#),
    ("device_del", r#"{"id": "/machine/peripheral/d0"}"#),
    (
        "device_del",
        r#"{"id": "/machine/peripheral-anon/device[0]"}"#,
    ),
    (
        "device_del",
        r#"{"id": "/machine/peripheral-anon/device[0]"}"#,
    ),
    ("device_del", r#"{"id": "t0"}"#),
    ("device_del", r#"{"id": "t0"}"#),
    (
        "device_del",
        r#"{"id": "/machine/peripheral-anon/device[2]"}"#,
    ),
    ("qom-list", r#"{"path": "/machine/peripheral"}"#),
    ("qom-list", r#"{"path": "/machine/peripheral-anon"}"#),
    (
        "qom-get",
        r#"{"path": "/machine/peripheral/t0", "property": "type"}"#,
    ),
    ("device_add", r#"{"driver": "usb-mouse", "id": "t0"}"#),
    ("qom-list", r#"{"path": "/machine/peripheral"}"#),
    ("query-mice", "{}"),
    ("device_del", r#"{"id": "/machine/peripheral/t0"}"#),
    ("qom-list", r#"{"path": "/machine/peripheral"}"#),
    ("query-mice", "{}"),
    ("query-pci", "{}"),
    ("query-memdev", "{}"),
    ("query-chardev", "{}"),
    // A reset ejects the PCI devices whose unplug is pending (a virtio proxy's backend
    // first), in slot order.
    ("device_del", r#"{"id": "rng0"}"#),
    ("system_reset", "{}"),
    ("qom-list", r#"{"path": "/machine/peripheral"}"#),
    ("qom-list", r#"{"path": "/machine/peripheral-anon"}"#),
    ("query-pci", "{}"),
    ("device_add", r#"{"driver": "pci-testdev", "id": "d0"}"#),
    ("query-pci", "{}"),
];

/// Counts the lines of `out` that are `name` events.
fn count_events(out: &[u8], name: &str) -> usize {
    let needle = format!("\"event\": \"{name}\"");
    out.split(|&c| c == b'\n')
        .filter(|l| find_bytes(l, needle.as_bytes()).is_some())
        .count()
}

/// Objects, devices and the QOM tree: `object-add`/`object-del`, `device_add`/`device_del`
/// (with DEVICE_DELETED after the reply for the USB devices, which leave at once; PCI ones
/// wait for a guest that never answers), `qom-list`/`qom-get`/`qom-set` and
/// `query-chardev`, on `-M pc -accel tcg -S` and on the fake: replies and events (with
/// their order) must be QEMU's byte for byte, timestamps aside.
#[test]
fn fake_models_objects_and_devices_like_qemu_system() {
    let Some((peer, mut s, package)) = negotiated_pc() else {
        return;
    };

    let fake = FakeQemu::new()
        .prelaunch()
        .version(10, 0, 2, &package)
        .monitor_path(peer.sock.display().to_string());
    let mut now = Instant::now();
    let mut server = Server::new(fake.server_config(), fake);
    server.accept(now);
    server.take_output();
    server.handle_input(now, NEGOTIATE);
    server.take_output();

    let (mut real, mut ours) = (String::new(), String::new());
    // Many objects, then some deleted: the order `qom-list` shows follows QEMU's hash
    // table through its growth, tombstones and shrinking.
    let mut steps: Vec<(&str, String)> = QOM_STEPS
        .iter()
        .map(|(c, a)| (*c, (*a).to_owned()))
        .collect();
    for k in 0..40 {
        steps.push((
            "object-add",
            format!(r#"{{"qom-type": "secret", "id": "k{k}", "data": "{k}"}}"#),
        ));
    }
    steps.push(("qom-list", r#"{"path": "/objects"}"#.to_owned()));
    for k in (0..40).filter(|k| k % 3 != 0) {
        steps.push(("object-del", format!(r#"{{"id": "k{k}"}}"#)));
    }
    steps.push(("qom-list", r#"{"path": "/objects"}"#.to_owned()));
    for k in 0..12 {
        steps.push((
            "device_add",
            format!(r#"{{"driver": "pci-testdev", "id": "p{k}"}}"#),
        ));
    }
    steps.push(("qom-list", r#"{"path": "/machine/peripheral"}"#.to_owned()));
    for (i, (command, args)) in steps.iter().enumerate() {
        let input = format!(r#"{{"execute": "{command}", "arguments": {args}, "id": "step-{i}"}}"#);
        let header = format!("-> {command} {args}\n");
        real.push_str(&header);
        ours.push_str(&header);

        server.handle_input(now, input.as_bytes());
        // Each step lasts long enough for a DEVICE_DELETED to come (50 ms after the reply).
        now += Duration::from_millis(100);
        server.handle_timeout(now);
        let fake_out = server.take_output();
        ours.push_str(&show(&zero_timestamps(&fake_out)));

        s.write_all(input.as_bytes()).unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, format!(r#""id": "step-{i}""#).as_bytes());
        // QEMU sends DEVICE_DELETED once the device is finalized, after the reply: wait
        // for as many as the fake sent.
        read_until_count(
            &mut s,
            &mut got,
            "\"event\": \"DEVICE_DELETED\"",
            count_events(&fake_out, "DEVICE_DELETED"),
        );
        real.push_str(&show(&zero_timestamps(&got)));
    }
    // Nothing more comes from QEMU (a late event would show here).
    std::thread::sleep(Duration::from_millis(200));
    let (_, tail) = {
        s.write_all(SENTINEL).unwrap();
        let mut out = Vec::new();
        read_until(&mut s, &mut out, b"\"id\": \"end\"");
        ((), out)
    };
    real.push_str(&show(&zero_timestamps(&tail)));
    server.handle_input(now, SENTINEL);
    ours.push_str(&show(&zero_timestamps(&server.take_output())));
    let unmodelled = ours.matches("does not model").count();
    assert_eq!(unmodelled, 0, "the fake left out a step:\n{ours}");
    if real != ours {
        let diff: Vec<String> = real
            .lines()
            .zip(ours.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("QEMU: {a}\nfake: {b}"))
            .collect();
        panic!("{} lines differ:\n{}", diff.len(), diff.join("\n"));
    }
}

/// A PCI device's unplug request waits for a guest that never answers: every later
/// `device_del` is refused, paused or running, even after more than five seconds of
/// running (QEMU 10.0's ACPI hotplug sets no expiry): on a VM started with `-S` and on a
/// fake in `prelaunch`, with the same pause (real time for QEMU, the fake's clock for the
/// fake).
#[test]
fn fake_keeps_pci_unplug_requests_pending_like_qemu_system() {
    let Some((_peer, mut s, package)) = negotiated_pc() else {
        return;
    };

    let fake = FakeQemu::new().prelaunch().version(10, 0, 2, &package);
    let mut now = Instant::now();
    let mut server = Server::new(fake.server_config(), fake);
    server.accept(now);
    server.take_output();
    server.handle_input(now, NEGOTIATE);
    server.take_output();

    let pause = Duration::from_millis(5500);
    let del = r#"{"execute": "device_del", "arguments": {"id": "d0"}, "id": "del"}"#;
    // (input, pause before it)
    let steps: Vec<(&str, Duration)> = vec![
        (
            r#"{"execute": "device_add", "arguments": {"driver": "pci-testdev", "id": "d0"}, "id": "add"}"#,
            Duration::ZERO,
        ),
        (del, Duration::ZERO),
        (del, Duration::ZERO),
        (r#"{"execute": "cont", "id": "cont"}"#, Duration::ZERO),
        (del, Duration::ZERO),
        (del, pause),
    ];
    let (mut real, mut ours) = (String::new(), String::new());
    for (input, wait) in steps {
        std::thread::sleep(wait);
        now += wait;
        s.write_all(input.as_bytes()).unwrap();
        let marker = &input[input.rfind("\"id\"").unwrap()..input.len() - 1];
        let mut got = Vec::new();
        read_until(&mut s, &mut got, marker.as_bytes());
        real.push_str(&show(&zero_timestamps(&without_guest_events(&got))));
        server.handle_input(now, input.as_bytes());
        ours.push_str(&show(&zero_timestamps(&server.take_output())));
    }
    assert_eq!(real, ours);
}
