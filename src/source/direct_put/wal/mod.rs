//! Segmented write-ahead log with group commit.
//!
//! Layout: `<dir>/<segment number, 20 digits>.wal`, numbered upwards, and the
//! durable-end mark `<dir>/durable.mark`; the byte format is in [`format`](mod@format).
//!
//! One writer thread owns the files. Requests queue on a channel; the writer
//! takes every request waiting (up to [`GROUP_BYTES`]), writes them with one
//! `write`, issues one `fdatasync` and only then answers all of them. That is
//! group commit: concurrent requests share fsyncs, so throughput grows with
//! concurrency while every acknowledgement still means "on disk".
//!
//! On open, [`check::prepare`] checks every undelivered byte of every segment
//! and that the checkpoint agrees with the log: only a torn tail (an
//! unacknowledged write cut by a crash) is repaired by itself; corruption of
//! acknowledged records and disagreement with the checkpoint refuse to start
//! with the position and what is affected (`sluice wal check|repair`,
//! `--reset-positions`).
//!
//! A failed write (disk full, I/O error) fails only the requests of that
//! group: the writer cuts whatever the failed write left after the durable
//! end, fsyncs, and takes the next group, so the log recovers by itself once
//! the disk has space again. (After a failed fsync the page cache cannot be
//! trusted, PostgreSQL's "fsyncgate": cutting back to the last fsynced length
//! and fsyncing again discards exactly the pages in doubt.)
//!
//! The log is capped ([`Wal::open`]'s `max_bytes`): when undelivered bytes
//! would exceed it, appends fail with [`WalError::Full`] and the API answers
//! `ServiceUnavailableException`; memory never grows with a slow sink.

pub mod check;
pub mod format;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use self::format::{ARRIVAL, FRAME_HEADER, Mark, Payload, SEGMENT_HEADER};
use crate::error::{Classify, Fault};
use crate::record::{Position, Positions, Record, WalPosition};
use crate::source::{BoxFuture, Source, SourceBatch, SourceError, SourceProgress};

/// Size at which the writer starts a new segment.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes the writer gathers into one group commit.
pub const GROUP_BYTES: usize = 16 * 1024 * 1024;

/// A write-ahead log failure.
#[derive(Debug, thiserror::Error, Clone)]
pub enum WalError {
    /// Undelivered data would exceed the configured cap: back off and retry.
    #[error("write-ahead log is full ({live} undelivered bytes, cap {cap}); delivery is behind")]
    Full {
        /// Undelivered bytes on disk.
        live: u64,
        /// The cap.
        cap: u64,
    },
    /// The disk (or quota) is full; the log takes writes again once there is space.
    #[error("write-ahead log: no space left on the disk ({0}); retry once space is freed")]
    NoSpace(String),
    /// The log is closed (shutting down).
    #[error("write-ahead log is closed")]
    Closed,
    /// A disk operation failed; the writer recovers for the next request.
    #[error("write-ahead log I/O error: {0}")]
    Io(String),
    /// Acknowledged records are damaged or missing.
    #[error("write-ahead log corrupt at {position}: {message}")]
    Corrupt {
        /// Where.
        position: WalPosition,
        /// What, and what it affects.
        message: String,
    },
    /// The checkpoint and the log disagree; the operator decides.
    #[error("write-ahead log and checkpoint disagree: {message}")]
    Inconsistent {
        /// What disagrees and how to proceed.
        message: String,
    },
}

impl Classify for WalError {
    fn is_retriable(&self) -> bool {
        matches!(
            self,
            WalError::Full { .. } | WalError::NoSpace(_) | WalError::Io(_)
        )
    }
    fn fault(&self) -> Fault {
        match self {
            WalError::Full { .. } | WalError::NoSpace(_) | WalError::Closed | WalError::Io(_) => {
                Fault::Remote
            }
            // Damaged disks and restored state dirs need the operator.
            WalError::Corrupt { .. } => Fault::Remote,
            WalError::Inconsistent { .. } => Fault::Config,
        }
    }
}

pub(crate) fn io_err(context: &str, e: io::Error) -> WalError {
    // ENOSPC is `StorageFull`; EDQUOT (122 on Linux) is a full quota.
    if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(122) {
        WalError::NoSpace(format!("{context}: {e}"))
    } else {
        WalError::Io(format!("{context}: {e}"))
    }
}

/// How to open a log.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Cap on undelivered bytes.
    pub max_bytes: u64,
    /// Proceed when the checkpoint and the log disagree (see [`check`]).
    pub reset_positions: bool,
    /// Size at which a new segment starts ([`SEGMENT_BYTES`]; smaller in tests).
    pub segment_bytes: u64,
}

