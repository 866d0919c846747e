//! The round-trip tables: every client against one peer, in interleaved rounds, as rates and
//! as ratios to the hand-written floor of the same run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine_report::log;
use crate::rtt::{Client, Peer};
use crate::stats::{interleave, Variant};
use crate::Row;

/// Measures `clients` against `peer`, `n` round trips per sample, in `rounds` rounds. The
/// first client is the baseline.
pub fn run(
    group: &'static str,
    case: &str,
    peer: &Peer,
    clients: &[Client],
    n: u64,
    rounds: usize,
) -> Vec<Row> {
    let mut variants: Vec<Variant<'_>> = clients
        .iter()
        .map(|&c| Variant::new(c.name(), move || c.sample(peer, n)))
        .collect();
    let started = Instant::now();
    interleave(&mut variants, rounds);
    log(&format!(
        "{group} {case}: {rounds} rounds of {n} round trips in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    rows(group, case, &variants)
}

/// Rows for measured variants, the first being the baseline.
pub fn rows(group: &'static str, case: &str, variants: &[Variant<'_>]) -> Vec<Row> {
    let floor = variants[0].rate();
    variants
        .iter()
        .map(|v| Row {
            group,
            case: case.to_owned(),
            measure: v.name.to_owned(),
            absolute: format!("{:.0} round trips/s", v.rate()),
            ratio: v.rate() / floor,
            baseline: "floor",
        })
        .collect()
}

/// A qemu-storage-daemon serving QMP in a private directory, killed on drop.
#[derive(Debug)]
pub struct StorageDaemon {
    child: Child,
    dir: PathBuf,
    /// Its QMP socket.
    pub sock: PathBuf,
}

impl StorageDaemon {
    /// Starts one and waits until it is ready (it writes its pidfile), or `None` when
    /// `qemu-storage-daemon` is not installed.
    pub fn start() -> Option<StorageDaemon> {
        let dir = std::env::temp_dir().join(format!("qmp-bench-qsd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let sock = dir.join("qmp.sock");
        let pidfile = dir.join("qsd.pid");
        let child = Command::new("qemu-storage-daemon")
            .arg("--chardev")
            .arg(format!(
                "socket,id=m0,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["--monitor", "chardev=m0", "--pidfile"])
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let daemon = StorageDaemon { child, dir, sock };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready(&pidfile) {
            assert!(
                Instant::now() < deadline,
                "qemu-storage-daemon not ready in 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Some(daemon)
    }
}

fn ready(pidfile: &Path) -> bool {
    std::fs::read_to_string(pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
}

impl Drop for StorageDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
