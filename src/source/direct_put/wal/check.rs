//! Knowing a torn tail from corruption: the start-up check of the log, and
//! `sluice wal check|repair`.
//!
//! Neighbours: [`super::Wal::open`] calls [`prepare`] before the writer
//! starts; the command line calls [`check`] and [`repair`] on a stopped
//! stream. Formats are in [`super::format`].
//!
//! Rules, each because a crash can produce the one and not the other:
//! - Answers are sent only after the fsync of their group, and the group is
//!   the last thing written, so a crash can only leave damage *at the end of
//!   the last segment*, with nothing valid after it and nothing the
//!   durable-end mark says was acknowledged. Only such damage is a torn tail
//!   and is cut. Damage anywhere else — an older segment, the middle of the
//!   last one, below the mark — is corruption of acknowledged records: the
//!   stream refuses to start and says where, until the operator repairs it.
//! - Segments are contiguous and each one records its predecessor's length,
//!   so a missing segment or an older segment cut at a frame boundary is
//!   found. Zero-length files past the last segment hold nothing and are set
//!   aside (`*.stray`).
//! - The checkpoint and the log must agree: a checkpoint ahead of the log's
//!   end (log truncated, replaced or removed), behind the log's first segment,
//!   or behind what the log says it delivered (checkpoint lost or restored
//!   from a backup) would silently drop new records or re-deliver old ones.
//!   sluice refuses unless the operator passes `--reset-positions`, and then
//!   says what it skipped.
//! - Records already delivered (before the checkpoint) are not checked: they
//!   are never read again and their segments are deleted soon.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{self, BadFrame, Mark, SEGMENT_HEADER};
use super::{WalError, io_err, segment_path};
use crate::fsutil::sync_dir;
use crate::record::WalPosition;

/// What the writer starts from.
#[derive(Debug)]
pub(super) struct Layout {
    /// Size of every segment on disk.
    pub segments: BTreeMap<u64, u64>,
    /// End of the last valid frame.
    pub end: WalPosition,
    /// Records before this are delivered: where reading may start at the
    /// earliest and what the size cap does not count.
    pub floor: WalPosition,
}

/// One stretch of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extent {
    /// Valid frames.
    Frames {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// How many frames.
        frames: u64,
    },
    /// Bytes where no valid frame starts, up to where one does (or the end).
    Damaged {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// What is wrong at `start`.
        reason: String,
        /// Whether the bytes end inside a frame (what an interrupted write leaves).
        incomplete: bool,
    },
}

/// Splits `buf[from..]` into valid frames and damaged stretches.
pub fn scan_frames(buf: &[u8], from: usize) -> Vec<Extent> {
    let mut extents = Vec::new();
    let (mut at, mut run, mut frames) = (from, from, 0u64);
    while at < buf.len() {
        match format::frame_at(buf, at) {
            Ok((len, _)) => {
                at += len;
                frames += 1;
            }
            Err(bad) => {
                if at > run {
                    extents.push(Extent::Frames {
                        start: run as u64,
                        end: at as u64,
                        frames,
                    });
                }
                let end = format::resync(buf, at + 1).unwrap_or(buf.len());
                extents.push(Extent::Damaged {
                    start: at as u64,
                    end: end as u64,
                    reason: bad.reason().to_owned(),
                    incomplete: matches!(bad, BadFrame::Incomplete(_)),
                });
                (at, run, frames) = (end, end, 0);
            }
        }
    }
    if at > run {
        extents.push(Extent::Frames {
            start: run as u64,
            end: at as u64,
            frames,
        });
    }
    extents
}

/// What one segment looks like.
#[derive(Debug)]
pub struct SegmentReport {
    /// Segment number.
    pub number: u64,
    /// File length.
    pub len: u64,
    /// The header's record of the previous segment's length, or what is
    /// wrong with the header.
    pub header: Result<u64, String>,
    /// Where checking started (records before the checkpoint are delivered
    /// and not checked).
    pub checked_from: u64,
    /// What the checked part holds.
    pub extents: Vec<Extent>,
}

impl SegmentReport {
    /// Valid records in the checked part.
    pub fn frames(&self) -> u64 {
        self.extents
            .iter()
            .map(|e| match e {
                Extent::Frames { frames, .. } => *frames,
                Extent::Damaged { .. } => 0,
            })
            .sum()
    }

