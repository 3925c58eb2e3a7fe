//! ZIP: Firehose's `ZIP` compression, an archive holding one entry with all
//! the records.
//!
//! Neighbours: [`super::raw()`] builds this stream for `Compression::Zip` with
//! the entry name its caller chose and feeds it the records `buffer` appends;
//! the archive's bytes go through the output buffer into the `sink` staging
//! writer as they are produced.
//!
//! # Framing
//! Written by hand (APPNOTE.TXT 6.3) because only this one streamed shape is
//! needed:
//!
//! ```text
//! local file header     flags: bit 3 (sizes and CRC follow the data), bit 11 (UTF-8 name)
//! deflated data         method 8, raw DEFLATE (no zlib header)
//! data descriptor       signature 0x08074b50, CRC-32, compressed and uncompressed size
//! central directory     one header repeating the real sizes and CRC, local header at 0
//! end of central dir    one entry
//! ```
//!
//! Sizes and CRC are known only after the last record, and the object must
//! not be held in memory (nor the staging writer seeked, an S3 upload cannot
//! be), so the local header leaves them zero and sets flag bit 3; readers take
//! them from the central directory (random access) or the data descriptor
//! (streaming readers such as Java's `ZipInputStream`). The timestamp is fixed
//! at 1980-01-01 00:00 (the DOS epoch), so equal input gives equal bytes; the
//! object key carries the real time.
//!
//! No ZIP64: buffers are capped at 128 MiB, far below the 4 GiB a ZIP32 entry
//! holds. A streamed entry would have to announce ZIP64 in its local header
//! before its size is known, which would make every archive ZIP64 for nothing.
//! Instead an entry that would overflow (or a name over 65535 bytes) fails
//! with [`EncodeError::TooLarge`]; a corrupt archive is never reported as
//! written.

use std::io::{self, BufWriter, Write};

use flate2::write::DeflateEncoder;

use super::EncodeError;
use super::raw::{Stream, unbuffer};

const LOCAL_HEADER_SIGNATURE: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const CENTRAL_HEADER_SIGNATURE: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY_SIGNATURE: u32 = 0x0605_4b50;

/// Length of the local file header before the name.
const LOCAL_HEADER_BYTES: u64 = 30;
/// 2.0: the first version with DEFLATE and data descriptors.
const VERSION_NEEDED: u16 = 20;
/// Made by Unix (high byte 3) so that the external attributes carry a Unix
/// mode and `unzip` creates the file `rw-r--r--`.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
/// Bit 3: CRC and sizes in the data descriptor; bit 11: the name is UTF-8.
const FLAGS: u16 = (1 << 3) | (1 << 11);
const METHOD_DEFLATE: u16 = 8;
/// 00:00:00.
const DOS_TIME: u16 = 0;
/// 1980-01-01: (year - 1980) << 9 | month << 5 | day.
const DOS_DATE: u16 = (1 << 5) | 1;
/// A regular file, mode 0644.
const EXTERNAL_ATTRIBUTES: u32 = 0o100_644 << 16;
/// ZIP32 fields hold values below this; 0xFFFFFFFF itself means "see ZIP64".
const ZIP32_LIMIT: u64 = 0xFFFF_FFFF;

/// Streams one DEFLATE entry named `name` into a ZIP archive.
pub(super) struct ZipWriter<W: Write> {
    deflate: DeflateEncoder<Counter<BufWriter<W>>>,
    name: Vec<u8>,
    crc: crc32fast::Hasher,
    uncompressed: u64,
    /// The local header has been written.
    started: bool,
    /// Sizes and offsets must stay below this: [`ZIP32_LIMIT`], lowered by
    /// tests to reach the overflow paths.
    limit: u64,
}

impl<W: Write> ZipWriter<W> {
    /// An archive with nothing written yet; the local header goes out with
    /// the first byte of data or at finish.
    pub(super) fn new(out: BufWriter<W>, name: &str) -> Self {
        ZipWriter {
            deflate: DeflateEncoder::new(
                Counter {
                    inner: out,
                    bytes: 0,
                },
                flate2::Compression::default(),
            ),
            name: name.as_bytes().to_vec(),
            crc: crc32fast::Hasher::new(),
            uncompressed: 0,
            started: false,
            limit: ZIP32_LIMIT,
        }
    }

