//! Unix-socket pieces:
//!
//! * [`bind_owner_only`]: a listening unix socket that only its owner can connect to, and a
//!   [`SocketFile`] guard that removes the socket file on drop, but only if the path still
//!   names the socket that was created (never a file someone else put there).
//! * [`remove_stale_socket`]: removes a socket file that nobody listens on any more, and
//!   refuses one that a process listens on.
//! * [`send_with_fds`]: a non-blocking send of bytes with file descriptors attached as
//!   `SCM_RIGHTS` ancillary data on the first byte, without `SIGPIPE`.
//! * [`recv`]: a plain receive, for adapters that take readiness in their own hands.
//! * [`recv_with_fds`]: a receive that also takes the file descriptors that came with the
//!   bytes (the server side of fd passing).
//! * [`random_seed`]: a random seed for the guest agent's resynchronisation ids.
//! * [`describe`]: what a connected socket is to (its peer's path or address, else its own
//!   path), to name the connection.
//!
//! No `unsafe` code: the system calls go through [rustix](https://docs.rs/rustix).

use std::fs::{self, Permissions};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// What a connected socket is to, for messages and the connection's tracing span: the
/// peer's unix socket path or IP address and port; else (a connection accepted from a
/// listening socket) this end's path; `None` for an unnamed socket pair.
pub fn describe(socket: BorrowedFd<'_>) -> Option<String> {
    let name = |addr: rustix::net::SocketAddrAny| -> Option<String> {
        if let Ok(unix) = SocketAddrUnix::try_from(addr.clone()) {
            return unix
                .path()
                .map(|p| String::from_utf8_lossy(p.to_bytes()).into_owned());
        }
        std::net::SocketAddr::try_from(addr)
            .ok()
            .map(|a| a.to_string())
    };
    if let Some(peer) = rustix::net::getpeername(socket)
        .ok()
        .flatten()
        .and_then(name)
    {
        return Some(peer);
    }
    rustix::net::getsockname(socket).ok().and_then(name)
}

/// The socket file a listener created. Dropping it removes the file if the path still names
/// that same socket (same device and inode); a file that replaced it is left alone.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// `(device, inode)` of the file when it was created.
    file: (u64, u64),
}

impl SocketFile {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.file && m.file_type().is_socket());
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                crate::trace::note(
                    module_path!(),
                    log::Level::Warn,
                    format_args!("cannot remove {}: {e}", self.path.display()),
                );
            }
        }
    }
}

/// Creates a unix socket listening on `path` that only the current user can connect to: it is
/// bound, made mode 0600, and only then listens, so nobody can connect before the mode is
/// set. Fails if anything exists at `path`. Keep the [`SocketFile`] for as long as the
/// socket listens (drop it after the socket) to remove the file afterwards.
pub fn bind_owner_only(path: &Path) -> io::Result<(OwnedFd, SocketFile)> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    rustix::net::bind(&fd, &addr)?;
    // Bound: the file is ours from here, and a failure below removes it.
    let meta = fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: path.to_owned(),
        file: (meta.dev(), meta.ino()),
    };
    fs::set_permissions(path, Permissions::from_mode(0o600))?;
    rustix::net::listen(&fd, 1)?;
    Ok((fd, file))
}

/// Removes a stale socket file at `path`: a unix socket that nobody listens on (its
/// process died without removing it), so that [`bind_owner_only`] can take the path. A
/// socket that a process listens on is never removed: that is an `AddrInUse` error. Anything
/// else at the path (or nothing) is left alone, and `Ok` is returned (binding then fails if
/// something exists). Never blocks: the probe connects without waiting, and a listener whose
/// queue is full counts as live.
pub fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let identity = |m: &fs::Metadata| (m.dev(), m.ino());
    let meta = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => m,
        _ => return Ok(()),
    };
    let probe = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::io::ioctl_fionbio(&probe, true)?;
    match rustix::net::connect(&probe, &SocketAddrUnix::new(path)?) {
        Err(rustix::io::Errno::CONNREFUSED) => {}
        Ok(()) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INPROGRESS) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another process listens on this socket", path.display()),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    drop(probe);
    // Still the same file (nobody replaced it meanwhile): remove it.
    if fs::symlink_metadata(path).is_ok_and(|m| identity(&m) == identity(&meta)) {
        fs::remove_file(path)?;
    }
    Ok(())
}

/// Sends what the socket takes of `data`, with `fds` as `SCM_RIGHTS` ancillary data on its
/// first byte (`sendmsg`), or a plain `send` when there are none. `MSG_NOSIGNAL`: a peer that
/// went away is an error (`EPIPE`), not a `SIGPIPE`. `MSG_DONTWAIT`: it never blocks, even on
/// a socket in blocking mode. Passing fds needs a unix socket.
pub fn send_with_fds(socket: BorrowedFd<'_>, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
    if fds.is_empty() {
        return Ok(rustix::net::send(
            socket,
            data,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )?);
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut space =
        vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many file descriptors for one message",
        ));
    }
    Ok(rustix::net::sendmsg(
        socket,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )?)
}

