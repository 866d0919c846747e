//! The socket: non-blocking reads and writes, `poll`, and file descriptors as `SCM_RIGHTS`.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

/// A connected stream socket, switched to non-blocking mode.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Stream {
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(true),
            Stream::Tcp(s) => {
                // Commands are small and latency matters more than packet count.
                s.set_nodelay(true)?;
                s.set_nonblocking(true)
            }
        }
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    /// Sends what the socket takes of `data`, with `fds` as `SCM_RIGHTS` ancillary data on
    /// its first byte. `MSG_NOSIGNAL`: a peer that went away is an error, not a `SIGPIPE`.
    pub(crate) fn send(&self, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        if !fds.is_empty() && !self.is_unix() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "file descriptors can only be passed over a unix socket",
            ));
        }
        qmp_kit::socket::send_with_fds(self.as_fd(), data, fds)
    }

    /// Shuts both directions down; errors (already closed) are irrelevant.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// What `poll` reported.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    /// Input, EOF or an error is waiting: a read will not block.
    pub(crate) read: bool,
}

/// Waits until `fd` is readable (or, with `write`, writable), or `timeout` passes (`None`:
/// no limit). An interrupted wait returns as if nothing happened.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    write: bool,
    timeout: Option<Duration>,
) -> io::Result<Ready> {
    let mut flags = PollFlags::IN;
    if write {
        flags |= PollFlags::OUT;
    }
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    // A timeout too large for a timespec waits without limit.
    let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {
            let got = fds[0].revents();
            Ok(Ready {
                read: got.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
            })
        }
        Err(rustix::io::Errno::INTR) => Ok(Ready::default()),
        Err(e) => Err(e.into()),
    }
}
