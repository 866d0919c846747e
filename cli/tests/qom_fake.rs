//! `qmp qom list|get|set|tree` against `qmp fake --listen SOCK`: output formats, errors and
//! their exit statuses, and the tree's limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Real processes: the test reads the clock for its own timeouts.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// A `qmp fake` process on a private socket, killed when the test ends, passed or not.
struct Fake {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `qmp ARGS...` to completion.
fn qmp(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmp"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("qmp {args:?} did not finish in {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Fake {
    /// Starts the fake and waits until it answers.
    fn start() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("fake.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_qmp"))
            .arg("fake")
            .arg("--listen")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let fake = Fake {
            child,
            sock,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while !fake
            .run(&["exec", "{sock}", "query-status"])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "qmp fake did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        fake
    }

    fn sock(&self) -> &str {
        self.sock.to_str().unwrap()
    }

    /// `qmp ARGS...`, `{sock}` replaced by the fake's socket.
    fn run(&self, args: &[&str]) -> Output {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{sock}" { self.sock() } else { a })
            .collect();
        qmp(&args)
    }

    /// `qmp qom ARGS...` on the fake: (exit status, stdout, stderr).
    fn qom(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["qom", args[0], self.sock()];
        all.extend_from_slice(&args[1..]);
        let out = qmp(&all);
        (
            out.status.code().unwrap(),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// The fake with a 1 MiB `memory-backend-ram` `m0`.
    fn with_m0() -> Fake {
        let fake = Fake::start();
        let out = fake.run(&[
            "exec",
            "{sock}",
            "object-add",
            "qom-type=memory-backend-ram",
            "id=m0",
            "size=1048576",
        ]);
        assert!(out.status.success(), "{out:?}");
        fake
    }
}

#[test]
fn list_marks_children_and_links() {
    let fake = Fake::with_m0();
    let (code, out, err) = fake.qom(&["list", "/objects"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "type\nm0/\npc.ram/\n");
    let (code, out, _) = fake.qom(&["list", "/objects/m0"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "type");
    for line in ["size", "prealloc", "@prealloc-context/", "m0[0]/"] {
        assert!(lines.contains(&line), "{line} not in {out}");
    }
    // The default path is the root.
    let (code, out, _) = fake.qom(&["list"]);
    assert_eq!(code, 0);
    assert_eq!(out, "type\nbackend/\nmachine/\nobjects/\nchardevs/\n");
    // No such object: QEMU's error, exit status 1.
    let (code, out, err) = fake.qom(&["list", "/nope"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "DeviceNotFound: Device '/nope' not found\n");
}

#[test]
fn get_prints_strings_raw_and_the_rest_as_json() {
    let fake = Fake::with_m0();
    let (code, out, err) = fake.qom(&["get", "/objects/m0.size"]);
    assert_eq!((code, out.as_str()), (0, "1048576\n"), "{err}");
    let (code, out, _) = fake.qom(&["get", "/objects/m0.type"]);
    assert_eq!((code, out.as_str()), (0, "memory-backend-ram\n"));
    let (code, out, err) = fake.qom(&["get", "/objects/m0.nope"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "GenericError: Property 'memory-backend-ram.nope' not found\n"
    );
    // No `.`: a bad command line, nothing sent.
    let (code, _, err) = fake.qom(&["get", "/objects"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid <path>.<property>: '/objects'"),
        "{err}"
    );
}

#[test]
fn set_reports_qemu_errors() {
    let fake = Fake::with_m0();
    // A created backend's size cannot change.
    let (code, out, err) = fake.qom(&["set", "/objects/m0.size", "4096"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("GenericError: cannot change property size of memory-backend-ram"),
        "{err}"
    );
    let (code, _, err) = fake.qom(&["set", "/objects/m0", "1"]);
    assert_eq!(code, 2, "{err}");
    // The value is unchanged.
    let (_, out, _) = fake.qom(&["get", "/objects/m0.size"]);
    assert_eq!(out, "1048576\n");
}

#[test]
fn tree_prints_paths_properties_and_exceptions() {
    let fake = Fake::with_m0();
    let (code, out, err) = fake.qom(&["tree", "/objects/"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "/objects\n  type: container (string)\n\n\
             /objects/m0\n  type: memory-backend-ram (string)\n"
        ),
        "{out}"
    );
    assert!(out.contains("\n  size: 1048576 (int)\n"), "{out}");
    // Links are read, children are not: they follow as nodes of their own.
    assert!(out.contains("\n  prealloc-context: "), "{out}");
    assert!(!out.contains("  m0[0]:"), "{out}");
    let paths: Vec<&str> = out.lines().filter(|l| l.starts_with('/')).collect();
    assert_eq!(
        paths,
        [
            "/objects",
            "/objects/m0",
            "/objects/m0/m0[0]",
            "/objects/pc.ram",
            "/objects/pc.ram/pc.ram[0]"
        ]
    );
    // A value QEMU refuses to give is shown, as the script shows it.
    assert!(out.contains(": <EXCEPTION: "), "{out}");
    assert!(out.ends_with("\n\n"), "{out}");
    // The root must exist.
    let (code, out, err) = fake.qom(&["tree", "/nope"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "DeviceNotFound: Device '/nope' not found\n");
}

#[test]
fn tree_limits_cut_it_short_and_say_so() {
    let fake = Fake::with_m0();
    let paths = |out: &str| out.lines().filter(|l| l.starts_with('/')).count();
    let (code, out, err) = fake.qom(&["tree", "/objects", "--max-objects", "2"]);
    assert_eq!(code, 3);
    assert_eq!(paths(&out), 2, "{out}");
    assert!(
        err.contains("stopped after 2 objects (--max-objects); at least 2 more not shown"),
        "{err}"
    );
    let (code, out, err) = fake.qom(&["tree", "/objects", "--max-depth", "1"]);
    assert_eq!(code, 3);
    assert_eq!(paths(&out), 3, "{out}");
    assert!(
        err.contains(
            "stopped at 1 levels below /objects (--max-depth); deeper objects not shown: 2"
        ),
        "{err}"
    );
    // Within the limits: the whole tree, exit status 0.
    let (code, out, err) =
        fake.qom(&["tree", "/objects", "--max-depth", "2", "--max-objects", "5"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(paths(&out), 5, "{out}");
}

#[test]
fn no_connection_is_exit_status_3() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let out = qmp(&["qom", "list", sock.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(text(&out.stderr).starts_with("qmp qom list: "), "{out:?}");
}

/// A hostile QMP server for one client: every object has a child `c` and, with `wide`, 99
/// more (`c0`...), so the tree is endless; every property reads as `"x"`.
fn endless_tree_server(sock: &std::path::Path, wide: bool) -> std::thread::JoinHandle<()> {
    use std::io::{BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}"#;
        writeln!(out, "{greeting}").unwrap();
        let mut children: Vec<serde_json::Value> =
            vec![serde_json::json!({"name": "c", "type": "child<container>"})];
        if wide {
            for i in 0..99 {
                children.push(serde_json::json!({"name": format!("c{i}"), "type": "child<x>"}));
            }
        }
        children.insert(0, serde_json::json!({"name": "type", "type": "string"}));
        let list = serde_json::Value::Array(children);
        // Requests need not end with a newline: read them as a JSON stream.
        let requests = serde_json::Deserializer::from_reader(BufReader::new(stream))
            .into_iter::<serde_json::Value>();
        for request in requests {
            let Ok(request) = request else { return };
            let ret = match request["execute"].as_str().unwrap() {
                "qom-list" => list.clone(),
                "qom-get" => serde_json::json!("x"),
                _ => serde_json::json!({}),
            };
            let mut reply = serde_json::json!({ "return": ret });
            if let Some(id) = request.get("id") {
                reply["id"] = id.clone();
            }
            if writeln!(out, "{reply}").is_err() {
                return;
            }
        }
    })
}

#[test]
fn tree_of_an_endless_tree_stops_at_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    // Deep: the default depth limit.
    let sock = dir.path().join("deep.sock");
    let server = endless_tree_server(&sock, false);
    let out = qmp(&["qom", "tree", sock.to_str().unwrap()]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    let paths: Vec<&str> = stdout.lines().filter(|l| l.starts_with('/')).collect();
    assert_eq!(paths.len(), 65);
    assert_eq!(paths[0], "/");
    assert_eq!(paths[64], "/c".repeat(64));
    assert!(stdout.contains("\n  type: x (string)\n"), "{stdout}");
    assert_eq!(
        text(&out.stderr),
        "qmp qom tree: stopped at 64 levels below / (--max-depth); deeper objects not shown: 1\n"
    );
    // Wide: the object limit.
    let sock = dir.path().join("wide.sock");
    let server = endless_tree_server(&sock, true);
    let out = qmp(&[
        "qom",
        "tree",
        "--max-objects",
        "150",
        sock.to_str().unwrap(),
    ]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with('/')).count(), 150);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("qmp qom tree: stopped after 150 objects (--max-objects); at least "),
        "{err}"
    );
}
