//! Framing by JSON structure.
//!
//! QEMU ends each message with `\r\n`, but a monitor created with `pretty=on` spreads one
//! message over many lines, and the guest agent ends lines with `\n` alone. So messages are
//! delimited by their JSON structure: a message starts with `{` (or `[`, which is then
//! rejected as not an object) and ends when its brackets balance, outside strings.
//!
//! The scan is resumable: the state (depth, inside a string, after a backslash) survives
//! between inputs, so each byte is looked at once however the input is split. A frame that
//! lies wholly inside one input chunk is handed out straight from that chunk; only the
//! unfinished tail of a chunk is copied into the framer's buffer, which therefore never holds
//! more than the configured maximum message size.

use std::ops::ControlFlow;

use crate::error::{Excerpt, ProtocolError, EXCERPT_LIMIT};

/// What the framer hands out.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Frame<'a> {
    /// A complete message: balanced brackets starting with `{` or `[`.
    Message(&'a [u8]),
    /// Bytes between messages that cannot start one, up to the end of their line (without
    /// the line end), or [`EXCERPT_LIMIT`] of them, whichever comes first: the same cut
    /// however the input is split.
    Garbage(&'a [u8]),
}

/// Where the framer's frames go.
///
/// Any `FnMut(Frame) -> ControlFlow<()>` is a sink that only takes frames. A sink may also
/// take a whole message straight from the input ([`whole`](FrameSink::whole)), parsing it
/// once rather than after the framer's scan.
pub(crate) trait FrameSink {
    /// Takes a frame, as [`Framer::feed`] says.
    fn frame(&mut self, frame: Frame<'_>) -> ControlFlow<()>;

    /// Offered at the start of each message that begins in the input being fed: `input`
    /// starts with `{`, is valid UTF-8, and is cut at the size limit (and after its last
    /// `}`, as a complete object ends with one; and shorter where the input likely ends
    /// inside a message). A sink that finds a whole, valid message at
    /// its start, nested no deeper than `max_depth`, takes it and returns its length with the
    /// flow, as [`frame`](FrameSink::frame) would for the same bytes; `None` leaves the
    /// message to the scan (which then finds the same frame, or the error).
    fn whole(&mut self, input: &str, max_depth: usize) -> Option<(usize, ControlFlow<()>)> {
        let _ = (input, max_depth);
        None
    }
}

impl<F: FnMut(Frame<'_>) -> ControlFlow<()>> FrameSink for F {
    fn frame(&mut self, frame: Frame<'_>) -> ControlFlow<()> {
        self(frame)
    }
}

/// The resumable framer.
#[derive(Debug)]
pub(crate) struct Framer {
    /// The unfinished frame, from its first byte. Empty when no frame is open or when the
    /// open frame began in the chunk being scanned.
    buf: Vec<u8>,
    /// Whether a frame is open.
    in_frame: bool,
    /// Collecting bytes that cannot start a frame, for the error report (in `buf`).
    garbage: bool,
    /// Bracket depth of the open frame.
    depth: usize,
    /// Inside a string literal.
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escape: bool,
    max_size: usize,
    max_depth: usize,
    /// Bytes looked at by `scan`, to prove each byte is scanned once.
    #[cfg(test)]
    scanned: usize,
}

/// The valid UTF-8 of the input being fed, for the messages offered whole.
#[derive(Debug, Clone, Copy)]
struct Window<'a> {
    /// From `base` to the end of the input or its first invalid byte.
    text: &'a str,
    base: usize,
    /// Where the last `}` of `text` is in the input.
    last_close: Option<usize>,
    /// Whether that `}` is the input's last byte but for whitespace.
    ends_closed: bool,
}

/// The longest prefix of `input` that is valid UTF-8.
fn utf8_prefix(input: &[u8]) -> &str {
    match std::str::from_utf8(input) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&input[..e.valid_up_to()]).unwrap_or_default(),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl Framer {
    pub(crate) fn new(max_size: usize, max_depth: usize) -> Self {
        Framer {
            buf: Vec::new(),
            in_frame: false,
            garbage: false,
            depth: 0,
            in_string: false,
            escape: false,
            max_size: max_size.max(2),
            max_depth: max_depth.max(1),
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Forgets any unfinished frame.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        self.in_frame = false;
        self.garbage = false;
        self.depth = 0;
        self.in_string = false;
        self.escape = false;
    }

    /// Whether unexpected bytes are being collected for an error report.
    pub(crate) fn in_garbage(&self) -> bool {
        self.garbage
    }

    /// What is wrong with the input seen so far if it ends here: an unfinished frame, or
    /// unexpected bytes not yet reported.
    pub(crate) fn at_eof(&self) -> Option<ProtocolError> {
        if self.garbage {
            Some(ProtocolError::UnexpectedData(Excerpt::new(&self.buf)))
        } else if self.in_frame {
            Some(ProtocolError::Truncated(Excerpt::new(&self.buf)))
        } else {
            None
        }
    }

    /// The bytes of an unfinished frame, or of unexpected bytes not yet reported.
    pub(crate) fn partial(&self) -> &[u8] {
        &self.buf
    }

    /// How many bytes are buffered (for memory accounting).
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Scans `input`, giving the sink each complete frame, and each line of bytes that
    /// cannot start one, in order (a message that the sink takes [whole](FrameSink::whole)
    /// is not scanned). Stops early when the sink breaks, right after the frame it broke on
    /// (the framer is then reset). Returns how many bytes of `input` it took: all of them,
    /// unless the sink broke. A message over the size or depth limit is an error, which
    /// also resets the framer; the caller ends the session.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        mut sink: impl FrameSink,
    ) -> Result<usize, ProtocolError> {
        // The input's UTF-8 window for the messages offered whole (see `offer_whole`).
        let mut window = None;
        let mut i = 0;
        loop {
            if self.garbage {
                // Collect the unexpected bytes up to the end of their line (or the excerpt
                // limit), so that the report does not depend on how the input was split.
                // Never more than the message size limit either, so memory stays within it.
                let room = EXCERPT_LIMIT.min(self.max_size) - self.buf.len();
                let rest = &input[i..];
                let (take, done) = match rest.iter().position(|b| *b == b'\n') {
                    Some(nl) if nl <= room => (nl, true),
                    _ if rest.len() >= room => (room, true),
                    _ => (rest.len(), false),
                };
                self.buf.extend_from_slice(&rest[..take]);
                if !done {
                    return Ok(input.len());
                }
                let line = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
                let flow = sink.frame(Frame::Garbage(line));
                self.reset();
                i += take;
                if flow.is_break() {
                    return Ok(i);
                }
                continue;
            }
            if !self.in_frame {
                while i < input.len() && is_ws(input[i]) {
                    i += 1;
                }
                if i == input.len() {
                    return Ok(i);
                }
                if input[i] == b'{' {
                    let whole = self.offer_whole(input, i, &mut window, &mut sink);
                    if let Some((len @ 1.., flow)) = whole {
                        i += len;
                        if flow.is_break() {
                            self.reset();
                            return Ok(i);
                        }
                        continue;
                    }
                }
                match input[i] {
                    b'{' | b'[' => {
                        self.in_frame = true;
                        self.depth = 0;
                        self.in_string = false;
                        self.escape = false;
                        debug_assert!(self.buf.is_empty());
                    }
                    _ => {
                        debug_assert!(self.buf.is_empty());
                        self.garbage = true;
                        continue;
                    }
                }
            }
            // A frame is open. `start` is where its bytes in this chunk begin.
            let start = i;
            let room = self.max_size - self.buf.len();
            let end = input.len().min(start.saturating_add(room));
            match self.scan(&input[start..end]) {
                Err(at) => {
                    let err = ProtocolError::TooDeep {
                        limit: self.max_depth,
                        excerpt: self.excerpt(&input[start..start + at]),
                    };
                    self.reset();
                    return Err(err);
                }
                Ok(Some(len)) => {
                    let stop = start + len;
                    let flow = if self.buf.is_empty() {
                        sink.frame(Frame::Message(&input[start..stop]))
                    } else {
                        self.buf.extend_from_slice(&input[start..stop]);
                        let flow = sink.frame(Frame::Message(&self.buf));
                        self.buf.clear();
                        flow
                    };
                    self.in_frame = false;
                    i = stop;
                    if flow.is_break() {
                        self.reset();
                        return Ok(i);
                    }
                }
                Ok(None) => {
                    if end < input.len() {
                        // The byte at `end` is one past the limit.
                        let err = ProtocolError::MessageTooLarge {
                            limit: self.max_size,
                            excerpt: self.excerpt(&input[start..=end]),
                        };
                        self.reset();
                        return Err(err);
                    }
                    self.buf.extend_from_slice(&input[start..end]);
                    return Ok(input.len());
                }
            }
        }
    }

    /// Offers the message that starts at `input[at]` to the sink whole, cut at the size
    /// limit and after the input's last `}`. An input that does not end with a `}` (but for
    /// whitespace) likely ends inside a message (a long reply arriving in several reads):
    /// there the cut is also at twice the depth limit, so that a message the sink cannot
    /// finish costs it little more than a short one (one longer is scanned instead). `window`
    /// is the input's valid UTF-8 from where it was last checked up to its end or its first
    /// invalid byte: checked afresh only for a message that begins past it, so each byte is
    /// checked at most once however many messages the input holds.
    #[inline(never)]
    fn offer_whole<'a>(
        &self,
        input: &'a [u8],
        at: usize,
        window: &mut Option<Window<'a>>,
        sink: &mut impl FrameSink,
    ) -> Option<(usize, ControlFlow<()>)> {
        let w = match *window {
            Some(w) if at >= w.base && at < w.base + w.text.len() => w,
            _ => {
                let text = utf8_prefix(&input[at..]);
                let last_close = text.as_bytes().iter().rposition(|&b| b == b'}');
                let last = input.iter().rposition(|&b| !is_ws(b));
                *window.insert(Window {
                    text,
                    base: at,
                    last_close: last_close.map(|c| at + c),
                    ends_closed: last_close.map(|c| at + c) == last,
                })
            }
        };
        let close = w.last_close.filter(|&c| c > at)?;
        let limit = if w.ends_closed {
            self.max_size
        } else {
            self.max_size.min(self.max_depth.saturating_mul(2))
        };
        let mut end = (close + 1).min(at.saturating_add(limit));
        while !w.text.is_char_boundary(end - w.base) {
            end -= 1;
        }
        let message = w.text.get(at - w.base..end - w.base)?;
        sink.whole(message, self.max_depth)
    }

    /// An excerpt of the open frame: the buffered bytes followed by `tail`, which runs up to
    /// and including the offending byte, so the excerpt does not depend on the split.
    fn excerpt(&self, tail: &[u8]) -> Excerpt {
        let total = self.buf.len() + tail.len();
        if self.buf.len() >= EXCERPT_LIMIT {
            Excerpt::with_total(&self.buf, total)
        } else {
            let mut head = self.buf.clone();
            head.extend_from_slice(&tail[..tail.len().min(EXCERPT_LIMIT - head.len())]);
            Excerpt::with_total(&head, total)
        }
    }

    /// Advances the scan state over `bytes`, which continue the open frame. Returns the
    /// length up to and including the byte that closes the frame, `None` if it stays open,
    /// or `Err` with the length up to and including the bracket that exceeds the depth limit.
    fn scan(&mut self, bytes: &[u8]) -> Result<Option<usize>, usize> {
        let result = self.scan_inner(bytes);
        #[cfg(test)]
        {
            self.scanned += match result {
                Ok(Some(n)) | Err(n) => n,
                Ok(None) => bytes.len(),
            };
        }
        result
    }

    fn scan_inner(&mut self, bytes: &[u8]) -> Result<Option<usize>, usize> {
        // Blocks of 64 bytes that cannot end the frame or exceed the depth limit are skipped
        // with bit masks, without a branch per string or bracket; the others (the first
        // block of a frame, its last, blocks with a backslash) are scanned byte by byte.
        let n = bytes.len();
        if n < 2 * BLOCK {
            return self.scan_bytes(bytes);
        }
        let mut i = 0;
        while i < n {
            // At depth 0 the block holds the frame's opening bracket, and a block with less
            // than a block after it is likely to hold the closing one: both are scanned by
            // bytes (which also spares a small message a block attempt that would fail).
            if n - i >= 2 * BLOCK
                && self.depth > 0
                && !self.escape
                && self.skip_block(&bytes[i..i + BLOCK])
            {
                i += BLOCK;
                continue;
            }
            let end = n.min(i + BLOCK);
            match self.scan_bytes(&bytes[i..end]) {
                Ok(None) => i = end,
                Ok(Some(len)) => return Ok(Some(i + len)),
                Err(len) => return Err(i + len),
            }
        }
        Ok(None)
    }

    /// Advances the state over `block` ([`BLOCK`] bytes) if it holds no backslash and can
    /// neither close the frame nor take it over the depth limit; otherwise returns `false`
    /// and changes nothing.
    fn skip_block(&mut self, block: &[u8]) -> bool {
        let masks = BlockMasks::of(block);
        if masks.backslash != 0 {
            return false;
        }
        // Bit j: byte j is inside a string (an opening quote counts as inside, a closing one
        // as outside): the parity of the quotes up to j, flipped if a string was open.
        let mut inside = masks.quote;
        for shift in [1, 2, 4, 8, 16, 32] {
            inside ^= inside << shift;
        }
        if self.in_string {
            inside = !inside;
        }
        let opens = (masks.open & !inside).count_ones() as usize;
        let closes = (masks.close & !inside).count_ones() as usize;
        // The depth never drops below `depth - closes` nor rises above `depth + opens`.
        if closes >= self.depth || self.depth + opens > self.max_depth {
            return false;
        }
        self.depth = self.depth + opens - closes;
        self.in_string = inside >> 63 == 1;
        true
    }

    #[inline]
    fn scan_bytes(&mut self, bytes: &[u8]) -> Result<Option<usize>, usize> {
        // The state lives in locals while the loop runs (written back when the input runs
        // out): most of the cost is per structural byte, not per byte.
        let n = bytes.len();
        let mut i = 0;
        let mut depth = self.depth;
        let mut in_string = self.in_string;
        if in_string && self.escape {
            if n == 0 {
                return Ok(None);
            }
            self.escape = false;
            i = 1;
        }
        loop {
            if in_string {
                // Ordinary string content, then the quote or backslash that ends the run.
                i += string_run(&bytes[i..]);
                if i >= n {
                    break;
                }
                let b = bytes[i];
                i += 1;
                if b == b'"' {
                    in_string = false;
                } else if i < n {
                    // The escaped byte.
                    i += 1;
                } else {
                    self.escape = true;
                    break;
                }
                continue;
            }
            // Skip the bytes that cannot change the structure (names, numbers, `:`, `,`,
            // whitespace) with one table look-up each.
            let b = loop {
                if i >= n {
                    self.depth = depth;
                    self.in_string = false;
                    return Ok(None);
                }
                let b = bytes[i];
                i += 1;
                if STRUCTURAL[usize::from(b)] {
                    break b;
                }
            };
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > self.max_depth {
                        self.depth = depth;
                        self.in_string = false;
                        return Err(i);
                    }
                }
                _ => {
                    // `}` or `]`.
                    depth -= 1;
                    if depth == 0 {
                        self.depth = 0;
                        self.in_string = false;
                        return Ok(Some(i));
                    }
                }
            }
        }
        self.depth = depth;
        self.in_string = true;
        Ok(None)
    }
}

