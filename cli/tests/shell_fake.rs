//! `qmp shell --fake` typed into a real terminal (tmux): a command and its reply,
//! completion, events shown while the user is idle or typing, history across runs,
//! transaction mode, HMP mode, the traffic log, and quitting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{path_str, qmp_command, Term};

fn fake_shell(extra: &[&str]) -> Option<(Term, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let mut args = vec!["shell", "--fake", "--history", path_str(&history)];
    args.extend_from_slice(extra);
    let term = Term::start(&qmp_command(&args))?;
    term.wait_until("the prompt", |s| {
        s.contains("(QEMU running) ") || s.contains("(HMP running) ")
    });
    Some((term, dir))
}

#[test]
fn a_command_and_its_reply() {
    let Some((term, _dir)) = fake_shell(&[]) else {
        return;
    };
    let screen = term.screen();
    assert!(
        screen.contains("Connected to QEMU 10.0.2 (out-of-band enabled)."),
        "{screen}"
    );
    term.line("query-status");
    term.wait_for(r#"{"return": {"status": "running", "running": true}}"#);
    term.line("blockdev-del node-name=nope");
    term.wait_for(
        r#"{"error": {"class": "GenericError", "desc": "Failed to find node with node-name='nope'"}}"#,
    );
    // A syntax error is reported, and nothing is sent.
    term.line("stop bogus");
    term.wait_for("error: Expected a key=value pair, got 'bogus'");
    // Raw JSON.
    term.line(r#"{"execute": "query-name"}"#);
    term.wait_for(r#"{"return": {}}"#);
    // quit: the fake closes the connection, and the shell ends.
    term.line("quit");
    assert_eq!(term.wait_exit(), 0);
}

#[test]
fn pretty_output() {
    let Some((term, _dir)) = fake_shell(&["-p"]) else {
        return;
    };
    term.line("query-status");
    term.wait_for("{\n    \"return\": {\n        \"status\": \"running\",\n        \"running\": true\n    }\n}");
}

#[test]
fn tab_completes_command_names() {
    let Some((term, _dir)) = fake_shell(&[]) else {
        return;
    };
    // (`query-st` would be ambiguous: QEMU also has `query-stats`.)
    term.type_text("query-statu");
    term.keys(&["Tab"]);
    term.wait_until("the completed command", |s| {
        s.lines()
            .any(|l| l.trim_end() == "(QEMU running) query-status")
    });
    term.keys(&["Enter"]);
    term.wait_for(r#""status": "running""#);
    // Several candidates: listed on a second Tab.
    term.type_text("system_");
    term.keys(&["Tab", "Tab"]);
    let screen = term.wait_for("system_powerdown");
    assert!(screen.contains("system_reset"), "{screen}");
}

/// A job's events come after its reply: they show at once, above the prompt, keeping the
/// half-typed line, without Enter being pressed.
#[test]
fn events_show_while_idle_and_while_typing() {
    let Some((term, _dir)) = fake_shell(&[]) else {
        return;
    };
    term.line("blockdev-add driver=null-co node-name=src");
    term.wait_count(r#"{"return": {}}"#, 1);
    term.line("blockdev-add driver=null-co node-name=dst");
    term.wait_count(r#"{"return": {}}"#, 2);
    term.line("blockdev-backup job-id=j0 device=src target=dst sync=full");
    term.wait_count(r#"{"return": {}}"#, 3);
    term.type_text("query-");
    let screen = term.wait_for(r#""status": "concluded""#);
    assert!(screen.contains("JOB_STATUS_CHANGE"), "{screen}");
    assert!(screen.contains("BLOCK_JOB_COMPLETED"), "{screen}");
    // Timestamped: [YYYY-MM-DD HH:MM:SS.uuuuuu] NAME.
    let line = screen
        .lines()
        .find(|l| l.contains("BLOCK_JOB_COMPLETED"))
        .unwrap();
    assert!(
        line.starts_with("[20") && line.as_bytes()[27] == b']',
        "{line}"
    );
    // The line being typed is still there, below the events.
    term.wait_prompt("(QEMU running) query-");
    term.type_text("jobs");
    term.keys(&["Enter"]);
    term.wait_for(r#""id": "j0""#);
}

#[test]
fn history_is_kept_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let args = ["shell", "--fake", "--history", path_str(&history)];
    let Some(term) = Term::start(&qmp_command(&args)) else {
        return;
    };
    term.wait_for("(QEMU running) ");
    term.line("query-name");
    term.wait_for(r#"{"return": {}}"#);
    term.line("query-version");
    term.wait_for(r#""package": "#);
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
    drop(term);
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(
        saved.contains("query-name") && saved.contains("query-version"),
        "{saved}"
    );

    let term = Term::start(&qmp_command(&args)).unwrap();
    term.wait_for("(QEMU running) ");
    term.keys(&["Up", "Up"]);
    term.wait_prompt("(QEMU running) query-name");
    term.keys(&["Enter"]);
    term.wait_for(r#"{"return": {}}"#);
}

/// Transaction mode collects actions under the TRANS> prompt and sends one `transaction`;
/// the verbose echo shows exactly what went out. (The fake checks the arguments of
/// `transaction` but does not model it: its error proves the request reached it.)
#[test]
fn transaction_mode() {
    let Some((term, _dir)) = fake_shell(&["-v"]) else {
        return;
    };
    term.line("transaction(");
    term.wait_for("TRANS> ");
    term.line("block-dirty-bitmap-add node=drive0 name=bitmap1");
    term.line("block-dirty-bitmap-clear node=drive0 name=bitmap0 )");
    // The fake answers as QEMU does: there is no node drive0.
    let screen = term.wait_for("Cannot find device='drive0' nor node-name='drive0'");
    assert!(
        screen.contains(
            r#"{"execute":"transaction","arguments":{"actions":[{"data":{"name":"bitmap1","node":"drive0"},"type":"block-dirty-bitmap-add"},{"data":{"name":"bitmap0","node":"drive0"},"type":"block-dirty-bitmap-clear"}]},"id":"#
        ),
        "{screen}"
    );
    // Ctrl-C abandons a transaction being typed.
    term.line("transaction(");
    term.wait_count("TRANS> ", 3);
    term.line("x a=1");
    term.wait_count("TRANS> ", 4);
    term.keys(&["C-c"]);
    term.wait_for("*** transaction abandoned (1 actions dropped)");
    term.wait_prompt("(QEMU running)");
}

#[test]
fn hmp_mode() {
    let Some((term, _dir)) = fake_shell(&["--hmp"]) else {
        return;
    };
    term.wait_for("(HMP running) ");
    term.line("info status");
    term.wait_for("VM status: running");
    term.line("/qmp");
    term.wait_for("QMP mode");
    term.line("query-status");
    term.wait_for(r#""status": "running""#);
}

/// `-l` appends every message, both ways, as JSON lines; the socket is left alone.
#[test]
fn traffic_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qmp.log");
    let Some((term, _hist)) = fake_shell(&["-l", path_str(&log)]) else {
        return;
    };
    term.line("query-status");
    term.wait_for(r#""status": "running""#);
    term.keys(&["C-d"]);
    assert_eq!(term.wait_exit(), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent: Vec<_> = lines
        .iter()
        .filter(|l| l["direction"] == "sent")
        .map(|l| l["message"]["execute"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sent,
        [
            "qmp_capabilities",
            // The status tracker's first queries, as the session starts.
            "query-status",
            "query-jobs",
            "query-commands",
            "query-qmp-schema",
            // The first prompt waits for the tracker's queries in flight instead of asking
            // again. The user's:
            "query-status"
        ]
    );
    assert!(lines[0]["message"]["QMP"].is_object(), "{text}");
    assert!(lines
        .iter()
        .all(|l| l["time"].as_str().unwrap().starts_with("20")));
}

/// With its input not a terminal, the shell reads commands line by line (for scripts), and
/// ends at the end of its input.
#[test]
fn commands_from_a_pipe() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    // The user's history from an earlier interactive run: a script leaves it alone.
    std::fs::write(&history, "query-version\n").unwrap();
    let before = std::fs::read(&history).unwrap();
    let mut child = Command::new(support::qmp_bin())
        .args(["shell", "--fake", "--history", path_str(&history)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"stop\nquery-status\ntransaction(\nabort\n)\nnope x\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].ends_with("] STOP"), "{text}");
    assert_eq!(lines[1], r#"{"return": {}}"#);
    assert_eq!(
        lines[2],
        r#"{"return": {"status": "paused", "running": false}}"#
    );
    assert_eq!(
        lines[3],
        r#"{"error": {"class": "GenericError", "desc": "The fake QEMU does not model 'transaction'"}}"#
    );
    assert_eq!(lines[4], "error: Expected a key=value pair, got 'x'");
    assert_eq!(
        std::fs::read(&history).unwrap(),
        before,
        "a script entered the history"
    );
}

/// Argument names and enum values complete from the fake's schema too.
#[test]
fn tab_completes_arguments_and_values() {
    let Some((term, _dir)) = fake_shell(&[]) else {
        return;
    };
    // QEMU's schema: `dr` and `nu` would be ambiguous (`drop-cache`, `null-aio`).
    term.type_text("blockdev-add dri");
    term.keys(&["Tab"]);
    term.wait_prompt("(QEMU running) blockdev-add driver=");
    term.type_text("null-c");
    term.keys(&["Tab"]);
    term.wait_prompt("(QEMU running) blockdev-add driver=null-co");
    term.type_text("node-name=n0 s");
    term.keys(&["Tab"]);
    term.wait_prompt("(QEMU running) blockdev-add driver=null-co node-name=n0 size=");
    term.type_text("4096");
    term.keys(&["Enter"]);
    term.wait_for(r#"{"return": {}}"#);
}

/// A child process killed when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The prompt shows the VM status: `qmp fake --prelaunch` starts in `prelaunch`; `cont`
/// makes it `running` and `stop` `paused`, each change printed as a line too.
#[test]
fn prompt_shows_the_vm_status() {
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let history = dir.path().join("history");
    let mut fake = Child(
        Command::new(support::qmp_bin())
            .args(["fake", "--prelaunch", "--listen", path_str(&sock)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + support::WAIT;
    while !sock.exists() {
        assert!(std::time::Instant::now() < deadline, "no fake socket");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let args = [
        "shell",
        "--no-reconnect",
        "--history",
        path_str(&history),
        path_str(&sock),
    ];
    let Some(term) = Term::start(&qmp_command(&args)) else {
        return;
    };
    term.wait_for("(QEMU prelaunch) ");
    term.line("cont");
    term.wait_for("VM status: prelaunch -> running");
    term.wait_prompt("(QEMU running)");
    term.line("stop");
    let screen = term.wait_for("VM status: running -> paused");
    assert!(screen.contains("] STOP"), "{screen}");
    term.wait_prompt("(QEMU paused)");
    term.line("cont");
    term.wait_for("VM status: paused -> running");
    term.wait_prompt("(QEMU running)");
    term.line("quit");
    assert_eq!(term.wait_exit(), 0);
    assert!(fake.0.wait().unwrap().success());
}

/// `stop` and `cont` on `--fake` (which starts running) print the status changes, and the
/// prompts follow.
#[test]
fn stop_and_cont_print_the_status_changes() {
    let Some((term, _dir)) = fake_shell(&[]) else {
        return;
    };
    term.line("stop");
    term.wait_for("VM status: running -> paused");
    term.wait_prompt("(QEMU paused)");
    term.line("cont");
    term.wait_for("VM status: paused -> running");
    term.wait_prompt("(QEMU running)");
    // A transaction's prompt has no status; the status is back after it.
    term.line("transaction(");
    term.wait_prompt("TRANS>");
}

/// A backup job's changes print as lines: it appears, changes status, and goes away.
#[test]
fn job_changes_print_lines() {
    let Some((term, _dir)) = fake_shell(&[]) else {
        return;
    };
    term.line("blockdev-add driver=null-co node-name=src");
    term.wait_count(r#"{"return": {}}"#, 1);
    term.line("blockdev-add driver=null-co node-name=dst");
    term.wait_count(r#"{"return": {}}"#, 2);
    term.line("blockdev-backup job-id=j0 device=src target=dst sync=full");
    let screen = term.wait_for("job j0 (backup): concluded -> gone");
    let lines: Vec<&str> = screen.lines().filter(|l| l.starts_with("job j0")).collect();
    assert_eq!(lines.first(), Some(&"job j0: new, created"), "{screen}");
    assert!(
        lines.iter().any(|l| l.contains(": created -> running")),
        "{screen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("job j0 (backup): pending -> concluded")),
        "{screen}"
    );
    assert_eq!(
        lines.last(),
        Some(&"job j0 (backup): concluded -> gone"),
        "{screen}"
    );
    // The VM status did not change: no line for it.
    assert!(!screen.contains("VM status:"), "{screen}");
}
