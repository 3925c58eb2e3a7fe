//! The on-disk format of the write-ahead log: segment headers, frames, salvage
//! frames and the durable-end mark. Pure functions over bytes, shared by the
//! writer, the reader, the start-up check and `sluice wal check|repair`
//! ([`super::check`]), and fuzzed (`fuzz/`).
//!
//! ```text
//! segment = header frame*
//! header  = "SLUWAL\0\x01" | u64 segment number | u64 length of the previous
//!           segment when this one was started | u32 CRC-32 of the 24 bytes before
//! frame   = u32 payload length | u32 CRC-32 of payload | payload
//! payload = i64 arrival ms | data
//!         | i64::MIN | i64 repair ms | u64 segment | u64 offset | damaged bytes   (salvage)
//! mark    = "SLWM" | u64 end segment | u64 end offset
//!           | u64 released segment | u64 released offset | u32 CRC-32 of the 36 bytes before
//! ```
//!
//! Why each part exists:
//! - The header's number and previous length let the start-up check prove
//!   that segments are contiguous and that no older segment was cut short at
//!   a frame boundary, which frames alone cannot show.
//! - The mark (`durable.mark`) is rewritten after every group commit, *after*
//!   the fsync, without an fsync of its own: it survives kill -9 (the page cache
//!   does) and is at worst stale after a power loss. It tells the check how far
//!   records were acknowledged, so damage below it is corruption, never a
//!   "torn tail", and how far they were delivered, so a lost or restored
//!   checkpoint is noticed instead of re-delivering everything.
//! - Salvage frames are written only by `sluice wal repair`: they carry the
//!   bytes of a damaged region so the pipeline sends them to the
//!   `processing-failed` error output instead of dropping them.

use crate::record::WalPosition;

/// Magic and format version at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SLUWAL\x00\x01";
/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER: u64 = 28;
/// Frame header: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// Payload prefix: arrival time.
pub const ARRIVAL: usize = 8;
/// Largest payload a frame may claim; anything bigger is damage. Records are
/// at most 1,000 KiB (Firehose's limit), so this is generous.
pub const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;
/// Arrival time that marks a salvage frame.
pub const SALVAGE_ARRIVAL: i64 = i64::MIN;
/// Salvage payload prefix after the marker: repair time, segment, offset.
const SALVAGE_META: usize = 24;
/// Largest damaged chunk per salvage frame (one record of the error output).
pub const SALVAGE_CHUNK: usize = 512 * 1024;
/// Name of the durable-end mark in the log directory.
pub const MARK_FILE: &str = "durable.mark";
const MARK_MAGIC: [u8; 4] = *b"SLWM";
/// Bytes of the mark.
pub const MARK_LEN: usize = 40;

/// Bytes that `records` records with `data` bytes in all take in the log.
pub const fn frame_bytes(records: usize, data: usize) -> u64 {
    (records * (FRAME_HEADER + ARRIVAL) + data) as u64
}

