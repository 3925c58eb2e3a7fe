//! ORC output streams: bytes cut into compression chunks, each behind ORC's
//! 3-byte chunk header, and the compressor shared by all streams of a file.

use std::io::Write as _;

use super::{OrcCompression, OrcError};

/// Largest chunk length a 3-byte header can carry (23 bits).
pub(super) const MAX_CHUNK: usize = (1 << 23) - 1;

/// One compressor for the whole file (a zstd context is ~1 MiB: one per
/// stream would not be bounded by anything sensible).
pub(super) struct Compressor {
    kind: OrcCompression,
    block_size: usize,
    snappy: snap::raw::Encoder,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl Compressor {
    pub(super) fn new(kind: OrcCompression, block_size: usize) -> Result<Self, OrcError> {
        let zstd = match kind {
            OrcCompression::Zstd => Some(
                zstd::bulk::Compressor::new(3)
                    .map_err(|e| OrcError::Compression(format!("zstd setup: {e}")))?,
            ),
            _ => None,
        };
        Ok(Compressor {
            kind,
            block_size,
            snappy: snap::raw::Encoder::new(),
            zstd,
            scratch: Vec::new(),
        })
    }

    pub(super) fn is_none(&self) -> bool {
        self.kind == OrcCompression::None
    }

    /// Appends `input` as one chunk (header + body) to `out`.
    fn chunk(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), OrcError> {
        debug_assert!(input.len() <= MAX_CHUNK);
        self.scratch.clear();
        match self.kind {
            OrcCompression::None => unreachable!("uncompressed streams have no chunks"),
            OrcCompression::Zlib => {
                let mut enc = flate2::write::DeflateEncoder::new(
                    std::mem::take(&mut self.scratch),
                    flate2::Compression::default(),
                );
                enc.write_all(input)?;
                self.scratch = enc.finish()?;
            }
            OrcCompression::Snappy => {
                self.scratch
                    .resize(snap::raw::max_compress_len(input.len()), 0);
                let n = self
                    .snappy
                    .compress(input, &mut self.scratch)
                    .map_err(|e| OrcError::Compression(format!("snappy: {e}")))?;
                self.scratch.truncate(n);
            }
            OrcCompression::Zstd => {
                let z = self.zstd.as_mut().expect("zstd compressor set up for ZSTD");
                self.scratch
                    .reserve(zstd::zstd_safe::compress_bound(input.len()));
                z.compress_to_buffer(input, &mut self.scratch)
                    .map_err(|e| OrcError::Compression(format!("zstd: {e}")))?;
            }
        }
        let (body, original) = if self.scratch.len() < input.len() {
            (&self.scratch[..], false)
        } else {
            (input, true)
        };
        let header = ((body.len() as u32) << 1) | u32::from(original);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(body);
        Ok(())
    }

    /// Compresses a whole small message (stripe footer, file footer,
    /// metadata, row index) into chunks.
    pub(super) fn whole(&mut self, input: &[u8]) -> Result<Vec<u8>, OrcError> {
        if self.is_none() {
            return Ok(input.to_vec());
        }
        let mut out = Vec::with_capacity(input.len() / 2 + 16);
        for piece in input.chunks(self.block_size) {
            self.chunk(piece, &mut out)?;
        }
        Ok(out)
    }
}

/// A stream being built in memory for the current stripe.
///
/// Uncompressed bytes gather in `pending` until a compression block is full;
/// the block is then compressed into `out`. So memory is the compressed
/// stripe plus one block per stream.
#[derive(Default)]
pub(super) struct OutStream {
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl OutStream {
    pub(super) fn write(&mut self, mut data: &[u8], c: &mut Compressor) -> Result<(), OrcError> {
        if c.is_none() {
            self.out.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            let room = c.block_size - self.pending.len();
            let n = room.min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == c.block_size {
                self.spill(c)?;
            }
        }
        Ok(())
    }

    fn spill(&mut self, c: &mut Compressor) -> Result<(), OrcError> {
        if !self.pending.is_empty() {
            c.chunk(&self.pending, &mut self.out)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Appends the row-index position of the next byte written: the chunk's
    /// offset in the compressed stream and the offset inside the chunk, or
    /// the plain byte offset for uncompressed files.
    pub(super) fn position(&self, positions: &mut Vec<u64>, c: &Compressor) {
        positions.push(self.out.len() as u64);
        if !c.is_none() {
            positions.push(self.pending.len() as u64);
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.out.len() + self.pending.len()
    }

    /// Hands back the finished stream and leaves `self` empty for the next stripe.
    pub(super) fn take(&mut self, c: &mut Compressor) -> Result<Vec<u8>, OrcError> {
        self.spill(c)?;
        let out = std::mem::take(&mut self.out);
        // Keep the allocation of `pending` (one block) for the next stripe.
        Ok(out)
    }
}
