//! Checkpoint store: the durable record of what has been delivered.
//!
//! Neighbours: [`crate::delivery`] commits one [`Checkpoint`] per epoch, after
//! the epoch's objects are staged in the sink and before they are completed;
//! on start it loads the last checkpoint to complete what was committed and
//! to resume the source after the committed position.
//!
//! The commit is the single atomic step of the exactly-once protocol: the
//! source position and the list of staged objects change together or not at
//! all. The local implementation writes a temp file, fsyncs it, renames it over
//! the previous checkpoint and fsyncs the directory. A DynamoDB lease-table
//! implementation (fenced by lease ownership) comes with scale-out.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::{Classify, Fault};
use crate::record::Positions;
use crate::sink::StagedObject;

/// What one commit records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Increases by one with every commit; for logs and sanity checks.
    pub epoch: u64,
    /// How far every source is delivered (or committed and about to be
    /// completed). Cumulative: sources an epoch did not touch keep theirs.
    pub positions: Positions,
    /// Objects staged by this epoch that must be completed (idempotently) if
    /// the process dies before completing them.
    pub staged: Vec<StagedObject>,
    /// Positions before this epoch: if a staged object is gone before it was
    /// completed (removed by someone else, or an upload aborted by a bucket
    /// lifecycle rule), recovery rebuilds the epoch from the source here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from: Option<Positions>,
}

impl Checkpoint {
    /// The log position reading may have to start from: where the last
    /// epoch started while its objects are not recorded complete (recovery
    /// may rebuild it), else the committed position.
    pub fn wal_floor(&self) -> Option<crate::record::WalPosition> {
        match &self.replay_from {
            Some(from) => from.wal,
            None => self.positions.wal,
        }
    }

    /// The same epoch, recorded complete: every staged object is visible.
    pub fn completed(&self) -> Checkpoint {
        Checkpoint {
            epoch: self.epoch,
            positions: self.positions.clone(),
            staged: Vec::new(),
            replay_from: None,
        }
    }
}

/// A failure to read or write checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store could not be read or written.
    #[error("checkpoint store {path}: {source}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The stored checkpoint is not valid; refuse to guess a position.
    #[error(
        "checkpoint {path} is corrupt: {message}. Restore it from a backup; or move it aside and start with --reset-positions, which resumes after what the write-ahead log records it delivered (a Kinesis stream resumes at its configured start position and may deliver records again)"
    )]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The stream committed before, but its checkpoint is gone: starting over
    /// would deliver everything again (or skip records), so refuse to guess.
    #[error(
        "there is no checkpoint {path}, but this stream has committed before ({marker} exists): the checkpoint was deleted or lost, and starting over would deliver records again. Restore it from a backup, or start with --reset-positions (Direct PUT then resumes after what its write-ahead log records it delivered; a Kinesis stream resumes at its configured start position)"
    )]
    Lost {
        /// The missing checkpoint file.
        path: PathBuf,
        /// The file that shows an earlier commit.
        marker: PathBuf,
    },
}

impl Classify for CheckpointError {
    fn is_retriable(&self) -> bool {
        matches!(self, CheckpointError::Io { .. })
    }
    fn fault(&self) -> Fault {
        match self {
            CheckpointError::Io { .. } => Fault::Remote,
            CheckpointError::Corrupt { .. } => Fault::Bug,
            CheckpointError::Lost { .. } => Fault::Config,
        }
    }
}

/// A boxed future, so the seam can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The checkpoint seam: local file now, DynamoDB lease table later.
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// The last committed checkpoint, or `None` for a new stream.
    fn load(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, CheckpointError>>;
    /// Durably and atomically replaces the committed checkpoint.
    fn commit<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;
}

/// Checkpoints in one JSON file, replaced atomically, and a marker file made
/// at the first commit (`<checkpoint>.committed`) so that a lost checkpoint is
/// told from a new stream.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    path: PathBuf,
    /// Treat a lost checkpoint as a new stream (`--reset-positions`).
    accept_lost: bool,
}

