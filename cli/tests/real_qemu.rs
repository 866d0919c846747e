//! `qmp` against real QEMU: qemu-storage-daemon, qemu-system-x86_64 (TCG) and qemu-ga.
//! The shell is typed into a terminal (tmux); `exec`, `events` and `fake` run as plain
//! processes. Each test skips, printing why, when its QEMU binary (or tmux) is missing,
//! unless `QMP_REQUIRE_QEMU=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qmp_blocking::{Builder, Connection, IgnoredAny};
use serde_json::{json, Value};
use support::{path_str, qmp, qmp_command, Peer, Term, WAIT};

/// Connects once the peer is ready, then leaves, so that the tool is the next client.
fn ready(peer: &mut Peer) {
    peer.connect().close();
}

fn connect_to(path: &Path) -> Connection {
    let deadline = Instant::now() + WAIT;
    loop {
        match Builder::new()
            .connect_timeout(Duration::from_secs(10))
            .connect_unix(path)
        {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {path:?}: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// qemu-system-x86_64 with two monitors: `qmp.sock` for the tool, `m2.sock` for the test,
/// and a null-co block node `drive0`.
fn system_two_monitors(machine: &[&str]) -> Option<(Peer, std::path::PathBuf)> {
    let dir = support::tempdir();
    let sock = dir.path().join("qmp.sock");
    let m2 = dir.path().join("m2.sock");
    let m2_arg = format!("unix:{},server=on,wait=off", m2.display());
    let mut args = machine.to_vec();
    args.extend(["-blockdev", "null-co,node-name=drive0", "-qmp", &m2_arg]);
    let qmp = format!("unix:{},server=on,wait=off", sock.display());
    let mut peer = Peer::system_with(&args, &qmp, dir, sock)?;
    ready(&mut peer);
    Some((peer, m2))
}

fn shell_on(sock: &Path, extra: &[&str]) -> Option<(Term, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let mut args = vec!["shell", "--history", path_str(&history)];
    args.extend_from_slice(extra);
    args.push(path_str(sock));
    let term = Term::start(&qmp_command(&args))?;
    term.wait_until("the prompt", |s| {
        s.contains("(QEMU") || s.contains("(HMP") || s.contains("(QGA) ")
    });
    Some((term, dir))
}

/// An event caused by another client shows in the idle shell at once; argument names and
/// enum values complete from the live schema; a transaction runs; HMP works; the log file
/// leaves QEMU's socket alone.
#[test]
fn shell_against_qemu_system() {
    let Some((mut peer, m2)) = system_two_monitors(&["-M", "pc", "-accel", "tcg"]) else {
        return;
    };
    let log = peer.dir.path().join("traffic.log");
    let sock = peer.sock.clone();
    let Some((term, _dir)) = shell_on(&sock, &["-l", path_str(&log)]) else {
        return;
    };
    assert!(term
        .screen()
        .contains("Connected to QEMU 10.0.2 (out-of-band enabled)."));

    // An event while idle.
    let mut other = connect_to(&m2);
    other.execute::<IgnoredAny>("stop", &()).unwrap();
    let screen = term.wait_for("] STOP");
    assert!(screen.lines().last().is_some());
    // The status change shows too; the prompt, drawn before it, is redrawn as it was.
    term.wait_for("VM status: running -> paused");
    term.wait_prompt("(QEMU running)");
    other.execute::<IgnoredAny>("cont", &()).unwrap();
    term.wait_for("] RESUME");
    term.wait_for("VM status: paused -> running");

    // Completion from query-qmp-schema.
    term.type_text("blockdev-add dri");
    term.keys(&["Tab"]);
    term.wait_prompt("(QEMU running) blockdev-add driver=");
    term.type_text("vvf");
    term.keys(&["Tab"]);
    term.wait_prompt("(QEMU running) blockdev-add driver=vvfat");
    // Knowing driver=vvfat, only vvfat's members are offered.
    term.type_text("f");
    term.keys(&["Tab", "Tab"]);
    let screen = term.wait_for("floppy");
    let listed = screen.lines().find(|l| l.contains("floppy")).unwrap();
    assert!(listed.contains("fat-type"), "{listed}");
    assert!(
        !listed.contains("filename") && !listed.contains("file "),
        "{listed}"
    );
    term.keys(&["C-u"]);
    term.type_text("query-statu");
    term.keys(&["Tab"]);
    term.wait_prompt("(QEMU running) query-status");
    term.keys(&["Enter"]);
    term.wait_for(r#"{"return": {"status": "running", "running": true}}"#);

    // A transaction, then the same one again, which QEMU refuses.
    for _ in 0..2 {
        term.line("transaction(");
        term.line("block-dirty-bitmap-add node=drive0 name=bitmap0");
        term.line(")");
    }
    term.wait_for(r#"{"return": {}}"#);
    term.wait_for(r#""desc": "Bitmap already exists: bitmap0""#);
    let bitmaps: Value = other.execute("query-named-block-nodes", &()).unwrap();
    assert_eq!(
        bitmaps[0]["dirty-bitmaps"][0]["name"], "bitmap0",
        "{bitmaps}"
    );

    // HMP.
    term.line("/hmp");
    // Typed only once the shell took the switch: keys typed ahead of it were seen lost on a
    // loaded machine.
    term.wait_for("HMP mode:");
    term.line("info status");
    term.wait_for("VM status: running");
    term.line("/qmp");
    term.wait_for("QMP mode");

    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
    // The log has both directions; the socket is still there, and QEMU still serves it.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(r#""direction": "sent""#) && text.contains(r#""event": "STOP""#));
    assert!(sock.exists());
    let mut again = connect_to(&sock);
    let status: Value = again.execute("query-status", &()).unwrap();
    assert_eq!(status["status"], "running");
    peer.quit(&mut again);
}

/// QEMU killed and started again on the same socket: the shell says so, reconnects, and
/// the next command runs on the new QEMU.
fn reconnects(mut peer: Peer) {
    ready(&mut peer);
    let sock = peer.sock.clone();
    let Some((term, _dir)) = shell_on(&sock, &[]) else {
        return;
    };
    term.line("query-version");
    term.wait_for(r#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}"#);
    peer.restart();
    term.wait_for("*** disconnected: the server closed the connection");
    term.wait_for("*** connected to QEMU 10.0.2 again");
    term.line("query-version");
    term.wait_count(
        r#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}"#,
        2,
    );
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
}

#[test]
fn shell_reconnects_when_the_storage_daemon_restarts() {
    if let Some(peer) = Peer::storage_daemon() {
        reconnects(peer);
    }
}

#[test]
fn shell_reconnects_when_qemu_system_restarts() {
    if let Some(peer) = Peer::system(&["-machine", "none"]) {
        reconnects(peer);
    }
}

/// History is kept across runs against real QEMU too, HMP lines included.
#[test]
fn history_across_runs_on_qemu_system() {
    let Some(mut peer) = Peer::system(&["-machine", "none"]) else {
        return;
    };
    ready(&mut peer);
    let sock = peer.sock.clone();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let args = ["shell", "--history", path_str(&history), path_str(&sock)];
    let Some(term) = Term::start(&qmp_command(&args)) else {
        return;
    };
    term.wait_for("(QEMU running) ");
    term.line("query-name");
    term.wait_for(r#"{"return": {}}"#);
    term.line("human-monitor-command command-line=\"info version\"");
    term.wait_for(r#"{"return": "10.0.2"#);
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
    drop(term);
    let term = Term::start(&qmp_command(&args)).unwrap();
    term.wait_for("(QEMU running) ");
    term.keys(&["Up"]);
    term.wait_prompt("(QEMU running) human-monitor-command command-line=\"info version\"");
    term.keys(&["Up"]);
    term.wait_prompt("(QEMU running) query-name");
    term.keys(&["Enter"]);
    term.wait_for(r#"{"return": {}}"#);
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
}

#[test]
fn shell_and_exec_on_a_guest_agent() {
    let Some(mut agent) = Peer::guest_agent() else {
        return;
    };
    let sock = agent.sock.clone();
    // Ready once it answers.
    agent
        .connect_with(&Builder::new().guest_agent().connect_timeout(WAIT))
        .close();

    let out = qmp(&["exec", "--agent", path_str(&sock), "guest-info"]);
    assert!(out.status.success(), "{out:?}");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["version"], "10.0.2");

    let Some((term, _dir)) = shell_on(&sock, &["--agent"]) else {
        return;
    };
    term.wait_for("Connected to the guest agent.");
    term.line("guest-ping");
    term.wait_for(r#"{"return": {}}"#);
    term.type_text("guest-get-os");
    term.keys(&["Tab"]);
    term.wait_prompt("(QGA) guest-get-osinfo");
    term.keys(&["Enter"]);
    term.wait_for(r#""kernel-release""#);
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
}

/// `qmp exec`: the result on stdout, QMP errors on stderr with status 1, bad command lines
/// with 2, unreachable sockets with 3.
#[test]
fn exec_against_storage_daemon() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    ready(&mut peer);
    let sock = path_str(&peer.sock).to_owned();

    let out = qmp(&["exec", &sock, "query-version"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["qemu"], json!({"micro": 2, "minor": 0, "major": 10}));

    let out = qmp(&[
        "exec",
        &sock,
        "blockdev-add",
        "driver=null-co",
        "node-name=n0",
        "size=1048576",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{}\n");
    let out = qmp(&[
        "exec",
        "-p",
        &sock,
        r#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("[\n    {\n"), "{text}");
    let nodes: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(nodes[0]["node-name"], "n0");
    assert_eq!(nodes[0]["image"]["virtual-size"], 1_048_576);

    let out = qmp(&["exec", &sock, "blockdev-del", "node-name=nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "GenericError: Failed to find node with node-name='nope'\n"
    );
    let out = qmp(&["exec", &sock, "query-version", "oops"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Expected a key=value pair, got 'oops'"));
    let missing = peer.dir.path().join("nothing.sock");
    let out = qmp(&["exec", path_str(&missing), "query-version"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );

    // A QEMU that stops answering: the timeout, status 3.
    peer.signal("-STOP");
    let out = qmp(&["exec", "--timeout", "0.3", &sock, "query-version"]);
    peer.signal("-CONT");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out") || err.contains("no greeting"),
        "{err}"
    );

    let out = qmp(&["exec", &sock, "quit"]);
    assert!(out.status.success(), "{out:?}");
    assert!(peer.wait_exit(WAIT).success());
}

#[test]
fn exec_against_qemu_system() {
    let Some(mut peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    ready(&mut peer);
    let sock = path_str(&peer.sock).to_owned();
    let out = qmp(&["exec", &sock, "query-status"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"status\": \"prelaunch\", \"running\": false}\n"
    );
    let out = qmp(&["exec", &sock, "cont"]);
    assert!(out.status.success(), "{out:?}");
    let out = qmp(&["exec", &sock, "query-status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(r#""running": true"#),
        "{out:?}"
    );
    // Out of band, raw JSON.
    let out = qmp(&["exec", &sock, r#"{"exec-oob": "query-yank"}"#]);
    assert!(out.status.success(), "{out:?}");
    let yank: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(yank.is_array(), "{yank}");
    let out = qmp(&["exec", &sock, "quit"]);
    assert!(out.status.success(), "{out:?}");
    assert!(peer.wait_exit(WAIT).success());
}

/// Reads JSON lines from a child's stdout in a thread, forwarding them.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<Value> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(serde_json::from_str(&line).expect("a JSON line"));
        }
    });
    rx
}

fn next_line(rx: &std::sync::mpsc::Receiver<Value>) -> Value {
    rx.recv_timeout(WAIT).expect("an event line")
}

fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "qmp did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `qmp events` on qemu-storage-daemon: a backup job's events, then EOF when it quits.
#[test]
fn events_from_storage_daemon() {
    let Some(mut peer) = Peer::storage_daemon_with(|dir| {
        let m2 = dir.join("m2.sock");
        vec![
            "--chardev".into(),
            format!("socket,id=m1,path={},server=on,wait=off", m2.display()),
            "--monitor".into(),
            "chardev=m1".into(),
        ]
    }) else {
        return;
    };
    ready(&mut peer);
    let mut child = Command::new(support::qmp_bin())
        .args(["events", path_str(&peer.sock), "JOB_STATUS_CHANGE"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut other = connect_to(&peer.dir.path().join("m2.sock"));
    // The tool is connected once the first monitor refuses a second client's greeting.
    std::thread::sleep(Duration::from_millis(300));
    for node in ["src", "dst"] {
        other
            .execute::<IgnoredAny>(
                "blockdev-add",
                &json!({"driver": "null-co", "node-name": node}),
            )
            .unwrap();
    }
    other
        .execute::<IgnoredAny>(
            "blockdev-backup",
            &json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full"}),
        )
        .unwrap();
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("null") {
        let e = next_line(&rx);
        assert_eq!(e["event"], "JOB_STATUS_CHANGE", "{e}");
        assert!(e["timestamp"]["seconds"].as_i64().unwrap() > 0, "{e}");
        statuses.push(e["data"]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses.first().map(String::as_str), Some("created"));
    assert!(statuses.contains(&"concluded".to_owned()), "{statuses:?}");
    peer.quit(&mut other);
    assert!(wait_child(&mut child).success());
}

/// `qmp events NAMES` on qemu-system-x86_64: only the named events, until QEMU quits.
#[test]
fn events_from_qemu_system() {
    let Some((mut peer, m2)) = system_two_monitors(&["-M", "pc", "-accel", "tcg"]) else {
        return;
    };
    let mut child = Command::new(support::qmp_bin())
        .args(["events", path_str(&peer.sock), "STOP", "RESUME"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut other = connect_to(&m2);
    std::thread::sleep(Duration::from_millis(300));
    other.execute::<IgnoredAny>("stop", &()).unwrap();
    other.execute::<IgnoredAny>("system_reset", &()).unwrap();
    other.execute::<IgnoredAny>("cont", &()).unwrap();
    assert_eq!(next_line(&rx)["event"], "STOP");
    assert_eq!(next_line(&rx)["event"], "RESUME");
    // SHUTDOWN and RESET are not asked for.
    peer.quit(&mut other);
    assert!(wait_child(&mut child).success());
    assert!(rx.try_recv().is_err());
}

/// `qmp wrap`: QEMU started on a private socket, the shell on it; leaving the shell makes
/// QEMU quit and removes the directory.
#[test]
fn wrap_qemu_system() {
    let Some(qemu) = support::find_qemu("qemu-system-x86_64") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    let cmd = format!(
        "TMPDIR={} {}",
        support::quote(path_str(tmp.path())),
        qmp_command(&[
            "wrap",
            "--history",
            path_str(&history),
            "--",
            path_str(&qemu),
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
        ])
    );
    let Some(term) = Term::start(&cmd) else {
        return;
    };
    term.wait_for("(QEMU running) ");
    // The private directory: owner-only, holding nothing once QEMU connected.
    let dirs: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("qmp-wrap-")
        })
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let mode = std::fs::metadata(&dirs[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    term.line("query-status");
    term.wait_for(r#"{"return": {"status": "running", "running": true}}"#);
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
    assert!(!dirs[0].exists(), "the private directory is removed");
}

/// `qmp wrap` where QEMU fails to start: its status and a clear message.
#[test]
fn wrap_reports_a_qemu_that_exits() {
    let Some(qemu) = support::find_qemu("qemu-system-x86_64") else {
        return;
    };
    let out = qmp(&["wrap", "--", path_str(&qemu), "-no-such-option"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exited (exit status: 1) before connecting"),
        "{err}"
    );
}

/// `qmp fake`: a QMP server any client can use; state carries over between clients; quit
/// ends it and removes its socket.
#[test]
fn fake_serves_clients_until_quit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let mut child = Command::new(support::qmp_bin())
        .args(["fake", "--listen", path_str(&sock)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = connect_to(&sock);
    assert_eq!(c.greeting().version.to_string(), "10.0.2");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    c.execute::<IgnoredAny>("stop", &()).unwrap();
    c.close();
    let out = qmp(&["exec", path_str(&sock), "query-status"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"status\": \"paused\", \"running\": false}\n"
    );
    let out = qmp(&["exec", path_str(&sock), "quit"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_child(&mut child).success());
    assert!(!sock.exists());
    // An existing file is never replaced.
    std::fs::write(&sock, b"mine").unwrap();
    let out = qmp(&["fake", "--listen", path_str(&sock)]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(std::fs::read(&sock).unwrap(), b"mine");
}

/// The shell's prompt shows the VM status of qemu-system-x86_64 -S: `prelaunch`, then
/// `running` after `cont` and `paused` after `stop`, each change also printed.
#[test]
fn shell_prompt_shows_the_vm_status_of_qemu_system() {
    let Some(mut peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    ready(&mut peer);
    let sock = peer.sock.clone();
    let Some((term, _dir)) = shell_on(&sock, &["--no-reconnect"]) else {
        return;
    };
    term.wait_for("(QEMU prelaunch) ");
    term.line("cont");
    term.wait_for("VM status: prelaunch -> running");
    term.wait_prompt("(QEMU running)");
    term.line("stop");
    term.wait_for("VM status: running -> paused");
    term.wait_prompt("(QEMU paused)");
    // HMP mode shows it too.
    term.line("/hmp");
    term.wait_prompt("(HMP paused)");
    term.line("/qmp");
    term.line("quit");
    assert_eq!(term.wait_exit(), 0);
    assert!(peer.wait_exit(WAIT).success());
}

/// qemu-storage-daemon has no VM status: the shell's prompt stays `(QEMU) `.
#[test]
fn shell_prompt_without_a_vm_status_on_the_storage_daemon() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    ready(&mut peer);
    let sock = peer.sock.clone();
    let Some((term, _dir)) = shell_on(&sock, &["--no-reconnect"]) else {
        return;
    };
    term.line("query-version");
    term.wait_for(r#"{"return": {"qemu": {"micro": 2"#);
    term.wait_prompt("(QEMU)");
    term.line("quit");
    assert_eq!(term.wait_exit(), 0);
}

/// `qmp status` on qemu-storage-daemon with a backup job kept after it ended
/// (`auto-dismiss: false`): no VM status, and the job's line with its final progress.
#[test]
fn status_of_the_storage_daemon_with_a_job() {
    let Some(mut peer) = Peer::storage_daemon() else {
        return;
    };
    let mut c = peer.connect();
    for node in ["src", "dst"] {
        c.execute::<IgnoredAny>(
            "blockdev-add",
            &json!({"driver": "null-co", "node-name": node, "size": 1_048_576}),
        )
        .unwrap();
    }
    c.execute::<IgnoredAny>(
        "blockdev-backup",
        &json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full",
                "auto-dismiss": false}),
    )
    .unwrap();
    // Wait for the job to conclude.
    let deadline = Instant::now() + WAIT;
    loop {
        let jobs: Value = c.execute("query-jobs", &()).unwrap();
        if jobs[0]["status"] == "concluded" {
            break;
        }
        assert!(Instant::now() < deadline, "{jobs}");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.close();
    let sock = path_str(&peer.sock).to_owned();
    let out = qmp(&["status", &sock]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "VM status: none (the peer has no query-status)\n\
         job j0 (backup): concluded 1048576/1048576\n"
    );
    // Unreachable: status 3.
    let missing = peer.dir.path().join("nothing.sock");
    let out = qmp(&["status", path_str(&missing)]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let mut c = peer.connect();
    peer.quit(&mut c);
}

/// Reads text lines from a child's stdout in a thread, forwarding them.
fn text_lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_text_line(rx: &std::sync::mpsc::Receiver<String>) -> String {
    rx.recv_timeout(WAIT)
        .expect("a line from qmp status --watch")
}

/// `qmp status --watch` on qemu-system-x86_64 -S: the snapshot, then a line per change
/// another client makes (the VM status, a backup job), until QEMU quits (status 0).
#[test]
fn status_watch_on_qemu_system() {
    let Some((mut peer, m2)) = system_two_monitors(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    let mut child = Command::new(support::qmp_bin())
        .args(["status", "--watch", path_str(&peer.sock)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = text_lines_of(&mut child);
    assert_eq!(next_text_line(&rx), "VM status: prelaunch");
    let mut other = connect_to(&m2);
    other.execute::<IgnoredAny>("cont", &()).unwrap();
    assert_eq!(next_text_line(&rx), "VM status: prelaunch -> running");
    other.execute::<IgnoredAny>("stop", &()).unwrap();
    assert_eq!(next_text_line(&rx), "VM status: running -> paused");
    for node in ["src", "dst"] {
        other
            .execute::<IgnoredAny>(
                "blockdev-add",
                &json!({"driver": "null-co", "node-name": node, "size": 1_048_576}),
            )
            .unwrap();
    }
    other
        .execute::<IgnoredAny>(
            "blockdev-backup",
            &json!({"job-id": "j0", "device": "src", "target": "dst", "sync": "full"}),
        )
        .unwrap();
    // The job appears, changes status, and goes away (dismissed at once).
    let mut lines = Vec::new();
    while !lines
        .last()
        .is_some_and(|l: &String| l.ends_with("-> gone"))
    {
        lines.push(next_text_line(&rx));
    }
    assert!(lines[0].starts_with("job j0"), "{lines:?}");
    assert!(lines[0].contains(": new, "), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("job j0 (backup): ") && l.contains("-> concluded")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "job j0 (backup): concluded -> gone",
        "{lines:?}"
    );
    peer.quit(&mut other);
    assert!(wait_child(&mut child).success());
}

/// `qmp qom` on qemu-system-x86_64 -M pc -S: the root listed as QEMU's script lists it, a
/// string property read raw and a JSON one as QEMU sent it, a property set and read back,
/// QEMU's errors with exit status 1, and trees with values and refused reads.
#[test]
fn qom_on_qemu_system() {
    let Some(mut peer) = Peer::system(&["-M", "pc", "-accel", "tcg", "-S"]) else {
        return;
    };
    ready(&mut peer);
    let sock = path_str(&peer.sock).to_owned();
    let run = |args: &[&str]| {
        let mut all = vec!["qom", args[0], sock.as_str()];
        all.extend_from_slice(&args[1..]);
        let out = qmp(&all);
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["list", "/"]);
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["backend/", "chardevs/", "machine/", "objects/", "type"]
    );
    let (code, out, _) = run(&["list", "/machine/unattached/device[0]"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "crash-information"), "{out}");

    let (code, out, err) = run(&["get", "/machine.type"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "pc-i440fx-10.0-machine\n"),
        "{err}"
    );
    let (code, out, _) = run(&["get", "/machine.memory"]);
    assert_eq!((code, out.as_str()), (0, "{\"size\": 134217728}\n"));
    let (code, out, err) = run(&["get", "/machine/unattached/device[0].crash-information"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "GenericError: No crash occurred\n");

    let (code, out, err) = run(&["set", "/machine.dump-guest-core", "false"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let (_, out, _) = run(&["get", "/machine.dump-guest-core"]);
    assert_eq!(out, "false\n");
    let (code, _, err) = run(&["set", "/machine.type", "isapc"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "GenericError: Property 'pc-i440fx-10.0-machine.type' is not writable\n"
    );

    let (code, out, err) = run(&["tree", "/machine/peripheral"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "/machine/peripheral\n  type: container (string)\n\n");
    let (code, out, err) = run(&["tree", "/machine/unattached/device[0]"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("/machine/unattached/device[0]\n"), "{out}");
    assert!(
        out.contains(
            "\n  crash-information: <EXCEPTION: No crash occurred> (GuestPanicInformation)\n"
        ),
        "{out}"
    );
    // The whole tree, within the default limits (to a file: it is more than a pipe holds).
    let file = peer.dir.path().join("tree.txt");
    let mut child = Command::new(support::qmp_bin())
        .args(["qom", "tree", &sock])
        .stdout(std::fs::File::create(&file).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_child(&mut child).success());
    let out = std::fs::read_to_string(&file).unwrap();
    assert!(
        out.starts_with("/\n  type: container (string)\n\n"),
        "{out}"
    );
    assert!(out.contains("\n/machine\n  type: pc-i440fx-10.0-machine (string)\n"));
}
