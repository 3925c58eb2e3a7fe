//! Segmented write-ahead log with group commit.
//!
//! Layout: `<dir>/<segment number, 20 digits>.wal`, numbered from 1. Each
//! record is one frame:
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC-32 of payload][payload = i64 LE arrival ms, data]
//! ```
//!
//! One writer thread owns the files. Requests queue on a channel; the writer
//! takes every request waiting (up to [`GROUP_BYTES`]), writes them with one
//! `write`, issues one `fdatasync` and only then answers all of them. That is
//! group commit: concurrent requests share fsyncs, so throughput grows with
//! concurrency while every acknowledgement still means "on disk".
//!
//! On open, the tail of the last segment is scanned and cut at the first torn
//! or corrupt frame: such a frame was never acknowledged, because answers are
//! sent only after the fsync that covers them.
//!
//! The log is capped ([`Wal::open`]'s `max_bytes`): when undelivered bytes
//! would exceed it, appends fail with [`WalError::Full`] and the API answers
//! `ServiceUnavailableException`; memory never grows with a slow sink.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Classify, Fault};
use crate::fsutil::sync_dir;
use crate::record::{Position, Positions, Record, WalPosition};
use crate::source::{BoxFuture, Source, SourceBatch, SourceError, SourceProgress};

/// Size at which the writer starts a new segment.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes the writer gathers into one group commit.
pub const GROUP_BYTES: usize = 16 * 1024 * 1024;
/// Frame header: length and CRC.
const HEADER: usize = 8;
/// Payload prefix: arrival time.
const ARRIVAL: usize = 8;
/// Largest payload a frame may claim; anything bigger is corruption. Records
/// are at most 1,000 KiB (Firehose's limit), so this is generous.
const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

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
    /// The log is closed (shutting down).
    #[error("write-ahead log is closed")]
    Closed,
    /// A disk operation failed. After a failed fsync the log refuses further
    /// writes: the page cache can no longer be trusted (PostgreSQL's
    /// "fsyncgate" lesson).
    #[error("write-ahead log I/O error: {0}")]
    Io(String),
    /// A frame in the middle of the log is damaged.
    #[error("write-ahead log corrupt at {position}: {message}")]
    Corrupt {
        /// Where.
        position: WalPosition,
        /// What.
        message: String,
    },
}

impl Classify for WalError {
    fn is_retriable(&self) -> bool {
        matches!(self, WalError::Full { .. })
    }
    fn fault(&self) -> Fault {
        match self {
            WalError::Full { .. } | WalError::Closed | WalError::Io(_) => Fault::Remote,
            WalError::Corrupt { .. } => Fault::Bug,
        }
    }
}

fn io_err(context: &str, e: io::Error) -> WalError {
    WalError::Io(format!("{context}: {e}"))
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
            .map(|r| r.len() + HEADER + ARRIVAL)
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
}