/// The header of segment `number`, started after a previous segment of
/// `previous_len` bytes (0 for the first segment of a log).
pub fn encode_header(number: u64, previous_len: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&number.to_le_bytes());
    h[16..24].copy_from_slice(&previous_len.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the header of segment `number`; returns the previous segment's
/// length it records.
///
/// # Errors
/// What is wrong with it.
pub fn decode_header(bytes: &[u8], number: u64) -> Result<u64, String> {
    let Some(h) = bytes.get(..SEGMENT_HEADER as usize) else {
        return Err(format!(
            "segment header is incomplete ({} of {SEGMENT_HEADER} bytes)",
            bytes.len()
        ));
    };
    if h[..8] != SEGMENT_MAGIC {
        return Err(if h[..6] == SEGMENT_MAGIC[..6] {
            "segment was written by an unknown version of sluice".into()
        } else {
            "segment header has no sluice magic (damaged, or not a sluice log)".into()
        });
    }
    if crc32fast::hash(&h[..24]) != u32_at(h, 24) {
        return Err("segment header fails its CRC".into());
    }
    let stored = u64_at(h, 8);
    if stored != number {
        return Err(format!(
            "segment header says it is segment {stored} (file renamed or copied?)"
        ));
    }
    Ok(u64_at(h, 16))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Appends one frame with `payload_parts` concatenated as its payload.
pub fn push_frame(out: &mut Vec<u8>, payload_parts: &[&[u8]]) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    for part in payload_parts {
        out.extend_from_slice(part);
    }
    let len = (out.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why no valid frame starts at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadFrame {
    /// The bytes end inside the frame: what an interrupted write leaves.
    Incomplete(String),
    /// The frame is complete but wrong.
    Invalid(String),
}

impl BadFrame {
    /// The reason, for messages.
    pub fn reason(&self) -> &str {
        match self {
            BadFrame::Incomplete(r) | BadFrame::Invalid(r) => r,
        }
    }
}

/// A frame header's payload length and CRC, if the length is possible.
///
/// # Errors
/// [`BadFrame::Invalid`] for a length no frame can have.
pub fn frame_header(header: &[u8]) -> Result<(u32, u32), BadFrame> {
    let len = u32_at(header, 0);
    if (len as usize) < ARRIVAL || len > MAX_PAYLOAD {
        return Err(BadFrame::Invalid(format!("impossible frame length {len}")));
    }
    Ok((len, u32_at(header, 4)))
}

/// The frame starting at `buf[at..]`: its total length and payload range.
///
/// # Errors
/// [`BadFrame`] when no valid frame starts there.
pub fn frame_at(buf: &[u8], at: usize) -> Result<(usize, std::ops::Range<usize>), BadFrame> {
    let rest = buf.len().saturating_sub(at);
    if rest < FRAME_HEADER {
        return Err(BadFrame::Incomplete(format!(
            "frame header cut short ({rest} of {FRAME_HEADER} bytes)"
        )));
    }
    let (len, crc) = frame_header(&buf[at..at + FRAME_HEADER])?;
    let end = at + FRAME_HEADER + len as usize;
    if end > buf.len() {
        return Err(BadFrame::Incomplete(format!(
            "frame claims {len} payload bytes, {} are there",
            rest - FRAME_HEADER
        )));
    }
    let payload = at + FRAME_HEADER..end;
    if crc32fast::hash(&buf[payload.clone()]) != crc {
        return Err(BadFrame::Invalid("frame fails its CRC".into()));
    }
    Ok((FRAME_HEADER + len as usize, payload))
}

/// The first offset at or after `from` where a valid frame starts: where
/// intact data resumes after damage. A CRC-32 match on random bytes is a
/// one-in-four-billion chance per candidate; candidates are only offsets
/// whose length field is plausible and fits.
pub fn resync(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&at| frame_at(buf, at).is_ok())
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A record put through the API.
    Record {
        /// Arrival time.
        arrival_ms: i64,
        /// The record.
        data: &'a [u8],
    },
    /// Damaged bytes kept by `sluice wal repair`.
    Salvage {
        /// When the repair ran.
        repaired_ms: i64,
        /// Where the bytes were.
        origin: WalPosition,
        /// The bytes.
        data: &'a [u8],
    },
}

/// Decodes a frame's payload (at least [`ARRIVAL`] bytes, as [`frame_at`] checks).
pub fn decode_payload(payload: &[u8]) -> Payload<'_> {
    let arrival_ms = u64_at(payload, 0) as i64;
    if arrival_ms == SALVAGE_ARRIVAL && payload.len() >= ARRIVAL + SALVAGE_META {
        return Payload::Salvage {
            repaired_ms: u64_at(payload, 8) as i64,
            origin: WalPosition {
                segment: u64_at(payload, 16),
                offset: u64_at(payload, 24),
            },
            data: &payload[ARRIVAL + SALVAGE_META..],
        };
    }
    Payload::Record {
        arrival_ms,
        data: &payload[ARRIVAL..],
    }
}

/// Appends salvage frames carrying `damaged`, which sat at `origin`.
pub fn push_salvage(out: &mut Vec<u8>, damaged: &[u8], origin: WalPosition, repaired_ms: i64) {
    for (i, chunk) in damaged.chunks(SALVAGE_CHUNK).enumerate() {
        let offset = origin.offset + (i * SALVAGE_CHUNK) as u64;
        push_frame(
            out,
            &[
                &SALVAGE_ARRIVAL.to_le_bytes(),
                &repaired_ms.to_le_bytes(),
                &origin.segment.to_le_bytes(),
                &offset.to_le_bytes(),
                chunk,
            ],
        );
    }
}

/// The durable-end mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Every record before this was acknowledged (fsynced).
    pub end: WalPosition,
    /// Every record before this was delivered (committed and completed).
    pub released: WalPosition,
}

