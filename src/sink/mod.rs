//! Object sinks: where encoded objects are staged, then completed.
//!
//! Neighbours: the [`crate::buffer`] opens a staged object when its first
//! record arrives and streams encoded bytes into the [`StagingWriter`];
//! [`crate::delivery`] commits the [`StagedObject`] handles in a checkpoint and
//! then calls [`ObjectSink::complete`]; at start-up it completes committed
//! objects and [`ObjectSink::abort_uncommitted`] removes the rest.
//!
//! A staged object is invisible to readers (a hidden temp file here; an
//! uncompleted multipart upload on S3). Completing is idempotent, so recovery
//! may repeat it.
//!
//! # One instance per output location
//!
//! Recovery aborts every staged object of its stream that its own checkpoint
//! does not list, so two sluice instances delivering one stream name to one
//! place would abort each other's staged objects, committed ones included
//! (records lost). Each sink therefore claims its stream's location when it
//! is built and refuses to start when another instance holds it
//! ([`SinkError::Claimed`]): the local sink with an `flock` held for the
//! process's life, the S3 sink with a marker object written with
//! `If-None-Match: *` (see [`s3`]). The sinks also refuse keys that would
//! leave their root ([`SinkError::UnsafeKey`]), behind the prefix rules of
//! [`crate::partition`].

pub mod local;
pub mod s3;

use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::{Classify, Fault};

pub use local::LocalSink;
pub use s3::S3Sink;

/// A boxed future, so the seam can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A staged, not yet visible object, as recorded in checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedObject {
    /// The final key (path relative to the output root for the local sink).
    pub key: String,
    /// How to find the staged bytes.
    pub handle: StagedHandle,
    /// Size of the object as written, for logs (0 in checkpoints written
    /// before it was recorded).
    #[serde(default)]
    pub bytes: u64,
}

/// Sink-specific handle of a staged object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StagedHandle {
    /// A temp file in the sink's hidden staging directory (file name only).
    LocalFile {
        /// File name inside the staging directory.
        temp: String,
    },
    /// An S3 multipart upload with its uploaded parts, not yet completed.
    S3Multipart {
        /// Bucket.
        bucket: String,
        /// Upload id from `CreateMultipartUpload`.
        upload_id: String,
        /// Parts in order, with their ETags.
        parts: Vec<s3::Part>,
    },
}

/// A failure of the object store.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Reading or writing the store failed.
    #[error("object store I/O on `{key}`: {source}")]
    Io {
        /// Key (or staging path) involved.
        key: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An S3 request failed (after the SDK's own attempts).
    #[error("S3 {operation} on `{key}` failed ({}): {message}", code.as_deref().unwrap_or("no error code"))]
    S3 {
        /// The S3 operation.
        operation: &'static str,
        /// Key (or list prefix) involved.
        key: String,
        /// S3 error code, e.g. `AccessDenied`, `SlowDown`.
        code: Option<String>,
        /// The full error chain.
        message: String,
        /// Whose fault.
        fault: Fault,
        /// Whether retrying soon can help.
        retriable: bool,
    },
    /// A staged object of another sink kind was handed to this sink.
    #[error("staged object `{key}` does not belong to this sink")]
    Foreign {
        /// The key.
        key: String,
    },
    /// Another sluice instance holds this stream's output location.
    #[error(
        "{location} is claimed for stream `{stream}` by another sluice instance ({holder}); {remedy}"
    )]
    Claimed {
        /// The stream.
        stream: String,
        /// The lock file or marker object, as a path or `s3://` URL.
        location: String,
        /// Who holds it, as far as the claim says.
        holder: String,
        /// What the operator can do.
        remedy: String,
    },
    /// A key that would leave the sink's root (absolute, `.`/`..` segments)
    /// or reach into its staging area. The prefix rules refuse such keys
    /// before they reach a sink, so getting here is a bug; refused all the same.
    #[error("refusing object key {key:?}: it {reason}")]
    UnsafeKey {
        /// The key.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A committed object is neither staged nor completed: it was removed by
    /// someone else. Logged loudly; there is nothing left to complete.
    #[error("committed object `{key}` is neither staged nor present")]
    Vanished {
        /// The key.
        key: String,
    },
}

impl SinkError {
    /// The S3 error code, for S3 failures.
    pub fn s3_code(&self) -> Option<&str> {
        match self {
            SinkError::S3 { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn io(key: impl Into<String>, source: std::io::Error) -> Self {
        SinkError::Io {
            key: key.into(),
            source,
        }
    }
}

impl Classify for SinkError {
    fn is_retriable(&self) -> bool {
        match self {
            SinkError::Io { .. } => true,
            SinkError::S3 { retriable, .. } => *retriable,
            SinkError::Foreign { .. }
            | SinkError::Vanished { .. }
            | SinkError::Claimed { .. }
            | SinkError::UnsafeKey { .. } => false,
        }
    }
    fn fault(&self) -> Fault {
        match self {
            SinkError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Fault::Config
            }
            SinkError::Io { .. } => Fault::Remote,
            SinkError::S3 { fault, .. } => *fault,
            // The operator must stop the other instance or release the claim.
            SinkError::Claimed { .. } => Fault::Config,
            SinkError::Foreign { .. }
            | SinkError::Vanished { .. }
            | SinkError::UnsafeKey { .. } => Fault::Bug,
        }
    }
}

/// This machine's host name, for claims that say who holds them (Linux:
/// the kernel's UTS name; elsewhere `$HOSTNAME`).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Bytes of one staged object. Written from a blocking thread (encoders are
/// synchronous); `finish` makes the bytes durable and yields the handle.
pub trait StagingWriter: Write + Send + std::fmt::Debug {
    /// Makes everything written durable (still invisible) and returns the handle.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StagedObject, SinkError>>;
    /// Drops the staged bytes (used when an epoch is abandoned).
    fn discard(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The object-store seam: local directory and S3.
pub trait ObjectSink: Send + Sync + std::fmt::Debug {
    /// Starts a staged object that will become visible at `key`.
    fn stage<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StagingWriter>, SinkError>>;
    /// Makes a staged object visible. Idempotent: completing an already
    /// completed object succeeds.
    fn complete<'a>(&'a self, staged: &'a StagedObject) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Removes every staged object of this stream not in `keep` (they belong
    /// to epochs that never committed). Returns how many were removed.
    fn abort_uncommitted<'a>(
        &'a self,
        keep: &'a [StagedObject],
    ) -> BoxFuture<'a, Result<usize, SinkError>>;
    /// Where objects go, for logs and `DescribeDeliveryStream`.
    fn describe(&self) -> String;
}
