//! The instant peer: a QMP server with no engine, which answers every command at once with a
//! canned `query-version` reply, so that a round trip costs the peer next to nothing and the
//! client's own cost shows. (QEMU reads its monitor one byte per `recvmsg` and so hides every
//! client's cost; the fake QEMU runs a whole server engine.)
//!
//! It sends the greeting, answers the first command (`qmp_capabilities`) with
//! `{"return": {}}`, then, for every complete command object in what one read brings (up to
//! 64 KiB), the `query-version` reply of QEMU 10.0.2 with the command's `id` copied verbatim
//! as raw JSON, all the replies of one read in one write. Objects are found with a minimal
//! brace counter that knows strings and their escapes; nothing else is parsed.
//!
//! Its own CPU time (`CLOCK_THREAD_CPUTIME_ID`) from the end of negotiation to the client's
//! end of file, per round trip, is the physical limit of a client on the same CPU: a client
//! that cost nothing would still wait that long for each reply. It is not quite constant:
//! on one CPU it grows with the client's own CPU time per call (the floor made to spin for
//! about 2.5 µs of arithmetic before each call raised it from 4.1 µs to about 5 µs, and the
//! client then shows more involuntary context switches), so the limit is the one measured
//! on the floor's connections.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::Duration;

/// The greeting (QEMU 10.0.2's, with OOB offered).
pub const GREETING: &[u8] =
    br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;

/// The reply to every command after `qmp_capabilities`, up to its id.
const REPLY_HEAD: &[u8] =
    br#"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}"#;

/// Bytes per read, at most.
const READ_CHUNK: usize = 64 * 1024;

/// What the instant peer spent on one connection after negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCpu {
    /// Commands answered after `qmp_capabilities`.
    pub round_trips: u64,
    /// The serving thread's CPU time (user and system) meanwhile.
    pub cpu: Duration,
}

impl PeerCpu {
    /// CPU time per round trip, in nanoseconds (NaN without round trips).
    pub fn ns_per_round_trip(&self) -> f64 {
        if self.round_trips == 0 {
            return f64::NAN;
        }
        self.cpu.as_nanos() as f64 / self.round_trips as f64
    }
}

/// The CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Finds complete JSON objects in a byte stream that arrives in pieces: a brace counter that
/// skips strings (and the escapes in them). Bytes between objects (whitespace, line ends) are
/// ignored.
#[derive(Debug, Default)]
pub struct Objects {
    /// The start of an object still open at the end of the last piece.
    partial: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Where the open object starts in the slice being scanned.
    start: usize,
}

impl Objects {
    /// A scanner at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of the stream; calls `object` with each object it completes.
    pub fn feed(&mut self, data: &[u8], mut object: impl FnMut(&[u8])) {
        if self.partial.is_empty() {
            let rest = self.scan(data, 0, &mut object);
            if self.depth > 0 {
                self.partial.extend_from_slice(&data[rest..]);
                self.start = 0;
            }
        } else {
            let from = self.partial.len();
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(data);
            let rest = self.scan(&joined, from, &mut object);
            if self.depth > 0 {
                joined.drain(..rest);
                self.start = 0;
            } else {
                joined.clear();
            }
            self.partial = joined;
        }
    }

    /// Scans `data[from..]`, an object being open at `self.start` when `self.depth > 0`;
    /// returns where the object still open at the end starts (`data.len()` if none is).
    fn scan(&mut self, data: &[u8], from: usize, object: &mut impl FnMut(&[u8])) -> usize {
        for (i, &b) in data.iter().enumerate().skip(from) {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' => {
                    if self.depth == 0 {
                        self.start = i;
                    }
                    self.depth += 1;
                }
                b'}' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        object(&data[self.start..=i]);
                    }
                }
                _ => {}
            }
        }
        if self.depth > 0 {
            self.start
        } else {
            data.len()
        }
    }
}