impl WalOptions {
    /// Defaults with a cap.
    pub fn new(max_bytes: u64) -> Self {
        WalOptions {
            max_bytes,
            reset_positions: false,
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// A message to the writer thread.
enum Msg {
    Append(Append),
    /// Finish what is queued before this message, then stop.
    Close,
}

/// One queued append.
struct Append {
    records: Vec<Bytes>,
    arrival_ms: i64,
    reply: oneshot::Sender<Result<Vec<WalPosition>, WalError>>,
}

impl Append {
    fn bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.len() + FRAME_HEADER + ARRIVAL)
            .sum()
    }
}

/// Bookkeeping shared by the writer thread and [`Wal::release`].
#[derive(Debug)]
struct State {
    /// Size of every segment on disk.
    segments: BTreeMap<u64, u64>,
    /// Everything before this position is delivered.
    released: WalPosition,
    /// Everything before this position is acknowledged.
    end: WalPosition,
    /// The durable-end mark, rewritten in place.
    mark: Option<File>,
}

impl State {
    fn live_bytes(&self) -> u64 {
        let total: u64 = self
            .segments
            .range(self.released.segment..)
            .map(|(_, size)| size)
            .sum();
        total.saturating_sub(self.released.offset)
    }

    /// Rewrites the mark. No fsync: it must survive kill -9, which the page
    /// cache does; after a power loss it is merely stale, which the check
    /// allows for. A failure only weakens the check, so it is logged.
    fn write_mark(&mut self) {
        let mark = Mark {
            end: self.end,
            released: self.released,
        };
        if let Some(file) = &self.mark
            && let Err(e) = std::os::unix::fs::FileExt::write_all_at(file, &mark.encode(), 0)
        {
            tracing::warn!(error = %e, "Cannot update the write-ahead log's durable-end mark.");
        }
    }
}

/// Handle to an open log; cheap to clone.
#[derive(Debug, Clone)]
pub struct Wal {
    dir: PathBuf,
    tx: mpsc::Sender<Msg>,
    state: Arc<Mutex<State>>,
    durable: watch::Receiver<WalPosition>,
    /// Set when a reader found damage in acknowledged records: appends are
    /// refused until the operator repairs the log, so no new record is
    /// acknowledged into a stream that cannot deliver.
    damaged: Arc<Mutex<Option<WalError>>>,
    closed: Arc<AtomicBool>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, checks it against the committed
    /// position (records before it are delivered), cuts a torn tail, and
    /// starts the writer thread.
    ///
    /// # Errors
    /// [`WalError::Corrupt`] or [`WalError::Inconsistent`] when it must not
    /// start on its own; [`WalError::Io`] when the directory is unusable.
    pub fn open(
        dir: &Path,
        committed: Option<WalPosition>,
        options: WalOptions,
    ) -> Result<Wal, WalError> {
        let layout = check::prepare(dir, committed, options.reset_positions)?;
        let end = layout.end;
        let mark = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(format::MARK_FILE))
            .map_err(|e| io_err("opening the durable-end mark", e))?;
        let mut state = State {
            segments: layout.segments,
            released: layout.floor,
            end,
            mark: Some(mark),
        };
        state.write_mark();
        if let Some(file) = &state.mark {
            file.sync_all()
                .map_err(|e| io_err("syncing the durable-end mark", e))?;
        }
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = mpsc::channel(1024);
        let (durable_tx, durable) = watch::channel(end);
        let writer = Writer {
            dir: dir.to_owned(),
            file: OpenOptions::new()
                .append(true)
                .open(segment_path(dir, end.segment))
                .map_err(|e| io_err("opening segment", e))?,
            end,
            state: state.clone(),
            max_bytes: options.max_bytes,
            segment_bytes: options.segment_bytes,
            durable: durable_tx,
            buf: Vec::new(),
            broken: false,
        };
        std::thread::Builder::new()
            .name("sluice-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err("starting writer thread", e))?;
        Ok(Wal {
            dir: dir.to_owned(),
            tx,
            state,
            durable,
            damaged: Arc::default(),
            closed: Arc::default(),
        })
    }

