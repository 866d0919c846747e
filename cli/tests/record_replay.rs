//! `qmp record` between a client and QEMU, then `qmp replay` of its transcript to the same
//! client: the same results. With real qemu-system-x86_64 (`-M none -S`) and two clients,
//! Python's reference library `qemu.qmp` and this project's `qmp_blocking`; those tests skip,
//! printing why, when QEMU or `qemu.qmp` is missing, unless `QMP_REQUIRE_QEMU=1`. The
//! mismatch report and the signal handling run against `qmp fake` (no QEMU needed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real processes: the test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use qmp_blocking::{Builder, CallOptions, Connection, EventFilter, IgnoredAny};
use qmp_proto::server::Script;
use serde_json::{json, Value};
use support::{path_str, Peer, WAIT};

/// A `qmp` process (record, replay or fake), killed when the test ends, passed or not.
struct Qmp {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// What it printed on stderr so far.
    said: String,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Qmp {
    /// Starts `qmp ARGS...` and waits for its first stderr line (it listens then).
    fn start(args: &[&str]) -> Qmp {
        let mut child = Command::new(support::qmp_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        stderr.read_line(&mut said).unwrap();
        assert!(
            said.contains("listening on") || said.contains("replaying"),
            "qmp {args:?}: {said}"
        );
        Qmp {
            child,
            stderr,
            said,
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for it to exit; returns the status and everything it printed on stderr.
    fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "qmp did not exit: {}", self.said);
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = String::new();
        let _ = self.stderr.read_to_string(&mut rest);
        self.said.push_str(&rest);
        (status, self.said.clone())
    }
}

fn python_with_qemu_qmp() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        qmp_testkit::skip_or_fail("python3 with qemu.qmp (pip install qemu.qmp)");
    }
    ok
}

/// qemu-system-x86_64 `-M none -S`, ready for the next client.
fn qemu() -> Option<Peer> {
    let mut peer = Peer::system(&["-M", "none", "-S"])?;
    peer.connect().close();
    Some(peer)
}

/// Records one session: `client` runs against `qmp record`, which forwards to `qemu_sock`.
/// Returns the client's result and the transcript.
fn record<T>(qemu_sock: &Path, dir: &Path, client: impl FnOnce(&Path) -> T) -> (T, String) {
    let listen = dir.join("record.sock");
    let fixture = dir.join("session.qmp");
    let mut rec = Qmp::start(&[
        "record",
        "--listen",
        path_str(&listen),
        "--connect",
        path_str(qemu_sock),
        "--output",
        path_str(&fixture),
    ]);
    let got = client(&listen);
    let (status, said) = rec.wait();
    assert!(status.success(), "qmp record: {status:?}\n{said}");
    assert!(!listen.exists(), "qmp record left its socket behind");
    (got, std::fs::read_to_string(&fixture).unwrap())
}

/// Replays `fixture` to `client`; returns the client's result, the exit status and stderr.
fn replay<T>(
    fixture: &str,
    dir: &Path,
    client: impl FnOnce(&Path) -> T,
) -> (T, ExitStatus, String) {
    let listen = dir.join("replay.sock");
    let path = dir.join("replayed.qmp");
    std::fs::write(&path, fixture).unwrap();
    let mut rep = Qmp::start(&["replay", path_str(&path), "--listen", path_str(&listen)]);
    let got = client(&listen);
    let (status, said) = rep.wait();
    assert!(!listen.exists(), "qmp replay left its socket behind");
    (got, status, said)
}

const PYTHON_CLIENT: &str = r#"
import asyncio, json, sys
from qemu.qmp import QMPClient, EventListener

async def main(path):
    qmp = QMPClient("record-replay")
    listener = EventListener()
    qmp.register_listener(listener)
    await qmp.connect(path)
    out = {"greeting": qmp.greeting._raw["QMP"]}
    out["status"] = await qmp.execute("query-status")
    out["version"] = await qmp.execute("query-version")
    out["cont"] = await qmp.execute("cont")
    out["cont_event"] = (await asyncio.wait_for(listener.get(), 5))["event"]
    out["running"] = await qmp.execute("query-status")
    out["stop"] = await qmp.execute("stop")
    ev = await asyncio.wait_for(listener.get(), 5)
    out["stop_event"] = ev["event"]
    out["timestamp_keys"] = sorted(ev["timestamp"].keys())
    out["paused"] = await qmp.execute("query-status")
    await qmp.disconnect()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"#;