    fn damage(&self) -> impl Iterator<Item = (u64, u64, &str, bool)> {
        self.extents.iter().filter_map(|e| match e {
            Extent::Damaged {
                start,
                end,
                reason,
                incomplete,
            } => Some((*start, *end, reason.as_str(), *incomplete)),
            Extent::Frames { .. } => None,
        })
    }
}

/// Everything the check found, before any decision.
#[derive(Debug)]
pub struct Report {
    /// The log directory.
    pub dir: PathBuf,
    /// The committed checkpoint position it was checked against.
    pub committed: Option<WalPosition>,
    /// The durable-end mark, if intact.
    pub mark: Option<Mark>,
    /// Zero-length segment files past the end of the log.
    pub strays: Vec<u64>,
    /// Segment numbers missing between the first and the last.
    pub missing: Vec<u64>,
    /// Every segment, in order.
    pub segments: Vec<SegmentReport>,
}

/// What is wrong, in the words an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Acknowledged records are damaged or missing.
    Corrupt {
        /// Where.
        position: WalPosition,
        /// What and what it affects.
        message: String,
    },
    /// The checkpoint and the log disagree.
    Inconsistent(String),
    /// The end of the last segment is a torn, never-acknowledged write.
    TornTail {
        /// Where the valid part ends.
        at: WalPosition,
        /// Bytes cut.
        bytes: u64,
    },
    /// The last segment's header was never completely written.
    TornHeader {
        /// The segment.
        segment: u64,
    },
}

