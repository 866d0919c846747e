//! Interop with an independent client: the Python reference library `qemu.qmp` connects to
//! the fake QEMU (the core's server engine, served on a unix socket by this crate's
//! `serve_unix`), negotiates, executes, receives events, gets a typed error, and disconnects
//! cleanly.
//!
//! Needs `python3` with `qemu.qmp`; without it the test prints why and passes, unless
//! `QMP_REQUIRE_QEMU=1` (set by CI), which makes it a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
// Real sockets and processes: this test reads the clock.
#![allow(clippy::disallowed_methods)]

use std::os::unix::net::UnixListener;
use std::process::Command;

use qmp_proto::server::{FakeQemu, Server};

const CLIENT: &str = r#"
import asyncio, json, sys
from qemu.qmp import QMPClient, EventListener, ExecuteError

async def main(path):
    qmp = QMPClient("interop")
    listener = EventListener()
    qmp.register_listener(listener)
    await qmp.connect(path)
    out = {"greeting": qmp.greeting._raw["QMP"]["version"]["qemu"]}
    out["status"] = await qmp.execute("query-status")
    out["stop"] = await qmp.execute("stop")
    ev = await asyncio.wait_for(listener.get(), 5)
    out["event"] = ev["event"]
    out["timestamp_keys"] = sorted(ev["timestamp"].keys())
    out["status_after"] = await qmp.execute("query-status")
    try:
        await qmp.execute("nope")
    except ExecuteError as e:
        out["error"] = [e.error_class, str(e)]
    out["yank"] = await qmp.execute("query-yank", oob=True)
    out["version"] = await qmp.execute("query-version")
    await qmp.disconnect()
    out["runstate"] = str(qmp.runstate)
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"#;

fn python_with_qemu_qmp() -> Option<()> {
    let ok = Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(());
    }
    if std::env::var("QMP_REQUIRE_QEMU").as_deref() == Ok("1") {
        panic!("python3 with qemu.qmp is required (QMP_REQUIRE_QEMU=1): pip install qemu.qmp");
    }
    eprintln!("skipping: python3 with qemu.qmp not available");
    None
}

#[test]
fn qemu_qmp_talks_to_the_fake() {
    if python_with_qemu_qmp().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("qmp-proto-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("qmp.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let fake = FakeQemu::new();
    let mut server = Server::new(fake.server_config(), fake);
    let serving = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        qmp_blocking::serve_unix(stream, &mut server).unwrap();
        server.handler().status().to_owned()
    });
    let output = Command::new("python3")
        .args(["-c", CLIENT, sock.to_str().unwrap()])
        .output()
        .unwrap();
    let status_at_end = serving.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "qemu.qmp client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        out["greeting"],
        serde_json::json!({"micro": 2, "minor": 0, "major": 10})
    );
    assert_eq!(
        out["status"],
        serde_json::json!({"status": "running", "running": true})
    );
    assert_eq!(out["stop"], serde_json::json!({}));
    assert_eq!(out["event"], "STOP");
    assert_eq!(
        out["timestamp_keys"],
        serde_json::json!(["microseconds", "seconds"])
    );
    assert_eq!(
        out["status_after"],
        serde_json::json!({"status": "paused", "running": false})
    );
    assert_eq!(
        out["error"],
        serde_json::json!(["CommandNotFound", "The command nope has not been found"])
    );
    assert_eq!(
        out["yank"],
        serde_json::json!([{"type": "chardev", "id": "compat_monitor0"}])
    );
    assert_eq!(out["version"]["qemu"]["major"], 10);
    assert_eq!(out["runstate"], "Runstate.IDLE");
    assert_eq!(status_at_end, "paused");
}