fn python_client(sock: &Path) -> Value {
    let out = Command::new("python3")
        .args(["-c", PYTHON_CLIENT, path_str(sock)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu.qmp client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_client_recorded_against_qemu_then_replayed() {
    if !python_with_qemu_qmp() {
        return;
    }
    let Some(peer) = qemu() else {
        return;
    };
    let dir = support::tempdir();
    let (live, fixture) = record(&peer.sock, dir.path(), python_client);
    assert_eq!(
        live["status"],
        json!({"status": "prelaunch", "running": false})
    );
    assert_eq!(live["cont_event"], "RESUME");
    assert_eq!(live["stop_event"], "STOP");
    assert_eq!(
        live["paused"],
        json!({"status": "paused", "running": false})
    );
    // The transcript: the project's notation, one message per line, events before replies.
    assert!(
        fixture.starts_with("# recorded by qmp record on "),
        "{fixture}"
    );
    let lines: Vec<&str> = fixture.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines[0].starts_with("<- {\"QMP\": "), "{fixture}");
    for l in &lines {
        assert!(l.starts_with("-> {") || l.starts_with("<- {"), "{l}");
        let _: Value = serde_json::from_str(&l[3..]).unwrap();
    }
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in\n{fixture}"))
    };
    assert!(at("\"execute\":\"stop\"") < at("\"event\": \"STOP\""));
    assert!(at("\"event\": \"STOP\"") < at("\"execute\":\"query-status\",\"id\":\"__qmp#00005\""));
    let script = Script::parse(&fixture).unwrap();
    assert_eq!(script.remaining(), 6);

    let (replayed, status, said) = replay(&fixture, dir.path(), python_client);
    assert!(status.success(), "{status:?}\n{said}");
    assert!(!said.contains("mismatch"), "{said}");
    assert_eq!(replayed, live);
}

/// What the project's blocking client gets: results, and the events' names, in order.
fn blocking_client(sock: &Path) -> Value {
    let mut qmp: Connection = Builder::new()
        .connect_timeout(Duration::from_secs(10))
        .connect_unix(sock)
        .unwrap();
    let mut out = json!({
        "greeting": format!("{:?}", qmp.greeting().version),
        "status": qmp.execute::<Value>("query-status", &()).unwrap(),
        "version": qmp.execute::<Value>("query-version", &()).unwrap(),
    });
    let opts = || CallOptions::new().timeout(WAIT);
    let (_, resume) = qmp
        .execute_and_wait::<IgnoredAny>("cont", &(), opts(), EventFilter::name("RESUME"))
        .unwrap();
    let (_, stop) = qmp
        .execute_and_wait::<IgnoredAny>("stop", &(), opts(), EventFilter::name("STOP"))
        .unwrap();
    out["events"] = json!([resume.name, stop.name]);
    out["paused"] = qmp.execute::<Value>("query-status", &()).unwrap();
    // A command with arguments, and one that fails.
    out["qom"] = qmp
        .execute::<Value>("qom-list", &json!({"path": "/machine"}))
        .map(|v| json!(v.as_array().map(Vec::len)))
        .unwrap();
    out["error"] = json!(qmp.execute::<Value>("nope", &()).unwrap_err().to_string());
    // `quit`: QEMU closes the connection (`<- EOF`).
    qmp.quit(WAIT).unwrap();
    out
}

#[test]
fn blocking_client_recorded_against_qemu_then_replayed() {
    let Some(mut peer) = qemu() else {
        return;
    };
    let dir = support::tempdir();
    let (live, fixture) = record(&peer.sock, dir.path(), blocking_client);
    assert!(peer.wait_exit(WAIT).success());
    assert_eq!(live["events"], json!(["RESUME", "STOP"]));
    assert_eq!(
        live["paused"],
        json!({"status": "paused", "running": false})
    );
    assert!(live["error"].as_str().unwrap().contains("nope"), "{live}");
    assert!(
        fixture.contains("\"arguments\":{\"path\":\"/machine\"}"),
        "{fixture}"
    );
    assert!(
        fixture.trim_end().ends_with("<- EOF"),
        "QEMU closed after quit:\n{fixture}"
    );

    let (replayed, status, said) = replay(&fixture, dir.path(), blocking_client);
    assert!(status.success(), "{status:?}\n{said}");
    assert_eq!(replayed, live);
}

const FIXTURE: &str = r#"# by hand
<- {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "x"}, "capabilities": []}}
-> {"execute": "qmp_capabilities"}
<- {"return": {}}
-> {"execute": "query-status", "id": 1}
<- {"return": {"status": "running", "running": true}, "id": 1}
-> {"execute": "stop", "id": 2}
<- {"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}
<- {"return": {}, "id": 2}
"#;

#[test]
fn replay_serves_the_recorded_greeting_and_reports_mismatches() {
    let dir = support::tempdir();
    let (got, status, said) = replay(FIXTURE, dir.path(), |sock| {
        let mut qmp = Builder::new().connect_unix(sock).unwrap();
        let version = qmp.greeting().version;
        let status: Value = qmp.execute("query-status", &()).unwrap();
        // Not what was recorded: an error that says what was expected.
        let wrong = qmp.execute::<Value>("cont", &()).unwrap_err().to_string();
        qmp.close();
        (version, status, wrong)
    });
    assert_eq!((got.0.major, got.0.minor, got.0.micro), (7, 2, 0));
    assert_eq!(got.1, json!({"status": "running", "running": true}));
    assert!(
        got.2.contains("expected {\"execute\": \"stop\"}"),
        "{}",
        got.2
    );
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.contains("mismatch: script line 7: expected {\"execute\": \"stop\"}"),
        "{said}"
    );
    assert!(said.contains("1 expected request(s) not sent"), "{said}");
}