    /// The name's length field.
    fn name_length(&self) -> Result<u16, EncodeError> {
        u16::try_from(self.name.len()).map_err(|_| EncodeError::TooLarge {
            format: "ZIP",
            what: "an entry name",
            size: self.name.len() as u64,
            max: u64::from(u16::MAX),
        })
    }

    /// Writes the local file header unless already written.
    fn start(&mut self) -> Result<(), EncodeError> {
        if self.started {
            return Ok(());
        }
        let mut header = Vec::with_capacity(LOCAL_HEADER_BYTES as usize + self.name.len());
        put32(&mut header, LOCAL_HEADER_SIGNATURE);
        put16(&mut header, VERSION_NEEDED);
        put16(&mut header, FLAGS);
        put16(&mut header, METHOD_DEFLATE);
        put16(&mut header, DOS_TIME);
        put16(&mut header, DOS_DATE);
        // CRC-32, compressed and uncompressed size: in the data descriptor.
        put32(&mut header, 0);
        put32(&mut header, 0);
        put32(&mut header, 0);
        put16(&mut header, self.name_length()?);
        put16(&mut header, 0); // extra field length
        header.extend_from_slice(&self.name);
        // The deflater has produced nothing yet, so its writer is ours to
        // use: the header lands before the first deflated byte.
        self.deflate.get_mut().write_all(&header)?;
        self.started = true;
        Ok(())
    }

    /// Lowers the overflow limit so tests can reach it with small data.
    #[cfg(test)]
    fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }
}

impl<W: Write + Send> Stream<W> for ZipWriter<W> {
    fn write(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        self.start()?;
        // Refuse before writing, so the archive never holds an entry that
        // its size fields cannot describe.
        zip32(
            self.uncompressed + data.len() as u64,
            self.limit,
            "an uncompressed entry",
        )?;
        self.crc.update(data);
        self.deflate.write_all(data)?;
        self.uncompressed += data.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<W, EncodeError> {
        self.start()?;
        let crc = self.crc.clone().finalize();
        let limit = self.limit;
        let uncompressed = zip32(self.uncompressed, limit, "an uncompressed entry")?;
        let name_length = self.name_length()?;
        let name = self.name;
        let local_header = LOCAL_HEADER_BYTES + name.len() as u64;
        // Ends the deflate stream (an empty entry is one empty final block).
        let mut out = self.deflate.finish()?;
        let compressed = zip32(out.bytes - local_header, limit, "a compressed entry")?;

        let mut trailer = Vec::with_capacity(16 + 46 + name.len() + 22);
        put32(&mut trailer, DATA_DESCRIPTOR_SIGNATURE);
        put32(&mut trailer, crc);
        put32(&mut trailer, compressed);
        put32(&mut trailer, uncompressed);

        let central_offset = out.bytes + trailer.len() as u64;
        let central_start = trailer.len();
        put32(&mut trailer, CENTRAL_HEADER_SIGNATURE);
        put16(&mut trailer, VERSION_MADE_BY);
        put16(&mut trailer, VERSION_NEEDED);
        put16(&mut trailer, FLAGS);
        put16(&mut trailer, METHOD_DEFLATE);
        put16(&mut trailer, DOS_TIME);
        put16(&mut trailer, DOS_DATE);
        put32(&mut trailer, crc);
        put32(&mut trailer, compressed);
        put32(&mut trailer, uncompressed);
        put16(&mut trailer, name_length);
        put16(&mut trailer, 0); // extra field length
        put16(&mut trailer, 0); // comment length
        put16(&mut trailer, 0); // disk number start
        put16(&mut trailer, 0); // internal attributes
        put32(&mut trailer, EXTERNAL_ATTRIBUTES);
        put32(&mut trailer, 0); // offset of the local header
        trailer.extend_from_slice(&name);
        let central_size = (trailer.len() - central_start) as u64;

        put32(&mut trailer, END_OF_CENTRAL_DIRECTORY_SIGNATURE);
        put16(&mut trailer, 0); // this disk
        put16(&mut trailer, 0); // disk with the central directory
        put16(&mut trailer, 1); // entries on this disk
        put16(&mut trailer, 1); // entries in total
        put32(
            &mut trailer,
            zip32(central_size, limit, "a central directory")?,
        );
        put32(
            &mut trailer,
            zip32(central_offset, limit, "a central directory offset")?,
        );
        put16(&mut trailer, 0); // comment length

        out.write_all(&trailer)?;
        Ok(unbuffer(out.inner)?)
    }
}

/// `value` as a ZIP32 field, or the error naming `what` as what overflowed.
fn zip32(value: u64, limit: u64, what: &'static str) -> Result<u32, EncodeError> {
    let too_large = || EncodeError::TooLarge {
        format: "ZIP",
        what,
        size: value,
        max: limit - 1,
    };
    if value >= limit {
        return Err(too_large());
    }
    u32::try_from(value).map_err(|_| too_large())
}

fn put16(buf: &mut Vec<u8>, value: u16) {
    buf.extend_from_slice(&value.to_le_bytes());
}

fn put32(buf: &mut Vec<u8>, value: u32) {
    buf.extend_from_slice(&value.to_le_bytes());
}

/// Counts the bytes written through it: the central directory records
/// offsets and the compressed size, which only the output knows.
struct Counter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Read;