/// The bytes a block holds.
const BLOCK: usize = 64;

/// Where the bytes that matter are in a block: bit `j` stands for byte `j`.
struct BlockMasks {
    quote: u64,
    backslash: u64,
    /// `{` and `[`.
    open: u64,
    /// `}` and `]`.
    close: u64,
}

impl BlockMasks {
    fn of(block: &[u8]) -> BlockMasks {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        /// The high bit of each byte of `v` that is zero (exact: no carry crosses bytes).
        fn zero_bytes(v: u64) -> u64 {
            !(((v & LOW7) + LOW7) | v) & !LOW7
        }
        /// The high bits of the eight bytes gathered into the low eight bits.
        fn gather(high: u64) -> u64 {
            ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
        }
        let mut m = BlockMasks {
            quote: 0,
            backslash: 0,
            open: 0,
            close: 0,
        };
        for (k, chunk) in block.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            // `{` is 0x7b and `[` 0x5b, `}` 0x7d and `]` 0x5d: they differ in bit 5 only.
            let folded = w | (ONES * 0x20);
            let shift = 8 * k;
            m.quote |= gather(zero_bytes(w ^ (ONES * u64::from(b'"')))) << shift;
            m.backslash |= gather(zero_bytes(w ^ (ONES * u64::from(b'\\')))) << shift;
            m.open |= gather(zero_bytes(folded ^ (ONES * u64::from(b'{')))) << shift;
            m.close |= gather(zero_bytes(folded ^ (ONES * u64::from(b'}')))) << shift;
        }
        m
    }
}

