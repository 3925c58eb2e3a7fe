//! The raw encoder: records as they are (optionally newline-delimited)
//! through one of Firehose's compressions.
//!
//! Neighbours: [`super::raw()`] builds it; `buffer` calls
//! [`Encoder::append`] once per record as records arrive and
//! [`Encoder::finish`] when a size or interval trigger fires; the compressed
//! bytes flow on into the `sink` staging writer `W` while records are still
//! arriving. The two formats with framing of their own are in the sibling
//! modules `zip` and `hadoop_snappy`; the stream formats here need none:
//!
//! - Uncompressed: the bytes as they are.
//! - Gzip: one gzip member (RFC 1952) at flate2's default level 6, which is
//!   also gzip(1)'s default. An empty object is an empty member (20 bytes),
//!   which every gzip reader accepts.
//! - Zstd: one zstd frame at level 3 (zstd's own default) with a content
//!   checksum, as the `zstd` command line tool writes. Firehose has no ZSTD;
//!   this is sluice's addition.
//! - Snappy: the Snappy *framing* format (`sNaPpY` stream identifier, CRC-32C
//!   per chunk of at most 64 KiB). Raw Snappy cannot be streamed (one block
//!   with the total length up front, at most 4 GiB), and the framing format is
//!   what `snzip`, python-snappy's stream mode and Firehose-reading tools
//!   decode. The reference is silent on Firehose's framing (FIREHOSE.md §7).
//!
//! All but Hadoop-Snappy write through a [`BufWriter`] of
//! [`OUTPUT_BUFFER_BYTES`] because their compressors emit small pieces;
//! Hadoop-Snappy already writes one whole block per write.

use std::io::{self, BufWriter, Write};

use flate2::write::GzEncoder;
use snap::write::FrameEncoder;

use super::hadoop_snappy::HadoopSnappyWriter;
use super::zip::ZipWriter;
use super::{EncodeError, Encoder, OUTPUT_BUFFER_BYTES};
use crate::config::Compression;

/// zstd's own default level: about gzip -6's ratio at several times its speed.
const ZSTD_LEVEL: i32 = 3;

/// The chunk that opens every Snappy framing-format stream. `FrameEncoder`
/// writes it with the first data chunk only, so an empty object would be a
/// zero-byte file, which the framing spec does not allow ("the stream starts
/// with the stream identifier"); we write it ourselves for empty objects.
const SNAPPY_STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// One compressed output stream: the part of an encoder that differs by format.
pub(super) trait Stream<W>: Send {
    /// Feeds uncompressed bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), EncodeError>;
    /// Ends the stream (trailers, last block), flushes and returns the writer.
    fn finish(self) -> Result<W, EncodeError>;
}

/// Builds the encoder for `compression` (see [`super::raw()`]).
pub(super) fn build<W: Write + Send + 'static>(
    out: W,
    compression: Compression,
    delimiter: bool,
    entry_name: &str,
) -> Box<dyn Encoder<W>> {
    match compression {
        Compression::Uncompressed => records(Plain(buffered(out)), delimiter),
        Compression::Gzip => records(
            GzEncoder::new(buffered(out), flate2::Compression::default()),
            delimiter,
        ),
        Compression::Zstd => match zstd_stream(out) {
            Ok(stream) => records(stream, delimiter),
            Err(error) => Box::new(Unavailable { error: Some(error) }),
        },
        Compression::Snappy => records(
            Snappy {
                frames: FrameEncoder::new(buffered(out)),
                empty: true,
            },
            delimiter,
        ),
        Compression::HadoopSnappy => records(HadoopSnappyWriter::new(out), delimiter),
        Compression::Zip => records(ZipWriter::new(buffered(out), entry_name), delimiter),
    }
}

/// Boxes the record loop around `stream`.
fn records<W, S: Stream<W> + 'static>(stream: S, delimiter: bool) -> Box<dyn Encoder<W>> {
    Box::new(RawEncoder { stream, delimiter })
}

/// The record loop shared by every raw format.
struct RawEncoder<S> {
    stream: S,
    delimiter: bool,
}