fn scan_dir(dir: &Path) -> Result<BTreeMap<u64, u64>, WalError> {
    let mut segments = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(io_err("listing log directory", e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing log directory", e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let len = entry
            .metadata()
            .map_err(|e| io_err("reading segment size", e))?
            .len();
        segments.insert(n, len);
    }
    Ok(segments)
}

fn read_mark(dir: &Path) -> Option<Mark> {
    let bytes = fs::read(dir.join(format::MARK_FILE)).ok()?;
    let mark = Mark::decode(&bytes);
    if mark.is_none() {
        tracing::warn!(dir = %dir.display(), "The write-ahead log's durable-end mark is damaged; checking without it.");
    }
    mark
}

/// Reads the log in `dir` and describes it (changes nothing): `sluice wal
/// check`, and the first step of [`prepare`] and [`repair`].
///
/// # Errors
/// [`WalError::Io`] when files cannot be read.
pub fn check(dir: &Path, committed: Option<WalPosition>) -> Result<Report, WalError> {
    let mut on_disk = scan_dir(dir)?;
    // Zero-length files hold nothing. The log ends at its last non-empty
    // segment (one empty segment after it is a rotation cut short); any other
    // empty file past that is a stray. With no data at all, the lowest file is
    // the log's fresh segment and every other one a stray.
    let last_nonempty = on_disk
        .iter()
        .rev()
        .find(|(_, len)| **len > 0)
        .map(|(n, _)| *n);
    let keep_up_to = match last_nonempty {
        Some(last) => last + 1,
        None => on_disk.keys().next().copied().unwrap_or(0),
    };
    let strays: Vec<u64> = on_disk
        .iter()
        .filter(|(n, len)| **len == 0 && **n > keep_up_to)
        .map(|(n, _)| *n)
        .collect();
    for n in &strays {
        on_disk.remove(n);
    }
    let missing = match (on_disk.keys().next(), on_disk.keys().next_back()) {
        (Some(&first), Some(&last)) => (first..=last)
            .filter(|n| !on_disk.contains_key(n))
            .collect(),
        _ => Vec::new(),
    };
    let mut segments = Vec::new();
    for (&number, &len) in &on_disk {
        let delivered = committed.is_some_and(|c| c.segment > number);
        let bytes = if delivered {
            // Only the header is needed: the records are delivered.
            let mut head = vec![0u8; SEGMENT_HEADER as usize];
            let n = File::open(segment_path(dir, number))
                .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
                .map_err(|e| io_err("reading segment", e))?;
            head.truncate(n);
            head
        } else {
            fs::read(segment_path(dir, number)).map_err(|e| io_err("reading segment", e))?
        };
        let header = format::decode_header(&bytes, number);
        let checked_from = match committed {
            Some(c) if c.segment == number => c.offset.max(SEGMENT_HEADER),
            _ => SEGMENT_HEADER,
        };
        let extents = if delivered || checked_from >= len {
            Vec::new()
        } else {
            scan_frames(&bytes, checked_from as usize)
        };
        segments.push(SegmentReport {
            number,
            len,
            header,
            checked_from,
            extents,
        });
    }
    Ok(Report {
        dir: dir.to_owned(),
        committed,
        mark: read_mark(dir),
        strays,
        missing,
        segments,
    })
}

const REPAIR_HINT: &str = "Stop here: these records were acknowledged and are not delivered yet. \
     `sluice wal check` shows the damage; `sluice wal repair` keeps every intact record and sends \
     the damaged bytes to the stream's processing-failed error output.";

impl Report {
    /// First segment on disk.
    pub fn first(&self) -> Option<u64> {
        self.segments.first().map(|s| s.number)
    }

    /// End of the log as it stands (before any repair).
    pub fn end(&self) -> Option<WalPosition> {
        self.segments.last().map(|s| WalPosition {
            segment: s.number,
            offset: s.len,
        })
    }

    /// Every problem, in log order, then the checkpoint's agreement.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let corrupt = |position: WalPosition, what: String| Problem::Corrupt {
            position,
            message: what,
        };
        for &n in &self.missing {
            out.push(corrupt(
                WalPosition {
                    segment: n,
                    offset: 0,
                },
                format!("segment {n} is missing: its records are lost unless it is restored"),
            ));
        }
        let last = self.segments.last().map(|s| s.number);
        let mark_end = self.mark.map(|m| m.end);
        for (i, seg) in self.segments.iter().enumerate() {
            let is_last = Some(seg.number) == last;
            let pos = |offset| WalPosition {
                segment: seg.number,
                offset,
            };
            match &seg.header {
                Ok(prev) => {
                    if let Some(before) = i.checked_sub(1).map(|j| &self.segments[j])
                        && before.number + 1 == seg.number
                        && before.len != *prev
                    {
                        out.push(corrupt(
                            WalPosition {
                                segment: before.number,
                                offset: before.len.min(*prev),
                            },
                            format!(
                                "segment {} is {} bytes but segment {} records that it ended at {prev}: the log was cut or extended",
                                before.number, before.len, seg.number
                            ),
                        ));
                    }
                }
                Err(reason) => {
                    let torn = is_last
                        && seg.len <= SEGMENT_HEADER
                        && mark_end.is_none_or(|m| m <= pos(SEGMENT_HEADER));
                    if torn {
                        out.push(Problem::TornHeader {
                            segment: seg.number,
                        });
                    } else {
                        out.push(corrupt(pos(0), format!("segment {}: {reason}", seg.number)));
                    }
                    continue;
                }
            }
            let damage: Vec<_> = seg.damage().collect();
            for (k, &(start, end, reason, _incomplete)) in damage.iter().enumerate() {
                let final_stretch = k + 1 == damage.len() && end == seg.len;
                // Torn only where a crash can tear: the end of the last
                // segment, nothing valid after it, nothing acknowledged in it.
                let torn = is_last && final_stretch && mark_end.is_none_or(|m| m <= pos(start));
                if torn {
                    out.push(Problem::TornTail {
                        at: pos(start),
                        bytes: end - start,
                    });
                } else {
                    out.push(corrupt(
                        pos(start),
                        format!(
                            "segment {} offset {start}: {reason}; {} bytes up to offset {end} are unreadable",
                            seg.number,
                            end - start
                        ),
                    ));
                }
            }
        }
        if let (Some(m), Some(end)) = (mark_end, self.valid_end())
            && m > end
        {
            out.push(corrupt(
                end,
                format!(
                    "the log ends at {end} but records up to {m} were acknowledged: it was truncated or a segment is missing"
                ),
            ));
        }
        out.extend(self.consistency().into_iter().map(Problem::Inconsistent));
        out
    }

    /// End of the log once a torn tail is cut.
    fn valid_end(&self) -> Option<WalPosition> {
        let seg = self.segments.last()?;
        let offset = match seg.extents.last() {
            Some(Extent::Damaged { start, end, .. }) if *end == seg.len => *start,
            _ => seg.len,
        };
        Some(WalPosition {
            segment: seg.number,
            offset: offset.max(SEGMENT_HEADER.min(seg.len)),
        })
    }

    /// How the checkpoint disagrees with the log, if it does.
    fn consistency(&self) -> Vec<String> {
        let mut out = Vec::new();
        let released = self.mark.map(|m| m.released);
        match (self.committed, self.valid_end(), self.first()) {
            (Some(c), None, _) => out.push(format!(
                "the checkpoint says records up to {c} were delivered from this log, but the log is gone (directory removed or restored without it); records acknowledged after the checkpoint are lost"
            )),
            (Some(c), Some(end), Some(first)) => {
                if c > end {
                    out.push(format!(
                        "the checkpoint ({c}) is ahead of the log's end ({end}): the log was truncated or replaced by an older copy; new records would be written below the checkpoint and never delivered"
                    ));
                } else if c.segment < first {
                    out.push(format!(
                        "the checkpoint ({c}) is behind the log's first segment ({first}): segments {}..{} were removed while holding undelivered records",
                        c.segment,
                        first - 1
                    ));
                }
            }
            (None, None, _) => {
                if let Some(m) = self.mark.filter(|m| m.end.offset > SEGMENT_HEADER || m.end.segment > 1) {
                    out.push(format!(
                        "the log's segments are gone but its mark says records up to {} were acknowledged",
                        m.end
                    ));
                }
            }
            _ => {}
        }
        if let (Some(r), Some(end)) = (released, self.valid_end())
            && r > end
            && self.committed.is_none()
        {
            out.push(format!(
                "the log's mark says records up to {r} were delivered but the log ends at {end}"
            ));
        }
        if let Some(r) = released {
            let behind = match self.committed {
                None => r.offset > SEGMENT_HEADER || r.segment > 1,
                Some(c) => c < r,
            };
            if behind && self.first().is_some() {
                out.push(match self.committed {
                    None => format!(
                        "there is no checkpoint, but the log says records up to {r} were already delivered: the checkpoint was lost or deleted; starting over would deliver them again"
                    ),
                    Some(c) => format!(
                        "the checkpoint ({c}) is behind what the log says was delivered ({r}): it was restored from an older copy; records in between would be delivered twice"
                    ),
                });
            }
        }
        out
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "write-ahead log {}", self.dir.display())?;
        match self.committed {
            Some(c) => writeln!(f, "  checkpoint: delivered up to {c}")?,
            None => writeln!(f, "  checkpoint: none")?,
        }
        match self.mark {
            Some(m) => writeln!(
                f,
                "  mark: acknowledged up to {}, delivered up to {}",
                m.end, m.released
            )?,
            None => writeln!(f, "  mark: none")?,
        }
        for seg in &self.segments {
            let header = match &seg.header {
                Ok(_) => "header ok".to_owned(),
                Err(e) => e.clone(),
            };
            writeln!(
                f,
                "  segment {}: {} bytes, {header}, {} records checked from offset {}",
                seg.number,
                seg.len,
                seg.frames(),
                seg.checked_from
            )?;
            for (start, end, reason, _) in seg.damage() {
                writeln!(
                    f,
                    "    damaged {start}..{end} ({} bytes): {reason}",
                    end - start
                )?;
            }
        }
        for n in &self.strays {
            writeln!(f, "  stray empty segment file {n} (set aside at start)")?;
        }
        let problems = self.problems();
        if problems.is_empty() {
            writeln!(f, "  ok")?;
        }
        for p in problems {
            match p {
                Problem::Corrupt { message, .. } => writeln!(f, "  CORRUPT: {message}")?,
                Problem::Inconsistent(message) => writeln!(f, "  INCONSISTENT: {message}")?,
                Problem::TornTail { at, bytes } => writeln!(
                    f,
                    "  torn tail at {at}: {bytes} bytes never acknowledged (cut at start)"
                )?,
                Problem::TornHeader { segment } => writeln!(
                    f,
                    "  segment {segment} was being created (header rewritten at start)"
                )?,
            }
        }
        Ok(())
    }
}

