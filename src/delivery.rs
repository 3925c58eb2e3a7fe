//! The exactly-once delivery protocol: stage -> commit -> complete, and recovery.
//!
//! Neighbours: the [`crate::buffer`] stage hands over one [`Epoch`] per closed
//! buffer (an encoder whose bytes are already streaming into a staged object);
//! this module finishes staging, commits the epoch to the
//! [`crate::checkpoint`] store, completes the objects in the [`crate::sink`],
//! and finally lets the source forget the delivered records.
//!
//! 1. **Stage**: the encoder is finished and the staged object made durable,
//!    still invisible to readers.
//! 2. **Commit**: one atomic checkpoint write records the source position the
//!    epoch covers *and* the staged objects.
//! 3. **Complete**: the objects become visible; a second checkpoint write
//!    records that the epoch is complete; the source may now delete the
//!    delivered records.
//! 4. **Recover** (at start): complete every object of the last committed
//!    checkpoint (idempotent), abort every other staged object, and resume the
//!    source after the committed position. Recovery acts only on evidence: a
//!    committed object that is gone before its epoch was recorded complete is
//!    rebuilt from the source (the checkpoint keeps where the epoch started,
//!    `replay_from`, and the source keeps its records until completion), or, if
//!    part of its epoch is already visible, reported as lost with the range —
//!    never assumed completed.
//!
//! A crash before 2 leaves only staged objects, which recovery aborts; the
//! records are replayed from the source into new objects. A crash after 2
//! leaves committed objects, which recovery completes; the source resumes after
//! them. Either way every record becomes visible exactly once.

use std::sync::Arc;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::encode::{EncodeError, Encoder};
use crate::error::{Classify, Fault};
use crate::record::Positions;
use crate::sink::{ObjectSink, SinkError, StagingWriter};
use crate::source::SourceProgress;

/// An object being encoded, as handed from the buffer to delivery.
pub type ObjectEncoder = Box<dyn Encoder<Box<dyn StagingWriter>>>;

/// One output object of an epoch.
pub struct EpochObject {
    /// Its encoder, already streaming into a staged object.
    pub encoder: ObjectEncoder,
    /// Records in it (source records for data and backup objects, error
    /// documents for error outputs), for the delivery log line.
    pub records: u64,
}

/// What one closed buffer delivers.
pub struct Epoch {
    /// Output objects of the epoch (data, backup, error outputs); none for an
    /// epoch that only moves positions (a shard ended with no open buffer).
    pub objects: Vec<EpochObject>,
    /// Arrival time of the epoch's oldest record, for the delivery log line.
    pub oldest_ms: Option<i64>,
    /// Where every source the epoch read from is covered up to.
    pub positions: Positions,
    /// Records in the epoch, for logs.
    pub records: u64,
    /// Bytes before compression, for logs.
    pub bytes: u64,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("objects", &self.objects.len())
            .field("positions", &self.positions)
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// A step of the protocol failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Encoding or staging the bytes failed.
    #[error("staging failed: {0}")]
    Encode(#[from] EncodeError),
    /// The object store failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The checkpoint store failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
    /// Committed objects are gone and cannot be rebuilt.
    #[error(
        "committed objects {objects:?} are gone and cannot be rebuilt without duplicating others of their epoch: records from {from} to {to} may be lost; restore the objects or move the checkpoint on by hand"
    )]
    Lost {
        /// Keys of the objects that are gone.
        objects: Vec<String>,
        /// Where the epoch started.
        from: String,
        /// Where it ended.
        to: String,
    },
}

impl Classify for DeliveryError {
    fn is_retriable(&self) -> bool {
        match self {
            DeliveryError::Encode(e) => e.is_retriable(),
            DeliveryError::Sink(e) => e.is_retriable(),
            DeliveryError::Checkpoint(e) => e.is_retriable(),
            DeliveryError::Task(_) => true,
            DeliveryError::Lost { .. } => false,
        }
    }
    fn fault(&self) -> Fault {
        match self {
            DeliveryError::Encode(e) => e.fault(),
            DeliveryError::Sink(e) => e.fault(),
            DeliveryError::Checkpoint(e) => e.fault(),
            DeliveryError::Task(_) => Fault::Bug,
            DeliveryError::Lost { .. } => Fault::Config,
        }
    }
}

/// `SLUICE_FAILPOINTS`, read once: the test hooks below are all off in a
/// normal run, at the cost of one load per call.
fn failpoints() -> &'static [String] {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        std::env::var("SLUICE_FAILPOINTS")
            .map(|list| list.split(',').map(|f| f.trim().to_owned()).collect())
            .unwrap_or_default()
    })
}

