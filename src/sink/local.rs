//! Local directory sink: keys are paths below an output directory.
//!
//! Staging writes a temp file in `<root>/.sluice-staging/<stream>/`, on the same
//! filesystem as the output so that completion is one atomic `rename`; the
//! leading dot keeps it out of readers' way. Durability: the temp file is
//! fsynced before its handle is committed, and the destination directory is
//! fsynced after the rename.
//!
//! Claim: the sink holds an exclusive `flock` on the claim file
//! `<root>/.sluice-staging/<stream>@claim` for its whole life, and the file
//! names the instance (the id kept in its state directory). A second process
//! delivering the same stream name into the same directory fails to start
//! instead of deleting this one's staged files at its recovery: while the
//! holder runs, by the lock; after it stopped or crashed, by the id, because
//! its log may still hold records and its committed staged files must be
//! completed by it, not aborted by a stranger. The same instance restarting
//! (same state directory) takes its claim again. The file sits beside the
//! stream's staging directory, not in it, because recovery deletes every file
//! in there that no checkpoint lists; `@` cannot occur in a stream name, so no
//! stream's staging directory can collide with another's claim file. Keys are
//! checked before they are joined to the root ([`SinkError::UnsafeKey`]).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BoxFuture, ObjectSink, SinkError, StagedHandle, StagedObject, StagingWriter};
use crate::fsutil::sync_dir;

/// Name of the hidden staging directory below the output root.
pub const STAGING_DIR: &str = ".sluice-staging";

/// Writes objects below a local directory.
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
    staging: PathBuf,
    /// The locked claim file; the lock lasts as long as any clone of the sink.
    _claim: Arc<File>,
}

impl LocalSink {
    /// A sink writing below `root`, staging in a directory private to `stream`,
    /// holding the stream's claim on `root` for the instance `instance_id`.
    ///
    /// # Errors
    /// [`SinkError::Claimed`] when another process or instance holds the claim;
    /// [`SinkError::Io`] when the directories or the claim file cannot be created.
    pub fn new(root: &Path, stream: &str, instance_id: &str) -> Result<Self, SinkError> {
        let staging = root.join(STAGING_DIR).join(stream);
        fs::create_dir_all(&staging)
            .map_err(|e| SinkError::io(staging.display().to_string(), e))?;
        let claim = claim(root, stream, instance_id)?;
        Ok(LocalSink {
            root: root.to_owned(),
            staging,
            _claim: Arc::new(claim),
        })
    }