/// The start-up check: cuts a torn tail, finishes a torn segment header,
/// sets strays aside, creates a new log, and refuses corruption and
/// disagreement with the checkpoint (unless `reset`).
pub(super) fn prepare(
    dir: &Path,
    committed: Option<WalPosition>,
    reset: bool,
) -> Result<Layout, WalError> {
    fs::create_dir_all(dir).map_err(|e| io_err("creating log directory", e))?;
    let report = check(dir, committed)?;
    let problems = report.problems();
    let inconsistent: Vec<String> = problems
        .iter()
        .filter_map(|p| match p {
            Problem::Inconsistent(message) => Some(message.clone()),
            _ => None,
        })
        .collect();
    let corrupt = problems.iter().find_map(|p| match p {
        Problem::Corrupt { position, message } => Some(WalError::Corrupt {
            position: *position,
            message: format!("{message}. {REPAIR_HINT}"),
        }),
        _ => None,
    });
    // Refusals come before any change, so the operator finds the log as it was.
    if let Some(err) = corrupt {
        return Err(err);
    }
    if !inconsistent.is_empty() && !reset {
        return Err(WalError::Inconsistent {
            message: format!(
                "{}. Nothing was changed. If this is expected (e.g. state restored from a backup), start with --reset-positions: sluice then resumes after the checkpoint and the log's own record of what it delivered, and writes new records after both.",
                inconsistent.join("; ")
            ),
        });
    }
    for message in &inconsistent {
        tracing::warn!(dir = %dir.display(), "--reset-positions: {message}. Proceeding as asked.");
    }
    for n in &report.strays {
        let path = segment_path(dir, *n);
        tracing::warn!(segment = %path.display(), "Setting aside an empty segment file past the end of the log.");
        fs::rename(&path, path.with_extension("wal.stray"))
            .map_err(|e| io_err("setting a stray segment aside", e))?;
    }
    for problem in problems {
        match problem {
            Problem::Corrupt { .. } | Problem::Inconsistent(_) => {}
            Problem::TornTail { at, bytes } => {
                tracing::warn!(position = %at, bytes, "Cutting a torn write-ahead log tail: a write interrupted before its fsync, never acknowledged.");
                let file = OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, at.segment))
                    .map_err(|e| io_err("opening segment", e))?;
                file.set_len(at.offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_err("cutting torn tail", e))?;
            }
            Problem::TornHeader { segment } => {
                let previous = report
                    .segments
                    .iter()
                    .find(|s| s.number + 1 == segment)
                    .map_or(0, |s| s.len);
                write_segment_header(dir, segment, previous)?;
            }
        }
    }
    let mut segments = scan_dir(dir)?;
    segments.retain(|n, _| !report.strays.contains(n));
    let released = report.mark.map(|m| m.released);
    // A checkpoint (or the log's own delivered mark) ahead of the log's end,
    // or a log that is gone: set what is left aside and start a new log
    // numbered after every position ever recorded, so new records land above
    // all of them and none is taken for delivered.
    let end = report.valid_end();
    let highest = [committed, released, report.mark.map(|m| m.end)]
        .into_iter()
        .flatten()
        .max();
    let restart =
        reset && !inconsistent.is_empty() && highest.is_some_and(|h| end.is_none_or(|e| h > e));
    if restart {
        if !segments.is_empty() {
            let aside = dir.join(format!("reset-{}", jiff::Timestamp::now().as_millisecond()));
            fs::create_dir_all(&aside).map_err(|e| io_err("setting the old log aside", e))?;
            for n in segments.keys() {
                let name = segment_path(dir, *n);
                fs::rename(&name, aside.join(name.file_name().unwrap_or_default()))
                    .map_err(|e| io_err("setting the old log aside", e))?;
            }
            tracing::warn!(aside = %aside.display(), "--reset-positions: the old log segments were moved aside.");
        }
        segments.clear();
        let first = highest.map_or(0, |h| h.segment).max(last_number(&report)) + 1;
        write_segment_header(dir, first, 0)?;
        segments.insert(first, SEGMENT_HEADER);
    }
    if segments.is_empty() {
        write_segment_header(dir, 1, 0)?;
        segments.insert(1, SEGMENT_HEADER);
    }
    let (&last, &last_len) = segments.iter().next_back().unwrap_or((&1, &SEGMENT_HEADER));
    let first = *segments.keys().next().unwrap_or(&1);
    let start = WalPosition {
        segment: first,
        offset: 0,
    };
    let mut floor = committed.unwrap_or(start).max(start);
    if reset && let Some(r) = released {
        floor = floor.max(r);
    }
    Ok(Layout {
        segments,
        end: WalPosition {
            segment: last,
            offset: last_len,
        },
        floor,
    })
}

