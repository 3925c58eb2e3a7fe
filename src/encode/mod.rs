//! Encoders turn a stream of records into the bytes of one output object.
//!
//! Neighbours: `buffer` appends records as they arrive (so nothing waits for a
//! whole buffer in memory) and finishes the encoder when a trigger fires; the
//! bytes go straight into a `sink` staging writer (a hidden temp file or an S3
//! multipart upload). Encoders are synchronous CPU work and run off the async
//! reactor (`spawn_blocking`).
//!
//! PLACEHOLDER: compression implemented by the encode work item.

use std::io::Write;

use crate::config::Compression;
use crate::error::{Classify, Fault};

/// Failure while encoding.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Writing to the staging writer failed.
    #[error("writing encoded output failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Classify for EncodeError {
    fn is_retriable(&self) -> bool {
        true
    }
    fn fault(&self) -> Fault {
        Fault::Remote
    }
}

/// Streams records into one object written to `W`.
pub trait Encoder<W>: Send {
    /// Appends one record.
    ///
    /// # Errors
    /// [`EncodeError`] when the output cannot be written.
    fn append(&mut self, data: &[u8]) -> Result<(), EncodeError>;
    /// Writes any trailer and hands back the writer.
    ///
    /// # Errors
    /// [`EncodeError`] when the output cannot be written.
    fn finish(self: Box<Self>) -> Result<W, EncodeError>;
}

/// Raw output: records (optionally newline-delimited) with a compression.
pub struct RawEncoder<W: Write> {
    out: W,
    delimiter: bool,
}

impl<W: Write> std::fmt::Debug for RawEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEncoder").field("delimiter", &self.delimiter).finish()
    }
}

/// Builds the raw encoder for `compression`. `entry_name` names the single
/// entry of a ZIP archive.
pub fn raw<W: Write + Send + 'static>(
    out: W,
    _compression: Compression,
    delimiter: bool,
    _entry_name: &str,
) -> Box<dyn Encoder<W>> {
    Box::new(RawEncoder { out, delimiter })
}

impl<W: Write + Send> Encoder<W> for RawEncoder<W> {
    fn append(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        self.out.write_all(data)?;
        if self.delimiter {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<W, EncodeError> {
        let mut out = self.out;
        out.flush()?;
        Ok(out)
    }
}
