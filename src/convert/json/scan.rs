//! The byte scanner: a cursor over one record's bytes (known to be valid
//! UTF-8) that reads JSON tokens in place (numbers and strings as slices,
//! escapes undone only when a string has them) and skips values the schema
//! does not want, still checking them.
//!
//! Neighbours: the field sets and column builders in [`super`] drive it key
//! by key; its failures are [`super::Fail`]s with `DataFormatConversion`'s
//! malformed-record code.

use super::{Fail, MAX_DEPTH, R, codes, fail};

/// The index of the first byte at or after `i` that ends a plain run of a
/// JSON string: a quote, a backslash or a control character (or `s.len()`).
///
/// Eight bytes at a time (SWAR): strings are most of a record's bytes (the
/// byte loop this replaced, `string_into`, was ~4% of `sluice convert`'s CPU
/// in perf; the gain was not separated from the machine's noise). For each test the
/// classic "has a zero byte" trick, `(x - 0x01..) & !x & 0x80..`, sets the
/// high bit of the first byte that passes (bits above it may be wrong, from
/// the borrow, but only the lowest set bit is used). Bytes of 0x80 and above
/// (UTF-8 sequences) pass none of the tests.
#[inline]
pub(super) fn string_special(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// A cursor over one record's bytes (known to be valid UTF-8).
pub(super) struct Parser<'a> {
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Parser<'a> {
    #[inline]
    pub(super) fn ws(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    #[inline]
    pub(super) fn next(&mut self) -> Option<u8> {
        let c = self.s.get(self.pos).copied();
        self.pos += 1;
        c
    }

    pub(super) fn syntax(&self) -> Fail {
        self.syntax_at(self.pos)
    }

    pub(super) fn syntax_at(&self, pos: usize) -> Fail {
        let msg = match self.s.get(pos) {
            None => "invalid JSON: unexpected end of input".to_owned(),
            Some(&c) if c.is_ascii_graphic() => {
                format!(
                    "invalid JSON: unexpected `{}` at byte {}",
                    c as char,
                    pos + 1
                )
            }
            Some(&c) => format!(
                "invalid JSON: unexpected byte 0x{c:02x} at byte {}",
                pos + 1
            ),
        };
        Fail {
            code: codes::MALFORMED,
            msg,
            path: Vec::new(),
        }
    }

    pub(super) fn literal(&mut self, lit: &[u8]) -> R<()> {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    pub(super) fn boolean(&mut self) -> R<bool> {
        if self.peek() == Some(b't') {
            self.literal(b"true")?;
            Ok(true)
        } else {
            self.literal(b"false")?;
            Ok(false)
        }
    }

    /// A JSON number; returns its text.
    #[inline]
    pub(super) fn number(&mut self) -> R<&'a [u8]> {
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
            }
            _ => return Err(self.syntax_at(i)),
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            let d = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            if i == d {
                return Err(self.syntax_at(i));
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let d = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            if i == d {
                return Err(self.syntax_at(i));
            }
        }
        self.pos = i;
        Ok(&s[start..i])
    }

    /// After an opening quote: the span of the string's raw contents and
    /// whether it has escapes. The parser ends after the closing quote.
    #[inline]
    pub(super) fn key_span(&mut self) -> R<(usize, usize, bool)> {
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = string_special(s, i);
            match s.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(_) => return Err(self.control(i)),
                None => return fail(codes::MALFORMED, "invalid JSON: unterminated string"),
            }
        }
        self.pos = i + 1;
        Ok((start, i, escaped))
    }

    pub(super) fn control(&self, i: usize) -> Fail {
        Fail {
            code: codes::MALFORMED,
            msg: format!(
                "invalid JSON: control character in a string at byte {}",
                i + 1
            ),
            path: Vec::new(),
        }
    }

    /// At an opening quote: the string's decoded contents.
    pub(super) fn string_slice(&mut self) -> R<std::borrow::Cow<'a, [u8]>> {
        self.pos += 1;
        self.string_slice_after_quote()
    }

    pub(super) fn string_slice_after_quote(&mut self) -> R<std::borrow::Cow<'a, [u8]>> {
        let (start, end, escaped) = self.key_span()?;
        if escaped {
            let mut out = Vec::with_capacity(end - start);
            unescape_into(&self.s[start..end], &mut out)?;
            Ok(std::borrow::Cow::Owned(out))
        } else {
            Ok(std::borrow::Cow::Borrowed(&self.s[start..end]))
        }
    }

    /// After an opening quote: decodes the string onto `out`.
    #[inline]
    pub(super) fn string_into(&mut self, out: &mut Vec<u8>) -> R<()> {
        let s = self.s;
        let mut i = self.pos;
        let mut run = i;
        loop {
            i = string_special(s, i);
            match s.get(i) {
                Some(b'"') => {
                    out.extend_from_slice(&s[run..i]);
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    out.extend_from_slice(&s[run..i]);
                    i = unescape_one(s, i, out)?;
                    run = i;
                }
                Some(_) => return Err(self.control(i)),
                None => return fail(codes::MALFORMED, "invalid JSON: unterminated string"),
            }
        }
    }

    /// Skips one JSON value, checking its syntax.
    pub(super) fn skip_value(&mut self, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return fail(codes::MALFORMED, "JSON nested too deeply");
        }
        self.ws();
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let (start, end, escaped) = self.key_span()?;
                if escaped {
                    // Check the escapes are valid.
                    unescape_into(&self.s[start..end], &mut Vec::new())?;
                }
                Ok(())
            }
            Some(b'{') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.next() != Some(b'"') {
                        return Err(self.syntax_at(self.pos - 1));
                    }
                    self.key_span()?;
                    self.ws();
                    if self.next() != Some(b':') {
                        return Err(self.syntax_at(self.pos - 1));
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => {}
                        Some(b'}') => return Ok(()),
                        _ => return Err(self.syntax_at(self.pos - 1)),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => {}
                        Some(b']') => return Ok(()),
                        _ => return Err(self.syntax_at(self.pos - 1)),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(self.syntax()),
        }
    }
}

