//! `util/unicode.c`: QEMU's reading of (modified) UTF-8, shared by the parser and the
//! writer.

/// Whether `cp` is a Unicode scalar value that is not a noncharacter.
pub(super) fn is_valid_codepoint(cp: i64) -> bool {
    !(cp > 0x10FFFF
        || (0xFDD0..=0xFDEF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
        || (0xD800..=0xDFFF).contains(&cp))
}

/// `util/unicode.c`'s `mod_utf8_codepoint`: the code point at the start of `s` (or -1) and
/// how many bytes it took.
pub(super) fn mod_utf8_codepoint(s: &[u8]) -> (i64, usize) {
    const MIN_CP: [i64; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let Some(&first) = s.first() else {
        return (-1, 0);
    };
    let byte = i64::from(first);
    if byte < 0x80 {
        return (byte, 1);
    }
    if byte >= 0xFE || byte & 0x40 == 0 {
        return (-1, 1);
    }
    let len = (first.leading_ones()) as usize;
    let mut cp = byte & ((0x80 >> len) - 1);
    let mut p = 1;
    for _ in 1..len {
        let b = s.get(p).copied().unwrap_or(0);
        if b & 0xC0 != 0x80 {
            return (-1, p);
        }
        p += 1;
        cp = (cp << 6) | i64::from(b & 0x3F);
    }
    if !is_valid_codepoint(cp) || (cp < MIN_CP[len - 2] && !(cp == 0 && len == 2)) {
        return (-1, p);
    }
    (cp, p)
}
