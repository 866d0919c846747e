//! The server side: the blocking loop that serves one client with a sans-IO
//! [`Server`](qmp_proto::server::Server), such as the [`FakeQemu`](qmp_proto::server::FakeQemu).

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use qmp_proto::server::{Handler, Server, ServerEvent};
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::transport::Stream;

/// Bytes read per `recv` call.
const READ_CHUNK: usize = 64 * 1024;

/// Serves one client connected on a unix socket until the session ends, with file
/// descriptors passed as `SCM_RIGHTS` handed to the server (for `getfd` and `add-fd`).
///
/// The loop is the one an adapter runs for the client engine, the other way round: accept,
/// write what the server asks, read only while the server would (QEMU stops reading its
/// socket while its request queue is full), feed EOF, and run the server's timer (deferred
/// replies, jobs over time). It returns `Ok` when the client disconnects (EOF, or a
/// connection reset) or when the server closes the connection (after `quit`), and an error
/// for any other socket failure. A handler that defers a reply without arming a timer is
/// never woken: nothing outside the loop can complete it.
///
/// ```no_run
/// use std::os::unix::net::UnixListener;
/// use qmp_proto::server::{FakeQemu, Server};
///
/// # fn main() -> std::io::Result<()> {
/// let listener = UnixListener::bind("/tmp/fake-qemu.sock")?;
/// for stream in listener.incoming() {
///     // Like QEMU's monitor: one client at a time, each with a fresh session.
///     let fake = FakeQemu::new();
///     let mut server = Server::new(fake.server_config(), fake);
///     qmp_blocking::serve_unix(stream?, &mut server)?;
/// }
/// # Ok(())
/// # }
/// ```
pub fn serve_unix<H: Handler>(stream: UnixStream, server: &mut Server<H>) -> io::Result<()> {
    serve(&Stream::Unix(stream), server)
}

/// [`serve_unix`] over TCP (no file descriptors).
pub fn serve_tcp<H: Handler>(stream: TcpStream, server: &mut Server<H>) -> io::Result<()> {
    serve(&Stream::Tcp(stream), server)
}

fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn serve<H: Handler>(stream: &Stream, server: &mut Server<H>) -> io::Result<()> {
    stream.set_nonblocking()?;
    server.accept(Instant::now());
    let mut buf = vec![0u8; READ_CHUNK];
    let result = loop {
        let mut blocked = false;
        while let Some(out) = server.poll_transmit() {
            match stream.send(out.data, &[]) {
                Ok(n) => server.advance_transmit(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if closed_by_peer(&e) => return finish(server, Ok(())),
                Err(e) => return finish(server, Err(e)),
            }
        }
        while let Some(event) = server.poll_event() {
            if event == ServerEvent::Closed {
                // The server ended the connection (after `quit`), its output written.
                stream.shutdown();
                return Ok(());
            }
        }
        let reading = server.wants_input();
        let timeout = server
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()));
        let mut flags = PollFlags::empty();
        if reading {
            flags |= PollFlags::IN;
        }
        if blocked {
            flags |= PollFlags::OUT;
        }
        let mut fds = [PollFd::new(stream, flags)];
        let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => break Err(e.into()),
        }
        let got = fds[0].revents();
        if reading && got.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            match qmp_kit::socket::recv_with_fds(stream.as_fd(), &mut buf) {
                Ok((0, _)) => break Ok(()),
                Ok((n, fds)) => {
                    if !fds.is_empty() {
                        server.handle_fds(fds);
                    }
                    server.handle_input(Instant::now(), &buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if closed_by_peer(&e) => break Ok(()),
                Err(e) => break Err(e),
            }
        } else if !reading && got.intersects(PollFlags::HUP | PollFlags::ERR) {
            // The client hung up while the server was not reading: nothing more will come.
            break Ok(());
        }
        server.handle_timeout(Instant::now());
    };
    finish(server, result)
}

/// The client went away (or the socket failed): the session ends.
fn finish<H: Handler>(server: &mut Server<H>, result: io::Result<()>) -> io::Result<()> {
    server.handle_eof(Instant::now());
    result
}
