//! The byte stream under a session: an async-io unix or TCP socket, or any futures-io stream.

use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_io::Async;
use futures_lite::{AsyncRead, AsyncWrite};
pub(crate) use qmp_kit::Target;

/// Any byte stream the caller brings: see [`Builder::connect_stream`](crate::Builder::connect_stream).
pub(crate) trait Duplex: AsyncRead + AsyncWrite + Send {}

impl<T: AsyncRead + AsyncWrite + Send> Duplex for T {}

/// A connected stream.
pub(crate) enum Transport {
    Unix(Async<UnixStream>),
    Tcp(Async<TcpStream>),
    Other(Pin<Box<dyn Duplex>>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Unix(_) => "Transport::Unix",
            Transport::Tcp(_) => "Transport::Tcp",
            Transport::Other(_) => "Transport::Other",
        })
    }
}

impl Transport {
    pub(crate) fn unix(stream: UnixStream) -> io::Result<Self> {
        Ok(Transport::Unix(Async::new(stream)?))
    }

    pub(crate) fn tcp(stream: TcpStream) -> io::Result<Self> {
        // Commands are small and latency matters more than packet count.
        stream.set_nodelay(true)?;
        Ok(Transport::Tcp(Async::new(stream)?))
    }

    /// Whether file descriptors can travel on this stream.
    pub(crate) fn passes_fds(&self) -> bool {
        matches!(self, Transport::Unix(_))
    }

    /// What the socket is to (see [`qmp_kit::socket::describe`]); `None` for a wrapped
    /// stream.
    pub(crate) fn describe(&self) -> Option<String> {
        use std::os::fd::AsFd;
        match self {
            Transport::Unix(s) => qmp_kit::socket::describe(s.get_ref().as_fd()),
            Transport::Tcp(s) => qmp_kit::socket::describe(s.get_ref().as_fd()),
            Transport::Other(_) => None,
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Other(s) => s.as_mut().poll_read(cx, buf),
        }
    }

    /// Whether a socket may have input: `Ready` once the reactor has reported it readable
    /// since a read last found it empty, `Pending` (the waker registered) until then. A
    /// wrapped stream is always `Ready`: it is read to find out.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Unix(s) => s.poll_readable(cx),
            Transport::Tcp(s) => s.poll_readable(cx),
            Transport::Other(_) => Poll::Ready(Ok(())),
        }
    }

    /// Whether a read shorter than its buffer means the stream is drained: true of sockets
    /// (a read takes everything that has arrived, up to the buffer's size), not of a wrapped
    /// stream, which may hand its input over in pieces.
    pub(crate) fn short_read_drains(&self) -> bool {
        !matches!(self, Transport::Other(_))
    }

    /// Writes what the stream takes of `data`, with `fds` as `SCM_RIGHTS` on its first byte.
    /// Sockets are written with `MSG_NOSIGNAL`: a peer that went away is an error, never a
    /// `SIGPIPE`.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        fds: &[OwnedFd],
    ) -> Poll<io::Result<usize>> {
        let socket = match self {
            Transport::Unix(s) => Socket::Unix(s),
            Transport::Tcp(s) => Socket::Tcp(s),
            Transport::Other(s) => {
                if !fds.is_empty() {
                    return Poll::Ready(Err(fds_unsupported()));
                }
                return s.as_mut().poll_write(cx, data);
            }
        };
        loop {
            match socket.send(data, fds) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return Poll::Ready(result),
            }
            ready!(socket.poll_writable(cx))?;
        }
    }

    /// Flushes a wrapped stream (sockets have nothing to flush).
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Other(s) => s.as_mut().poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Shuts a socket down both ways; errors (already closed) are irrelevant. A wrapped
    /// stream is closed when dropped.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Transport::Unix(s) => s.get_ref().shutdown(Shutdown::Both),
            Transport::Tcp(s) => s.get_ref().shutdown(Shutdown::Both),
            Transport::Other(_) => Ok(()),
        };
    }
}

fn fds_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "file descriptors can only be passed over a unix socket",
    )
}

enum Socket<'a> {
    Unix(&'a Async<UnixStream>),
    Tcp(&'a Async<TcpStream>),
}

impl Socket<'_> {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Unix(s) => s.get_ref().as_fd(),
            Socket::Tcp(s) => s.get_ref().as_fd(),
        }
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Unix(s) => s.poll_writable(cx),
            Socket::Tcp(s) => s.poll_writable(cx),
        }
    }

    /// One non-blocking `send`, or `sendmsg` with `SCM_RIGHTS` when `fds` is not empty.
    fn send(&self, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        if !fds.is_empty() && !matches!(self, Socket::Unix(_)) {
            return Err(fds_unsupported());
        }
        qmp_kit::socket::send_with_fds(self.fd(), data, fds)
    }
}

/// Opens `target` (each address within `timeout`; `None`: no limit of our own).
pub(crate) async fn open(target: &Target, timeout: Option<Duration>) -> io::Result<Transport> {
    target
        .open_async(
            |path| async move {
                let s = limit(timeout, Async::<UnixStream>::connect(path)).await?;
                Ok(Transport::Unix(s))
            },
            |addr| async move {
                let s = limit(timeout, Async::<TcpStream>::connect(addr)).await?;
                s.get_ref().set_nodelay(true)?;
                Ok(Transport::Tcp(s))
            },
        )
        .await
}

/// `fut`, failing with `TimedOut` past `timeout`.
async fn limit<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(t) = timeout else {
        return fut.await;
    };
    futures_lite::future::or(fut, async move {
        async_io::Timer::after(t).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
    })
    .await
}
