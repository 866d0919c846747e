//! The socket: reads that wait in the kernel or not at all, non-blocking writes, `poll`, and
//! file descriptors as `SCM_RIGHTS`.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

/// A connected stream socket: in blocking mode for a connection (its reads and writes that
/// must not block say so by their flags), in non-blocking mode for the server loop.
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

    /// Switches the socket to non-blocking mode (the server loop, which waits in `poll`).
    #[cfg(feature = "server")]
    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        self.set_nodelay()?;
        match self {
            Stream::Unix(s) => s.set_nonblocking(true),
            Stream::Tcp(s) => s.set_nonblocking(true),
        }
    }

    /// Switches the socket to blocking mode, for a connection: a read that waits does so in
    /// the kernel ([`read_wait`](Self::read_wait), limited by
    /// [`set_read_timeout`](Self::set_read_timeout)), and no `poll` comes before it; every
    /// other read and every write is non-blocking by its flags.
    pub(crate) fn set_blocking(&self) -> io::Result<()> {
        self.set_nodelay()?;
        match self {
            Stream::Unix(s) => s.set_nonblocking(false),
            Stream::Tcp(s) => s.set_nonblocking(false),
        }
    }

    fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Unix(_) => Ok(()),
            // Commands are small and latency matters more than packet count.
            Stream::Tcp(s) => s.set_nodelay(true),
        }
    }

    /// Reads without blocking (`MSG_DONTWAIT`), whatever the socket's mode.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::net::recv(self, buf, RecvFlags::DONTWAIT)?.0)
    }

    /// Reads, waiting for input as the socket's mode and read timeout say (blocking: until
    /// input, EOF, an error, or the timeout, which is `WouldBlock`).
    pub(crate) fn read_wait(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::net::recv(self, buf, RecvFlags::empty())?.0)
    }

    /// Sets the longest a [`read_wait`](Self::read_wait) waits (`None`: no limit).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
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
