//! Migration, answered by the fake QEMU as qemu-system-x86_64 10.0.2 answers it: the same
//! steps run on real `qemu-system-x86_64 -M pc -nodefaults -S` and on `Server<FakeQemu>`
//! (prelaunch), and the transcripts must be the same: each reply (error class and text,
//! or the return value; the numbers of `query-migrate` zeroed), each event with its data
//! (timestamps left out), in the same order relative to the replies.
//!
//! A real migration runs in its own thread: a step that waits for it reads QEMU's events
//! until a `MIGRATION` event with a given status; on the fake, the same step moves virtual
//! time on until that event.
//!
//! The comparison needs qemu-system-x86_64; without it the tests print why and pass,
//! unless `QMP_REQUIRE_QEMU=1` (set by CI), which makes a missing QEMU a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
// A real process and socket: this test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::negotiated;
use common::qemu::{system_pc, temp_dir, Peer};
use qmp_proto::server::{FakeQemu, Server};

/// One step of a scenario.
#[derive(Clone, Copy)]
enum Step {
    /// A command and its arguments (JSON text).
    Cmd(&'static str, &'static str),
    /// The same, with the numbers of the reply zeroed (`query-migrate`).
    Shape(&'static str, &'static str),
    /// Wait for a `MIGRATION` event with this status.
    Wait(&'static str),
    /// A command whose events QEMU may send before or after its reply (they come from the
    /// migration thread): the transcript has the reply first, then the events.
    Racy(&'static str, &'static str),
    /// Let this many milliseconds pass (of virtual time, on the fake).
    Sleep(u64),
    /// Wait until QEMU's main loop has finished a migration: QEMU sends `completed` from
    /// the migration thread before its main loop sets the run state (`postmigrate`), and
    /// a command in between still sees `finish-migrate`. The fake has no such window.
    Settle,
}

use Step::{Cmd, Racy, Settle, Shape, Sleep, Wait};

const EVENTS_ON: &str = r#"{"capabilities": [{"capability": "events", "state": true}]}"#;
const TO_NULL: &str = r#"{"uri": "exec:cat > /dev/null"}"#;

/// A paused VM (`-S`), then a running one, then a stopped one: each migration completes.
const COMPLETED: &[Step] = &[
    Cmd("query-migrate", "{}"),
    Cmd("query-migrate-capabilities", "{}"),
    Cmd("query-migrate-parameters", "{}"),
    Cmd("migrate_cancel", "{}"),
    Cmd("migrate-continue", r#"{"state": "pre-switchover"}"#),
    Cmd("migrate-pause", "{}"),
    Cmd("migrate-incoming", r#"{"uri": "exec:cat"}"#),
    Cmd("migrate-recover", r#"{"uri": "exec:cat"}"#),
    Cmd("migrate-start-postcopy", "{}"),
    Cmd("migrate", r#"{"uri": "exec:true", "resume": true}"#),
    Cmd("migrate-set-capabilities", EVENTS_ON),
    Cmd("query-migrate-capabilities", "{}"),
    // Paused in prelaunch: no STOP, and `postmigrate` after.
    Cmd("migrate", TO_NULL),
    Wait("completed"),
    Settle,
    Shape("query-migrate", "{}"),
    Cmd("query-status", "{}"),
    Cmd(
        "human-monitor-command",
        r#"{"command-line": "info status"}"#,
    ),
    Cmd("migrate", TO_NULL),
    Cmd("migrate-continue", r#"{"state": "pre-switchover"}"#),
    Cmd("migrate_cancel", "{}"),
    Cmd("cont", "{}"),
    Cmd("query-status", "{}"),
    // Running: STOP before the switchover.
    Cmd("migrate", r#"{"uri": "file:@DIR@/vm.mig,offset=4096"}"#),
    Wait("completed"),
    Settle,
    Shape("query-migrate", "{}"),
    Cmd("query-status", "{}"),
    Cmd("cont", "{}"),
    Cmd("stop", "{}"),
    // Stopped: no STOP, and `postmigrate` all the same.
    Cmd(
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "file", "filename": "@DIR@/vm2.mig", "offset": 0}}]}"#,
    ),
    Wait("completed"),
    Settle,
    Cmd("query-status", "{}"),
    Cmd("cont", "{}"),
    // Without the events capability: only STOP.
    Cmd(
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "events", "state": false}]}"#,
    ),
    Cmd(
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "exec", "args": ["/bin/sh", "-c", "cat > /dev/null"]}}]}"#,
    ),
    Cmd("query-status", "{}"),
];