/// Handle to an open log; cheap to clone.
#[derive(Debug, Clone)]
pub struct Wal {
    dir: PathBuf,
    tx: mpsc::Sender<Msg>,
    state: Arc<Mutex<State>>,
    durable: watch::Receiver<WalPosition>,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, repairs a torn tail, and starts the
    /// writer thread. `start` is the committed position (records before it are
    /// delivered), used for the size cap.
    ///
    /// # Errors
    /// [`WalError::Io`] if the directory cannot be read or repaired.
    pub fn open(dir: &Path, start: Option<WalPosition>, max_bytes: u64) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(|e| io_err("creating log directory", e))?;
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            let first = WalPosition::START.segment;
            File::create(segment_path(dir, first)).map_err(|e| io_err("creating segment", e))?;
            sync_dir(dir).map_err(|e| io_err("syncing log directory", e))?;
            segments.insert(first, 0);
        }
        let (&last, _) = segments.iter().next_back().expect("segments is not empty");
        let valid = repair_tail(&segment_path(dir, last))?;
        segments.insert(last, valid);
        let end = WalPosition {
            segment: last,
            offset: valid,
        };
        let first = *segments.keys().next().expect("segments is not empty");
        let released = start.unwrap_or(WalPosition {
            segment: first,
            offset: 0,
        });

        let state = Arc::new(Mutex::new(State { segments, released }));
        let (tx, rx) = mpsc::channel(1024);
        let (durable_tx, durable) = watch::channel(end);
        let writer = Writer {
            dir: dir.to_owned(),
            file: OpenOptions::new()
                .append(true)
                .open(segment_path(dir, last))
                .map_err(|e| io_err("opening segment", e))?,
            end,
            state: state.clone(),
            max_bytes,
            durable: durable_tx,
            buf: Vec::new(),
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
        })
    }

    /// Appends records and waits until they are durable. Returns the position
    /// at which each record starts (its record id).
    ///
    /// # Errors
    /// [`WalError::Full`] over the cap, [`WalError::Closed`] after shutdown,
    /// [`WalError::Io`] after a disk failure.
    pub async fn append(
        &self,
        records: Vec<Bytes>,
        arrival_ms: i64,
    ) -> Result<Vec<WalPosition>, WalError> {
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

    /// A reader starting at `from` (or the oldest record on disk).
    pub fn reader(&self, from: Option<WalPosition>) -> WalReader {
        let first = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let segment = *state
                .segments
                .keys()
                .next()
                .unwrap_or(&WalPosition::START.segment);
            WalPosition { segment, offset: 0 }
        };
        // A committed position in a segment already deleted means everything
        // before the oldest segment is delivered.
        let pos = from.map_or(first, |p| p.max(first));
        WalReader {
            dir: self.dir.clone(),
            pos,
            durable: self.durable.clone(),
            file: None,
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
            }
            let released = state.released.segment;
            state.segments.range(..released).map(|(&n, _)| n).collect()
        };
        for n in &doomed {
            match fs::remove_file(segment_path(&self.dir, *n)) {
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
        // An error means the writer is already gone, which is what we want.
        let _ = self.tx.send(Msg::Close).await;
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.wal"))
}

fn list_segments(dir: &Path) -> Result<BTreeMap<u64, u64>, WalError> {
    let mut segments = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing log directory", e))? {
        let entry = entry.map_err(|e| io_err("listing log directory", e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse().ok())
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

/// Cuts the segment at the first frame that is incomplete or fails its CRC;
/// returns the valid length.
fn repair_tail(path: &Path) -> Result<u64, WalError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err("opening segment", e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("reading segment size", e))?
        .len();
    let mut reader = io::BufReader::new(&mut file);
    let mut valid = 0u64;
    let mut payload = Vec::new();
    while let Ok(Some(frame_len)) = read_frame(&mut reader, &mut payload) {
        valid += frame_len;
    }
    if valid < len {
        tracing::warn!(segment = %path.display(), valid, len, "Cutting torn write-ahead log tail (never acknowledged).");
        file.set_len(valid)
            .map_err(|e| io_err("truncating torn tail", e))?;
        file.sync_all()
            .map_err(|e| io_err("syncing repaired segment", e))?;
    }
    Ok(valid)
}

/// Reads one frame into `payload`. `Ok(None)` at a clean end of file;
/// `Err` for a torn or corrupt frame. Returns the frame's total length.
fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Result<Option<u64>, String> {
    let mut header = [0u8; HEADER];
    match read_full(reader, &mut header) {
        Ok(0) => return Ok(None),
        Ok(n) if n < HEADER => return Err("torn frame header".into()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap_or_default());
    if (len as usize) < ARRIVAL || len > MAX_PAYLOAD {
        return Err(format!("impossible frame length {len}"));
    }
    payload.resize(len as usize, 0);
    match read_full(reader, payload) {
        Ok(n) if n == len as usize => {}
        Ok(_) => return Err("torn frame payload".into()),
        Err(e) => return Err(e.to_string()),
    }
    if crc32fast::hash(payload) != crc {
        return Err("CRC mismatch".into());
    }
    Ok(Some(HEADER as u64 + u64::from(len)))
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
    durable: watch::Sender<WalPosition>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut poisoned: Option<WalError> = None;
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
            if let Some(err) = &poisoned {
                for append in group {
                    let _ = append.reply.send(Err(err.clone()));
                }
                continue;
            }
            if let Err(err) = self.commit(group) {
                tracing::error!(error = %err, "Write-ahead log failed; refusing further writes.");
                poisoned = Some(err);
            }
        }
    }

    /// Writes and fsyncs one group, then answers every request in it.
    fn commit(&mut self, group: Vec<Append>) -> Result<(), WalError> {
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
            for data in &append.records {
                ids.push(pos);
                let start = self.buf.len();
                self.buf.extend_from_slice(&[0; HEADER]);
                self.buf.extend_from_slice(&append.arrival_ms.to_le_bytes());
                self.buf.extend_from_slice(data);
                let payload_len = (self.buf.len() - start - HEADER) as u32;
                let crc = crc32fast::hash(&self.buf[start + HEADER..]);
                self.buf[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
                self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .segments
            .insert(pos.segment, pos.offset);
        if self.end.offset >= SEGMENT_BYTES {
            self.rotate()?;
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
        let path = segment_path(&self.dir, next);
        self.file = File::create(&path).map_err(|e| io_err("creating segment", e))?;
        sync_dir(&self.dir).map_err(|e| io_err("syncing log directory", e))?;
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .segments
            .insert(next, 0);
        self.end = WalPosition {
            segment: next,
            offset: 0,
        };
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
                let (records, pos) = result?;
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
fn read_batch(
    dir: &Path,
    file: &mut Option<io::BufReader<File>>,
    pos: &mut WalPosition,
    end: WalPosition,
    max_bytes: usize,
) -> Result<Vec<Record>, WalError> {
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut payload = Vec::new();
    while *pos < end && bytes < max_bytes {
        if file.is_none() {
            let mut f = File::open(segment_path(dir, pos.segment))
                .map_err(|e| io_err("opening segment", e))?;
            f.seek(SeekFrom::Start(pos.offset))
                .map_err(|e| io_err("seeking segment", e))?;
            *file = Some(io::BufReader::with_capacity(256 * 1024, f));
        }
        let reader = file.as_mut().expect("opened above");
        if pos.segment == end.segment && pos.offset >= end.offset {
            break;
        }
        match read_frame(reader, &mut payload) {
            Ok(Some(frame_len)) => {
                pos.offset += frame_len;
                let arrival_ms =
                    i64::from_le_bytes(payload[..ARRIVAL].try_into().unwrap_or_default());
                bytes += payload.len();
                records.push(Record {
                    data: Bytes::copy_from_slice(&payload[ARRIVAL..]),
                    arrival_ms,
                    position: Position::Wal(*pos),
                    kinesis: None,
                });
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
                    message,
                });
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize, tag: &str) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("{tag}-{i}"))).collect()
    }

    async fn read_all(reader: &mut WalReader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(batch) = reader.next_batch(1 << 20).await.unwrap() {
            out.extend(
                batch
                    .into_iter()
                    .map(|r| String::from_utf8(r.data.to_vec()).unwrap()),
            );
        }
        out
    }

    #[tokio::test]
    async fn appended_records_read_back_in_order_with_arrival_times() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None, 1 << 30).unwrap();
        let ids = wal.append(records(3, "a"), 1000).await.unwrap();
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        wal.append(records(2, "b"), 2000).await.unwrap();
        let mut reader = wal.reader(None);
        let batch = reader.next_batch(1 << 20).await.unwrap().unwrap();
        assert_eq!(batch.len(), 5);
        assert_eq!(batch[0].arrival_ms, 1000);
        assert_eq!(batch[4].arrival_ms, 2000);
        assert_eq!(&batch[3].data[..], b"b-0");
        // A record's `next` is the following record's id.
        assert_eq!(batch[0].position, Position::Wal(ids[1]));
        wal.close().await;
        assert!(reader.next_batch(1 << 20).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reopen_resumes_after_committed_position_and_cuts_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None, 1 << 30).unwrap();
        let ids = wal.append(records(4, "a"), 1).await.unwrap();
        wal.close().await;
        // Simulate a crash mid-write: half a frame at the end.
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);

        let wal = Wal::open(dir.path(), Some(ids[2]), 1 << 30).unwrap();
        let mut reader = wal.reader(Some(ids[2]));
        wal.append(records(1, "b"), 1).await.unwrap();
        wal.close().await;
        assert_eq!(read_all(&mut reader).await, vec!["a-2", "a-3", "b-0"]);
    }

    #[tokio::test]
    async fn cap_rejects_appends_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None, 100).unwrap();
        let ids = wal
            .append(vec![Bytes::from(vec![0u8; 60])], 1)
            .await
            .unwrap();
        let err = wal
            .append(vec![Bytes::from(vec![0u8; 60])], 1)
            .await
            .unwrap_err();
        assert!(matches!(err, WalError::Full { .. }), "{err}");
        assert!(err.is_retriable());
        // Delivering the first record frees its space.
        let mut reader = wal.reader(None);
        let batch = reader.next_batch(1 << 20).await.unwrap().unwrap();
        let Position::Wal(next) = batch[0].position else {
            panic!("WAL position expected")
        };
        assert_eq!(next.offset, ids[0].offset + 76);
        wal.release(next).unwrap();
        assert_eq!(wal.live_bytes(), 0);
        wal.append(vec![Bytes::from(vec![0u8; 60])], 1)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_all_survive() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None, 1 << 30).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    wal.append(records(3, &format!("{t}-{i}")), 1)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut reader = wal.reader(None);
        wal.close().await;
        let mut got = read_all(&mut reader).await;
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 8 * 50 * 3);
    }

    #[test]
    fn reader_crosses_segments_and_release_deletes_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let wal = Wal::open(dir.path(), None, u64::MAX).unwrap();
            // Force rotation by writing just over one segment.
            let big = Bytes::from(vec![7u8; 1_000_000]);
            for _ in 0..(SEGMENT_BYTES / 1_000_000 + 2) {
                wal.append(vec![big.clone()], 1).await.unwrap();
            }
            assert!(segment_path(dir.path(), 2).exists());
            let mut reader = wal.reader(None);
            let mut last = WalPosition::START;
            let mut count = 0;
            while count < (SEGMENT_BYTES / 1_000_000 + 2) as usize {
                let batch = reader.next_batch(8 << 20).await.unwrap().unwrap();
                count += batch.len();
                let Position::Wal(next) = batch.last().unwrap().position else {
                    panic!("WAL position expected")
                };
                last = next;
            }
            assert_eq!(last.segment, 2);
            wal.release(last).unwrap();
            assert!(!segment_path(dir.path(), 1).exists());
            assert!(segment_path(dir.path(), 2).exists());
        });
    }
}