impl<W, S: Stream<W>> Encoder<W> for RawEncoder<S> {
    fn append(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        self.stream.write(data)?;
        if self.delimiter {
            self.stream.write(b"\n")?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<W, EncodeError> {
        self.stream.finish()
    }
}

/// Wraps the staging writer in the output buffer.
pub(super) fn buffered<W: Write>(out: W) -> BufWriter<W> {
    BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out)
}

/// Flushes the output buffer and the staging writer and returns the latter.
pub(super) fn unbuffer<W: Write>(mut out: BufWriter<W>) -> io::Result<W> {
    // `into_inner` alone flushes only the buffer; the staging writer may hold
    // bytes of its own.
    out.flush()?;
    out.into_inner().map_err(io::IntoInnerError::into_error)
}

/// Uncompressed output.
struct Plain<W: Write>(BufWriter<W>);

impl<W: Write + Send> Stream<W> for Plain<W> {
    fn write(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        Ok(self.0.write_all(data)?)
    }
    fn finish(self) -> Result<W, EncodeError> {
        Ok(unbuffer(self.0)?)
    }
}

impl<W: Write + Send> Stream<W> for GzEncoder<BufWriter<W>> {
    fn write(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        Ok(self.write_all(data)?)
    }
    fn finish(self) -> Result<W, EncodeError> {
        // Writes the final deflate block and the CRC/size trailer.
        let out = GzEncoder::finish(self)?;
        Ok(unbuffer(out)?)
    }
}

/// The zstd encoder with its content checksum on.
fn zstd_stream<W: Write>(
    out: W,
) -> io::Result<zstd::stream::write::Encoder<'static, BufWriter<W>>> {
    let mut encoder = zstd::stream::write::Encoder::new(buffered(out), ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    Ok(encoder)
}

impl<W: Write + Send> Stream<W> for zstd::stream::write::Encoder<'static, BufWriter<W>> {
    fn write(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        Ok(self.write_all(data)?)
    }
    fn finish(self) -> Result<W, EncodeError> {
        // Ends the frame (last block and checksum).
        let out = zstd::stream::write::Encoder::finish(self)?;
        Ok(unbuffer(out)?)
    }
}

/// Snappy framing format.
struct Snappy<W: Write> {
    frames: FrameEncoder<BufWriter<W>>,
    /// No byte has been written yet (see [`SNAPPY_STREAM_IDENTIFIER`]).
    empty: bool,
}

impl<W: Write + Send> Stream<W> for Snappy<W> {
    fn write(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        // An empty record produces no chunk, so it leaves the stream empty.
        self.empty &= data.is_empty();
        Ok(self.frames.write_all(data)?)
    }
    fn finish(self) -> Result<W, EncodeError> {
        // Compresses and writes the last partial chunk.
        let mut out = self
            .frames
            .into_inner()
            .map_err(snap::write::IntoInnerError::into_error)?;
        if self.empty {
            out.write_all(SNAPPY_STREAM_IDENTIFIER)?;
        }
        Ok(unbuffer(out)?)
    }
}

/// Stands in for an encoder whose setup failed; reports the failure on the
/// first call (so that [`super::raw()`] stays infallible).
struct Unavailable {
    error: Option<io::Error>,
}

impl Unavailable {
    fn error(&mut self) -> EncodeError {
        EncodeError::Io(
            self.error
                .take()
                .unwrap_or_else(|| io::Error::other("the encoder could not be set up")),
        )
    }
}

impl<W> Encoder<W> for Unavailable {
    fn append(&mut self, _data: &[u8]) -> Result<(), EncodeError> {
        Err(self.error())
    }
    fn finish(mut self: Box<Self>) -> Result<W, EncodeError> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_failure_is_reported_by_the_first_call() {
        let mut encoder: Box<dyn Encoder<Vec<u8>>> = Box::new(Unavailable {
            error: Some(io::Error::other("no memory for zstd")),
        });
        let err = encoder.append(b"x").unwrap_err();
        assert!(err.to_string().contains("no memory for zstd"), "{err}");
        // Later calls keep failing instead of producing an object.
        assert!(matches!(encoder.finish(), Err(EncodeError::Io(_))));
    }

    #[test]
    fn unbuffer_flushes_into_the_writer() {
        let mut out = buffered(Vec::new());
        out.write_all(b"pending").unwrap();
        assert_eq!(unbuffer(out).unwrap(), b"pending");
    }
}