    /// Appends records and waits until they are durable. Returns the position
    /// at which each record starts (its record id).
    ///
    /// # Errors
    /// [`WalError::Full`] over the cap, [`WalError::NoSpace`] on a full disk,
    /// [`WalError::Closed`] after shutdown, [`WalError::Corrupt`] once a
    /// reader found damage, [`WalError::Io`] after a disk failure.
    pub async fn append(
        &self,
        records: Vec<Bytes>,
        arrival_ms: i64,
    ) -> Result<Vec<WalPosition>, WalError> {
        if let Some(err) = self
            .damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(err);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Append(Append {
                records,
                arrival_ms,
                reply,
            }))
            .await
            .map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Refuses appends from now on with `error` (a reader found damage).
    pub fn mark_damaged(&self, error: WalError) {
        *self.damaged.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// A reader starting at `from` (or the oldest undelivered record).
    pub fn reader(&self, from: Option<WalPosition>) -> WalReader {
        let floor = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let first = *state
                .segments
                .keys()
                .next()
                .unwrap_or(&WalPosition::START.segment);
            state.released.max(WalPosition {
                segment: first,
                offset: 0,
            })
        };
        // A committed position below the floor (a deleted segment, or a
        // position the open check reset) means everything before the floor
        // is delivered.
        let pos = from.map_or(floor, |p| p.max(floor));
        WalReader {
            dir: self.dir.clone(),
            pos,
            durable: self.durable.clone(),
            file: None,
            wal: Some(self.clone()),
        }
    }

    /// Records that everything before `upto` is delivered and deletes the
    /// segments that hold only delivered records.
    ///
    /// # Errors
    /// [`WalError::Io`] when a segment cannot be deleted (retried next time).
    pub fn release(&self, upto: WalPosition) -> Result<(), WalError> {
        let doomed: Vec<u64> = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if upto > state.released {
                state.released = upto;
                state.write_mark();
            }
            let released = state.released.segment;
            state.segments.range(..released).map(|(&n, _)| n).collect()
        };
        for n in &doomed {
            match std::fs::remove_file(segment_path(&self.dir, *n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("deleting delivered segment", e)),
            }
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .segments
                .remove(n);
        }
        Ok(())
    }

    /// Undelivered bytes on disk.
    pub fn live_bytes(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live_bytes()
    }

    /// Closes the log for appends: the writer finishes what was queued before
    /// and exits; later appends fail with [`WalError::Closed`], and readers see
    /// the end of the log once they have read everything.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // An error means the writer is already gone, which is what we want.
        let _ = self.tx.send(Msg::Close).await;
    }
}

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.wal"))
}