/// The index of the `"` that closes the string opening at `data[open]` (`data.len()` if it
/// does not close).
fn string_end(data: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < data.len() {
        match data[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    data.len()
}

/// Where the JSON value starting at `data[from]` ends: the `,` or closing bracket that
/// follows it at its own level (`data.len()` if none does).
fn value_end(data: &[u8], from: usize) -> usize {
    let mut depth = 0u32;
    let mut i = from;
    while i < data.len() {
        match data[i] {
            b'"' => i = string_end(data, i),
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return i,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    data.len()
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The raw JSON of the top-level `id` member of the object `obj`, if it has one.
pub fn top_level_id(obj: &[u8]) -> Option<&[u8]> {
    let mut depth = 0u32;
    let mut i = 0;
    while i < obj.len() {
        match obj[i] {
            b'"' => {
                let end = string_end(obj, i);
                if depth == 1 && obj.get(i + 1..end) == Some(b"id".as_slice()) {
                    let mut j = end + 1;
                    while j < obj.len() && is_space(obj[j]) {
                        j += 1;
                    }
                    if obj.get(j) == Some(&b':') {
                        j += 1;
                        while j < obj.len() && is_space(obj[j]) {
                            j += 1;
                        }
                        let mut k = value_end(obj, j);
                        while k > j && is_space(obj[k - 1]) {
                            k -= 1;
                        }
                        return Some(&obj[j..k]);
                    }
                }
                i = end;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Appends a reply (`head`, then the id if there is one, then `}` and the line end).
fn reply(out: &mut Vec<u8>, head: &[u8], id: Option<&[u8]>) {
    out.extend_from_slice(head);
    if let Some(id) = id {
        out.extend_from_slice(b", \"id\": ");
        out.extend_from_slice(id);
    }
    out.extend_from_slice(b"}\r\n");
}

/// The replies to the objects of `data`, appended to `out`; `negotiated` is set by the first
/// object, whatever it is (every client sends `qmp_capabilities` first). Returns how many
/// `query-version` replies were made.
pub fn answer(objects: &mut Objects, data: &[u8], negotiated: &mut bool, out: &mut Vec<u8>) -> u64 {
    let mut answered = 0;
    objects.feed(data, |obj| {
        let id = top_level_id(obj);
        if *negotiated {
            reply(out, REPLY_HEAD, id);
            answered += 1;
        } else {
            reply(out, b"{\"return\": {}", id);
            *negotiated = true;
        }
    });
    answered
}

/// Serves one client until it leaves; then, given `tally`, sends on it what the connection
/// cost this thread after negotiation.
pub fn serve_one(mut stream: UnixStream, tally: Option<Sender<PeerCpu>>) {
    let mut greeting = GREETING.to_vec();
    greeting.extend_from_slice(b"\r\n");
    if stream.write_all(&greeting).is_err() {
        return;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(4096);
    let mut objects = Objects::new();
    let mut negotiated = false;
    let mut round_trips = 0;
    let mut since = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.clear();
        round_trips += answer(&mut objects, &buf[..n], &mut negotiated, &mut out);
        if !out.is_empty() && stream.write_all(&out).is_err() {
            break;
        }
        if negotiated && since.is_none() {
            // Counted from here: the greeting and negotiation are no round trips.
            since = Some(thread_cpu());
            round_trips = 0;
        }
    }
    if let (Some(tally), Some(since)) = (tally, since) {
        let _ = tally.send(PeerCpu {
            round_trips,
            cpu: thread_cpu().saturating_sub(since),
        });
    }
}

/// Serves instant peers on a unix socket path, one thread per connection, forever (`qmp-bench
/// serve-instant SOCK`).
pub fn serve(path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || serve_one(stream, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects_of(pieces: &[&str]) -> Vec<String> {
        let mut scanner = Objects::new();
        let mut found = Vec::new();
        for p in pieces {
            scanner.feed(p.as_bytes(), |o| {
                found.push(String::from_utf8(o.to_vec()).expect("UTF-8"));
            });
        }
        found
    }

    #[test]
    fn objects_across_pieces_strings_and_escapes() {
        let found = objects_of(&[
            r#"{"execute":"a","id":1}{"exe"#,
            r#"cute":"b}{\"\\","arguments":{"x":{"y":"}"}},"id":"#,
            "2}\r\n  {}",
        ]);
        assert_eq!(
            found,
            [
                r#"{"execute":"a","id":1}"#,
                r#"{"execute":"b}{\"\\","arguments":{"x":{"y":"}"}},"id":2}"#,
                "{}",
            ]
        );
    }

    #[test]
    fn one_byte_at_a_time() {
        let text = r#"{"execute":"q\"}","id":{"a":[1,"}"]}} {"execute":"r"}"#;
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        assert_eq!(
            objects_of(&refs),
            [
                r#"{"execute":"q\"}","id":{"a":[1,"}"]}}"#,
                r#"{"execute":"r"}"#
            ]
        );
    }

    #[test]
    fn ids_are_copied_raw_from_the_top_level_only() {
        let id =
            |s: &str| top_level_id(s.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(id(r#"{"execute":"q","id":1}"#).as_deref(), Some("1"));
        assert_eq!(
            id(r#"{"id" : "a,}\"b" , "execute":"q"}"#).as_deref(),
            Some(r#""a,}\"b""#)
        );
        assert_eq!(
            id(r#"{"id":{"k":[1,2]},"x":1}"#).as_deref(),
            Some(r#"{"k":[1,2]}"#)
        );
        assert_eq!(id(r#"{"arguments":{"id":3},"execute":"id"}"#), None);
        assert_eq!(id(r#"{"execute":"q"}"#), None);
    }

    #[test]
    fn negotiation_then_one_write_of_replies_per_read() {
        let mut scanner = Objects::new();
        let mut negotiated = false;
        let mut out = Vec::new();
        let caps = br#"{"execute":"qmp_capabilities","id":"c"}"#;
        assert_eq!(answer(&mut scanner, caps, &mut negotiated, &mut out), 0);
        assert_eq!(out, b"{\"return\": {}, \"id\": \"c\"}\r\n");
        out.clear();
        let two = br#"{"execute":"query-version","id":7}{"execute":"query-version"}"#;
        assert_eq!(answer(&mut scanner, two, &mut negotiated, &mut out), 2);
        let text = String::from_utf8(out).expect("UTF-8");
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(first["id"], 7);
        assert_eq!(first["return"]["qemu"]["major"], 10);
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("JSON");
        assert!(second.get("id").is_none());
    }
}