/// The bytes that matter to the scan outside strings: quotes and brackets.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'"' as usize] = true;
    table[b'{' as usize] = true;
    table[b'}' as usize] = true;
    table[b'[' as usize] = true;
    table[b']' as usize] = true;
    table
};

/// How many bytes of `s` come before the first `"` or `\\` (all of them if there is none),
/// looking at eight bytes at a time.
#[inline]
fn string_run(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    for chunk in s.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // The high bit of each byte that is zero in `quote` or `backslash`, exact for the
        // lowest such byte (a borrow can only flag bytes above a real match).
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() && s[i] != b'"' && s[i] != b'\\' {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, input: &[u8]) -> Result<Vec<String>, ProtocolError> {
        let mut out = Vec::new();
        let mut garbage = None;
        framer.feed(input, |f: Frame<'_>| match f {
            Frame::Message(f) => {
                out.push(String::from_utf8_lossy(f).into_owned());
                ControlFlow::Continue(())
            }
            Frame::Garbage(line) => {
                garbage = Some(ProtocolError::UnexpectedData(Excerpt::new(line)));
                ControlFlow::Break(())
            }
        })?;
        garbage.map_or(Ok(out), Err)
    }

    #[test]
    fn splits_by_structure_not_lines() {
        let mut f = Framer::new(1 << 20, 64);
        let input = b"{\"a\": \"}{\\\"\", \"b\": [1,\r\n {}]}\r\n  {\"c\":\n 1}\n{";
        let out = frames(&mut f, input).unwrap();
        assert_eq!(
            out,
            vec!["{\"a\": \"}{\\\"\", \"b\": [1,\r\n {}]}", "{\"c\":\n 1}"]
        );
        assert!(matches!(f.at_eof(), Some(ProtocolError::Truncated(_))));
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"{\"x\":\"a\\\\\"}{\"y\":[[\"]\"]]}";
        let mut whole = Framer::new(1 << 20, 64);
        let a = frames(&mut whole, input).unwrap();
        let mut single = Framer::new(1 << 20, 64);
        let mut b = Vec::new();
        for byte in input.iter() {
            b.extend(frames(&mut single, std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn size_limit_is_enforced_while_scanning() {
        let mut f = Framer::new(10, 64);
        assert!(matches!(
            frames(&mut f, b"{\"a\":\"1234\"}"),
            Err(ProtocolError::MessageTooLarge { limit: 10, .. })
        ));
        let mut f = Framer::new(12, 64);
        assert_eq!(frames(&mut f, b"{\"a\":\"1234\"}").unwrap().len(), 1);
        let mut f = Framer::new(11, 64);
        // Byte by byte: the buffer never holds more than the limit.
        let input = b"{\"a\":\"1234\"}";
        let mut err = None;
        for byte in input.iter() {
            match frames(&mut f, std::slice::from_ref(byte)) {
                Ok(_) => assert!(f.buffered() <= 11),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(
            err,
            Some(ProtocolError::MessageTooLarge { limit: 11, .. })
        ));
    }

    #[test]
    fn each_byte_is_scanned_once_however_split() {
        // A 1 MB message with strings, escapes and nesting, fed whole, byte by byte and in
        // odd pieces: the scan looks at every byte exactly once (O(N), never O(N^2)).
        let mut msg = b"{\"return\": [".to_vec();
        while msg.len() < 1_000_000 {
            msg.extend_from_slice(b"{\"k\": \"v\\\"}{]\", \"n\": [1, 2, {\"x\": null}]}, ");
        }
        msg.extend_from_slice(b"{}], \"id\": 1}\r\n");
        let body = msg.len() - 2;
        for piece in [msg.len(), 1, 7, 4096] {
            let mut f = Framer::new(2_000_000, 64);
            let mut count = 0;
            for chunk in msg.chunks(piece) {
                f.feed(chunk, |frame: Frame<'_>| {
                    let Frame::Message(frame) = frame else {
                        panic!("garbage")
                    };
                    assert_eq!(frame.len(), body);
                    count += 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
            }
            assert_eq!(count, 1);
            assert_eq!(f.scanned, body, "piece size {piece}");
        }
    }

    #[test]
    fn block_masks_mark_exactly_the_bytes_that_matter() {
        // Every byte value at every position of a block.
        for value in 0..=255u8 {
            for at in 0..BLOCK {
                let mut block = [b'a'; BLOCK];
                block[at] = value;
                let m = BlockMasks::of(&block);
                let bit = 1u64 << at;
                let expect = |hit: bool| if hit { bit } else { 0 };
                assert_eq!(m.quote, expect(value == b'"'), "{value} at {at}");
                assert_eq!(m.backslash, expect(value == b'\\'), "{value} at {at}");
                assert_eq!(
                    m.open,
                    expect(matches!(value, b'{' | b'[')),
                    "{value} at {at}"
                );
                assert_eq!(
                    m.close,
                    expect(matches!(value, b'}' | b']')),
                    "{value} at {at}"
                );
            }
        }
        let mixed: Vec<u8> = (0..BLOCK as u8)
            .map(|j| b"\"{}[]\\ax"[usize::from(j) % 8])
            .collect();
        let m = BlockMasks::of(&mixed);
        let every = |phase: u32| (0..8).fold(0u64, |acc, k| acc | 1 << (8 * k + phase));
        assert_eq!(m.quote, every(0));
        assert_eq!(m.open, every(1) | every(3));
        assert_eq!(m.close, every(2) | every(4));
        assert_eq!(m.backslash, every(5));
    }

    #[test]
    fn blocks_and_bytes_agree() {
        // Frames with strings holding brackets, escapes and long runs, at every offset
        // relative to the 64-byte blocks, depth near the limit: scanned whole (blocks) and
        // byte by byte (no block fits), they must frame alike.
        let inner = r#"{"a": "x{[}]\\\"y", "b": [1, 2, {"c": "0123456789012345678901234567890123456789012345678901234567890123456789"}], "d": {}}"#;
        for pad in 0..70 {
            let frame = format!(
                r#"{{"pad": "{}", "v": [{inner}, {inner}]}}"#,
                "p".repeat(pad)
            );
            let input = format!("{frame}\r\n{frame}");
            for depth_limit in [3, 4, 1024] {
                let mut whole = Framer::new(1 << 20, depth_limit);
                let mut bytes = Framer::new(1 << 20, depth_limit);
                let a = frames(&mut whole, input.as_bytes());
                let b = input
                    .as_bytes()
                    .iter()
                    .map(|b| frames(&mut bytes, std::slice::from_ref(b)))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|v| v.concat());
                assert_eq!(
                    a.as_ref().map_err(ToString::to_string),
                    b.as_ref().map_err(ToString::to_string),
                    "pad {pad}, limit {depth_limit}"
                );
                if depth_limit == 1024 {
                    assert_eq!(a.expect("frames"), vec![frame.clone(), frame.clone()]);
                }
            }
        }
    }

    #[test]
    fn string_run_stops_at_the_first_quote_or_backslash() {
        // Bytes next to the two targets, and bytes with the high bit set, around every
        // position of a target in runs shorter and longer than a word.
        let fill = [
            b'a', b'!', b'#', b'[', b']', 0x00, 0x7f, 0x80, 0xa2, 0xdc, 0xff,
        ];
        for len in 0..24 {
            for &f in &fill {
                let plain = vec![f; len];
                assert_eq!(string_run(&plain), len);
                for at in 0..len {
                    for target in [b'"', b'\\'] {
                        let mut s = plain.clone();
                        s[at] = target;
                        if at + 1 < len {
                            s[at + 1] = b'"';
                        }
                        assert_eq!(string_run(&s), at, "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_input_that_ends_inside_a_message_is_offered_cut() {
        struct Offers<'a>(&'a mut Vec<usize>);
        impl FrameSink for Offers<'_> {
            fn frame(&mut self, _: Frame<'_>) -> ControlFlow<()> {
                ControlFlow::Continue(())
            }
            fn whole(&mut self, input: &str, _: usize) -> Option<(usize, ControlFlow<()>)> {
                self.0.push(input.len());
                None
            }
        }
        let long = format!("{{\"a\": \"{}\", \"b\": {{}}}}", "x".repeat(10_000));
        let offers = |input: &str| {
            let mut offered = Vec::new();
            Framer::new(1 << 20, 64)
                .feed(input.as_bytes(), Offers(&mut offered))
                .unwrap();
            offered
        };
        // Ending with `}` (and whitespace): offered up to it; else cut at twice the depth.
        assert_eq!(offers(&format!("{long}\r\n")), vec![long.len()]);
        assert_eq!(offers(&format!("{long}\r\n{{\"c\": {{}}, ")), vec![128, 8]);
        let list = format!("{{\"a\": [{}]}}", vec!["{}"; 3000].join(", "));
        let comma = list[..5000].rfind(',').unwrap();
        assert_eq!(offers(&list[..=comma]), vec![128]);
        assert_eq!(offers(&list[..comma]), vec![comma]);
    }

    #[test]
    fn depth_limit() {
        let mut f = Framer::new(1 << 20, 3);
        assert_eq!(frames(&mut f, b"[[[]]]").unwrap().len(), 1);
        assert!(matches!(
            frames(&mut f, b"[[[["),
            Err(ProtocolError::TooDeep { limit: 3, .. })
        ));
    }

    #[test]
    fn garbage_between_messages() {
        let mut f = Framer::new(1 << 20, 3);
        // Reported at the end of its line, whatever the split.
        assert!(frames(&mut f, b"{}\r\nin").unwrap().len() == 1);
        let e = frames(&mut f, b"f\r\n{}").unwrap_err();
        assert_eq!(e.to_string(), "unexpected data between messages: inf");
        let mut f = Framer::new(1 << 20, 3);
        assert!(frames(&mut f, b"(qemu) ").unwrap().is_empty());
        assert_eq!(
            f.at_eof().unwrap().to_string(),
            "unexpected data between messages: (qemu) "
        );
        let mut f = Framer::new(1 << 20, 3);
        let e = frames(&mut f, &[b'x'; 1000]).unwrap_err();
        assert!(matches!(e, ProtocolError::UnexpectedData(x) if x.bytes().len() == EXCERPT_LIMIT));
    }
}