/// Crash-test hook: when the environment variable `SLUICE_FAILPOINTS` lists
/// `name` (comma-separated), the process aborts at that point, as kill -9
/// would: no destructors, no flushing. Tests use it to prove recovery from
/// every step of the protocol.
pub fn failpoint(name: &str) {
    if failpoints().iter().any(|f| f == name) {
        eprintln!("failpoint {name} hit: aborting");
        std::process::abort();
    }
}

/// Test hook: `name=SECS` in `SLUICE_FAILPOINTS` blocks the calling thread
/// for SECS seconds the first time `name` is reached (a wedged pipeline, for
/// the watchdog's tests); later calls pass.
pub fn pause_point(name: &str) {
    static PAUSED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Some(secs) = failpoints().iter().find_map(|f| {
        let (n, secs) = f.split_once('=')?;
        (n == name).then(|| secs.parse::<f64>().ok()).flatten()
    }) else {
        return;
    };
    let mut paused = PAUSED.lock().unwrap_or_else(|e| e.into_inner());
    if paused.iter().any(|n| n == name) {
        return;
    }
    paused.push(name.to_owned());
    drop(paused);
    eprintln!("failpoint {name} hit: pausing {secs} s");
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
}

/// Test hook for poison records: with `name` in `SLUICE_FAILPOINTS`, a record
/// whose data contains `SLUICE-POISON-<name>` panics here, as a bug in a
/// stage would on one particular input.
pub fn poison_point(name: &str, data: &[u8]) {
    if failpoints().is_empty() || !failpoints().iter().any(|f| f == name) {
        return;
    }
    let marker = format!("SLUICE-POISON-{name}");
    if data.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        panic!("failpoint {name}: this record crashes the stage");
    }
}

/// Runs the protocol for one stream.
#[derive(Debug)]
pub struct Delivery {
    stream: String,
    sink: Arc<dyn ObjectSink>,
    store: Arc<dyn CheckpointStore>,
    source: Arc<dyn SourceProgress>,
    epoch: u64,
    committed: Positions,
}

impl Delivery {
    /// A protocol runner over a sink, a checkpoint store and the source it
    /// reports commits to.
    pub fn new(
        stream: &str,
        sink: Arc<dyn ObjectSink>,
        store: Arc<dyn CheckpointStore>,
        source: Arc<dyn SourceProgress>,
    ) -> Self {
        Delivery {
            stream: stream.to_owned(),
            sink,
            store,
            source,
            epoch: 0,
            committed: Positions::default(),
        }
    }

    /// Step 4: completes what the last checkpoint committed, aborts every other
    /// staged object, and returns the position to resume the source from.
    ///
    /// # Errors
    /// [`DeliveryError`] when the store or sink cannot be read or written.
    pub async fn recover(&mut self) -> Result<Positions, DeliveryError> {
        let mut checkpoint = self.store.load().await?.unwrap_or_default();
        self.epoch = checkpoint.epoch;
        let mut gone = Vec::new();
        for staged in &checkpoint.staged {
            match self.sink.complete(staged).await {
                Ok(()) => {}
                Err(SinkError::Vanished { key }) => gone.push(key),
                Err(e) => return Err(e.into()),
            }
        }
        if !gone.is_empty() {
            checkpoint = self.rebuild(checkpoint, gone).await?;
        } else if !checkpoint.staged.is_empty() {
            // Every committed object is visible now: record it before the
            // source forgets the records, as `deliver` does, so a later start
            // checks the log against this checkpoint, not the epoch's start.
            checkpoint = checkpoint.completed();
            self.store.commit(&checkpoint).await?;
        }
        let aborted = self.sink.abort_uncommitted(&checkpoint.staged).await?;
        if aborted > 0 {
            tracing::info!(aborted, "Aborted staged objects of uncommitted epochs.");
        }
        self.source.committed(&checkpoint.positions);
        tracing::info!(
            epoch = checkpoint.epoch,
            resume = %checkpoint.positions,
            sink = %self.sink.describe(),
            "Recovered."
        );
        self.committed = checkpoint.positions.clone();
        Ok(checkpoint.positions)
    }