impl FileCheckpointStore {
    /// A store keeping its checkpoint at `path` (the directory must exist).
    pub fn new(path: PathBuf) -> Self {
        FileCheckpointStore {
            path,
            accept_lost: false,
        }
    }

    /// The same store, starting over (with a warning) where the checkpoint
    /// was lost, instead of refusing.
    pub fn accepting_lost(mut self, accept: bool) -> Self {
        self.accept_lost = accept;
        self
    }

    fn marker(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".committed");
        self.path.with_file_name(name)
    }
}

impl FileCheckpointStore {
    /// Reads the checkpoint (blocking; the file is small): `None` for a new
    /// stream, [`CheckpointError::Lost`] for one that committed before.
    ///
    /// # Errors
    /// [`CheckpointError`] when it cannot be read, is corrupt, or is lost.
    pub fn read(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let marker = self.marker();
                if !marker.exists() {
                    return Ok(None);
                }
                if self.accept_lost {
                    tracing::warn!(checkpoint = %self.path.display(), "--reset-positions: the checkpoint is lost; starting without it.");
                    return Ok(None);
                }
                return Err(CheckpointError::Lost {
                    path: self.path.clone(),
                    marker,
                });
            }
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }
}

impl CheckpointStore for FileCheckpointStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<Checkpoint>, CheckpointError>> {
        Box::pin(async move {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.read())
                .await
                .map_err(|e| CheckpointError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(e),
                })?
        })
    }

    fn commit<'a>(
        &'a self,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            let bytes =
                serde_json::to_vec_pretty(checkpoint).map_err(|e| CheckpointError::Corrupt {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
            let path = self.path.clone();
            let marker = self.marker();
            tokio::task::spawn_blocking(move || {
                crate::fsutil::write_atomic(&path, &bytes)?;
                if !marker.exists() {
                    crate::fsutil::write_atomic(&marker, b"")?;
                }
                Ok(())
            })
            .await
            .map_err(|e| CheckpointError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| CheckpointError::Io {
                path: self.path.clone(),
                source,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::WalPosition;
    use crate::sink::StagedHandle;

    #[tokio::test]
    async fn commit_then_load_round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::new(dir.path().join("checkpoint.json"));
        assert_eq!(store.load().await.unwrap(), None);

        let first = Checkpoint {
            epoch: 1,
            positions: Positions {
                wal: Some(WalPosition {
                    segment: 1,
                    offset: 10,
                }),
                ..Default::default()
            },
            staged: vec![StagedObject {
                key: "2026/01/01/00/a".into(),
                handle: StagedHandle::LocalFile { temp: "t1".into() },
                bytes: 3,
            }],
            replay_from: None,
        };
        store.commit(&first).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(first));

        let second = Checkpoint {
            epoch: 2,
            positions: Positions {
                wal: Some(WalPosition {
                    segment: 2,
                    offset: 0,
                }),
                ..Default::default()
            },
            staged: vec![],
            replay_from: Some(Positions::default()),
        };
        store.commit(&second).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(second));
        // Only the checkpoint and the first-commit marker are left: the temp
        // file was renamed away.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                std::ffi::OsString::from("checkpoint.json"),
                std::ffi::OsString::from("checkpoint.json.committed")
            ]
        );
    }

    #[tokio::test]
    async fn a_lost_checkpoint_is_refused_unless_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        let store = FileCheckpointStore::new(path.clone());
        store.commit(&Checkpoint::default()).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = store.load().await.unwrap_err();
        assert!(matches!(err, CheckpointError::Lost { .. }), "{err}");
        assert!(err.to_string().contains("--reset-positions"), "{err}");
        assert_eq!(err.fault(), Fault::Config);
        let accepting = FileCheckpointStore::new(path).accepting_lost(true);
        assert_eq!(accepting.load().await.unwrap(), None);
    }

    #[tokio::test]
    async fn corrupt_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = FileCheckpointStore::new(path).load().await.unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        assert_eq!(err.fault(), Fault::Bug);
    }
}
