//! Local directory sink: keys are paths below an output directory.
//!
//! Staging writes a temp file in `<root>/.sluice-staging/<stream>/`, on the same
//! filesystem as the output so that completion is one atomic `rename`; the
//! leading dot keeps it out of readers' way. Durability: the temp file is
//! fsynced before its handle is committed, and the destination directory is
//! fsynced after the rename.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{BoxFuture, ObjectSink, SinkError, StagedHandle, StagedObject, StagingWriter};
use crate::fsutil::sync_dir;

/// Name of the hidden staging directory below the output root.
pub const STAGING_DIR: &str = ".sluice-staging";

/// Writes objects below a local directory.
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
    staging: PathBuf,
}

impl LocalSink {
    /// A sink writing below `root`, staging in a directory private to `stream`.
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn new(root: &Path, stream: &str) -> Result<Self, SinkError> {
        let staging = root.join(STAGING_DIR).join(stream);
        fs::create_dir_all(&staging)
            .map_err(|e| SinkError::io(staging.display().to_string(), e))?;
        Ok(LocalSink {
            root: root.to_owned(),
            staging,
        })
    }

    fn complete_blocking(&self, staged: &StagedObject) -> Result<(), SinkError> {
        let StagedHandle::LocalFile { temp } = &staged.handle else {
            return Err(SinkError::Foreign {
                key: staged.key.clone(),
            });
        };
        let temp_path = self.staging.join(temp);
        let final_path = self.root.join(&staged.key);
        let key = || staged.key.clone();
        let parent = final_path.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&parent).map_err(|e| SinkError::io(key(), e))?;
        match fs::rename(&temp_path, &final_path) {
            Ok(()) => {}
            // Already completed by an earlier attempt (recovery repeats completions).
            Err(e) if e.kind() == io::ErrorKind::NotFound && final_path.exists() => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SinkError::Vanished { key: key() });
            }
            Err(e) => return Err(SinkError::io(key(), e)),
        }
        sync_dir(&parent).map_err(|e| SinkError::io(key(), e))?;
        sync_dir(&self.staging).map_err(|e| SinkError::io(key(), e))
    }
}

impl ObjectSink for LocalSink {
    fn stage<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StagingWriter>, SinkError>> {
        Box::pin(async move {
            let name = format!("{}.tmp", uuid::Uuid::new_v4());
            let path = self.staging.join(&name);
            let file = File::create(&path).map_err(|e| SinkError::io(key, e))?;
            Ok(Box::new(LocalStagingWriter {
                file: BufWriter::with_capacity(256 * 1024, file),
                path,
                staging: self.staging.clone(),
                object: StagedObject {
                    key: key.to_owned(),
                    handle: StagedHandle::LocalFile { temp: name },
                },
            }) as Box<dyn StagingWriter>)
        })
    }

    fn complete<'a>(&'a self, staged: &'a StagedObject) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let this = self.clone();
            let staged = staged.clone();
            tokio::task::spawn_blocking(move || this.complete_blocking(&staged))
                .await
                .map_err(|e| SinkError::io("complete", io::Error::other(e)))?
        })
    }

    fn abort_uncommitted<'a>(
        &'a self,
        keep: &'a [StagedObject],
    ) -> BoxFuture<'a, Result<usize, SinkError>> {
        Box::pin(async move {
            let keep: Vec<String> = keep
                .iter()
                .filter_map(|s| match &s.handle {
                    StagedHandle::LocalFile { temp } => Some(temp.clone()),
                    StagedHandle::S3Multipart { .. } => None,
                })
                .collect();
            let staging = self.staging.clone();
            tokio::task::spawn_blocking(move || -> Result<usize, SinkError> {
                let err = |e| SinkError::io(staging.display().to_string(), e);
                let mut removed = 0;
                for entry in fs::read_dir(&staging).map_err(err)? {
                    let entry = entry.map_err(err)?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !keep.contains(&name) {
                        fs::remove_file(entry.path()).map_err(err)?;
                        removed += 1;
                    }
                }
                if removed > 0 {
                    sync_dir(&staging).map_err(err)?;
                }
                Ok(removed)
            })
            .await
            .map_err(|e| SinkError::io("abort", io::Error::other(e)))?
        })
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// A temp file being written.
#[derive(Debug)]
struct LocalStagingWriter {
    file: BufWriter<File>,
    path: PathBuf,
    staging: PathBuf,
    object: StagedObject,
}

impl Write for LocalStagingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl StagingWriter for LocalStagingWriter {
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StagedObject, SinkError>> {
        Box::pin(async move {
            let this = *self;
            let key = this.object.key.clone();
            tokio::task::spawn_blocking(move || -> io::Result<StagedObject> {
                let file = this.file.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                // The temp file's directory entry must be durable too before the
                // handle is committed, or recovery could find nothing to rename.
                sync_dir(&this.staging)?;
                Ok(this.object)
            })
            .await
            .map_err(|e| SinkError::io(key.clone(), io::Error::other(e)))?
            .map_err(|e| SinkError::io(key, e))
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let path = self.path.clone();
            drop(self);
            let _ = tokio::fs::remove_file(path).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_files(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    out.push(
                        entry
                            .path()
                            .strip_prefix(root)
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn staged_objects_are_invisible_until_completed_and_completion_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path(), "s").unwrap();
        let mut writer = sink.stage("2026/01/02/03/s-1-x").await.unwrap();
        writer.write_all(b"hello\n").unwrap();
        let staged = writer.finish().await.unwrap();
        assert!(visible_files(dir.path()).is_empty());

        sink.complete(&staged).await.unwrap();
        assert_eq!(
            visible_files(dir.path()),
            vec!["2026/01/02/03/s-1-x".to_string()]
        );
        assert_eq!(
            fs::read(dir.path().join("2026/01/02/03/s-1-x")).unwrap(),
            b"hello\n"
        );
        // Recovery may complete the same object again.
        sink.complete(&staged).await.unwrap();
        assert_eq!(visible_files(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn abort_removes_only_uncommitted_staged_objects() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path(), "s").unwrap();
        let keep = sink.stage("a").await.unwrap().finish().await.unwrap();
        let _drop = sink.stage("b").await.unwrap().finish().await.unwrap();
        assert_eq!(
            sink.abort_uncommitted(std::slice::from_ref(&keep))
                .await
                .unwrap(),
            1
        );
        sink.complete(&keep).await.unwrap();
        assert_eq!(visible_files(dir.path()), vec!["a".to_string()]);
    }

    #[tokio::test]
    async fn completing_a_vanished_object_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path(), "s").unwrap();
        let staged = sink.stage("a").await.unwrap().finish().await.unwrap();
        sink.abort_uncommitted(&[]).await.unwrap();
        assert!(matches!(
            sink.complete(&staged).await,
            Err(SinkError::Vanished { .. })
        ));
    }
}