    fn complete_blocking(&self, staged: &StagedObject) -> Result<(), SinkError> {
        let StagedHandle::LocalFile { temp } = &staged.handle else {
            return Err(SinkError::Foreign {
                key: staged.key.clone(),
            });
        };
        // Keys come back from checkpoints at recovery: checked again here.
        check_key(&staged.key)?;
        if temp.contains('/') || temp.starts_with('.') {
            return Err(SinkError::UnsafeKey {
                key: temp.clone(),
                reason: "is not a plain staging file name",
            });
        }
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
            check_key(key)?;
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
                    bytes: 0,
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

/// Takes the stream's lock on `root`, or says who holds it.
/// First line of the claim file: the holding instance.
const INSTANCE_LINE: &str = "instance ";

fn claim(root: &Path, stream: &str, instance_id: &str) -> Result<File, SinkError> {
    let path = root.join(STAGING_DIR).join(format!("{stream}@claim"));
    let io_err = |e| SinkError::io(path.display().to_string(), e);
    let location = || {
        format!(
            "output directory {} (claim file {})",
            root.display(),
            path.display()
        )
    };
    // Not truncated on open: the holder's note must survive for the refused one to read.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    let mut note = String::new();
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let _ = file.read_to_string(&mut note);
            return Err(SinkError::Claimed {
                stream: stream.to_owned(),
                location: location(),
                holder: describe_holder(&note).unwrap_or_else(|| "a running process holds its lock".to_owned()),
                remedy: "two instances delivering one stream into one directory would delete each \
                         other's staged files; stop the other instance, or give this stream another \
                         output directory or name"
                    .to_owned(),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    file.read_to_string(&mut note).map_err(io_err)?;
    if let Some(holder) = note
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(INSTANCE_LINE))
        .map(str::trim)
        .filter(|id| *id != instance_id)
    {
        return Err(SinkError::Claimed {
            stream: stream.to_owned(),
            location: location(),
            holder: describe_holder(&note).unwrap_or_else(|| format!("instance {holder}")),
            remedy: format!(
                "that instance is not running, but its write-ahead log may still hold records for \
                 this stream and only it may complete its staged files; restart it with its own \
                 state directory, or, if it is gone for good, delete {} to hand the stream over",
                path.display()
            ),
        });
    }
    // Who holds the claim: the instance (the claim itself, with the lock)
    // and, for the message of a refused one, where it runs.
    let note = format!(
        "{INSTANCE_LINE}{instance_id}\npid {} on host {}, since {}\n",
        std::process::id(),
        super::host_name(),
        jiff::Timestamp::now()
    );
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(note.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_err)?;
    Ok(file)
}

/// "instance X (pid P on host H, since T)" from a claim file's text.
fn describe_holder(note: &str) -> Option<String> {
    let mut lines = note.lines();
    let id = lines.next()?.strip_prefix(INSTANCE_LINE)?.trim().to_owned();
    Some(match lines.next() {
        Some(rest) => format!("instance {id} ({})", rest.trim()),
        None => format!("instance {id}"),
    })
}

/// Refuses a key that would leave the root or land in the staging area, before
/// it is joined to the root (`Path::join` with an absolute key replaces the
/// root; `..` climbs out of it).
fn check_key(key: &str) -> Result<(), SinkError> {
    let reason = if key.is_empty() || key.ends_with('/') {
        Some("has no file name")
    } else if Path::new(key).is_absolute() {
        Some("is an absolute path")
    } else if key.split('/').next() == Some(STAGING_DIR) {
        Some("is inside the staging directory")
    } else if key.split('/').any(|c| c == "." || c == "..") {
        Some("has a `.` or `..` path component")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SinkError::UnsafeKey {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
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
                let mut object = this.object;
                object.bytes = file.metadata()?.len();
                // The temp file's directory entry must be durable too before the
                // handle is committed, or recovery could find nothing to rename.
                sync_dir(&this.staging)?;
                Ok(object)
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
    use crate::error::{Classify, Fault};

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
        let sink = LocalSink::new(dir.path(), "s", "me").unwrap();
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
        let sink = LocalSink::new(dir.path(), "s", "me").unwrap();
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
        let sink = LocalSink::new(dir.path(), "s", "me").unwrap();
        let staged = sink.stage("a").await.unwrap().finish().await.unwrap();
        sink.abort_uncommitted(&[]).await.unwrap();
        assert!(matches!(
            sink.complete(&staged).await,
            Err(SinkError::Vanished { .. })
        ));
    }

    #[tokio::test]
    async fn keys_that_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(&dir.path().join("out"), "s", "me").unwrap();
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "./a",
            "..",
            "",
            "a/",
            ".sluice-staging/s/x",
        ] {
            match sink.stage(bad).await {
                Err(e @ SinkError::UnsafeKey { .. }) => {
                    assert!(!e.is_retriable(), "{bad:?}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // Checkpointed keys are checked again when completed.
        let staged = StagedObject {
            key: "../escaped".into(),
            handle: StagedHandle::LocalFile {
                temp: "x.tmp".into(),
            },
            bytes: 0,
        };
        assert!(matches!(
            sink.complete(&staged).await,
            Err(SinkError::UnsafeKey { .. })
        ));
        assert!(!dir.path().join("escaped").exists());
        for ok in ["a", "a..b/c", ".hidden/x", "a//b"] {
            sink.stage(ok).await.unwrap().discard().await;
        }
    }

    #[test]
    fn one_stream_directory_is_claimed_by_one_sink_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalSink::new(dir.path(), "s", "me").unwrap();
        let err = LocalSink::new(dir.path(), "s", "me").unwrap_err();
        assert!(matches!(err, SinkError::Claimed { .. }), "{err}");
        assert_eq!((err.is_retriable(), err.fault()), (false, Fault::Config));
        let message = err.to_string();
        assert!(message.starts_with("output directory"), "{message}");
        assert!(message.contains("is claimed for stream `s`"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("stop the other instance"), "{message}");
        // Other streams, and other directories, are independent.
        let _other_stream = LocalSink::new(dir.path(), "t", "me").unwrap();
        let _other_dir = LocalSink::new(&dir.path().join("sub"), "s", "me").unwrap();
        // The claim lasts while any clone lives, and ends with the last.
        let clone = first.clone();
        drop(first);
        assert!(LocalSink::new(dir.path(), "s", "me").is_err());
        drop(clone);
        let _again = LocalSink::new(dir.path(), "s", "me").unwrap();
        // Recovery's abort leaves the claim file alone (it is not in the staging dir).
        let claim = dir.path().join(STAGING_DIR).join("s@claim");
        assert!(claim.is_file());
    }

    #[test]
    fn a_stopped_instances_claim_refuses_another_instance_until_released() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalSink::new(dir.path(), "s", "first").unwrap());
        // The first instance is not running, but its claim stands.
        let err = LocalSink::new(dir.path(), "s", "second").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SinkError::Claimed { .. }), "{message}");
        assert!(message.contains("instance first"), "{message}");
        assert!(message.contains("gone for good, delete"), "{message}");
        // Its own restart takes it again; deleting the file hands it over.
        drop(LocalSink::new(dir.path(), "s", "first").unwrap());
        std::fs::remove_file(dir.path().join(STAGING_DIR).join("s@claim")).unwrap();
        let _second = LocalSink::new(dir.path(), "s", "second").unwrap();
    }
}
