//! ORC run-length encodings: byte RLE, boolean RLE (bits over byte RLE) and
//! integer RLE version 2 (SHORT_REPEAT, DIRECT and fixed-step DELTA runs;
//! PATCHED_BASE and variable-step DELTA are not produced — any reader accepts
//! a file without them).
//!
//! Every encoder can `flush` mid-stream: the runs are self-delimiting, so a
//! flush only ends the current run early. The writer flushes at each row
//! group start so that row-index positions never point inside a run (the
//! "values consumed in the run" position is always 0).

use super::OrcError;
use super::stream::{Compressor, OutStream};

/// Unsigned LEB128 varint.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Unsigned LEB128 varint of a 128-bit value (decimal DATA stream).
pub(super) fn put_varint128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn zigzag128(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

// ---------------------------------------------------------------- byte RLE

const MIN_REPEAT: usize = 3;
const MAX_REPEAT: usize = 127 + MIN_REPEAT;
const MAX_LITERALS: usize = 128;

/// Byte run-length encoding (the algorithm of ORC Java's RunLengthByteWriter).
#[derive(Default)]
pub(super) struct ByteRle {
    pub(super) stream: OutStream,
    literals: Vec<u8>,
    repeat: bool,
    tail_run: usize,
    scratch: Vec<u8>,
}

impl ByteRle {
    pub(super) fn push(&mut self, v: u8, c: &mut Compressor) -> Result<(), OrcError> {
        if self.literals.is_empty() {
            self.literals.push(v);
            self.tail_run = 1;
        } else if self.repeat {
            if v == self.literals[0] {
                self.literals.push(v);
                if self.literals.len() == MAX_REPEAT {
                    self.write_values(c)?;
                }
            } else {
                self.write_values(c)?;
                self.literals.push(v);
                self.tail_run = 1;
            }
        } else {
            if v == *self.literals.last().expect("non-empty") {
                self.tail_run += 1;
            } else {
                self.tail_run = 1;
            }
            if self.tail_run == MIN_REPEAT {
                if self.literals.len() + 1 == MIN_REPEAT {
                    self.repeat = true;
                    self.literals.push(v);
                } else {
                    let keep = self.literals.len() - (MIN_REPEAT - 1);
                    self.literals.truncate(keep);
                    self.write_values(c)?;
                    self.literals.extend_from_slice(&[v; MIN_REPEAT]);
                    self.repeat = true;
                }
            } else {
                self.literals.push(v);
                if self.literals.len() == MAX_LITERALS {
                    self.write_values(c)?;
                }
            }
        }
        Ok(())
    }

    fn write_values(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        let n = self.literals.len();
        if n != 0 {
            self.scratch.clear();
            if self.repeat {
                self.scratch.push((n - MIN_REPEAT) as u8);
                self.scratch.push(self.literals[0]);
            } else {
                self.scratch.push((-(n as i32)) as u8);
                self.scratch.extend_from_slice(&self.literals);
            }
            self.stream.write(&self.scratch, c)?;
        }
        self.literals.clear();
        self.repeat = false;
        self.tail_run = 0;
        Ok(())
    }

    pub(super) fn flush(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        self.write_values(c)
    }

    /// Position after a flush: stream position + 0 values into the run.
    pub(super) fn position(&self, positions: &mut Vec<u64>, c: &Compressor) {
        debug_assert!(self.literals.is_empty(), "position taken without a flush");
        self.stream.position(positions, c);
        positions.push(0);
    }

    pub(super) fn buffered(&self) -> usize {
        self.stream.buffered() + self.literals.len()
    }

    pub(super) fn take(&mut self, c: &mut Compressor) -> Result<Vec<u8>, OrcError> {
        self.flush(c)?;
        self.stream.take(c)
    }
}

// ------------------------------------------------------------- boolean RLE

/// Booleans packed MSB-first into bytes, the bytes byte-RLE encoded.
#[derive(Default)]
pub(super) struct BoolRle {
    bytes: ByteRle,
    current: u8,
    bits: u8,
}

impl BoolRle {
    pub(super) fn push(&mut self, v: bool, c: &mut Compressor) -> Result<(), OrcError> {
        self.current |= u8::from(v) << (7 - self.bits);
        self.bits += 1;
        if self.bits == 8 {
            self.bytes.push(self.current, c)?;
            self.current = 0;
            self.bits = 0;
        }
        Ok(())
    }

    /// Ends the byte run (the partial byte stays pending: padding it here
    /// would insert values into the stream).
    pub(super) fn flush_run(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        self.bytes.flush(c)
    }

    /// Position after `flush_run`: byte-RLE position, then the bits of the
    /// next byte already consumed.
    pub(super) fn position(&self, positions: &mut Vec<u64>, c: &Compressor) {
        self.bytes.position(positions, c);
        positions.push(u64::from(self.bits));
    }

    pub(super) fn buffered(&self) -> usize {
        self.bytes.buffered() + 1
    }

    /// Pads the last byte with zeros and hands back the stream.
    pub(super) fn take(&mut self, c: &mut Compressor) -> Result<Vec<u8>, OrcError> {
        if self.bits > 0 {
            self.bytes.push(self.current, c)?;
            self.current = 0;
            self.bits = 0;
        }
        self.bytes.take(c)
    }
}

// ------------------------------------------------------ integer RLE v2

const MAX_RUN: usize = 512;
/// Shortest run of equal values written as SHORT_REPEAT (3..=10) or DELTA.
const MIN_EQUAL_RUN: usize = 3;
/// Shortest run with a constant non-zero step written as a DELTA run.
const MIN_STEP_RUN: usize = 8;

/// Bit widths DIRECT can express, and their 5-bit codes.
fn closest_width(bits: u32) -> u32 {
    match bits {
        0..=1 => 1,
        2..=24 => bits,
        25..=26 => 26,
        27..=28 => 28,
        29..=30 => 30,
        31..=32 => 32,
        33..=40 => 40,
        41..=48 => 48,
        49..=56 => 56,
        _ => 64,
    }
}

fn width_code(width: u32) -> u8 {
    match width {
        1..=24 => (width - 1) as u8,
        26 => 24,
        28 => 25,
        30 => 26,
        32 => 27,
        40 => 28,
        48 => 29,
        56 => 30,
        64 => 31,
        _ => unreachable!("width {width} is not a DIRECT width"),
    }
}

/// Integer RLE v2 encoder for a signed (zigzag) or unsigned stream.
pub(super) struct IntRle {
    pub(super) stream: OutStream,
    signed: bool,
    buf: Vec<i64>,
    scratch: Vec<u8>,
}

impl IntRle {
    pub(super) fn new(signed: bool) -> Self {
        IntRle {
            stream: OutStream::default(),
            signed,
            buf: Vec::with_capacity(MAX_RUN),
            scratch: Vec::new(),
        }
    }

    #[inline]
    pub(super) fn push(&mut self, v: i64, c: &mut Compressor) -> Result<(), OrcError> {
        self.buf.push(v);
        if self.buf.len() == MAX_RUN {
            self.encode(c)?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        self.encode(c)
    }

    pub(super) fn position(&self, positions: &mut Vec<u64>, c: &Compressor) {
        debug_assert!(self.buf.is_empty(), "position taken without a flush");
        self.stream.position(positions, c);
        positions.push(0);
    }

    pub(super) fn buffered(&self) -> usize {
        self.stream.buffered() + self.buf.len() * 8
    }

    pub(super) fn take(&mut self, c: &mut Compressor) -> Result<Vec<u8>, OrcError> {
        self.flush(c)?;
        self.stream.take(c)
    }

    fn unsigned(&self, v: i64) -> u64 {
        if self.signed { zigzag(v) } else { v as u64 }
    }

    /// Encodes the buffered values (at most 512) as a sequence of runs.
    fn encode(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let vals = std::mem::take(&mut self.buf);
        self.scratch.clear();
        let n = vals.len();
        let (mut i, mut lit_start) = (0, 0);
        while i < n {
            let mut run = 1;
            let mut step = 0;
            if i + 1 < n
                && let Some(d) = vals[i + 1].checked_sub(vals[i])
            {
                step = d;
                run = 2;
                while i + run < n && vals[i + run].checked_sub(vals[i + run - 1]) == Some(d) {
                    run += 1;
                }
            }
            let take = if step == 0 {
                run >= MIN_EQUAL_RUN
            } else {
                run >= MIN_STEP_RUN
            };
            if take {
                self.direct(&vals[lit_start..i]);
                if step == 0 && run <= 10 {
                    self.short_repeat(vals[i], run);
                } else {
                    self.delta(vals[i], step, run);
                }
                i += run;
                lit_start = i;
            } else {
                i += 1;
            }
        }
        self.direct(&vals[lit_start..n]);
        self.buf = vals;
        self.buf.clear();
        let bytes = std::mem::take(&mut self.scratch);
        let r = self.stream.write(&bytes, c);
        self.scratch = bytes;
        r
    }

    fn short_repeat(&mut self, v: i64, run: usize) {
        let u = self.unsigned(v);
        let bits = 64 - u.leading_zeros();
        let width = (bits.div_ceil(8)).max(1) as usize;
        self.scratch
            .push((((width - 1) as u8) << 3) | (run - MIN_EQUAL_RUN) as u8);
        self.scratch
            .extend_from_slice(&u.to_be_bytes()[8 - width..]);
    }

    fn delta(&mut self, base: i64, step: i64, run: usize) {
        let len = run - 1;
        self.scratch.push(0b1100_0000 | ((len >> 8) as u8 & 1));
        self.scratch.push(len as u8);
        let b = self.unsigned(base);
        put_varint(&mut self.scratch, b);
        put_varint(&mut self.scratch, zigzag(step));
    }

    fn direct(&mut self, vals: &[i64]) {
        for chunk in vals.chunks(MAX_RUN) {
            let mut max = 0u64;
            for &v in chunk {
                max |= self.unsigned(v);
            }
            let width = closest_width(64 - max.leading_zeros());
            let len = chunk.len() - 1;
            self.scratch
                .push(0b0100_0000 | (width_code(width) << 1) | ((len >> 8) as u8 & 1));
            self.scratch.push(len as u8);
            let mut acc: u128 = 0;
            let mut acc_bits = 0u32;
            for &v in chunk {
                let u = self.unsigned(v);
                acc = (acc << width) | u128::from(u);
                acc_bits += width;
                while acc_bits >= 8 {
                    acc_bits -= 8;
                    self.scratch.push((acc >> acc_bits) as u8);
                }
                acc &= (1u128 << acc_bits) - 1;
            }
            if acc_bits > 0 {
                self.scratch.push((acc << (8 - acc_bits)) as u8);
            }
        }
    }
}
