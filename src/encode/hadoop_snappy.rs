//! Hadoop-Snappy: Firehose's `HADOOP_SNAPPY`, the Snappy that Hive, Athena
//! and Spark read through `org.apache.hadoop.io.compress.SnappyCodec`.
//!
//! Neighbours: [`super::raw()`] builds this stream for
//! `Compression::HadoopSnappy` and feeds it the records `buffer` appends; the
//! blocks go straight into the `sink` staging writer.
//!
//! # Framing
//! Hadoop's `BlockCompressorStream` cuts the input into blocks and writes each
//! as
//!
//! ```text
//! [u32 BE uncompressed length of the block][u32 BE compressed length][raw Snappy bytes]
//! ```
//!
//! (Hadoop may split one block into several `[length][snappy]` chunks; one
//! chunk per block, as aircompressor — Trino's and so Athena's codec — writes
//! it, is the form every reader handles.) There is no file header or trailer,
//! so an empty object is an empty file, which both Hadoop and aircompressor
//! read as end of stream.
//!
//! A block holds at most [`BLOCK_BYTES`] = 218,422 uncompressed bytes, not the
//! full 256 KiB buffer: Hadoop's `SnappyDecompressor` copies each compressed
//! chunk into a direct buffer of `io.compression.codec.snappy.buffersize`
//! (256 KiB by default) and silently truncates a longer one. Hadoop's own
//! writer therefore reserves Snappy's worst-case expansion (`n/6 + 32`) and
//! fills blocks only up to `256 KiB - (256 KiB/6 + 32)`; we do the same so
//! that even incompressible data yields chunks of at most 256 KiB.
//!
//! Memory: one block of input and one of output (about 470 KiB), reused.

use std::io::Write;

use super::EncodeError;
use super::raw::Stream;

/// Hadoop's default `io.compression.codec.snappy.buffersize`.
const HADOOP_BUFFER_BYTES: usize = 256 * 1024;

/// Most uncompressed bytes in one block: Hadoop's buffer minus Snappy's
/// worst-case expansion (see the module docs).
pub(super) const BLOCK_BYTES: usize = HADOOP_BUFFER_BYTES - (HADOOP_BUFFER_BYTES / 6 + 32);

/// Length of a block's two big-endian length fields.
const BLOCK_HEADER_BYTES: usize = 8;