#[test]
fn record_against_the_fake_writes_what_it_saw_on_sigterm() {
    let dir = support::tempdir();
    let fake_sock = dir.path().join("fake.sock");
    let _fake = Qmp::start(&["fake", "--listen", path_str(&fake_sock)]);
    let listen = dir.path().join("record.sock");
    let fixture = dir.path().join("session.qmp");
    let mut rec = Qmp::start(&[
        "record",
        "--listen",
        path_str(&listen),
        "--connect",
        path_str(&fake_sock),
        "-o",
        path_str(&fixture),
    ]);
    let mut qmp = Builder::new().connect_unix(&listen).unwrap();
    let status: Value = qmp.execute("query-status", &()).unwrap();
    assert_eq!(status["status"], "running");
    // The client stays; the recorder is stopped.
    rec.signal("TERM");
    let (exit, said) = rec.wait();
    assert!(exit.success(), "{exit:?}\n{said}");
    assert!(!listen.exists(), "SIGTERM left the socket behind");
    let text = std::fs::read_to_string(&fixture).unwrap();
    assert!(text.contains("-> {\"execute\":\"query-status\""), "{text}");
    assert!(
        text.contains("<- {\"return\": {\"status\": \"running\""),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# stopped by SIGTERM"), "{text}");
    Script::parse(&text).unwrap();
    drop(qmp);
}

#[test]
fn record_forwards_file_descriptors() {
    let dir = support::tempdir();
    let fake_sock = dir.path().join("fake.sock");
    let _fake = Qmp::start(&["fake", "--listen", path_str(&fake_sock)]);
    let (fdsets, fixture) = record(&fake_sock, dir.path(), |sock| {
        let mut qmp = Builder::new().connect_unix(sock).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let opts = CallOptions::new().fd(file);
        let _: Value = qmp
            .execute_with("add-fd", &json!({"fdset-id": 3}), opts)
            .unwrap();
        let fdsets: Value = qmp.execute("query-fdsets", &()).unwrap();
        qmp.close();
        fdsets
    });
    assert_eq!(fdsets[0]["fdset-id"], 3, "{fdsets}");
    assert_eq!(
        fdsets[0]["fds"].as_array().map(Vec::len),
        Some(1),
        "{fdsets}"
    );
    assert!(
        fixture.contains("# 1 file descriptor(s) passed to QEMU with the next bytes"),
        "{fixture}"
    );
    Script::parse(&fixture).unwrap();
}

/// The address in a "... listening on ADDR (Ctrl-C stops)" line.
fn address(said: &str) -> String {
    let rest = said.split("listening on ").nth(1).unwrap();
    rest.split([' ', ',']).next().unwrap().to_owned()
}

/// A `pretty=on` monitor's many-line messages become one line each, and the transcript
/// replays; over TCP on both sides.
#[test]
fn record_over_tcp_from_a_pretty_monitor() {
    let dir = support::tempdir();
    let fake = Qmp::start(&["fake", "--pretty", "--listen", "127.0.0.1:0"]);
    let fake_addr = address(&fake.said);
    let mut rec = Qmp::start(&[
        "record",
        "--listen",
        "127.0.0.1:0",
        "--connect",
        &fake_addr,
        "--output",
        path_str(&dir.path().join("session.qmp")),
    ]);
    let rec_addr = address(&rec.said);
    let client = |addr: &str| {
        let mut qmp = Builder::new().connect_tcp(addr).unwrap();
        let status: Value = qmp.execute("query-status", &()).unwrap();
        let (_, stop) = qmp
            .execute_and_wait::<IgnoredAny>(
                "stop",
                &(),
                CallOptions::new().timeout(WAIT),
                EventFilter::name("STOP"),
            )
            .unwrap();
        let paused: Value = qmp.execute("query-status", &()).unwrap();
        qmp.close();
        json!([status, stop.name, paused])
    };
    let live = client(&rec_addr);
    let (status, said) = rec.wait();
    assert!(status.success(), "{status:?}\n{said}");
    let fixture = std::fs::read_to_string(dir.path().join("session.qmp")).unwrap();
    assert!(
        fixture.contains("<- {\"return\": {\"status\": \"running\", \"running\": true}"),
        "{fixture}"
    );
    for l in fixture.lines().filter(|l| !l.starts_with('#')) {
        let _: Value = serde_json::from_str(&l[3..]).unwrap();
    }
    assert_eq!(Script::parse(&fixture).unwrap().remaining(), 3);
    drop(fake);

    let path = dir.path().join("session.qmp");
    let mut rep = Qmp::start(&["replay", path_str(&path), "--listen", "127.0.0.1:0"]);
    let rep_addr = address(&rep.said);
    let replayed = client(&rep_addr);
    let (status, said) = rep.wait();
    assert!(status.success(), "{status:?}\n{said}");
    assert_eq!(replayed, live);
}

/// File descriptors cannot cross a TCP socket: the recorder says so, and QEMU gets none.
#[test]
fn record_says_file_descriptors_do_not_cross_tcp() {
    let dir = support::tempdir();
    let fake = Qmp::start(&["fake", "--listen", "127.0.0.1:0"]);
    let fake_addr = address(&fake.said);
    let listen = dir.path().join("record.sock");
    let fixture = dir.path().join("session.qmp");
    let mut rec = Qmp::start(&[
        "record",
        "--listen",
        path_str(&listen),
        "--connect",
        &fake_addr,
        "--output",
        path_str(&fixture),
    ]);
    let mut qmp = Builder::new().connect_unix(&listen).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = qmp
        .execute_with::<Value>(
            "add-fd",
            &json!({"fdset-id": 3}),
            CallOptions::new().fd(file),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("SCM_RIGHTS"), "{err}");
    qmp.close();
    let (status, said) = rec.wait();
    assert!(status.success(), "{status:?}\n{said}");
    assert!(said.contains("cannot cross a TCP socket"), "{said}");
    let text = std::fs::read_to_string(&fixture).unwrap();
    assert!(
        text.contains("# 1 file descriptor(s) from the client dropped (TCP)"),
        "{text}"
    );
    drop(fake);
}
