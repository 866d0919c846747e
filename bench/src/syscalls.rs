//! System calls per round trip of each Rust client, counted rather than timed (so the figure
//! repeats from run to run): `qmp-bench client NAME SOCK N` runs under `strace -f -c` (every
//! thread of the client process) for two values of `N` against the instant peer served by
//! another process (`qmp-bench serve-instant`), and the difference of the counts over the
//! difference of `N` leaves connecting, negotiating and the runtime's start and end out.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::engine_report::log;
use crate::memory::ServerProcess;
use crate::rtt::Client;
use crate::Row;

/// The case of the rows of this table.
pub const CASE: &str = "instant peer, other process (strace -f -c)";

/// System calls per round trip of one client.
#[derive(Debug, Clone)]
pub struct PerRoundTrip {
    /// All system calls.
    pub total: f64,
    /// Each system call, the most frequent first (those below 0.005 per round trip left out).
    pub by_call: Vec<(String, f64)>,
}

impl PerRoundTrip {
    /// The total and the breakdown, as in the table: `4.00: recvfrom 1.00, sendmsg 1.00, …`.
    pub fn describe(&self, most: usize) -> String {
        let calls: Vec<String> = self
            .by_call
            .iter()
            .take(most)
            .map(|(name, per)| format!("{name} {per:.2}"))
            .collect();
        format!("{:.2} per round trip: {}", self.total, calls.join(", "))
    }
}

/// Whether `strace` can be run.
pub fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The calls per system call of `exe client NAME SOCK N` under `strace -f -c` (`None` if it
/// failed).
pub fn count(exe: &Path, client: Client, sock: &Path, n: u64) -> Option<BTreeMap<String, u64>> {
    let out = sock.with_file_name(format!("strace-{}-{n}.txt", client.short_name()));
    let status = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(exe)
        .args(["client", client.short_name()])
        .arg(sock)
        .arg(n.to_string())
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .status()
        .ok()?;
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        log(&format!("syscalls: {} {n} failed", client.short_name()));
        return None;
    }
    Some(parse(&text?))
}

/// The calls per system call of `strace -c`'s summary: the rows between the dashed line and
/// `total` (`% time  seconds  usecs/call  calls  [errors]  syscall`).
pub fn parse(summary: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut in_table = false;
    for line in summary.lines() {
        if line.starts_with("------") {
            in_table = true;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !in_table || fields.len() < 5 {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" {
            break;
        }
        if let Ok(calls) = fields[3].parse::<u64>() {
            *counts.entry(name.to_owned()).or_insert(0) += calls;
        }
    }
    counts
}

/// System calls per round trip of `client` against `sock`: the counts of `n2` round trips
/// less those of `n1`, over `n2 - n1`.
pub fn per_round_trip(
    exe: &Path,
    client: Client,
    sock: &Path,
    n1: u64,
    n2: u64,
) -> Option<PerRoundTrip> {
    let short = count(exe, client, sock, n1)?;
    let long = count(exe, client, sock, n2)?;
    let span = (n2 - n1) as f64;
    let mut by_call: Vec<(String, f64)> = long
        .iter()
        .map(|(name, &calls)| {
            let before = short.get(name).copied().unwrap_or(0);
            (name.clone(), (calls as f64 - before as f64) / span)
        })
        .filter(|(_, per)| per.abs() >= 0.005)
        .collect();
    by_call.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total = (long.values().sum::<u64>() as f64 - short.values().sum::<u64>() as f64) / span;
    Some(PerRoundTrip { total, by_call })
}

/// The table: every Rust client against `exe serve-instant` (`exe` is the `qmp-bench`
/// binary); empty, with a note on stderr, without strace.
pub fn rows(exe: &Path, quick: bool) -> Vec<Row> {
    if !strace_available() {
        log("strace is not installed: the system calls per round trip are left out");
        return Vec::new();
    }
    let (n1, n2) = if quick { (200, 1200) } else { (200, 2200) };
    let server = ServerProcess::start_command(exe, "serve-instant");
    let mut measured = Vec::new();
    for &client in Client::ALL {
        match per_round_trip(exe, client, &server.sock, n1, n2) {
            Some(per) => {
                log(&format!(
                    "syscalls {}: {}",
                    client.short_name(),
                    per.describe(usize::MAX)
                ));
                measured.push((client, per));
            }
            None => log(&format!("syscalls {}: not counted", client.short_name())),
        }
    }
    let floor = measured
        .iter()
        .find(|(c, _)| *c == Client::Floor)
        .map_or(f64::NAN, |(_, p)| p.total);
    measured
        .into_iter()
        .map(|(client, per)| Row {
            group: "syscalls",
            case: CASE.to_owned(),
            measure: client.name().to_owned(),
            absolute: per.describe(6),
            ratio: per.total / floor,
            baseline: "floor",
        })
        .collect()
}

/// The system calls per round trip in a row of this table (the leading number of its
/// absolute figure).
pub fn figure(row: &Row) -> Option<f64> {
    row.absolute.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summaries() {
        let summary = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.000400           1       402           sendto
 30.00    0.000300           1       401        12 recvfrom
  0.00    0.000000           0         1         1 access
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000           1       804        13 total
";
        let counts = parse(summary);
        assert_eq!(counts.get("sendto"), Some(&402));
        assert_eq!(counts.get("recvfrom"), Some(&401));
        assert_eq!(counts.get("access"), Some(&1));
        assert_eq!(counts.len(), 3);
    }
}