/// Writes Hadoop-Snappy blocks to `W`, buffering at most one block of input.
pub(super) struct HadoopSnappyWriter<W> {
    out: W,
    /// Input of the block being filled; never longer than [`BLOCK_BYTES`].
    block: Vec<u8>,
    /// One encoded block: header then compressed bytes, so that a block is a
    /// single large write to the staging writer.
    encoded: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl<W: Write> HadoopSnappyWriter<W> {
    /// A writer with nothing written yet.
    pub(super) fn new(out: W) -> Self {
        HadoopSnappyWriter {
            out,
            block: Vec::with_capacity(BLOCK_BYTES),
            encoded: vec![0; BLOCK_HEADER_BYTES + snap::raw::max_compress_len(BLOCK_BYTES)],
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Compresses `input` (at most [`BLOCK_BYTES`]) and writes it as one block.
    fn write_block(
        out: &mut W,
        snappy: &mut snap::raw::Encoder,
        encoded: &mut [u8],
        input: &[u8],
    ) -> Result<(), EncodeError> {
        let compressed = snappy
            .compress(input, &mut encoded[BLOCK_HEADER_BYTES..])
            .map_err(|source| EncodeError::Compressor {
                format: "HADOOP_SNAPPY",
                source,
            })?;
        encoded[..4].copy_from_slice(&be_length(input.len())?);
        encoded[4..BLOCK_HEADER_BYTES].copy_from_slice(&be_length(compressed)?);
        out.write_all(&encoded[..BLOCK_HEADER_BYTES + compressed])?;
        Ok(())
    }

    /// Writes the buffered block, if any.
    fn flush_block(&mut self) -> Result<(), EncodeError> {
        if !self.block.is_empty() {
            Self::write_block(
                &mut self.out,
                &mut self.snappy,
                &mut self.encoded,
                &self.block,
            )?;
            self.block.clear();
        }
        Ok(())
    }
}

/// A block header length field. Lengths are bounded by [`BLOCK_BYTES`] and
/// its worst-case compressed size, so the error is unreachable.
fn be_length(n: usize) -> Result<[u8; 4], EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLarge {
        format: "HADOOP_SNAPPY",
        what: "a block",
        size: n as u64,
        max: u64::from(u32::MAX),
    })?;
    Ok(n.to_be_bytes())
}

impl<W: Write + Send> Stream<W> for HadoopSnappyWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> Result<(), EncodeError> {
        while !data.is_empty() {
            if self.block.is_empty() && data.len() >= BLOCK_BYTES {
                // A whole block straight from the record: no copy.
                let (input, rest) = data.split_at(BLOCK_BYTES);
                Self::write_block(&mut self.out, &mut self.snappy, &mut self.encoded, input)?;
                data = rest;
                continue;
            }
            // Blocks ignore record boundaries, as Hadoop's do: readers see one
            // byte stream.
            let take = data.len().min(BLOCK_BYTES - self.block.len());
            let (input, rest) = data.split_at(take);
            self.block.extend_from_slice(input);
            data = rest;
            if self.block.len() == BLOCK_BYTES {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<W, EncodeError> {
        self.flush_block()?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Splits Hadoop-Snappy `bytes` into blocks of (uncompressed length,
    /// decoded chunks), the way Hadoop's `BlockDecompressorStream` reads them.
    pub(in crate::encode) fn decode_blocks(bytes: &[u8]) -> Vec<(usize, Vec<Vec<u8>>)> {
        fn be32(bytes: &[u8], at: usize) -> usize {
            let word: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
            u32::from_be_bytes(word) as usize
        }
        let mut blocks = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let uncompressed = be32(bytes, at);
            at += 4;
            let mut chunks = Vec::new();
            let mut seen = 0;
            // Hadoop reads chunks until the block's uncompressed length is
            // reached; a zero-length block has none.
            while seen < uncompressed {
                let compressed = be32(bytes, at);
                at += 4;
                assert!(
                    compressed <= HADOOP_BUFFER_BYTES,
                    "chunk of {compressed} bytes overflows Hadoop's decompressor buffer"
                );
                let chunk = snap::raw::Decoder::new()
                    .decompress_vec(&bytes[at..at + compressed])
                    .unwrap();
                at += compressed;
                seen += chunk.len();
                chunks.push(chunk);
            }
            assert_eq!(seen, uncompressed, "block length disagrees with its chunks");
            blocks.push((uncompressed, chunks));
        }
        blocks
    }

    /// The whole uncompressed content of Hadoop-Snappy `bytes`.
    pub(in crate::encode) fn decode(bytes: &[u8]) -> Vec<u8> {
        decode_blocks(bytes)
            .into_iter()
            .flat_map(|(_, chunks)| chunks)
            .flatten()
            .collect()
    }

    fn encode(writes: &[&[u8]]) -> Vec<u8> {
        let mut writer = HadoopSnappyWriter::new(Vec::new());
        for data in writes {
            writer.write(data).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn block_size_is_hadoops_max_input_size() {
        // SnappyCodec: bufferSize - (bufferSize / 6 + 32) with 256 KiB.
        assert_eq!(BLOCK_BYTES, 218_422);
        // Worst-case chunk still fits Hadoop's 256 KiB decompressor buffer.
        assert!(snap::raw::max_compress_len(BLOCK_BYTES) <= HADOOP_BUFFER_BYTES);
    }

    #[test]
    fn small_records_share_one_block() {
        let bytes = encode(&[b"hello ", b"hadoop ", b"snappy"]);
        let blocks = decode_blocks(&bytes);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].0, 19);
        assert_eq!(blocks[0].1, vec![b"hello hadoop snappy".to_vec()]);
        // Header is exactly the two big-endian lengths.
        assert_eq!(&bytes[..4], &19u32.to_be_bytes());
        assert_eq!(bytes.len() - 8, be32_at(&bytes, 4));
    }

    fn be32_at(bytes: &[u8], at: usize) -> usize {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
    }

    #[test]
    fn many_records_fill_full_blocks() {
        let record: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let records: Vec<&[u8]> = std::iter::repeat_n(record.as_slice(), 700).collect();
        let bytes = encode(&records);
        let blocks = decode_blocks(&bytes);
        let total: usize = 700 * 1000;
        assert_eq!(blocks.len(), total.div_ceil(BLOCK_BYTES));
        for (len, chunks) in &blocks[..blocks.len() - 1] {
            assert_eq!(*len, BLOCK_BYTES);
            assert_eq!(chunks.len(), 1);
        }
        assert_eq!(blocks.last().unwrap().0, total % BLOCK_BYTES);
        assert_eq!(decode(&bytes), records.concat());
    }

    #[test]
    fn incompressible_record_larger_than_a_block_is_split() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let record: Vec<u8> = (0..3 * BLOCK_BYTES + 17)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        // A leading small record makes the big one start mid-block.
        let bytes = encode(&[b"x", &record]);
        let blocks = decode_blocks(&bytes);
        assert_eq!(blocks.len(), 4);
        assert!(blocks.iter().all(|(len, _)| *len <= BLOCK_BYTES));
        assert_eq!(decode(&bytes), [b"x".as_slice(), &record].concat());
    }

    #[test]
    fn empty_stream_is_an_empty_file() {
        assert!(encode(&[]).is_empty());
        assert!(encode(&[b""]).is_empty());
    }

    #[test]
    fn block_buffer_never_grows() {
        let mut writer = HadoopSnappyWriter::new(Vec::new());
        writer.write(&vec![7u8; 5 * BLOCK_BYTES + 3]).unwrap();
        assert_eq!(writer.block.len(), 3);
        assert_eq!(writer.block.capacity(), BLOCK_BYTES);
        // Full blocks went out before finish.
        assert_eq!(decode_blocks(&writer.out).len(), 5);
    }
}