    /// Committed objects are gone before they were completed: recovery acts
    /// only on evidence, so it never assumes they were delivered. When every
    /// object of the epoch is gone (nothing of it is visible) and the
    /// checkpoint says where the epoch started, the epoch is rolled back and
    /// rebuilt from the source, which still holds it (the log and the shards
    /// are released only after completion). Otherwise the loss is an error
    /// naming the objects and the range.
    async fn rebuild(
        &mut self,
        checkpoint: Checkpoint,
        gone: Vec<String>,
    ) -> Result<Checkpoint, DeliveryError> {
        let all_gone = gone.len() == checkpoint.staged.len();
        match checkpoint.replay_from.clone() {
            Some(from) if all_gone => {
                tracing::warn!(
                    stream = %self.stream,
                    objects = ?gone,
                    from = %from,
                    to = %checkpoint.positions,
                    "Committed objects are gone before they were completed (removed by someone else, or uploads aborted by a lifecycle rule); rebuilding them from the source."
                );
                let rolled_back = Checkpoint {
                    epoch: checkpoint.epoch + 1,
                    positions: from.clone(),
                    staged: Vec::new(),
                    replay_from: Some(from),
                };
                self.store.commit(&rolled_back).await?;
                self.epoch = rolled_back.epoch;
                Ok(rolled_back)
            }
            from => Err(DeliveryError::Lost {
                objects: gone,
                from: from.map_or_else(|| "an unknown position".to_owned(), |p| p.to_string()),
                to: checkpoint.positions.to_string(),
            }),
        }
    }

    /// After a clean drain every epoch is completed, so any staged object the
    /// last checkpoint does not list is an orphan (e.g. an upload whose
    /// creation timed out and was retried): remove it now rather than at the
    /// next start.
    ///
    /// # Errors
    /// [`DeliveryError::Sink`] when listing or aborting fails.
    pub async fn remove_orphans(&self) -> Result<usize, DeliveryError> {
        let checkpoint = self.store.load().await?.unwrap_or_default();
        Ok(self.sink.abort_uncommitted(&checkpoint.staged).await?)
    }