    use super::*;
    use crate::encode::raw::buffered;
    use crate::error::{Classify, Fault};

    /// The single entry of an archive, as an independent reader sees it.
    #[derive(Debug)]
    pub(in crate::encode) struct Entry {
        pub(in crate::encode) name: String,
        pub(in crate::encode) data: Vec<u8>,
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    /// Reads a one-entry archive the way unzip does (end of central
    /// directory -> central header -> local header -> data), inflates the
    /// data and checks every size, CRC and the data descriptor.
    pub(in crate::encode) fn read_zip(bytes: &[u8]) -> Entry {
        // End of central directory: the last 22 bytes (no comment).
        let eocd = bytes.len() - 22;
        assert_eq!(
            u32_at(bytes, eocd),
            0x0605_4b50,
            "end of central directory signature"
        );
        assert_eq!(u16_at(bytes, eocd + 8), 1, "entries on this disk");
        assert_eq!(u16_at(bytes, eocd + 10), 1, "entries in total");
        let central_size = u32_at(bytes, eocd + 12) as usize;
        let central = u32_at(bytes, eocd + 16) as usize;
        assert_eq!(
            central + central_size,
            eocd,
            "central directory ends at the EOCD"
        );

        // Central directory header.
        assert_eq!(
            u32_at(bytes, central),
            0x0201_4b50,
            "central header signature"
        );
        assert_eq!(u16_at(bytes, central + 6), 20, "version needed");
        let flags = u16_at(bytes, central + 8);
        assert_eq!(flags, 0x0808, "data descriptor + UTF-8 flags");
        assert_eq!(u16_at(bytes, central + 10), 8, "deflate");
        assert_eq!(u16_at(bytes, central + 4), 0x0314, "made by Unix, 2.0");
        assert_eq!(
            u32_at(bytes, central + 38) >> 16,
            0o100_644,
            "regular file, rw-r--r--"
        );
        // 1980-01-01 00:00:00 in DOS format.
        assert_eq!(
            (u16_at(bytes, central + 12), u16_at(bytes, central + 14)),
            (0, 0x0021)
        );
        let crc = u32_at(bytes, central + 16);
        let compressed = u32_at(bytes, central + 20) as usize;
        let uncompressed = u32_at(bytes, central + 24) as usize;
        let name_len = u16_at(bytes, central + 28) as usize;
        let extra_len = u16_at(bytes, central + 30) as usize;
        let comment_len = u16_at(bytes, central + 32) as usize;
        let local = u32_at(bytes, central + 42) as usize;
        let name = &bytes[central + 46..central + 46 + name_len];
        assert_eq!(46 + name_len + extra_len + comment_len, central_size);

        // Local header: same name and flags, sizes deferred to the descriptor.
        assert_eq!(u32_at(bytes, local), 0x0403_4b50, "local header signature");
        assert_eq!(u16_at(bytes, local + 6), flags);
        assert_eq!(u16_at(bytes, local + 4), 20, "version needed");
        assert_eq!(u16_at(bytes, local + 8), 8);
        assert_eq!(
            (u16_at(bytes, local + 10), u16_at(bytes, local + 12)),
            (0, 0x0021)
        );
        assert_eq!(u32_at(bytes, local + 14), 0, "CRC deferred");
        let local_name_len = u16_at(bytes, local + 26) as usize;
        let local_extra_len = u16_at(bytes, local + 28) as usize;
        assert_eq!(&bytes[local + 30..local + 30 + local_name_len], name);
        let start = local + 30 + local_name_len + local_extra_len;
        let deflated = &bytes[start..start + compressed];

        // Data descriptor right after the data, right before the directory.
        let descriptor = start + compressed;
        assert_eq!(
            u32_at(bytes, descriptor),
            0x0807_4b50,
            "data descriptor signature"
        );
        assert_eq!(u32_at(bytes, descriptor + 4), crc);
        assert_eq!(u32_at(bytes, descriptor + 8) as usize, compressed);
        assert_eq!(u32_at(bytes, descriptor + 12) as usize, uncompressed);
        assert_eq!(descriptor + 16, central);

        let mut data = Vec::new();
        flate2::read::DeflateDecoder::new(deflated)
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(data.len(), uncompressed, "uncompressed size");
        assert_eq!(crc32fast::hash(&data), crc, "CRC-32");
        Entry {
            name: String::from_utf8(name.to_vec()).unwrap(),
            data,
        }
    }

