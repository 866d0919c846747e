//! `qmp record`: a transparent proxy between one QMP client and QEMU that writes the session
//! as a transcript fixture (`-> ` what the client sent, `<- ` what QEMU sent, one JSON
//! message per line), which `qmp replay` (the server engine's `Script`) serves again.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use qmp_kit::socket::SocketFile;

use crate::target::Target;

/// How long the other direction gets to finish after one side's EOF.
const LINGER: Duration = Duration::from_secs(2);

/// A connected socket of either kind.
#[derive(Debug)]
pub enum Conn {
    /// A unix socket (file descriptors can pass).
    Unix(UnixStream),
    /// A TCP socket.
    Tcp(TcpStream),
}

impl Conn {
    /// Connects to `target`.
    pub fn connect(target: &Target) -> io::Result<Conn> {
        Ok(match target {
            Target::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
            Target::Tcp(a) => Conn::Tcp(TcpStream::connect(a.as_str())?),
        })
    }

    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(how),
            Conn::Tcp(s) => s.shutdown(how),
        };
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Unix(s) => s.as_fd(),
            Conn::Tcp(s) => s.as_fd(),
        }
    }

    /// Reads bytes, with the file descriptors that came with them on a unix socket.
    fn read_with_fds(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        loop {
            let got = match self {
                Conn::Unix(s) => qmp_kit::socket::recv_with_fds(s.as_fd(), buf),
                Conn::Tcp(s) => s.read(buf).map(|n| (n, Vec::new())),
            };
            match got {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Writes all of `data`, with `fds` on its first byte (a unix socket only).
    fn write_all_with_fds(&mut self, mut data: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
        if !fds.is_empty() && !data.is_empty() {
            let n = loop {
                match qmp_kit::socket::send_with_fds(self.fd(), data, fds) {
                    Ok(n) => break n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e),
                }
            };
            data = &data[n..];
        }
        match self {
            Conn::Unix(s) => s.write_all(data),
            Conn::Tcp(s) => s.write_all(data),
        }
    }

    fn describe(&self) -> String {
        qmp_kit::socket::describe(self.fd()).unwrap_or_else(|| "an unnamed socket".into())
    }
}

/// A listening socket of either kind. For a unix socket, the file is created mode 0600 and
/// removed when the process ends normally or on SIGTERM, SIGHUP or SIGINT; a stale one is
/// replaced, a live one refused. `qmp fake`, `qmp record` and `qmp replay` listen through it.
pub struct Listening {
    listener: Either,
    socket: Arc<Mutex<Option<SocketFile>>>,
    /// The address it listens on, for messages.
    pub shown: String,
}

enum Either {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listening {
    /// Listens on `target`. On SIGTERM, SIGHUP or SIGINT, `on_signal` runs (with the
    /// signal's name), then the socket file is removed and the process exits with the
    /// status `on_signal` returns.
    pub fn bind(
        target: &Target,
        on_signal: impl FnOnce(&'static str) -> i32 + Send + 'static,
    ) -> io::Result<Listening> {
        // The handlers go in before the socket exists, so that no signal can leave it behind.
        let signals = Signals::new([Signal::Term, Signal::Hup, Signal::Int])?;
        let socket: Arc<Mutex<Option<SocketFile>>> = Arc::new(Mutex::new(None));
        let (listener, shown) = match target {
            Target::Unix(path) => {
                qmp_kit::socket::remove_stale_socket(path)?;
                let (fd, file) = qmp_kit::socket::bind_owner_only(path)?;
                let shown = file.path().display().to_string();
                if let Ok(mut s) = socket.lock() {
                    *s = Some(file);
                }
                (Either::Unix(UnixListener::from(fd)), shown)
            }
            Target::Tcp(addr) => {
                let l = TcpListener::bind(addr.as_str())?;
                let shown = l.local_addr()?.to_string();
                (Either::Tcp(l), shown)
            }
        };
        let guard = Arc::clone(&socket);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let signal = smol::block_on(async {
                    let mut signals = signals;
                    signals.next().await
                });
                let name = match signal {
                    Some(Ok(Signal::Term)) => "SIGTERM",
                    Some(Ok(Signal::Hup)) => "SIGHUP",
                    Some(Ok(Signal::Int)) => "SIGINT",
                    _ => "a signal",
                };
                let status = on_signal(name);
                if let Ok(mut s) = guard.lock() {
                    drop(s.take());
                }
                std::process::exit(status);
            })?;
        Ok(Listening {
            listener,
            socket,
            shown,
        })
    }

    /// Waits for a client.
    pub fn accept(&self) -> io::Result<Conn> {
        Ok(match &self.listener {
            Either::Unix(l) => Conn::Unix(l.accept()?.0),
            Either::Tcp(l) => Conn::Tcp(l.accept()?.0),
        })
    }

    /// Stops listening and removes the socket file.
    pub fn close(self) {
        drop(self.listener);
        if let Ok(mut s) = self.socket.lock() {
            drop(s.take());
        }
    }
}

/// Cuts a byte stream into JSON messages by structure (brace and bracket depth, strings and
/// escapes), not by newline.
#[derive(Debug, Default)]
pub struct Cutter {
    message: Vec<u8>,
    junk: Vec<u8>,
    depth: usize,
    in_string: bool,
    escape: bool,
}

/// What [`Cutter`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole JSON object or array, as one line (line breaks outside strings removed).
    Message(String),
    /// Bytes outside any object or array, other than whitespace.
    Junk(Vec<u8>),
}