    /// Steps 1-3 for one epoch.
    ///
    /// # Errors
    /// [`DeliveryError`]; the caller restarts from recovery, which is safe at
    /// any point of this function.
    pub async fn deliver(&mut self, epoch: Epoch) -> Result<(), DeliveryError> {
        let mut staged = Vec::with_capacity(epoch.objects.len());
        let counts: Vec<u64> = epoch.objects.iter().map(|o| o.records).collect();
        for EpochObject { encoder, .. } in epoch.objects {
            let writer = tokio::task::spawn_blocking(move || encoder.finish())
                .await
                .map_err(|e| DeliveryError::Task(e.to_string()))??;
            staged.push(writer.finish().await?);
        }
        failpoint("after_stage");

        let mut positions = self.committed.clone();
        positions.merge(&epoch.positions);
        let checkpoint = Checkpoint {
            epoch: self.epoch + 1,
            positions,
            staged,
            replay_from: Some(self.committed.clone()),
        };
        self.store.commit(&checkpoint).await?;
        self.epoch = checkpoint.epoch;
        failpoint("after_commit");

        for (i, object) in checkpoint.staged.iter().enumerate() {
            self.sink.complete(object).await?;
            if i == 0 {
                failpoint("between_completions");
            }
        }
        failpoint("after_complete");
        // Record that the epoch is complete, so that recovery never mistakes an
        // object a reader has since moved or deleted for one that vanished
        // before completion (which it would rebuild, duplicating its records).
        self.store.commit(&checkpoint.completed()).await?;
        crate::metrics::DELIVERED_RECORDS.inc(&self.stream, epoch.records);
        crate::metrics::DELIVERED_BYTES.inc(&self.stream, epoch.bytes);
        crate::metrics::DELIVERED_OBJECTS.inc(&self.stream, checkpoint.staged.len() as u64);
        let now = jiff::Timestamp::now().as_millisecond();
        let age = epoch.oldest_ms.map(|t| (now - t) as f64 / 1000.0);
        // One line per epoch at info (a stream with hundreds of partitions
        // delivers hundreds of objects at once), one per object at debug.
        for (object, records) in checkpoint.staged.iter().zip(counts) {
            tracing::debug!(
                stream = %self.stream,
                key = %object.key,
                records,
                bytes = object.bytes,
                "Delivered an object."
            );
        }
        if !checkpoint.staged.is_empty() {
            tracing::info!(
                stream = %self.stream,
                epoch = checkpoint.epoch,
                objects = checkpoint.staged.len(),
                records = epoch.records,
                bytes = epoch.bytes,
                oldest_record_age_secs = age,
                "Delivered."
            );
        }
        self.source.committed(&checkpoint.positions);
        self.committed = checkpoint.positions;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;
    use crate::checkpoint::FileCheckpointStore;
    use crate::record::WalPosition;
    use crate::sink::{LocalSink, StagedHandle};

    /// Remembers every position the source was told about.
    #[derive(Debug, Default)]
    struct Told(Mutex<Vec<Positions>>);

    impl SourceProgress for Told {
        fn committed(&self, positions: &Positions) {
            self.0.lock().unwrap().push(positions.clone());
        }
    }

    fn at(offset: u64) -> Positions {
        Positions {
            wal: Some(WalPosition { segment: 1, offset }),
            ..Default::default()
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        sink: Arc<LocalSink>,
        store: Arc<FileCheckpointStore>,
        told: Arc<Told>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(LocalSink::new(&dir.path().join("out"), "s", "test").unwrap());
        let store = Arc::new(FileCheckpointStore::new(dir.path().join("checkpoint.json")));
        Fixture {
            dir,
            sink,
            store,
            told: Arc::default(),
        }
    }

    impl Fixture {
        fn delivery(&self) -> Delivery {
            Delivery::new(
                "s",
                self.sink.clone(),
                self.store.clone(),
                self.told.clone(),
            )
        }

        /// A committed epoch (from 10 to 20) whose objects are staged, as a
        /// crash right after the commit leaves it.
        async fn committed_epoch(&self, keys: &[&str]) -> Checkpoint {
            let mut staged = Vec::new();
            for key in keys {
                let mut writer = self.sink.stage(key).await.unwrap();
                writer.write_all(key.as_bytes()).unwrap();
                staged.push(writer.finish().await.unwrap());
            }
            let checkpoint = Checkpoint {
                epoch: 3,
                positions: at(20),
                staged,
                replay_from: Some(at(10)),
            };
            self.store.commit(&checkpoint).await.unwrap();
            checkpoint
        }

        fn visible(&self, key: &str) -> bool {
            self.dir.path().join("out").join(key).is_file()
        }
    }

    #[tokio::test]
    async fn recovery_completes_committed_objects_and_records_the_epoch_complete() {
        let f = fixture();
        f.committed_epoch(&["a/1", "a/2"]).await;
        let resume = f.delivery().recover().await.unwrap();
        assert_eq!(resume, at(20));
        assert!(f.visible("a/1") && f.visible("a/2"));
        let after = f.store.load().await.unwrap().unwrap();
        assert!(
            after.staged.is_empty() && after.replay_from.is_none(),
            "{after:?}"
        );
        assert_eq!(f.told.0.lock().unwrap().last(), Some(&at(20)));
        // Recovery again changes nothing and stays idempotent.
        assert_eq!(f.delivery().recover().await.unwrap(), at(20));
    }

    #[tokio::test]
    async fn committed_objects_gone_before_completion_are_rebuilt_from_where_the_epoch_started() {
        let f = fixture();
        f.committed_epoch(&["b/1", "b/2"]).await;
        std::fs::remove_dir_all(f.dir.path().join("out/.sluice-staging/s")).unwrap();
        std::fs::create_dir(f.dir.path().join("out/.sluice-staging/s")).unwrap();
        let resume = f.delivery().recover().await.unwrap();
        assert_eq!(resume, at(10), "the epoch is replayed from its start");
        let after = f.store.load().await.unwrap().unwrap();
        assert_eq!((after.positions, after.epoch), (at(10), 4));
        assert!(!f.visible("b/1"));
    }

    #[tokio::test]
    async fn a_partly_visible_epoch_with_an_object_gone_is_reported_as_lost_not_assumed() {
        let f = fixture();
        let checkpoint = f.committed_epoch(&["c/1", "c/2"]).await;
        // The first object was completed (and is visible), the second's staged
        // file vanished.
        f.sink.complete(&checkpoint.staged[0]).await.unwrap();
        let StagedHandle::LocalFile { temp } = &checkpoint.staged[1].handle else {
            panic!("local handle expected")
        };
        std::fs::remove_file(f.dir.path().join("out/.sluice-staging/s").join(temp)).unwrap();
        let err = f.delivery().recover().await.unwrap_err();
        assert!(matches!(err, DeliveryError::Lost { .. }), "{err}");
        assert!(!err.is_retriable());
        let message = err.to_string();
        assert!(
            message.contains("c/2") && message.contains("log 1:10") && message.contains("log 1:20"),
            "{message}"
        );
        // Nothing was moved on: the checkpoint still says what to look at.
        assert_eq!(f.store.load().await.unwrap().unwrap(), checkpoint);
    }
}
