//! The send buffer: bytes to write, with file descriptors pinned to the first byte of the
//! command they travel with.

use std::collections::VecDeque;

#[cfg(unix)]
use std::os::fd::OwnedFd;

/// Bytes to write to the transport, returned by
/// [`Client::poll_transmit`](crate::Client::poll_transmit) (and by the server engine's
/// `poll_transmit`, whose `fds` are always empty).
///
/// When `fds` is not empty, they must be sent (as `SCM_RIGHTS` ancillary data) together with
/// the first byte of `data`. Then report how many bytes were written with
/// [`Client::advance_transmit`](crate::Client::advance_transmit).
#[derive(Debug)]
pub struct Transmit<'a> {
    /// The bytes to write. Write as many as the transport takes.
    pub data: &'a [u8],
    /// File descriptors to send with the first byte of `data`.
    #[cfg(unix)]
    pub fds: &'a [OwnedFd],
}

#[derive(Debug, Default)]
pub(crate) struct TxBuffer {
    buf: Vec<u8>,
    /// Bytes already written.
    pos: usize,
    /// File descriptors to send at an offset of `buf`, in offset order.
    #[cfg(unix)]
    fds: VecDeque<(usize, Vec<OwnedFd>)>,
    #[cfg(not(unix))]
    fds: VecDeque<(usize, ())>,
}

impl TxBuffer {
    /// The buffer to append a command to.
    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes appended since offset `at`.
    pub(crate) fn since(&self, at: usize) -> &[u8] {
        &self.buf[at..]
    }

    /// Pins `fds` to the byte at `offset` (the first byte of a command just appended).
    #[cfg(unix)]
    pub(crate) fn attach(&mut self, offset: usize, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            self.fds.push_back((offset, fds));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn poll(&self) -> Option<Transmit<'_>> {
        if self.is_empty() {
            return None;
        }
        // Stop before the next fd boundary so that its fds go with its first byte.
        let mut end = self.buf.len();
        #[cfg(unix)]
        let mut fds: &[OwnedFd] = &[];
        for (offset, set) in &self.fds {
            if *offset == self.pos {
                #[cfg(unix)]
                {
                    fds = set;
                }
                #[cfg(not(unix))]
                let _ = set;
            } else if *offset > self.pos {
                end = *offset;
                break;
            }
        }
        Some(Transmit {
            data: &self.buf[self.pos..end],
            #[cfg(unix)]
            fds,
        })
    }

    /// Marks `n` bytes as written (clamped to what is pending). File descriptors pinned to a
    /// written byte are closed: the kernel holds its own copies once they are sent.
    pub(crate) fn advance(&mut self, n: usize) {
        let n = n.min(self.pending());
        if n == 0 {
            return;
        }
        self.pos += n;
        while self
            .fds
            .front()
            .is_some_and(|(offset, _)| *offset < self.pos)
        {
            self.fds.pop_front();
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > 1024 * 1024 {
                self.buf = Vec::new();
            }
        } else if self.pos > 64 * 1024 && self.pos > self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            for (offset, _) in self.fds.iter_mut() {
                *offset -= self.pos;
            }
            self.pos = 0;
        }
    }

    /// Drops everything unsent (and closes pinned file descriptors).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.fds.clear();
    }
}
