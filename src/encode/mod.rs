//! Encoders turn a stream of records into the bytes of one output object.
//!
//! Neighbours: `buffer` appends records as they arrive (so nothing waits for a
//! whole buffer in memory) and finishes the encoder when a trigger fires; the
//! bytes go straight into a `sink` staging writer (a hidden temp file or an S3
//! multipart upload). Encoders are synchronous CPU work and run off the async
//! reactor (`spawn_blocking`).
//!
//! Memory stays bounded whatever the object size: a raw encoder holds only its
//! compressor's state and a few fixed buffers (at most a few hundred KiB), and
//! hands compressed bytes to the staging writer as they are produced; a
//! columnar encoder holds one row group or stripe, and says how much through
//! [`Encoder::buffered_bytes`] (the buffer's memory budget counts it).
//!
//! # Layout
//! - [`raw()`] builds the encoder for Firehose's non-converted output; the
//!   formats that need framing code of their own live in submodules:
//!   `raw` (the record loop, plain/gzip/zstd/snappy streams), `zip` (a
//!   one-entry ZIP container written by hand) and `hadoop_snappy` (Hadoop's
//!   block framing around raw Snappy).
//! - The Parquet and ORC encoders implement the same [`Encoder`] trait in
//!   `crate::convert`, which owns the JSON-to-Arrow conversion they share.

use std::io::Write;

use crate::config::Compression;
use crate::error::{Classify, Fault};

mod hadoop_snappy;
mod raw;
mod zip;

/// Size of the buffer between a compressor and the staging writer.
///
/// Compressors emit small pieces (4-byte chunk headers, a few hundred bytes
/// of deflate output per call); the staging writer wants large writes (an S3
/// part writer copies each write, a file costs a syscall per write).
const OUTPUT_BUFFER_BYTES: usize = 128 * 1024;

/// Failure while encoding.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Writing to the staging writer failed (or the compressor could not be
    /// set up for lack of memory).
    #[error("writing encoded output failed: {0}")]
    Io(#[from] std::io::Error),
    /// The object does not fit the output format, e.g. a ZIP entry over
    /// 4 GiB (sluice writes no ZIP64) or a ZIP entry name over 65535 bytes.
    /// Buffers are capped well below these limits, so reaching one is a bug.
    #[error(
        "{format} output cannot hold {what} of {size} bytes (at most {max}); \
         nothing valid was written"
    )]
    TooLarge {
        /// Output format, e.g. `ZIP`.
        format: &'static str,
        /// What overflowed, e.g. `an entry`.
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The format's limit in bytes.
        max: u64,
    },
    /// The compressor rejected its input. Block sizes are chosen so that it
    /// cannot, so this is a bug.
    #[error("{format} compressor failed: {source}")]
    Compressor {
        /// Output format, e.g. `HADOOP_SNAPPY`.
        format: &'static str,
        /// The compressor's error.
        source: snap::Error,
    },
    /// This record does not fit (a format-converting encoder: invalid JSON,
    /// or a value that does not fit its column). The encoder is still
    /// usable and the record was not written; the pipeline routes it to the
    /// `format-conversion-failed` error output with `code` and `message`.
    #[error("{code}: {message}")]
    Record {
        /// Firehose-style error code for `lastErrorCode`.
        code: &'static str,
        /// What is wrong, naming the column.
        message: String,
    },
}

impl Classify for EncodeError {
    fn is_retriable(&self) -> bool {
        match self {
            // The staging writer failed (disk full, S3 5xx): a fresh attempt
            // with a fresh writer can succeed.
            EncodeError::Io(_) => true,
            // The same input hits the same limit again.
            EncodeError::TooLarge { .. } | EncodeError::Compressor { .. } => false,
            // The same record fails the same way.
            EncodeError::Record { .. } => false,
        }
    }
    fn fault(&self) -> Fault {
        match self {
            EncodeError::Io(_) => Fault::Remote,
            EncodeError::TooLarge { .. } | EncodeError::Compressor { .. } => Fault::Bug,
            EncodeError::Record { .. } => Fault::Data,
        }
    }
}

/// Streams records into one object written to `W`.
pub trait Encoder<W>: Send {
    /// Appends one record.
    ///
    /// # Errors
    /// [`EncodeError::Record`] when this record does not fit the output
    /// format (format conversion only): the record was not written and the
    /// encoder is still usable. Any other [`EncodeError`]: the output cannot
    /// be written; the object is then unusable, discard the writer's contents.
    fn append(&mut self, data: &[u8]) -> Result<(), EncodeError>;
    /// Writes any trailer, flushes everything and hands back the writer.
    ///
    /// # Errors
    /// [`EncodeError`] when the output cannot be written.
    fn finish(self: Box<Self>) -> Result<W, EncodeError>;
    /// Bytes held in memory, not yet written out (a columnar format's row
    /// group or stripe, a compressor's window): what the buffer's memory
    /// budget counts. Raw encoders stream and hold only their small buffers.
    fn buffered_bytes(&self) -> usize {
        0
    }
}