/// Cancelled migrations: of a running VM while RAM is sent (slowly, `max-bandwidth`
/// 1000), right after `migrate` (in `setup`), and in `pre-switchover`; then one released
/// from `pre-switchover` with `migrate-continue`.
const CANCELLED: &[Step] = &[
    Cmd("migrate-set-capabilities", EVENTS_ON),
    Cmd("migrate-set-parameters", r#"{"max-bandwidth": 1000}"#),
    Cmd("query-migrate-parameters", "{}"),
    Cmd("cont", "{}"),
    Cmd("migrate", TO_NULL),
    Wait("active"),
    Shape("query-migrate", "{}"),
    Cmd("query-status", "{}"),
    Cmd("migrate", TO_NULL),
    Cmd("migrate-set-capabilities", EVENTS_ON),
    Cmd("migrate-set-parameters", r#"{"max-bandwidth": 2000}"#),
    Cmd("migrate-continue", r#"{"state": "pre-switchover"}"#),
    Cmd("migrate-continue", r#"{"state": "active"}"#),
    Cmd("migrate-pause", "{}"),
    Cmd("migrate_cancel", "{}"),
    Shape("query-migrate", "{}"),
    // Cancelled again while `cancelling`: the same event once more.
    Cmd("migrate_cancel", "{}"),
    Wait("cancelled"),
    Cmd("query-migrate", "{}"),
    Cmd("query-status", "{}"),
    Cmd("migrate_cancel", "{}"),
    // A running VM stopped during the migration stays stopped when it is cancelled.
    Cmd("migrate", TO_NULL),
    Wait("active"),
    Cmd("stop", "{}"),
    Cmd("migrate_cancel", "{}"),
    Wait("cancelled"),
    Cmd("query-status", "{}"),
    Cmd("cont", "{}"),
    // Paused before the switchover, then cancelled: the VM runs again.
    Cmd("migrate-set-parameters", r#"{"max-bandwidth": 134217728}"#),
    Cmd(
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "pause-before-switchover", "state": true}]}"#,
    ),
    Cmd("migrate", TO_NULL),
    Wait("pre-switchover"),
    Shape("query-migrate", "{}"),
    Cmd("query-status", "{}"),
    Cmd(
        "human-monitor-command",
        r#"{"command-line": "info status"}"#,
    ),
    Cmd("migrate-continue", r#"{"state": "active"}"#),
    Cmd("cont", "{}"),
    Cmd("stop", "{}"),
    Cmd("query-status", "{}"),
    Cmd("migrate_cancel", "{}"),
    Wait("cancelled"),
    Cmd("query-migrate", "{}"),
    Cmd("query-status", "{}"),
    // Paused before the switchover (a `migrate-continue` while `active` does not
    // release the pause to come), then released. The VM is stopped: a running guest
    // would dirty RAM during the slow part, which takes more passes.
    Cmd("stop", "{}"),
    Cmd("migrate-set-parameters", r#"{"max-bandwidth": 1000}"#),
    Cmd("migrate", TO_NULL),
    Wait("active"),
    // Long enough for QEMU to measure the bandwidth: it syncs once more at the end.
    Sleep(300),
    Cmd("migrate-continue", r#"{"state": "active"}"#),
    Cmd("migrate-set-parameters", r#"{"max-bandwidth": 134217728}"#),
    Wait("pre-switchover"),
    Cmd("migrate-continue", r#"{"state": "pre-switchover"}"#),
    Wait("completed"),
    Settle,
    Cmd("query-status", "{}"),
];

/// Capabilities that change nothing (or, `xbzrle`, only `query-migrate`) of a
/// migration of this VM to `exec:`.
const HARMLESS_CAPABILITIES: &[&str] = &[
    "xbzrle",
    "rdma-pin-all",
    "auto-converge",
    "zero-blocks",
    "x-colo",
    "release-ram",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "x-ignore-shared",
    "validate-uuid",
];

/// Wrong requests and settings, each followed by what QEMU reads back.
const SETTINGS: &[Step] = &[
    // Addresses.
    Cmd("migrate", "{}"),
    Cmd(
        "migrate",
        r#"{"uri": "exec:true", "channels": [{"channel-type": "main", "addr": {"transport": "exec", "args": ["true"]}}]}"#,
    ),
    Cmd("migrate", r#"{"channels": []}"#),
    Cmd(
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "exec", "args": ["true"]}}, {"channel-type": "main", "addr": {"transport": "exec", "args": ["true"]}}]}"#,
    ),
    Cmd("migrate", r#"{"uri": ""}"#),
    Cmd("migrate", r#"{"uri": "bogus"}"#),
    Cmd("migrate", r#"{"uri": "EXEC:true"}"#),
    Cmd("migrate", r#"{"uri": " exec:true"}"#),
    Cmd("migrate", r#"{"uri": "unix:"}"#),
    Cmd("migrate", r#"{"uri": "tcp:"}"#),
    Cmd("migrate", r#"{"uri": "tcp:localhost"}"#),
    Cmd("migrate", r#"{"uri": "tcp:h:"}"#),
    Cmd("migrate", r#"{"uri": "tcp::"}"#),
    Cmd("migrate", r#"{"uri": "tcp:[::1"}"#),
    Cmd("migrate", r#"{"uri": "tcp:[::1]"}"#),
    Cmd("migrate", r#"{"uri": "tcp:[::1]:"}"#),
    Cmd("migrate", r#"{"uri": "vsock:"}"#),
    Cmd("migrate", r#"{"uri": "vsock:1"}"#),
    Cmd("migrate", r#"{"uri": "fd:"}"#),
    Cmd("migrate", r#"{"uri": "file:@DIR@/x,offset=x"}"#),
    Cmd("migrate", r#"{"uri": "file:@DIR@/x,offset="}"#),
    Cmd("migrate", r#"{"uri": "file:@DIR@/x,offset=-1"}"#),
    Cmd("query-migrate", "{}"),
    Cmd("migrate-set-capabilities", EVENTS_ON),
    // These start a migration that fails at once, with its events before the reply.
    Cmd("migrate", r#"{"uri": "file:"}"#),
    Cmd("query-migrate", "{}"),
    Cmd("migrate", r#"{"uri": "fd:nope"}"#),
    Cmd("query-migrate", "{}"),
    Cmd(
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "file", "filename": "", "offset": 0}}]}"#,
    ),
    Cmd("query-migrate", "{}"),
    Cmd(
        "migrate",
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "exec", "args": ["cat"]}}]}"#,
    ),
    Cmd("query-migrate", "{}"),
    Cmd("migrate_cancel", "{}"),
    Cmd("query-status", "{}"),
    // TLS credentials that do not exist, or an object that is not one: the migration
    // fails, `migrate` succeeds.
    Cmd("migrate-set-parameters", r#"{"tls-creds": "nope"}"#),
    Cmd("migrate", TO_NULL),
    Cmd("query-migrate", "{}"),
    Cmd(
        "object-add",
        r#"{"qom-type": "secret", "id": "sec0", "data": "x"}"#,
    ),
    Cmd("migrate-set-parameters", r#"{"tls-creds": "sec0"}"#),
    Cmd("migrate", TO_NULL),
    Cmd("query-migrate", "{}"),
    Cmd("migrate-set-parameters", r#"{"tls-creds": ""}"#),
    Cmd("object-del", r#"{"id": "sec0"}"#),
    Cmd("query-status", "{}"),
];

/// `migrate-set-parameters` cases: each is followed by `query-migrate-parameters`.
const PARAMETERS: &[&str] = &[
    r#"{"announce-initial": 100001}"#,
    r#"{"announce-initial": 100000}"#,
    r#"{"announce-max": 100001}"#,
    r#"{"announce-rounds": 1001}"#,
    r#"{"announce-step": 0}"#,
    r#"{"announce-step": 10001}"#,
    r#"{"throttle-trigger-threshold": 0}"#,
    r#"{"throttle-trigger-threshold": 101}"#,
    r#"{"throttle-trigger-threshold": 256}"#,
    r#"{"cpu-throttle-initial": 0}"#,
    r#"{"cpu-throttle-initial": 100}"#,
    r#"{"cpu-throttle-increment": 0}"#,
    r#"{"cpu-throttle-increment": 100}"#,
    r#"{"cpu-throttle-increment": 99, "cpu-throttle-tailslow": true}"#,
    r#"{"max-bandwidth": -1}"#,
    r#"{"max-bandwidth": 9223372036854775807}"#,
    r#"{"max-bandwidth": 0}"#,
    r#"{"avail-switchover-bandwidth": -1}"#,
    r#"{"downtime-limit": 2000001}"#,
    r#"{"downtime-limit": 2000000}"#,
    r#"{"downtime-limit": -1}"#,
    r#"{"multifd-channels": 0}"#,
    r#"{"multifd-channels": 255}"#,
    r#"{"multifd-zlib-level": 10}"#,
    r#"{"multifd-zlib-level": 0}"#,
    r#"{"multifd-zstd-level": 21}"#,
    r#"{"multifd-qatzip-level": 10}"#,
    r#"{"multifd-qatzip-level": 0}"#,
    r#"{"xbzrle-cache-size": 4095}"#,
    r#"{"xbzrle-cache-size": 12288}"#,
    r#"{"xbzrle-cache-size": 4096}"#,
    r#"{"max-postcopy-bandwidth": -1}"#,
    r#"{"max-cpu-throttle": 19}"#,
    r#"{"max-cpu-throttle": 100}"#,
    r#"{"cpu-throttle-initial": 50, "max-cpu-throttle": 40}"#,
    r#"{"max-cpu-throttle": 60}"#,
    r#"{"cpu-throttle-initial": 70}"#,
    r#"{"cpu-throttle-initial": 60}"#,
    r#"{"announce-step": 0, "announce-initial": 100001}"#,
    r#"{"throttle-trigger-threshold": 0, "cpu-throttle-initial": 0}"#,
    r#"{"x-vcpu-dirty-limit-period": 0}"#,
    r#"{"x-vcpu-dirty-limit-period": 1001}"#,
    r#"{"x-vcpu-dirty-limit-period": 500}"#,
    r#"{"vcpu-dirty-limit": 0}"#,
    r#"{"vcpu-dirty-limit": 7}"#,
    r#"{"multifd-compression": "zlib"}"#,
    r#"{"multifd-compression": "none"}"#,
    r#"{"mode": "cpr-reboot"}"#,
    r#"{"mode": "normal"}"#,
    r#"{"zero-page-detection": "legacy"}"#,
    r#"{"direct-io": true}"#,
    r#"{"tls-creds": "nope", "tls-hostname": "h", "tls-authz": "a"}"#,
    r#"{"tls-creds": null}"#,
    r#"{"x-checkpoint-delay": 5, "downtime-limit": 5, "announce-rounds": 0}"#,
    // Out of the C type's range: the input visitor's errors.
    r#"{"x-checkpoint-delay": 4294967296}"#,
    r#"{"x-checkpoint-delay": -1}"#,
    r#"{"multifd-zlib-level": 256}"#,
    r#"{"multifd-zstd-level": -1}"#,
    r#"{"multifd-qatzip-level": 256}"#,
    r#"{"max-cpu-throttle": 256}"#,
    r#"{"multifd-channels": 256}"#,
    r#"{"x-vcpu-dirty-limit-period": -1}"#,
    r#"{"vcpu-dirty-limit": -1}"#,
    r#"{"xbzrle-cache-size": -4096}"#,
    r#"{"announce-step": -1}"#,
    r#"{"downtime-limit": 18446744073709551615}"#,
    "{}",
];

/// `migrate-set-capabilities` cases (capability names, all set on): each is followed by
/// `query-migrate-capabilities` and the capabilities are set off again.
const CAPABILITIES: &[&[&str]] = &[
    &["postcopy-ram", "x-ignore-shared"],
    &["postcopy-ram", "multifd"],
    &["x-ignore-shared", "postcopy-ram"],
    &["zero-copy-send"],
    &["zero-copy-send", "multifd"],
    &["multifd", "zero-copy-send", "xbzrle"],
    &["postcopy-preempt"],
    &["postcopy-preempt", "postcopy-ram"],
    &["switchover-ack"],
    &["switchover-ack", "return-path"],
    &["dirty-limit"],
    &["dirty-limit", "auto-converge"],
    &["multifd", "xbzrle"],
    &["mapped-ram", "xbzrle"],
    &["mapped-ram", "postcopy-ram"],
    &["mapped-ram"],
    &["x-colo"],
    &["rdma-pin-all"],
    &["xbzrle"],
    &["events"],
    &["release-ram"],
    &["validate-uuid"],
    &["dirty-bitmaps"],
    &["late-block-activate"],
    &["pause-before-switchover"],
    &["postcopy-blocktime"],
    &["zero-blocks"],
    &["auto-converge"],
    &["return-path", "postcopy-ram", "release-ram"],
    &[],
];

/// qemu-system-x86_64 `-M pc -S` and its monitor.
fn qemu(tag: &str) -> Option<(Peer, UnixStream)> {
    system_pc(tag, Duration::from_secs(20))
}

/// Zeroes the numbers of a JSON text, keeping its keys in their order.
fn zero_numbers(text: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut in_number = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if in_number && (c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) {
            continue;
        }
        in_number = false;
        if c.is_ascii_digit() || c == '-' {
            in_number = true;
            out.push('0');
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// A line of the transcript for a message: an event without its timestamp, or a reply.
fn line_for(raw: &str, shape: bool) -> Option<String> {
    let v: Value = serde_json::from_str(raw).unwrap();
    if let Some(name) = v.get("event") {
        return Some(format!(
            "  event {} {}",
            name.as_str().unwrap(),
            v.get("data").map(Value::to_string).unwrap_or_default()
        ));
    }
    if v.get("QMP").is_some() {
        return None;
    }
    let text = raw.trim_end();
    Some(format!(
        "  <- {}",
        if shape {
            zero_numbers(text)
        } else {
            text.to_owned()
        }
    ))
}

fn request(name: &str, args: &str, dir: &str) -> String {
    format!(
        r#"{{"execute": "{name}", "arguments": {}}}"#,
        args.replace("@DIR@", dir)
    )
}

/// Whether a transcript line is the MIGRATION event of this status.
fn is_status(line: &str, status: &str) -> bool {
    line == format!("  event MIGRATION {{\"status\":\"{status}\"}}")
}

/// Reads one message line from QEMU; `None` when nothing comes for 20 seconds.
fn next_line(s: &mut UnixStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..at + 2).collect();
            return Some(String::from_utf8(line).unwrap());
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).ok()?;
        assert!(n > 0, "EOF from QEMU");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Asks for the run state until it is not `finish-migrate` (five seconds at most).
fn settle(s: &mut UnixStream, buf: &mut Vec<u8>) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        s.write_all(br#"{"execute": "query-status", "id": "settle"}"#)
            .unwrap();
        let reply = next_line(s, buf).expect("a reply");
        assert!(
            !reply.contains("\"event\""),
            "an event while settling: {reply}"
        );
        if !reply.contains("finish-migrate") {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_real(s: &mut UnixStream, steps: &[Step], dir: &str) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    next_line(s, &mut buf).expect("a greeting");
    s.write_all(br#"{"execute": "qmp_capabilities"}"#).unwrap();
    next_line(s, &mut buf).expect("a reply");
    for step in steps {
        let first = out.len();
        let (until, shape) = match *step {
            Cmd(name, args) | Shape(name, args) | Racy(name, args) => {
                out.push(format!("-> {name} {args}"));
                s.write_all(request(name, args, dir).as_bytes()).unwrap();
                (None, matches!(step, Shape(..)))
            }
            Wait(status) => {
                // The event may have come with the command before (see `Racy`).
                let last = out.iter().rposition(|l| l.starts_with("->")).unwrap_or(0);
                let seen = out[last..].iter().any(|l| is_status(l, status));
                if seen {
                    continue;
                }
                (Some(status), false)
            }
            Settle => {
                settle(s, &mut buf);
                continue;
            }
            Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                continue;
            }
        };
        loop {
            let Some(raw) = next_line(s, &mut buf) else {
                out.push("  (QEMU says nothing more)".to_owned());
                return out;
            };
            let line = line_for(&raw, shape).unwrap();
            let done = match until {
                None => line.starts_with("  <-"),
                Some(status) => is_status(&line, status),
            };
            out.push(line);
            if done {
                break;
            }
        }
        if matches!(step, Racy(..)) {
            reply_first(&mut out[first + 1..]);
        }
    }
    out
}

/// Puts the reply (the last line) before the events.
fn reply_first(lines: &mut [String]) {
    lines.rotate_right(1);
}

fn run_fake(steps: &[Step], dir: &str) -> Vec<String> {
    let mut now = Instant::now();
    let fake = FakeQemu::new().prelaunch();
    let mut server = negotiated(fake, now);
    let mut out = Vec::new();
    let lines = |server: &mut Server<FakeQemu>, shape: bool| -> Vec<String> {
        let bytes = String::from_utf8(server.take_output()).unwrap();
        bytes
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .filter_map(|l| line_for(l, shape))
            .collect()
    };
    for step in steps {
        match *step {
            Cmd(name, args) | Shape(name, args) | Racy(name, args) => {
                out.push(format!("-> {name} {args}"));
                server.handle_input(now, request(name, args, dir).as_bytes());
                let mut got = lines(&mut server, matches!(step, Shape(..)));
                if matches!(step, Racy(..)) {
                    reply_first(&mut got);
                }
                out.extend(got);
            }
            Settle => {}
            Sleep(ms) => {
                let target = now + Duration::from_millis(ms);
                while let Some(at) = server.poll_timeout().filter(|at| *at <= target) {
                    now = now.max(at);
                    server.handle_timeout(now);
                    out.extend(lines(&mut server, false));
                }
                now = target;
            }
            Wait(status) => {
                let last = out.iter().rposition(|l| l.starts_with("->")).unwrap_or(0);
                let mut done = out[last..].iter().any(|l| is_status(l, status));
                while !done {
                    let Some(at) = server.poll_timeout() else {
                        out.push(format!("  (the fake never reached {status})"));
                        break;
                    };
                    now = now.max(at);
                    server.handle_timeout(now);
                    let got = lines(&mut server, false);
                    done = got.iter().any(|l| is_status(l, status));
                    out.extend(got);
                }
            }
        }
    }
    out
}

/// Runs the steps on QEMU and on the fake, and compares the transcripts.
fn compare(tag: &str, steps: &[Step]) {
    // The events of a command followed by a wait come from the migration thread: QEMU
    // may send them before or after the reply.
    let steps: Vec<Step> = steps
        .iter()
        .zip(steps.iter().skip(1).map(Some).chain([None]))
        .map(|(step, next)| match (*step, next) {
            (Cmd(name, args), Some(Wait(_))) => Racy(name, args),
            (step, _) => step,
        })
        .collect();
    let steps = &steps[..];
    let dir = temp_dir(&format!("mig-{tag}-fake"));
    let dir_text = dir.0.display().to_string();
    let ours = run_fake(steps, &dir_text);
    drop(dir);
    // One real migration at a time: they are timed, and compete for the CPUs.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((peer, mut s)) = qemu(tag) else {
        return;
    };
    // The fake's transcript names the same directory as QEMU's.
    let real_dir = peer.dir.0.display().to_string();
    let mut ours: Vec<String> = ours
        .iter()
        .map(|l| l.replace(&dir_text, &real_dir))
        .collect();
    let mut real = run_real(&mut s, steps, &real_dir);
    // How many passes a migration makes depends on how long it takes on the host: QEMU
    // syncs the dirty bitmap once more when a migration outlasts its first bandwidth
    // measurement (100 ms), which a loaded machine makes likely. Where the transcripts
    // differ only by QEMU's extra passes, they are compared without the passes.
    let is_pass = |l: &String| l.starts_with("  event MIGRATION_PASS");
    let passes = |t: &[String]| t.iter().filter(|l| is_pass(l)).count();
    if real != ours && passes(&real) > passes(&ours) {
        let without =
            |t: &[String]| -> Vec<String> { t.iter().filter(|l| !is_pass(l)).cloned().collect() };
        if without(&real) == without(&ours) {
            eprintln!(
                "{tag}: QEMU made {} more passes (a slow host); compared without them",
                passes(&real) - passes(&ours)
            );
            real = without(&real);
            ours = without(&ours);
        }
    }
    let differ = real.iter().zip(&ours).position(|(a, b)| a != b);
    if differ.is_some() || real.len() != ours.len() {
        let at = differ.unwrap_or(real.len().min(ours.len()));
        let from = at.saturating_sub(6);
        panic!(
            "{tag}: the transcripts differ at line {at}\nQEMU:\n{}\nfake:\n{}",
            real[from..real.len().min(at + 6)].join("\n"),
            ours[from..ours.len().min(at + 6)].join("\n"),
        );
    }
    eprintln!("{tag}: {} transcript lines the same", real.len());
}

#[test]
fn completed_migrations_are_qemus() {
    compare("completed", COMPLETED);
}

#[test]
fn cancelled_migrations_are_qemus() {
    compare("cancelled", CANCELLED);
}

/// A migration of a stopped VM with each capability that the model takes; `multifd`
/// refuses `exec:`.
#[test]
fn migrations_with_other_capabilities_are_qemus() {
    let texts: &'static mut Vec<(String, String)> = Box::leak(Box::default());
    for cap in HARMLESS_CAPABILITIES {
        let list = |state: bool| {
            format!(
                r#"{{"capabilities": [{{"capability": "events", "state": true}}, {{"capability": "{cap}", "state": {state}}}]}}"#
            )
        };
        texts.push((list(true), list(false)));
    }
    let mut steps = Vec::new();
    for (on, off) in texts.iter() {
        steps.extend([
            Cmd("migrate-set-capabilities", on),
            Cmd("migrate", TO_NULL),
            Wait("completed"),
            Settle,
            Shape("query-migrate", "{}"),
            Cmd("query-status", "{}"),
            Cmd("cont", "{}"),
            Cmd("stop", "{}"),
            Cmd("migrate-set-capabilities", off),
        ]);
    }
    steps.extend([
        Cmd(
            "migrate-set-capabilities",
            r#"{"capabilities": [{"capability": "multifd", "state": true}]}"#,
        ),
        Cmd("migrate", TO_NULL),
        Shape("query-migrate", "{}"),
        Cmd("query-status", "{}"),
    ]);
    compare("capabilities", &steps);
}

#[test]
fn settings_and_wrong_addresses_are_qemus() {
    let mut steps: Vec<Step> = SETTINGS.to_vec();
    for p in PARAMETERS {
        steps.push(Cmd("migrate-set-parameters", p));
        steps.push(Cmd("query-migrate-parameters", "{}"));
    }
    // Leaked on purpose: the steps hold 'static texts.
    let texts: &'static mut Vec<(String, String)> = Box::leak(Box::default());
    for caps in CAPABILITIES {
        let list = |state: bool| {
            let items: Vec<String> = caps
                .iter()
                .map(|c| format!(r#"{{"capability": "{c}", "state": {state}}}"#))
                .collect();
            format!(r#"{{"capabilities": [{}]}}"#, items.join(", "))
        };
        texts.push((list(true), list(false)));
    }
    for (on, off) in texts.iter() {
        steps.push(Cmd("migrate-set-capabilities", on));
        steps.push(Cmd("query-migrate-capabilities", "{}"));
        steps.push(Cmd("migrate-set-capabilities", off));
    }
    // The capabilities that the parameters' checks read.
    steps.extend([
        Cmd(
            "migrate-set-capabilities",
            r#"{"capabilities": [{"capability": "multifd", "state": true}, {"capability": "zero-copy-send", "state": true}]}"#,
        ),
        Cmd("migrate-set-parameters", r#"{"multifd-compression": "zlib"}"#),
        Cmd("migrate-set-parameters", r#"{"tls-creds": "t"}"#),
        Cmd("query-migrate-parameters", "{}"),
        Cmd(
            "migrate-set-capabilities",
            r#"{"capabilities": [{"capability": "zero-copy-send", "state": false}, {"capability": "mapped-ram", "state": true}]}"#,
        ),
        Cmd("migrate-set-parameters", r#"{"multifd-compression": "zlib"}"#),
        Cmd("migrate-set-parameters", r#"{"multifd-compression": "zstd"}"#),
        Cmd("migrate-set-parameters", r#"{"multifd-compression": "none"}"#),
        Cmd("migrate-set-parameters", r#"{"announce-rounds": 7}"#),
        Cmd("query-migrate-parameters", "{}"),
        Cmd(
            "migrate-set-capabilities",
            r#"{"capabilities": [{"capability": "zero-copy-send", "state": true}]}"#,
        ),
    ]);
    compare("settings", &steps);
}

/// The fake alone, on virtual time.
struct Fake {
    server: Server<FakeQemu>,
    now: Instant,
}

impl Fake {
    fn new(fake: FakeQemu) -> Fake {
        let now = Instant::now();
        let server = negotiated(fake, now);
        Fake { server, now }
    }

    /// Runs a command; everything the fake sends, events without their timestamps.
    fn cmd(&mut self, name: &str, args: &str) -> Vec<String> {
        self.server
            .handle_input(self.now, request(name, args, "").as_bytes());
        self.output()
    }

    fn output(&mut self) -> Vec<String> {
        String::from_utf8(self.server.take_output())
            .unwrap()
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .filter_map(|l| line_for(l, false))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// The return value of a command.
    fn ret(&mut self, name: &str, args: &str) -> Value {
        let out = self.cmd(name, args);
        let reply = out.iter().find(|l| l.starts_with("<-")).unwrap();
        let v: Value = serde_json::from_str(&reply[3..]).unwrap();
        v.get("return")
            .cloned()
            .unwrap_or_else(|| panic!("{reply}"))
    }

    /// Moves virtual time on by `d`, running the timers due on the way; what they sent.
    fn advance(&mut self, d: Duration) -> Vec<String> {
        let target = self.now + d;
        let mut out = Vec::new();
        while let Some(at) = self.server.poll_timeout().filter(|at| *at <= target) {
            self.now = self.now.max(at);
            self.server.handle_timeout(self.now);
            out.extend(self.output());
        }
        self.now = target;
        out
    }
}

/// `ram.total` of the modelled VM, and the bytes QEMU sends of it.
const RAM_TOTAL: u64 = 134_750_208;
const WIRE_TOTAL: u64 = 617_030;

fn ram(v: &Value, member: &str) -> u64 {
    v["ram"][member].as_u64().unwrap()
}

/// Without QEMU: a migration of a running VM sends its RAM at the link's speed over
/// virtual time, then stops the VM and completes.
#[test]
fn migration_progresses_in_virtual_time() {
    // 617030 bytes at 61703 bytes per second: ten seconds.
    let mut f = Fake::new(FakeQemu::new().migration_speed(61_703));
    f.cmd("migrate-set-capabilities", EVENTS_ON);
    let out = f.cmd("migrate", TO_NULL);
    assert_eq!(
        out,
        [
            r#"event MIGRATION {"status":"setup"}"#,
            r#"<- {"return": {}}"#
        ]
    );
    assert_eq!(
        f.ret("query-migrate", "{}"),
        serde_json::json!({"status": "setup"})
    );
    let out = f.advance(Duration::ZERO);
    assert_eq!(
        out,
        [
            r#"event MIGRATION_PASS {"pass":1}"#,
            r#"event MIGRATION {"status":"active"}"#
        ]
    );
    let mut last = (0, RAM_TOTAL);
    for quarter in 1..=3u64 {
        assert!(f.advance(Duration::from_millis(2500)).is_empty());
        let info = f.ret("query-migrate", "{}");
        assert_eq!(info["status"], "active");
        assert_eq!(info["total-time"], 2500 * quarter);
        assert_eq!(info["expected-downtime"], 300);
        let sent = ram(&info, "transferred");
        assert_eq!(sent, 61_703 * 10 * quarter / 4);
        let remaining = ram(&info, "remaining");
        assert!(sent > last.0 && remaining < last.1, "{info}");
        last = (sent, remaining);
        assert_eq!(ram(&info, "total"), RAM_TOTAL);
        assert_eq!(ram(&info, "dirty-sync-count"), 1);
        assert_eq!(
            f.ret("query-status", "{}"),
            serde_json::json!({"status": "running", "running": true})
        );
    }
    assert!(f.advance(Duration::from_millis(2499)).is_empty());
    let out = f.advance(Duration::from_millis(2));
    assert_eq!(
        out,
        [
            r#"event MIGRATION_PASS {"pass":2}"#,
            "event STOP",
            r#"event MIGRATION {"status":"device"}"#,
            r#"event MIGRATION_PASS {"pass":3}"#,
            r#"event MIGRATION {"status":"completed"}"#,
        ]
    );
    let info = f.ret("query-migrate", "{}");
    assert_eq!(info["status"], "completed");
    assert_eq!(info["total-time"], 10_000);
    assert_eq!(ram(&info, "transferred"), WIRE_TOTAL);
    assert_eq!(ram(&info, "remaining"), 0);
    assert_eq!(ram(&info, "normal"), 51);
    assert_eq!(ram(&info, "duplicate"), RAM_TOTAL / 4096 - 51);
    assert_eq!(ram(&info, "dirty-sync-count"), 3);
    assert_eq!(
        f.ret("query-status", "{}"),
        serde_json::json!({"status": "postmigrate", "running": false})
    );
    assert_eq!(f.server.handler().status(), "postmigrate");
    assert!(f.advance(Duration::from_secs(60)).is_empty());
}

/// Without QEMU: at the default `max-bandwidth` (128 MiB/s) a migration takes less than
/// QEMU's first bandwidth measurement, so it has two passes, as QEMU's.
#[test]
fn a_fast_migration_has_two_passes() {
    let mut f = Fake::new(FakeQemu::new().prelaunch());
    f.cmd("migrate-set-capabilities", EVENTS_ON);
    f.cmd("migrate", TO_NULL);
    assert_eq!(f.advance(Duration::ZERO).len(), 2);
    assert_eq!(
        f.advance(Duration::from_millis(5)),
        [
            r#"event MIGRATION {"status":"device"}"#,
            r#"event MIGRATION_PASS {"pass":2}"#,
            r#"event MIGRATION {"status":"completed"}"#,
        ]
    );
    assert_eq!(f.ret("query-migrate", "{}")["total-time"], 4);
}

/// Without QEMU: the link's speed and a new `max-bandwidth` decide how long the rest
/// takes.
#[test]
fn migration_speed_and_bandwidth_change_set_the_pace() {
    let mut f = Fake::new(FakeQemu::new().prelaunch().migration_speed(10_000));
    f.cmd("migrate", TO_NULL);
    f.advance(Duration::from_secs(10));
    let info = f.ret("query-migrate", "{}");
    assert_eq!(ram(&info, "transferred"), 100_000);
    // Slower than the link from now on.
    f.cmd("migrate-set-parameters", r#"{"max-bandwidth": 5000}"#);
    f.advance(Duration::from_secs(10));
    let info = f.ret("query-migrate", "{}");
    assert_eq!(ram(&info, "transferred"), 150_000);
    // No `max-bandwidth`: the link's speed again; 467030 bytes left.
    f.cmd("migrate-set-parameters", r#"{"max-bandwidth": 0}"#);
    assert!(f.advance(Duration::from_millis(46_700)).is_empty());
    assert_eq!(f.ret("query-migrate", "{}")["status"], "active");
    f.advance(Duration::from_millis(10));
    let info = f.ret("query-migrate", "{}");
    assert_eq!(info["status"], "completed");
    // A VM that was not running stays stopped, with no STOP.
    assert_eq!(f.server.handler().status(), "postmigrate");
    // A bandwidth so low that the migration would outlast the clock: no panic, and
    // changing it back and forth leaves the fake working.
    let mut f = Fake::new(FakeQemu::new().prelaunch());
    f.cmd("migrate-set-parameters", r#"{"max-bandwidth": 1}"#);
    f.cmd("migrate", TO_NULL);
    f.advance(Duration::from_secs(1));
    for bw in [1u64, u64::MAX, 2, 134_217_728, 1]
        .iter()
        .cycle()
        .take(5_000)
    {
        let args = format!(r#"{{"max-bandwidth": {}}}"#, *bw as i64);
        let out = f.cmd("migrate-set-parameters", &args);
        assert_eq!(out, [r#"<- {"return": {}}"#]);
    }
    f.advance(Duration::from_secs(1));
    assert_eq!(f.ret("query-migrate", "{}")["status"], "active");
    f.cmd("migrate_cancel", "{}");
    f.advance(Duration::ZERO);
    assert_eq!(f.ret("query-migrate", "{}")["status"], "cancelled");
}

/// Without QEMU: `migrate_cancel` right after `migrate`, before the migration thread
/// starts, as recorded from QEMU 10.0.2 (QEMU's thread usually starts first, which the
/// comparison above covers): `cancelling`, the first pass, `cancelled`, and the error
/// that the cancel causes in the RAM setup.
#[test]
fn cancel_in_setup() {
    let mut f = Fake::new(FakeQemu::new().prelaunch());
    f.cmd("migrate-set-capabilities", EVENTS_ON);
    f.cmd("migrate", TO_NULL);
    assert_eq!(
        f.cmd("migrate_cancel", "{}"),
        [
            r#"event MIGRATION {"status":"cancelling"}"#,
            r#"<- {"return": {}}"#
        ]
    );
    assert_eq!(
        f.advance(Duration::ZERO),
        [
            r#"event MIGRATION_PASS {"pass":1}"#,
            r#"event MIGRATION {"status":"cancelled"}"#
        ]
    );
    assert_eq!(
        f.ret("query-migrate", "{}"),
        serde_json::json!({"status": "cancelled", "error-desc": "ram_save_setup failed: Input/output error"})
    );
    assert_eq!(f.server.handler().status(), "prelaunch");
}

/// Without QEMU: what the model leaves out says so; `fd:` takes a descriptor passed with
/// `getfd`.
#[test]
fn unmodelled_migrations_say_so() {
    let mut f = Fake::new(FakeQemu::new().prelaunch());
    f.cmd(
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "return-path", "state": true}]}"#,
    );
    let out = f.cmd("migrate", TO_NULL);
    assert!(
        out[0].contains("The fake QEMU does not model 'migrate'"),
        "{out:?}"
    );
    f.cmd(
        "migrate-set-capabilities",
        r#"{"capabilities": [{"capability": "return-path", "state": false}]}"#,
    );
    for args in [
        r#"{"uri": "rdma:host:1"}"#,
        r#"{"uri": "fd:3"}"#,
        r#"{"channels": [{"channel-type": "main", "addr": {"transport": "socket", "type": "fd", "str": "x"}}]}"#,
    ] {
        let out = f.cmd("migrate", args);
        assert!(out[0].contains("does not model"), "{args}: {out:?}");
    }
    let out = f.cmd("migrate-set-parameters", r#"{"block-bitmap-mapping": []}"#);
    assert!(out[0].contains("does not model"), "{out:?}");
    assert_eq!(f.ret("query-migrate", "{}"), serde_json::json!({}));
    let (a, _b) = UnixStream::pair().unwrap();
    f.server.handle_fds(vec![a.into()]);
    f.cmd("getfd", r#"{"fdname": "mig"}"#);
    assert_eq!(
        f.cmd("migrate", r#"{"uri": "fd:mig"}"#),
        [r#"<- {"return": {}}"#]
    );
    assert!(f.server.handler().fd_names().is_empty());
    f.advance(Duration::from_secs(2));
    assert_eq!(f.ret("query-migrate", "{}")["status"], "completed");
}

/// Without QEMU: with `tls-creds` (the fake has no TLS credentials), a migration over a
/// socket fails once connected, after the reply; over `exec:` before it (compared with
/// QEMU above); over a file the model does not say.
#[test]
fn tls_over_a_socket_fails_after_the_reply() {
    let mut f = Fake::new(FakeQemu::new().prelaunch());
    f.cmd("migrate-set-capabilities", EVENTS_ON);
    f.cmd("migrate-set-parameters", r#"{"tls-creds": "t0"}"#);
    assert_eq!(
        f.cmd("migrate", r#"{"uri": "tcp:127.0.0.1:4444"}"#),
        [
            r#"event MIGRATION {"status":"setup"}"#,
            r#"<- {"return": {}}"#
        ]
    );
    assert_eq!(
        f.advance(Duration::ZERO),
        [r#"event MIGRATION {"status":"failed"}"#]
    );
    assert_eq!(
        f.ret("query-migrate", "{}"),
        serde_json::json!({"status": "failed", "error-desc": "No TLS credentials with id 't0'"})
    );
    let out = f.cmd("migrate", r#"{"uri": "file:/tmp/x"}"#);
    assert!(out[0].contains("does not model"), "{out:?}");
    assert_eq!(f.server.handler().status(), "prelaunch");
}
