//! What the async adapters' drivers share about reading and taking turns: a read buffer
//! that grows with the traffic, and the work a driver does before it lets others run.

/// Bytes per read, at most.
pub const READ_CHUNK: usize = 64 * 1024;

/// Bytes of a connection's first read buffer: most QMP messages are shorter, and a
/// connection that never sees a longer one (most of a fleet's) keeps no more per session.
pub const FIRST_READ_CHUNK: usize = 1024;

/// Bytes a driver reads before it lets other tasks run.
pub const READ_BUDGET: usize = 256 * 1024;

/// Bytes a driver writes before it lets other tasks run.
pub const WRITE_BUDGET: usize = 1024 * 1024;

/// Requests a driver takes from its handles before it writes and lets other tasks run.
pub const REQUEST_BUDGET: usize = 256;

/// A read buffer of [`FIRST_READ_CHUNK`] bytes that doubles, up to [`READ_CHUNK`], each
/// time a read fills it: an idle connection holds 1 KiB while a busy one soon reads 64 KiB
/// at a time.
///
/// ```
/// use qmp_kit::buffer::{ReadBuf, FIRST_READ_CHUNK};
///
/// let mut buf = ReadBuf::new();
/// assert_eq!(buf.space().len(), FIRST_READ_CHUNK);
/// assert!(!buf.filled(100)); // a short read: everything that had arrived
/// assert!(buf.filled(FIRST_READ_CHUNK)); // a full one: there may be more
/// assert_eq!(buf.space().len(), 2 * FIRST_READ_CHUNK);
/// ```
#[derive(Debug)]
pub struct ReadBuf(Box<[u8]>);

impl ReadBuf {
    /// A buffer of [`FIRST_READ_CHUNK`] bytes.
    pub fn new() -> Self {
        ReadBuf(vec![0; FIRST_READ_CHUNK].into_boxed_slice())
    }

    /// The whole buffer, to read into.
    #[inline]
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// The first `n` bytes, as the last read left them.
    #[inline]
    pub fn data(&self, n: usize) -> &[u8] {
        &self.0[..n]
    }

    /// Notes a read of `n` bytes (after its data was taken): whether it filled the buffer,
    /// in which case the buffer grows (for the next read) and more input may be waiting.
    #[inline]
    pub fn filled(&mut self, n: usize) -> bool {
        let full = n == self.0.len();
        if full && n < READ_CHUNK {
            self.0 = vec![0; (2 * n).min(READ_CHUNK)].into_boxed_slice();
        }
        full
    }
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self::new()
    }
}