fn last_number(report: &Report) -> u64 {
    report.segments.last().map_or(0, |s| s.number)
}

/// Creates (or overwrites) segment `number` holding only its header, durably.
pub(super) fn write_segment_header(
    dir: &Path,
    number: u64,
    previous: u64,
) -> Result<File, WalError> {
    let path = segment_path(dir, number);
    let result = (|| {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&path)?;
        file.write_all(&format::encode_header(number, previous))?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(file)
    })();
    result.map_err(|e: std::io::Error| {
        // A half-created segment would be taken for a torn rotation; remove it.
        let _ = fs::remove_file(&path);
        io_err("creating segment", e)
    })
}

/// What a repair did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Damaged stretches turned into salvage frames.
    pub stretches: u64,
    /// Bytes salvaged.
    pub bytes: u64,
    /// Missing segments replaced by empty ones (their records are lost).
    pub recreated: Vec<u64>,
}

/// Rewrites every segment with damage after the checkpoint: intact frames are
/// kept, each damaged stretch becomes salvage frames (delivered to the
/// `processing-failed` error output), missing segments are recreated empty,
/// segment headers are made consistent, and the mark is rewritten. A torn
/// tail is salvaged too: an operator who asks for a repair sees every byte.
/// Disagreement with the checkpoint is not repaired here (see
/// `--reset-positions`). The stream must be stopped.
///
/// # Errors
/// [`WalError::Io`].
pub fn repair(dir: &Path, committed: Option<WalPosition>) -> Result<Repaired, WalError> {
    let report = check(dir, committed)?;
    let mut done = Repaired::default();
    let now = jiff::Timestamp::now().as_millisecond();
    let mut lengths: BTreeMap<u64, u64> = BTreeMap::new();
    for seg in &report.segments {
        let damaged = seg.header.is_err()
            || seg
                .extents
                .iter()
                .any(|e| matches!(e, Extent::Damaged { .. }));
        if !damaged {
            lengths.insert(seg.number, seg.len);
            continue;
        }
        let bytes =
            fs::read(segment_path(dir, seg.number)).map_err(|e| io_err("reading segment", e))?;
        let mut out = Vec::with_capacity(bytes.len() + 64);
        out.extend_from_slice(&format::encode_header(seg.number, 0));
        // Delivered records before the checked part are kept as they are.
        let head = (seg.checked_from as usize).min(bytes.len());
        out.extend_from_slice(bytes.get(SEGMENT_HEADER as usize..head).unwrap_or(&[]));
        for extent in &seg.extents {
            match extent {
                Extent::Frames { start, end, .. } => {
                    out.extend_from_slice(&bytes[*start as usize..*end as usize]);
                }
                Extent::Damaged { start, end, .. } => {
                    let origin = WalPosition {
                        segment: seg.number,
                        offset: *start,
                    };
                    format::push_salvage(
                        &mut out,
                        &bytes[*start as usize..*end as usize],
                        origin,
                        now,
                    );
                    done.stretches += 1;
                    done.bytes += end - start;
                }
            }
        }
        let path = segment_path(dir, seg.number);
        crate::fsutil::write_atomic(&path, &out).map_err(|e| io_err("rewriting segment", e))?;
        tracing::warn!(
            segment = seg.number,
            "Rewrote a damaged segment; damaged bytes become processing-failed records."
        );
        lengths.insert(seg.number, out.len() as u64);
    }
    for &n in &report.missing {
        write_segment_header(dir, n, 0)?;
        lengths.insert(n, SEGMENT_HEADER);
        done.recreated.push(n);
    }
    // Make every header record its predecessor's (new) length.
    let mut previous: Option<(u64, u64)> = None;
    for (&n, &len) in &lengths {
        let prev_len = match previous {
            Some((p, l)) if p + 1 == n => l,
            _ => 0,
        };
        let path = segment_path(dir, n);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err("opening segment", e))?;
        std::os::unix::fs::FileExt::write_all_at(&file, &format::encode_header(n, prev_len), 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("rewriting segment header", e))?;
        previous = Some((n, len));
    }
    if let Some((&last, &len)) = lengths.iter().next_back() {
        let released = report
            .mark
            .map(|m| m.released)
            .or(committed)
            .unwrap_or(WalPosition {
                segment: *lengths.keys().next().unwrap_or(&last),
                offset: 0,
            });
        let mark = Mark {
            end: WalPosition {
                segment: last,
                offset: len,
            },
            released,
        };
        crate::fsutil::write_atomic(&dir.join(format::MARK_FILE), &mark.encode())
            .map_err(|e| io_err("rewriting the durable-end mark", e))?;
    }
    sync_dir(dir).map_err(|e| io_err("syncing log directory", e))?;
    Ok(done)
}