impl Mark {
    /// The mark's bytes.
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut m = [0u8; MARK_LEN];
        m[..4].copy_from_slice(&MARK_MAGIC);
        m[4..12].copy_from_slice(&self.end.segment.to_le_bytes());
        m[12..20].copy_from_slice(&self.end.offset.to_le_bytes());
        m[20..28].copy_from_slice(&self.released.segment.to_le_bytes());
        m[28..36].copy_from_slice(&self.released.offset.to_le_bytes());
        let crc = crc32fast::hash(&m[..36]);
        m[36..40].copy_from_slice(&crc.to_le_bytes());
        m
    }

    /// A mark from its bytes; `None` when they are not a whole, intact mark.
    pub fn decode(bytes: &[u8]) -> Option<Mark> {
        let m = bytes.get(..MARK_LEN)?;
        if m[..4] != MARK_MAGIC || crc32fast::hash(&m[..36]) != u32_at(m, 36) {
            return None;
        }
        Some(Mark {
            end: WalPosition {
                segment: u64_at(m, 4),
                offset: u64_at(m, 12),
            },
            released: WalPosition {
                segment: u64_at(m, 20),
                offset: u64_at(m, 28),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_names_what_is_wrong() {
        let h = encode_header(7, 1234);
        assert_eq!(decode_header(&h, 7), Ok(1234));
        assert!(decode_header(&h, 8).unwrap_err().contains("segment 7"));
        assert!(
            decode_header(&h[..10], 7)
                .unwrap_err()
                .contains("incomplete")
        );
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x40;
            assert!(
                decode_header(&bad, 7).is_err(),
                "byte {i} changed unnoticed"
            );
        }
    }

    #[test]
    fn frames_are_found_checked_and_resynced() {
        let mut buf = Vec::new();
        push_frame(&mut buf, &[&5i64.to_le_bytes(), b"hello"]);
        let second = buf.len();
        push_frame(&mut buf, &[&6i64.to_le_bytes(), b"world"]);
        let (len, payload) = frame_at(&buf, 0).unwrap();
        assert_eq!(len, second);
        assert_eq!(
            decode_payload(&buf[payload]),
            Payload::Record {
                arrival_ms: 5,
                data: b"hello"
            }
        );
        let mut bad = buf.clone();
        bad[FRAME_HEADER + ARRIVAL] ^= 1;
        assert!(matches!(frame_at(&bad, 0), Err(BadFrame::Invalid(_))));
        assert_eq!(resync(&bad, 1), Some(second));
        assert!(matches!(
            frame_at(&buf[..buf.len() - 1], second),
            Err(BadFrame::Incomplete(_))
        ));
        assert_eq!(resync(&buf[..buf.len() - 1], 1), None);
    }

    #[test]
    fn salvage_frames_carry_their_origin_in_chunks() {
        let mut buf = Vec::new();
        let damaged = vec![9u8; SALVAGE_CHUNK + 10];
        let origin = WalPosition {
            segment: 3,
            offset: 100,
        };
        push_salvage(&mut buf, &damaged, origin, 42);
        let (len, payload) = frame_at(&buf, 0).unwrap();
        let Payload::Salvage {
            repaired_ms,
            origin: o,
            data,
        } = decode_payload(&buf[payload])
        else {
            panic!("salvage expected")
        };
        assert_eq!((repaired_ms, o, data.len()), (42, origin, SALVAGE_CHUNK));
        let (_, payload) = frame_at(&buf, len).unwrap();
        let Payload::Salvage {
            origin: o, data, ..
        } = decode_payload(&buf[payload])
        else {
            panic!("salvage expected")
        };
        assert_eq!((o.offset, data.len()), (100 + SALVAGE_CHUNK as u64, 10));
    }

    #[test]
    fn mark_round_trips_and_rejects_damage() {
        let mark = Mark {
            end: WalPosition {
                segment: 2,
                offset: 99,
            },
            released: WalPosition {
                segment: 1,
                offset: 28,
            },
        };
        let bytes = mark.encode();
        assert_eq!(Mark::decode(&bytes), Some(mark));
        let mut bad = bytes;
        bad[13] ^= 1;
        assert_eq!(Mark::decode(&bad), None);
        assert_eq!(Mark::decode(&bytes[..39]), None);
    }
}
