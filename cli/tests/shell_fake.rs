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
        s.contains("(QEMU) ") || s.contains("(HMP) ")
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
    term.type_text("query-st");
    term.keys(&["Tab"]);
    term.wait_until("the completed command", |s| {
        s.lines().any(|l| l.trim_end() == "(QEMU) query-status")
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
    term.wait_until("the half-typed line", |_| {
        term.last_line().trim_end() == "(QEMU) query-"
    });
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
    term.wait_for("(QEMU) ");
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
    term.wait_for("(QEMU) ");
    term.keys(&["Up", "Up"]);
    term.wait_until("the recalled line", |_| {
        term.last_line().trim_end() == "(QEMU) query-name"
    });
    term.keys(&["Enter"]);
    term.wait_for(r#"{"return": {}}"#);
}

/// Transaction mode collects actions under the TRANS> prompt and sends one `transaction`;
/// the verbose echo shows exactly what went out. (The fake has no `transaction` command:
/// its CommandNotFound proves the request reached it.)
#[test]
fn transaction_mode() {
    let Some((term, _dir)) = fake_shell(&["-v"]) else {
        return;
    };
    term.line("transaction(");
    term.wait_for("TRANS> ");
    term.line("block-dirty-bitmap-add node=drive0 name=bitmap1");
    term.line("block-dirty-bitmap-clear node=drive0 name=bitmap0 )");
    let screen = term.wait_for("The command transaction has not been found");
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
    term.wait_until("the QMP prompt", |_| {
        term.last_line().trim_end() == "(QEMU)"
    });
}

#[test]
fn hmp_mode() {
    let Some((term, _dir)) = fake_shell(&["--hmp"]) else {
        return;
    };
    term.wait_for("(HMP) ");
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
            "query-commands",
            "query-qmp-schema",
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
        r#"{"error": {"class": "CommandNotFound", "desc": "The command transaction has not been found"}}"#
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
    term.type_text("blockdev-add d");
    term.keys(&["Tab"]);
    term.wait_until("the completed argument", |_| {
        term.last_line().trim_end() == "(QEMU) blockdev-add driver="
    });
    term.keys(&["Tab"]);
    term.wait_until("the only value", |_| {
        term.last_line().trim_end() == "(QEMU) blockdev-add driver=null-co"
    });
    term.type_text("node-name=n0 s");
    term.keys(&["Tab"]);
    term.wait_until("the optional argument", |_| {
        term.last_line().trim_end() == "(QEMU) blockdev-add driver=null-co node-name=n0 size="
    });
    term.type_text("4096");
    term.keys(&["Enter"]);
    term.wait_for(r#"{"return": {}}"#);
}