pub(super) fn unescape_into(raw: &[u8], out: &mut Vec<u8>) -> R<()> {
    let mut i = 0;
    let mut run = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            out.extend_from_slice(&raw[run..i]);
            i = unescape_one(raw, i, out)?;
            run = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&raw[run..]);
    Ok(())
}

pub(super) fn hex4(s: &[u8], at: usize) -> R<u32> {
    let Some(h) = s.get(at..at + 4) else {
        return fail(codes::MALFORMED, "invalid JSON: truncated \\u escape");
    };
    let mut v = 0;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return fail(codes::MALFORMED, "invalid JSON: bad \\u escape"),
        };
        v = v * 16 + u32::from(d);
    }
    Ok(v)
}

/// Decodes the escape at `s[i] == '\\'`; returns the index after it.
/// Lone UTF-16 surrogates become U+FFFD (as Java's decoders do).
pub(super) fn unescape_one(s: &[u8], i: usize, out: &mut Vec<u8>) -> R<usize> {
    let c = match s.get(i + 1) {
        Some(b'"') => b'"',
        Some(b'\\') => b'\\',
        Some(b'/') => b'/',
        Some(b'b') => 8,
        Some(b'f') => 12,
        Some(b'n') => b'\n',
        Some(b'r') => b'\r',
        Some(b't') => b'\t',
        Some(b'u') => {
            let hi = hex4(s, i + 2)?;
            let mut next = i + 6;
            let ch = if (0xD800..0xDC00).contains(&hi) {
                if s.get(next) == Some(&b'\\') && s.get(next + 1) == Some(&b'u') {
                    let lo = hex4(s, next + 2)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        next += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                    } else {
                        None
                    }
                } else {
                    None
                }
            } else {
                char::from_u32(hi)
            };
            let ch = ch.unwrap_or('\u{FFFD}');
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            return Ok(next);
        }
        _ => {
            return fail(
                codes::MALFORMED,
                format!("invalid JSON: bad escape at byte {}", i + 1),
            );
        }
    };
    out.push(c);
    Ok(i + 2)
}
