//! The byte stream under a session: a tokio unix or TCP socket.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) use qmp_kit::Target;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// A connected socket.
pub(crate) enum Transport {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Unix(_) => "Transport::Unix",
            Transport::Tcp(_) => "Transport::Tcp",
        })
    }
}

impl Transport {
    pub(crate) fn tcp(stream: TcpStream) -> io::Result<Self> {
        // Commands are small and latency matters more than packet count.
        stream.set_nodelay(true)?;
        Ok(Transport::Tcp(stream))
    }

    /// Whether file descriptors can travel on this socket.
    pub(crate) fn passes_fds(&self) -> bool {
        matches!(self, Transport::Unix(_))
    }

    /// What the socket is to (see [`qmp_kit::socket::describe`]).
    pub(crate) fn describe(&self) -> Option<String> {
        qmp_kit::socket::describe(match self {
            Transport::Unix(s) => s.as_fd(),
            Transport::Tcp(s) => s.as_fd(),
        })
    }

    /// Reads what has arrived, without waiting (`WouldBlock` when nothing has): the byte
    /// count (0 at EOF), and whether the read drained the socket.
    ///
    /// A read shorter than `buf` took everything that had arrived (a stream socket hands
    /// over all it holds, up to the buffer's size), so tokio's readiness is cleared with it:
    /// the driver then waits for the next arrival instead of reading again to find nothing,
    /// a system call saved per message. Input that arrives meanwhile is a new readiness
    /// event, which clearing leaves alone.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let len = buf.len();
        let mut short = None;
        let mut read = |fd: std::os::fd::BorrowedFd<'_>| {
            let n = qmp_kit::socket::recv(fd, buf)?;
            if n > 0 && n < len {
                short = Some(n);
                // Clears the readiness this read consumed (see `try_io`).
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        };
        let result = match self {
            Transport::Unix(s) => s.try_io(Interest::READABLE, || read(s.as_fd())),
            Transport::Tcp(s) => s.try_io(Interest::READABLE, || read(s.as_fd())),
        };
        match (result, short) {
            (_, Some(n)) => Ok((n, true)),
            (Ok(n), None) => Ok((n, false)),
            (Err(e), None) => Err(e),
        }
    }

    /// Whether the socket may be read: `Ready` once the reactor has reported it readable
    /// since a read last found it drained. Only the driver's task waits on it.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Unix(s) => s.poll_read_ready(cx),
            Transport::Tcp(s) => s.poll_read_ready(cx),
        }
    }

    /// Whether the socket may be written (after a write was cut short).
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Unix(s) => s.poll_write_ready(cx),
            Transport::Tcp(s) => s.poll_write_ready(cx),
        }
    }

    /// Sends what the socket takes of `data` without waiting, with `fds` as `SCM_RIGHTS`
    /// on its first byte, with `MSG_NOSIGNAL` (a peer that went away is an error, never a
    /// `SIGPIPE`); `WouldBlock` when the socket is full (tokio then waits for writability
    /// again).
    pub(crate) fn try_send(&self, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
        match self {
            Transport::Unix(s) => s.try_io(Interest::WRITABLE, || {
                qmp_kit::socket::send_with_fds(s.as_fd(), data, fds)
            }),
            Transport::Tcp(s) => {
                if !fds.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "file descriptors can only be passed over a unix socket",
                    ));
                }
                s.try_io(Interest::WRITABLE, || {
                    qmp_kit::socket::send_with_fds(s.as_fd(), data, &[])
                })
            }
        }
    }
}

/// Opens `target`, each address within `timeout` (`None`: no limit of our own), on
/// `tokio::time`.
pub(crate) async fn open(target: &Target, timeout: Option<Duration>) -> io::Result<Transport> {
    target
        .open_async(
            |path| async move {
                Ok(Transport::Unix(
                    limit(timeout, UnixStream::connect(path)).await?,
                ))
            },
            |addr| async move { Transport::tcp(limit(timeout, TcpStream::connect(addr)).await?) },
        )
        .await
}

/// `fut`, failing with `TimedOut` past `timeout`.
async fn limit<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match timeout {
        None => fut.await,
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))),
    }
}