/// Builds the raw (non-converted) encoder for `compression`.
///
/// Records are written as they are, each followed by `b'\n'` when
/// `delimiter` is set (Firehose's `AppendDelimiterToRecord` processor).
/// `entry_name` names the single entry of a ZIP archive and is ignored by
/// the other formats.
///
/// Nothing is written to `out` until the first [`Encoder::append`] or
/// [`Encoder::finish`], so building cannot fail; a setup failure (the zstd
/// context could not be allocated) is reported by the first call instead.
pub fn raw<W: Write + Send + 'static>(
    out: W,
    compression: Compression,
    delimiter: bool,
    entry_name: &str,
) -> Box<dyn Encoder<W>> {
    raw::build(out, compression, delimiter, entry_name)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const ALL: [Compression; 6] = [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zip,
        Compression::Snappy,
        Compression::HadoopSnappy,
        Compression::Zstd,
    ];

    const ENTRY: &str = "stream-1-2024-05-06-07-08-09-id";

    /// Deterministic incompressible bytes; different seeds give unrelated
    /// bytes (zstd's 2 MiB window would find any repeat).
    pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn encode(compression: Compression, delimiter: bool, records: &[&[u8]]) -> Vec<u8> {
        let mut encoder = raw(Vec::new(), compression, delimiter, ENTRY);
        for record in records {
            encoder.append(record).unwrap();
        }
        encoder.finish().unwrap()
    }

    /// Decodes with a decoder that shares no code with the encoder.
    fn decode(compression: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match compression {
            Compression::Uncompressed => out = bytes.to_vec(),
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::Zip => {
                let entry = zip::tests::read_zip(bytes);
                assert_eq!(entry.name, ENTRY);
                out = entry.data;
            }
            Compression::Snappy => {
                snap::read::FrameDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::HadoopSnappy => out = hadoop_snappy::tests::decode(bytes),
            Compression::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
        }
        out
    }

    /// What the records should decode to.
    fn expected(delimiter: bool, records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            out.extend_from_slice(record);
            if delimiter {
                out.push(b'\n');
            }
        }
        out
    }

    fn assert_round_trip(delimiter: bool, records: &[&[u8]]) {
        let want = expected(delimiter, records);
        for compression in ALL {
            let bytes = encode(compression, delimiter, records);
            let got = decode(compression, &bytes);
            assert!(
                got == want,
                "{compression:?}: decoded {} bytes, want {}",
                got.len(),
                want.len()
            );
        }
    }

    #[test]
    fn json_records_with_delimiter() {
        assert_round_trip(
            true,
            &[
                b"{\"ticker\":\"AMZN\",\"price\":1}",
                b"{\"ticker\":\"X\"}",
                b"",
            ],
        );
    }

    #[test]
    fn records_without_delimiter_are_concatenated() {
        let records: &[&[u8]] = &[b"{\"a\":1}\n", b"{\"a\":2}", b"no-newline"];
        assert_round_trip(false, records);
        // The delimiter flag really changes the output.
        assert_eq!(
            encode(Compression::Uncompressed, false, records),
            b"{\"a\":1}\n{\"a\":2}no-newline"
        );
        assert_eq!(
            encode(Compression::Uncompressed, true, &[b"a", b"b"]),
            b"a\nb\n"
        );
    }

    #[test]
    fn binary_records_with_zero_bytes() {
        let zeros = [0u8; 70_000];
        let mixed = [0u8, 1, 0, 255, b'\n', 0, 0];
        let random = noise(10_000, 3);
        for delimiter in [false, true] {
            assert_round_trip(delimiter, &[&zeros, &mixed, &random, &[0]]);
        }
    }

    #[test]
    fn empty_object_is_a_valid_file_in_every_format() {
        for delimiter in [false, true] {
            for compression in ALL {
                let bytes = encode(compression, delimiter, &[]);
                assert!(decode(compression, &bytes).is_empty(), "{compression:?}");
                // Readers accept zero bytes as empty for some formats, so also
                // check the container really is there.
                match compression {
                    Compression::Uncompressed | Compression::HadoopSnappy => {
                        assert!(bytes.is_empty())
                    }
                    Compression::Gzip => assert_eq!(&bytes[..2], [0x1f, 0x8b]),
                    Compression::Zstd => assert_eq!(&bytes[..4], [0x28, 0xb5, 0x2f, 0xfd]),
                    Compression::Snappy => assert_eq!(bytes, b"\xff\x06\x00\x00sNaPpY"),
                    Compression::Zip => assert_eq!(&bytes[..4], b"PK\x03\x04"),
                }
            }
        }
        // An empty record without delimiter is still an empty object.
        assert!(
            decode(
                Compression::Snappy,
                &encode(Compression::Snappy, false, &[b""])
            )
            .is_empty()
        );
    }

    #[test]
    fn many_records_spanning_several_blocks() {
        let records: Vec<Vec<u8>> = (0..6000)
            .map(|i| {
                format!("{{\"seq\":{i},\"payload\":\"{}\"}}", "x".repeat(i % 200)).into_bytes()
            })
            .collect();
        let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        assert!(expected(true, &records).len() > 3 * hadoop_snappy::BLOCK_BYTES);
        assert_round_trip(true, &records);
        let blocks =
            hadoop_snappy::tests::decode_blocks(&encode(Compression::HadoopSnappy, true, &records));
        assert!(blocks.len() > 3, "{} blocks", blocks.len());
    }

    #[test]
    fn single_record_larger_than_a_block() {
        let record = noise(3 * hadoop_snappy::BLOCK_BYTES + 1234, 7);
        assert_round_trip(true, &[b"before", &record, b"after"]);
        assert_round_trip(false, &[&record]);
    }

    /// A staging writer that records how it was used.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: Vec<usize>,
        /// `flush` was called after the last write.
        flushed: bool,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            self.writes.push(buf.len());
            self.flushed = false;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushed = true;
            Ok(())
        }
    }

    #[test]
    fn staging_writer_gets_large_writes_and_a_final_flush() {
        // Small records, compressed output of a few MiB.
        let records: Vec<Vec<u8>> = noise(40_000 * 60, 1)
            .chunks(60)
            .map(<[u8]>::to_vec)
            .collect();
        for compression in ALL {
            let mut encoder = raw(Recorder::default(), compression, true, ENTRY);
            for record in &records {
                encoder.append(record).unwrap();
            }
            let recorder = encoder.finish().unwrap();
            assert!(
                recorder.flushed,
                "{compression:?} did not flush the staging writer"
            );
            let small = recorder.writes.iter().filter(|&&n| n < 32 * 1024).count();
            assert!(
                recorder.writes.len() > 10 && small <= 2,
                "{compression:?}: {} writes, {small} under 32 KiB",
                recorder.writes.len()
            );
            let want: Vec<u8> = records
                .iter()
                .flat_map(|r| r.iter().copied().chain([b'\n']))
                .collect();
            assert!(
                decode(compression, &recorder.bytes) == want,
                "{compression:?}"
            );
        }
    }

    /// Counts bytes reaching the staging writer while the encoder owns it.
    struct Counting(Arc<AtomicU64>);

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_streams_out_before_finish() {
        // Incompressible, so output ~ input: what has not reached the writer
        // before finish is what the encoder holds in memory.
        let data = noise(40 * 100_000, 11);
        let total = data.len() as u64;
        for compression in ALL {
            let written = Arc::new(AtomicU64::new(0));
            let mut encoder = raw(Counting(Arc::clone(&written)), compression, false, ENTRY);
            for record in data.chunks(100_000) {
                encoder.append(record).unwrap();
            }
            let before_finish = written.load(Ordering::Relaxed);
            encoder.finish().unwrap();
            let held = total.saturating_sub(before_finish);
            assert!(held < 1024 * 1024, "{compression:?} held {held} bytes back");
            assert!(
                written.load(Ordering::Relaxed) >= total,
                "{compression:?} lost output"
            );
        }
    }

    /// A staging writer whose storage fails after `room` bytes.
    struct Failing {
        room: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_failures_surface_as_retriable_remote_errors() {
        let data = noise(20 * 50_000, 5);
        for room in [0, 1000, 300_000] {
            for compression in ALL {
                let mut encoder = raw(Failing { room }, compression, true, ENTRY);
                let mut failure = None;
                for record in data.chunks(50_000) {
                    if let Err(err) = encoder.append(record) {
                        failure = Some(err);
                        break;
                    }
                }
                let err = match failure {
                    Some(err) => err,
                    None => encoder.finish().err().expect("1 MB cannot fit"),
                };
                assert!(
                    matches!(err, EncodeError::Io(_)),
                    "{compression:?}: {err:?}"
                );
                assert!(err.is_retriable());
                assert_eq!(err.fault(), Fault::Remote);
                assert!(err.to_string().contains("disk full"), "{err}");
            }
        }
    }
}