/// Reads one frame, appending its payload to `buf` (nothing is appended unless
/// the frame is whole and passes its CRC). `Ok(None)` at a clean end of file;
/// `Err` for a torn or damaged frame. Returns the frame's total length.
/// The streaming twin of [`format::frame_at`], for the reader; both check the
/// header with [`format::frame_header`].
pub fn read_frame(reader: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<u64>, String> {
    let mut header = [0u8; FRAME_HEADER];
    match read_full(reader, &mut header) {
        Ok(0) => return Ok(None),
        Ok(n) if n < FRAME_HEADER => return Err("torn frame header".into()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let (len, crc) = format::frame_header(&header).map_err(|e| e.reason().to_owned())?;
    let start = buf.len();
    buf.resize(start + len as usize, 0);
    let result = match read_full(reader, &mut buf[start..]) {
        Ok(n) if n == len as usize => {
            if crc32fast::hash(&buf[start..]) == crc {
                Ok(Some(FRAME_HEADER as u64 + u64::from(len)))
            } else {
                Err("frame fails its CRC".into())
            }
        }
        Ok(_) => Err("torn frame payload".into()),
        Err(e) => Err(e.to_string()),
    };
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Like `read_exact`, but reports how much was read before end of file.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    file: File,
    end: WalPosition,
    state: Arc<Mutex<State>>,
    max_bytes: u64,
    segment_bytes: u64,
    durable: watch::Sender<WalPosition>,
    buf: Vec<u8>,
    /// The last write failed and the file may hold bytes past `end`.
    broken: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut closing = false;
        while !closing {
            let Some(Msg::Append(first)) = rx.blocking_recv() else {
                break;
            };
            let mut group = vec![first];
            let mut bytes = group[0].bytes();
            while bytes < GROUP_BYTES {
                match rx.try_recv() {
                    Ok(Msg::Append(next)) => {
                        bytes += next.bytes();
                        group.push(next);
                    }
                    Ok(Msg::Close) => {
                        closing = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if self.broken
                && let Err(err) = self.heal()
            {
                for append in group {
                    let _ = append.reply.send(Err(err.clone()));
                }
                continue;
            }
            if let Err(err) = self.commit(group) {
                tracing::error!(error = %err, "Write-ahead log write failed; the requests in it were refused.");
                self.broken = true;
                // Heal now if we can, so the next request does not wait on it.
                let _ = self.heal();
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.write_mark();
        if let Some(file) = &state.mark {
            let _ = file.sync_all();
        }
    }

    /// Cuts whatever a failed write left after the durable end and makes that
    /// durable: the segment again holds exactly the acknowledged records.
    fn heal(&mut self) -> Result<(), WalError> {
        self.file
            .set_len(self.end.offset)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_err("recovering after a failed write", e))?;
        if self.broken {
            tracing::info!(position = %self.end, "Write-ahead log recovered; taking writes again.");
        }
        self.broken = false;
        Ok(())
    }

    /// Writes and fsyncs one group, then answers every request in it.
    fn commit(&mut self, group: Vec<Append>) -> Result<(), WalError> {
        if self.end.offset >= self.segment_bytes
            && let Err(err) = self.rotate()
        {
            for append in group {
                let _ = append.reply.send(Err(err.clone()));
            }
            return Err(err);
        }
        self.buf.clear();
        let mut accepted = Vec::with_capacity(group.len());
        let mut live = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live_bytes();
        let mut pos = self.end;
        for append in group {
            let size = append.bytes() as u64;
            if live + size > self.max_bytes {
                let _ = append.reply.send(Err(WalError::Full {
                    live,
                    cap: self.max_bytes,
                }));
                continue;
            }
            live += size;
            let mut ids = Vec::with_capacity(append.records.len());
            let arrival = append.arrival_ms.to_le_bytes();
            for data in &append.records {
                ids.push(pos);
                let start = self.buf.len();
                format::push_frame(&mut self.buf, &[&arrival, data]);
                pos.offset += (self.buf.len() - start) as u64;
            }
            accepted.push((append.reply, ids));
        }
        if accepted.is_empty() {
            return Ok(());
        }
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err("appending to segment", e));
        if let Err(err) = result {
            for (reply, _) in accepted {
                let _ = reply.send(Err(err.clone()));
            }
            return Err(err);
        }
        self.end = pos;
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.segments.insert(pos.segment, pos.offset);
            state.end = pos;
            state.write_mark();
        }
        // Publish before answering: a reader woken by the change can already
        // read everything acknowledged.
        self.durable.send_replace(self.end);
        for (reply, ids) in accepted {
            let _ = reply.send(Ok(ids));
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let next = self.end.segment + 1;
        let file = check::write_segment_header(&self.dir, next, self.end.offset)?;
        self.file = file;
        self.end = WalPosition {
            segment: next,
            offset: SEGMENT_HEADER,
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.segments.insert(next, SEGMENT_HEADER);
        state.end = self.end;
        state.write_mark();
        Ok(())
    }
}

/// Reads records back from a position, following the durable end.
#[derive(Debug)]
pub struct WalReader {
    dir: PathBuf,
    pos: WalPosition,
    durable: watch::Receiver<WalPosition>,
    file: Option<io::BufReader<File>>,
    /// Told when the reader finds damage, so appends stop.
    wal: Option<Wal>,
}

impl WalReader {
    /// The position of the next record to read.
    pub fn position(&self) -> WalPosition {
        self.pos
    }

    /// Waits for durable records and returns up to about `max_bytes` of them.
    /// `Ok(None)` once the log is closed and everything has been read.
    ///
    /// # Errors
    /// [`WalError::Corrupt`] or [`WalError::Io`].
    pub async fn next_batch(&mut self, max_bytes: usize) -> Result<Option<Vec<Record>>, WalError> {
        loop {
            let end = *self.durable.borrow_and_update();
            if self.pos < end {
                let mut file = self.file.take();
                let mut pos = self.pos;
                let dir = self.dir.clone();
                let (result, file) = tokio::task::spawn_blocking(move || {
                    let result = read_batch(&dir, &mut file, &mut pos, end, max_bytes);
                    (result.map(|records| (records, pos)), file)
                })
                .await
                .map_err(|e| WalError::Io(format!("reader task failed: {e}")))?;
                self.file = file;
                let (records, pos) = match result {
                    Ok(ok) => ok,
                    Err(err @ WalError::Corrupt { .. }) => {
                        tracing::error!(error = %err, "Acknowledged records in the write-ahead log are damaged; refusing new records for this stream until it is repaired.");
                        if let Some(wal) = &self.wal {
                            wal.mark_damaged(err.clone());
                        }
                        return Err(err);
                    }
                    Err(err) => return Err(err),
                };
                self.pos = pos;
                if !records.is_empty() {
                    return Ok(Some(records));
                }
                continue;
            }
            if self.durable.changed().await.is_err() {
                // Writer gone: read whatever the final end is, then stop.
                if self.pos < *self.durable.borrow() {
                    continue;
                }
                return Ok(None);
            }
        }
    }
}

impl Source for WalReader {
    fn next_batch(
        &mut self,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Option<SourceBatch>, SourceError>> {
        Box::pin(async move {
            let records = WalReader::next_batch(self, max_bytes).await?;
            Ok(records.map(|records| SourceBatch {
                records,
                ended_shards: Vec::new(),
            }))
        })
    }
}

impl SourceProgress for Wal {
    fn committed(&self, positions: &Positions) {
        if let Some(upto) = positions.wal
            && let Err(e) = self.release(upto)
        {
            // The segments stay on disk and count against the cap; the next
            // commit tries again.
            tracing::warn!(error = %e, "Cannot delete delivered write-ahead log segments.");
        }
    }
}

/// Reads frames from `pos` towards `end` (blocking).
///
/// The payloads go into one buffer per batch and each record's data is a slice
/// of it: one allocation per batch rather than one per record. Nothing keeps a
/// batch's records long (the buffer stage copies them into the object being
/// built), so the shared buffer does not outlive its batch by much.
fn read_batch(
    dir: &Path,
    file: &mut Option<io::BufReader<File>>,
    pos: &mut WalPosition,
    end: WalPosition,
    max_bytes: usize,
) -> Result<Vec<Record>, WalError> {
    // Within one segment the batch cannot hold more than the bytes up to `end`;
    // across segments, `max_bytes` (and one record over it) bounds it.
    let expected = if pos.segment == end.segment {
        usize::try_from(end.offset.saturating_sub(pos.offset)).unwrap_or(max_bytes)
    } else {
        max_bytes
    };
    let mut arena = Vec::with_capacity(expected.min(max_bytes.saturating_add(64 * 1024)));
    // Each record with its data as a range of `arena`, made slices at the end.
    let mut read: Vec<(Range<usize>, Record)> = Vec::new();
    let mut bytes = 0;
    while *pos < end && bytes < max_bytes {
        if pos.offset < SEGMENT_HEADER {
            *file = None;
            pos.offset = SEGMENT_HEADER;
        }
        if file.is_none() {
            let mut f = File::open(segment_path(dir, pos.segment)).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    WalError::Corrupt {
                        position: *pos,
                        message: format!("segment {} is missing", pos.segment),
                    }
                } else {
                    io_err("opening segment", e)
                }
            })?;
            f.seek(SeekFrom::Start(pos.offset))
                .map_err(|e| io_err("seeking segment", e))?;
            *file = Some(io::BufReader::with_capacity(256 * 1024, f));
        }
        let reader = file.as_mut().expect("opened above");
        if pos.segment == end.segment && pos.offset >= end.offset {
            break;
        }
        let start = arena.len();
        match read_frame(reader, &mut arena) {
            Ok(Some(frame_len)) => {
                pos.offset += frame_len;
                let payload = &arena[start..];
                bytes += payload.len();
                let (arrival_ms, data, damaged) = match format::decode_payload(payload) {
                    Payload::Record { arrival_ms, data } => (arrival_ms, data, None),
                    Payload::Salvage {
                        repaired_ms,
                        origin,
                        data,
                    } => (
                        repaired_ms,
                        data,
                        Some(Arc::from(format!(
                            "bytes {}..{} of write-ahead log segment {} were damaged; salvaged by `sluice wal repair`",
                            origin.offset,
                            origin.offset + data.len() as u64,
                            origin.segment
                        ))),
                    ),
                };
                // The data is the payload's tail.
                let range = arena.len() - data.len()..arena.len();
                let record = Record {
                    data: Bytes::new(),
                    arrival_ms,
                    position: Position::Wal(*pos),
                    kinesis: None,
                    damaged,
                };
                read.push((range, record));
            }
            Ok(None) if pos.segment < end.segment => {
                // End of a sealed segment: continue in the next one.
                *file = None;
                *pos = WalPosition {
                    segment: pos.segment + 1,
                    offset: 0,
                };
            }
            Ok(None) => break,
            Err(message) => {
                return Err(WalError::Corrupt {
                    position: *pos,
                    message: format!(
                        "{message} (acknowledged records from here on cannot be read; stop sluice and run `sluice wal check`)"
                    ),
                });
            }
        }
    }
    let arena = Bytes::from(arena);
    Ok(read
        .into_iter()
        .map(|(range, record)| Record {
            data: arena.slice(range),
            ..record
        })
        .collect())
}

#[cfg(test)]
mod tests;