impl Cutter {
    /// Takes more bytes; returns the pieces they complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        for &b in data {
            if self.depth == 0 {
                match b {
                    b'{' | b'[' => {
                        if !self.junk.is_empty() {
                            out.push(Piece::Junk(std::mem::take(&mut self.junk)));
                        }
                        self.depth = 1;
                        self.message.push(b);
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => self.junk.push(b),
                }
                continue;
            }
            self.message.push(b);
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let m = std::mem::take(&mut self.message);
                        out.push(Piece::Message(one_line(&m)));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// What is left at EOF: an unfinished message or junk.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let mut rest = std::mem::take(&mut self.junk);
        rest.append(&mut self.message);
        self.depth = 0;
        self.in_string = false;
        self.escape = false;
        (!rest.is_empty()).then_some(rest)
    }
}

/// A message on one line: each run of whitespace that holds a line break (outside strings,
/// as a `pretty=on` monitor writes) becomes one space after a comma, else nothing.
fn one_line(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escape = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            let mut run = String::from(c);
            while let Some(&n) = chars.peek() {
                if !n.is_ascii_whitespace() {
                    break;
                }
                run.push(n);
                chars.next();
            }
            if run.contains(['\r', '\n']) {
                if out.ends_with(',') {
                    out.push(' ');
                }
            } else {
                out.push_str(&run);
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// The transcript being recorded, shared by both directions and the signal handler.
#[derive(Debug, Default)]
struct Transcript {
    header: Vec<String>,
    lines: Vec<String>,
    written: bool,
}

impl Transcript {
    fn add(&mut self, arrow: &str, who: &str, piece: Piece) {
        match piece {
            Piece::Message(m) if serde_json::from_str::<serde_json::Value>(&m).is_ok() => {
                self.lines.push(format!("{arrow} {m}"));
            }
            Piece::Message(m) => self.lines.push(format!("# not JSON from {who}: {m}")),
            Piece::Junk(j) => self
                .lines
                .push(format!("# bytes outside JSON from {who}: {}", escape(&j))),
        }
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for l in self.header.iter().chain(&self.lines) {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// The current time in UTC, as `2026-12-07T15:49:54Z`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Where the transcript goes.
fn write_out(t: &Mutex<Transcript>, output: Option<&Path>) -> io::Result<()> {
    let Ok(mut t) = t.lock() else {
        return Err(io::Error::other("the transcript is poisoned"));
    };
    if t.written {
        return Ok(());
    }
    t.written = true;
    let text = t.text();
    match output {
        Some(path) => std::fs::write(path, text),
        None => {
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        }
    }
}

/// Options of `qmp record`.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Where clients connect.
    pub listen: Target,
    /// Where QEMU is.
    pub connect: Target,
    /// The transcript file (stdout when `None`).
    pub output: Option<PathBuf>,
}

/// Records one client session: waits for a client on `listen`, connects to QEMU at
/// `connect`, forwards bytes both ways unchanged (file descriptors too, between unix
/// sockets), and writes the transcript when either side closes, or on SIGTERM, SIGHUP or
/// SIGINT (what was seen so far).
pub fn run(opts: &RecordOptions) -> io::Result<()> {
    let transcript = Arc::new(Mutex::new(Transcript::default()));
    let t = Arc::clone(&transcript);
    let output = opts.output.clone();
    let listening = Listening::bind(&opts.listen, move |signal| {
        if let Ok(mut t) = t.lock() {
            t.lines.push(format!("# stopped by {signal}"));
        }
        match write_out(&t, output.as_deref()) {
            Ok(()) => {
                crate::note(&format!(
                    "recording stopped by {signal}; transcript written"
                ));
                0
            }
            Err(e) => {
                crate::fail(&format!("qmp record: cannot write the transcript: {e}"));
                i32::from(crate::EXIT_FAILURE)
            }
        }
    })?;
    crate::note(&format!(
        "recording: listening on {}, forwarding to {} (Ctrl-C stops)",
        listening.shown, opts.connect
    ));
    let client = listening.accept()?;
    let result = session(client, opts, &transcript);
    listening.close();
    let written = write_out(&transcript, opts.output.as_deref());
    result.and(written)
}

fn session(
    client: Conn,
    opts: &RecordOptions,
    transcript: &Arc<Mutex<Transcript>>,
) -> io::Result<()> {
    let peer = client.describe();
    let qemu = match Conn::connect(&opts.connect) {
        Ok(q) => q,
        Err(e) => {
            client.shutdown(Shutdown::Both);
            return Err(io::Error::new(
                e.kind(),
                format!("cannot connect to QEMU at {}: {e}", opts.connect),
            ));
        }
    };
    if let Ok(mut t) = transcript.lock() {
        t.header
            .push(format!("# recorded by qmp record on {}", utc_now()));
        t.header.push(format!("# client: {peer}"));
        t.header.push(format!("# qemu: {}", opts.connect));
    }
    crate::note(&format!("client connected: {peer}"));
    let fds_pass = matches!(client, Conn::Unix(_)) && matches!(qemu, Conn::Unix(_));
    let client_gone = Arc::new(AtomicBool::new(false));

    // QEMU to client, in a thread.
    let (done_tx, done_rx) = mpsc::channel();
    let mut from_qemu = qemu.try_clone()?;
    let mut to_client = client.try_clone()?;
    let t = Arc::clone(transcript);
    let gone = Arc::clone(&client_gone);
    let downstream = std::thread::Builder::new()
        .name("from-qemu".into())
        .spawn(move || {
            let mut cutter = Cutter::default();
            let mut buf = vec![0u8; 64 * 1024];
            let result = loop {
                let n = match from_qemu.read_with_fds(&mut buf) {
                    Ok((0, _)) => break Ok(()),
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Ok(()),
                    Err(e) => break Err(e),
                };
                if let Ok(mut t) = t.lock() {
                    for piece in cutter.push(&buf[..n]) {
                        t.add("<-", "QEMU", piece);
                    }
                }
                if let Err(e) = to_client.write_all_with_fds(&buf[..n], &[]) {
                    break Err(e);
                }
            };
            if let Ok(mut t) = t.lock() {
                if let Some(rest) = cutter.finish() {
                    t.add("<-", "QEMU", Piece::Junk(rest));
                }
                if !gone.load(Ordering::SeqCst) {
                    // QEMU ended the session (as after `quit`).
                    t.lines.push("<- EOF".into());
                }
            }
            to_client.shutdown(Shutdown::Write);
            // The client should leave after QEMU's EOF; do not wait for it forever.
            if let Ok(c) = to_client.try_clone() {
                let _ = std::thread::Builder::new()
                    .name("linger".into())
                    .spawn(move || {
                        std::thread::sleep(LINGER);
                        c.shutdown(Shutdown::Both);
                    });
            }
            let _ = done_tx.send(());
            result
        })?;

    // Client to QEMU, here.
    let mut from_client = client.try_clone()?;
    let mut to_qemu = qemu.try_clone()?;
    let mut cutter = Cutter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut qemu_done = false;
    let upstream: io::Result<()> = loop {
        let (n, fds) = match from_client.read_with_fds(&mut buf) {
            Ok((0, _)) => break Ok(()),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        };
        if let Ok(mut t) = transcript.lock() {
            if !fds.is_empty() {
                if fds_pass {
                    t.lines.push(format!(
                        "# {} file descriptor(s) passed to QEMU with the next bytes",
                        fds.len()
                    ));
                } else {
                    t.lines.push(format!(
                        "# {} file descriptor(s) from the client dropped (TCP)",
                        fds.len()
                    ));
                }
            }
            for piece in cutter.push(&buf[..n]) {
                t.add("->", "the client", piece);
            }
        }
        if !fds.is_empty() && !fds_pass {
            crate::note(
                "qmp record: the client passed file descriptors, which cannot cross a TCP \
                 socket: they are not forwarded",
            );
        }
        let fds = if fds_pass { fds } else { Vec::new() };
        if let Err(e) = to_qemu.write_all_with_fds(&buf[..n], &fds) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                break Ok(());
            }
            break Err(e);
        }
        if done_rx.try_recv().is_ok() {
            qemu_done = true;
        }
    };
    if !qemu_done {
        // Did QEMU end first? Then the client stopped after its EOF; else the client left.
        qemu_done = done_rx.try_recv().is_ok();
    }
    if !qemu_done {
        client_gone.store(true, Ordering::SeqCst);
    }
    if let Ok(mut t) = transcript.lock() {
        if let Some(rest) = cutter.finish() {
            t.add("->", "the client", Piece::Junk(rest));
        }
    }
    qemu.shutdown(Shutdown::Write);
    // QEMU closes once it sees the client's EOF; do not wait for it forever.
    if !qemu_done && done_rx.recv_timeout(LINGER).is_err() {
        qemu.shutdown(Shutdown::Both);
    }
    client.shutdown(Shutdown::Both);
    let downstream = downstream
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the forwarding thread panicked")));
    crate::note("session ended");
    upstream.and(downstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_structure() {
        let mut c = Cutter::default();
        let mut got = c.push(b"{\"execute\": \"a\"}{\"exec");
        got.extend(c.push(b"ute\": \"b}\\\"{\", \"arguments\": {\"x\": [1, {}]}}\r\n"));
        got.extend(c.push(b"\xff{\r\n    \"return\": {\r\n    },\r\n    \"id\": 1\r\n}\r\n"));
        assert_eq!(
            got,
            vec![
                Piece::Message(r#"{"execute": "a"}"#.into()),
                Piece::Message(r#"{"execute": "b}\"{", "arguments": {"x": [1, {}]}}"#.into()),
                Piece::Junk(vec![0xff]),
                Piece::Message(r#"{"return": {}, "id": 1}"#.into()),
            ]
        );
        assert_eq!(c.push(b"{\"a\""), vec![]);
        assert_eq!(c.finish(), Some(b"{\"a\"".to_vec()));
    }

    #[test]
    fn dates() {
        let d = utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