/// Receives what is waiting on `socket` into `buf` (non-blocking or not, as the socket is):
/// the byte count, 0 at EOF.
pub fn recv(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::net::recv(socket, buf, RecvFlags::empty())?.0)
}

/// Receives what is waiting on `socket` into `buf` (non-blocking or not, as the socket is),
/// with any file descriptors that came as `SCM_RIGHTS` on those bytes (at most 16 per read,
/// as QEMU accepts; a truncated control message drops the extra ones, which the kernel
/// closes). Returns the byte count (0 at EOF) and the descriptors, close-on-exec.
pub fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        socket,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok((msg.bytes, fds))
}

/// A random number from the standard library's per-process random keys (no extra
/// dependency), for seeds such as
/// [`ClientConfig::sync_seed`](https://docs.rs/qmp-proto/latest/qmp_proto/struct.ClientConfig.html#method.sync_seed):
/// two calls, in one process or two, give different numbers.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// The most file descriptors [`recv_with_fds`] takes with one read.
pub const MAX_FDS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("qmp-kit-socket-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn owner_only_and_removed_only_if_ours() {
        let dir = tempdir();
        let path = dir.join("a.sock");
        let (fd, file) = bind_owner_only(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let listener = UnixListener::from(fd);
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok());
        // Something existing at the path is refused and left alone.
        assert!(bind_owner_only(&path).is_err());
        assert!(path.exists());
        drop(listener);
        drop(file);
        assert!(!path.exists());
        // A file that replaced ours is not removed.
        let (fd, file) = bind_owner_only(&path).unwrap();
        drop(fd);
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"someone else's").unwrap();
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_sockets_are_removed_live_ones_refused() {
        let dir = std::env::temp_dir().join(format!("qmp-kit-stale-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sock");
        // Nothing there: nothing to do.
        remove_stale_socket(&path).unwrap();
        // A live listener is refused and its socket left alone.
        let listener = UnixListener::bind(&path).unwrap();
        let e = remove_stale_socket(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists());
        // Its process gone (the file left behind): removed, and the path can be bound.
        drop(listener);
        assert!(path.exists());
        remove_stale_socket(&path).unwrap();
        assert!(!path.exists());
        let (_fd, _file) = bind_owner_only(&path).unwrap();
        // Something that is not a socket is left alone.
        let other = dir.join("file");
        fs::write(&other, b"mine").unwrap();
        remove_stale_socket(&other).unwrap();
        assert_eq!(fs::read(&other).unwrap(), b"mine");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_bytes_with_and_without_fds() {
        let (a, mut b) = UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"plain", &[]).unwrap(), 5);
        let (x, _y) = UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"fd", &[x.into()]).unwrap(), 2);
        let mut buf = [0u8; 16];
        let n = b.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"plainfd");
    }

    #[test]
    fn random_seeds_differ() {
        let seeds: std::collections::HashSet<u64> = (0..16).map(|_| random_seed()).collect();
        assert_eq!(seeds.len(), 16);
    }

    #[test]
    fn receives_bytes_with_their_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"x", &[file.into()]).unwrap(), 1);
        send_with_fds(a.as_fd(), b"yz", &[]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"x", "a read stops at the bytes that carry fds");
        assert_eq!(fds.len(), 1);
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"yz"[..], 0));
        drop(a);
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf).unwrap().0, 0);
    }
}

/// A listening unix socket made by [`listen`] (a std `UnixListener`, or what an adapter wraps
/// it in), and the guard of its file, dropped after the socket: the file is removed once the
/// socket is closed.
#[derive(Debug)]
pub struct Listening<L = std::os::unix::net::UnixListener> {
    /// The socket, non-blocking, owner-only.
    pub listener: L,
    /// Removes the socket file on drop, if it is still the one created.
    pub socket: SocketFile,
}

impl Listening {
    /// Wraps the socket for an adapter's runtime (`Async::new`, say), with errors saying
    /// `cannot listen on PATH`.
    pub fn wrap<L>(
        self,
        wrap: impl FnOnce(std::os::unix::net::UnixListener) -> io::Result<L>,
    ) -> Result<Listening<L>, crate::Error> {
        let listener = wrap(self.listener).map_err(|e| {
            crate::Error::io(
                format!("cannot listen on {}", self.socket.path().display()),
                e,
            )
        })?;
        Ok(Listening {
            listener,
            socket: self.socket,
        })
    }
}

impl<L> Listening<L> {
    /// The socket path.
    pub fn path(&self) -> &Path {
        self.socket.path()
    }

    /// The error of a failed `accept` on this socket.
    pub fn accept_error(&self, error: io::Error) -> crate::Error {
        crate::Error::io(format!("cannot accept on {}", self.path().display()), error)
    }
}

/// An adapter's accept mode starts here: [`bind_owner_only`] at `path`, made non-blocking,
/// with errors saying `cannot listen on PATH`.
pub fn listen(path: &Path) -> Result<Listening, crate::Error> {
    let context = || format!("cannot listen on {}", path.display());
    let (fd, socket) = bind_owner_only(path).map_err(|e| crate::Error::io(context(), e))?;
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|e| crate::Error::io(context(), e))?;
    Ok(Listening { listener, socket })
}