    fn zip(name: &str, writes: &[&[u8]]) -> Vec<u8> {
        let mut writer = ZipWriter::new(buffered(Vec::new()), name);
        for data in writes {
            writer.write(data).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn utf8_name_and_data_round_trip() {
        let bytes = zip("日志-données.json", &[b"{\"a\":1}\n", b"{\"a\":2}\n"]);
        let entry = read_zip(&bytes);
        assert_eq!(entry.name, "日志-données.json");
        assert_eq!(entry.data, b"{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn empty_entry_is_a_valid_archive() {
        let bytes = zip("empty", &[]);
        let entry = read_zip(&bytes);
        assert_eq!(entry.name, "empty");
        assert!(entry.data.is_empty());
    }

    #[test]
    fn output_is_deterministic() {
        let writes: &[&[u8]] = &[b"same", b" input"];
        assert_eq!(zip("n", writes), zip("n", writes));
    }

    #[test]
    fn uncompressed_overflow_is_refused_before_writing() {
        let mut writer = ZipWriter::new(buffered(Vec::new()), "n").with_limit(100);
        writer.write(&[1; 60]).unwrap();
        let err = writer.write(&[1; 40]).unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::TooLarge {
                    what: "an uncompressed entry",
                    size: 100,
                    max: 99,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retriable());
        assert_eq!(err.fault(), Fault::Bug);
        // Nothing of the refused write reached the deflater.
        assert_eq!(writer.uncompressed, 60);
    }

    #[test]
    fn compressed_overflow_fails_finish() {
        // 999 incompressible bytes deflate to more than 999.
        let noise = crate::encode::tests::noise(999, 1);
        let mut writer = ZipWriter::new(buffered(Vec::new()), "n").with_limit(1000);
        writer.write(&noise).unwrap();
        let err = writer.finish().unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::TooLarge {
                    what: "a compressed entry",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn central_directory_offset_overflow_fails_finish() {
        // Every size fits; only the directory's offset (530 + ~505 + 16) does not.
        let name = "n".repeat(500);
        let mut writer = ZipWriter::new(buffered(Vec::new()), &name).with_limit(1000);
        writer.write(&crate::encode::tests::noise(500, 2)).unwrap();
        let err = writer.finish().unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::TooLarge {
                    what: "a central directory offset",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn overlong_name_is_refused() {
        let name = "n".repeat(usize::from(u16::MAX) + 1);
        let mut writer = ZipWriter::new(buffered(Vec::new()), &name);
        let err = writer.write(b"x").unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::TooLarge {
                    what: "an entry name",
                    ..
                }
            ),
            "{err:?}"
        );
        let writer = ZipWriter::new(buffered(Vec::new()), &name);
        assert!(writer.finish().is_err());
        // The longest allowed name still works.
        let name = "n".repeat(usize::from(u16::MAX));
        assert_eq!(read_zip(&zip(&name, &[b"x"])).name, name);
    }
}
