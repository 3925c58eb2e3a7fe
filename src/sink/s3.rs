//! Amazon S3 (and S3-compatible) sink: objects are staged as multipart
//! uploads that are completed only after the checkpoint commit covering them.
//!
//! - **Stage**: `CreateMultipartUpload`, then parts of `part_size_bytes` are
//!   uploaded as the encoder fills them, at most `max_concurrent_parts` at a
//!   time, so memory is bounded by part size times concurrency, not by object
//!   size. `finish` uploads the tail as the last part. Until
//!   `CompleteMultipartUpload`, readers see nothing.
//! - **Complete**: `CompleteMultipartUpload` with the committed part list. If
//!   S3 answers `NoSuchUpload`, the upload was already completed (recovery
//!   repeats completions) or aborted; `HeadObject` tells which.
//! - **Abort**: at start, every multipart upload of this stream that the
//!   committed checkpoint does not list is aborted. Uploads are recognised by
//!   the object name Firehose's layout gives them (`<stream>-<version>-...`)
//!   below the literal head of the stream's prefixes, so one stream name must
//!   be delivered by one sluice instance per bucket prefix; the claim enforces it.
//! - **Claim**: before recovery, the sink writes the marker object
//!   `<head>.sluice/<stream>.claim` (`<head>`: the literal head of the prefixes
//!   up to its last `/`) with `PutObject` and `If-None-Match: *`, holding a
//!   JSON [`Holder`]: instance id, host, pid, state directory, time. The
//!   instance id is persisted in the state directory, so the same instance
//!   restarting (kill -9, reboot) finds its own id in the marker and goes on;
//!   any other instance is refused with a message saying who holds it. A claim
//!   at any directory above `<head>` for the same stream name (an instance
//!   whose listing covers this one's keys) refuses the start as well; the
//!   other way round (a claim below `<head>`, made first), recovery leaves the
//!   uploads below that claim alone instead of aborting them.
//!   sluice never deletes a marker: it is what still protects a stopped
//!   instance's staged uploads and unsent records, and what refuses a
//!   replacement whose state directory is new. Deleting it is the operator's
//!   statement that the old instance is gone for good. The store must honour
//!   conditional writes (S3 does since 2024; moto does).
//!
//! Every S3 call is retried here, forever, with exponential backoff and
//! jitter: retriable failures (5xx, `SlowDown`, throttling, timeouts,
//! connection resets) back off up to 20 s; failures that need an operator
//! (`AccessDenied`, `NoSuchBucket`, KMS errors) are logged with their S3 error
//! code at every step and retried every `--operator-retry-secs` (60 s). Nothing is skipped: while S3
//! fails the pipeline waits, the write-ahead log fills, and the API pushes
//! back with `ServiceUnavailableException`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{BoxFuture, ObjectSink, SinkError, StagedHandle, StagedObject, StagingWriter};
use crate::config::{Encryption, S3Target};
use crate::error::Fault;

/// Smallest part S3 accepts (except the last one).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// Builds the S3 client of a destination from the process-wide AWS config:
/// explicit timeouts (the SDK sets none for operations), endpoint override
/// (`endpoint_url`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`), and
/// path-style addressing when asked or when the endpoint is an IP address or
/// `localhost` (virtual-hosted buckets need DNS names). Checksums only where
/// S3 requires them: S3-compatible stores differ in what they accept.
pub fn client(sdk: &aws_config::SdkConfig, target: &S3Target) -> Client {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = target
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    let path_style = target
        .force_path_style
        .unwrap_or_else(|| endpoint.as_deref().is_some_and(is_ip_or_localhost));
    let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(target.attempt_timeout)
        .operation_timeout(target.attempt_timeout * 4)
        .build();
    let mut builder = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .timeout_config(timeouts)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// Whether an endpoint URL's host is an IP address or `localhost`.
fn is_ip_or_localhost(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Settings of one S3 destination.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Bytes per uploaded part (>= 5 MiB).
    pub part_size_bytes: usize,
    /// Parts uploaded concurrently per object.
    pub max_concurrent_parts: usize,
    /// Server-side encryption.
    pub encryption: Encryption,
}

/// Literal head of the stream's prefixes, and its object-name stem, used to
/// find this stream's uploads.
#[derive(Debug, Clone)]
pub struct UploadFilter {
    /// `ListMultipartUploads` prefix: the literal text before the first
    /// expression, common to the output and error prefixes.
    pub list_prefix: String,
    /// Object names of the stream start with `<stream>-<digits>-`.
    pub stream: String,
}

/// Directory of claim markers below a prefix head.
pub const CLAIM_DIR: &str = ".sluice";

impl UploadFilter {
    fn matches(&self, key: &str) -> bool {
        // Claim markers are plain objects, never uploads; refused by name too,
        // so nothing under a claim directory is ever aborted as a stream's data.
        if key.split('/').any(|segment| segment == CLAIM_DIR) {
            return false;
        }
        let name = key.rsplit('/').next().unwrap_or(key);
        let Some(rest) = name
            .strip_prefix(&self.stream)
            .and_then(|r| r.strip_prefix('-'))
        else {
            return false;
        };
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('-')
    }

    /// The directory the claim lives in: the list prefix up to its last `/`,
    /// so that it is an ancestor of every key the stream can write.
    fn claim_dir(&self) -> &str {
        let head = &self.list_prefix;
        &head[..head.rfind('/').map_or(0, |i| i + 1)]
    }

    /// The stream's claim marker key: `<head>.sluice/<stream>.claim`.
    pub fn claim_key(&self) -> String {
        marker_key(self.claim_dir(), &self.stream)
    }

    /// Marker keys a claim of the same stream would have at every directory
    /// above this one's (nearest first): the instances whose listing covers
    /// this stream's keys.
    fn ancestor_claim_keys(&self) -> Vec<String> {
        let dir = self.claim_dir();
        let mut keys = Vec::new();
        let mut end = dir.len().saturating_sub(1);
        while let Some(i) = dir[..end].rfind('/') {
            keys.push(marker_key(&dir[..=i], &self.stream));
            end = i;
        }
        if !dir.is_empty() {
            keys.push(marker_key("", &self.stream));
        }
        keys
    }
}

fn marker_key(dir: &str, stream: &str) -> String {
    format!("{dir}{CLAIM_DIR}/{stream}.claim")
}

/// Who holds a claim: the marker's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The instance id persisted in the holder's state directory.
    pub instance_id: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id at the last claim.
    pub pid: u32,
    /// The holder's state directory.
    pub state_dir: String,
    /// When the holder last claimed (RFC 3339).
    pub claimed_at: String,
}

impl Holder {
    /// This process, as instance `instance_id` with `state_dir`.
    pub fn this_process(instance_id: String, state_dir: &std::path::Path) -> Self {
        Holder {
            instance_id,
            host: super::host_name(),
            pid: std::process::id(),
            // Absolute, so the message of a refused instance points at it from anywhere.
            state_dir: std::path::absolute(state_dir)
                .unwrap_or_else(|_| state_dir.to_owned())
                .display()
                .to_string(),
            claimed_at: jiff::Timestamp::now().to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "instance {} on host {}, pid {}, state directory {}, claimed at {}",
            self.instance_id, self.host, self.pid, self.state_dir, self.claimed_at
        )
    }
}

/// What a marker read found.
enum Marker {
    Absent,
    /// The holder (None: the body is not a claim) and the object's ETag.
    Present(Option<Holder>, Option<String>),
}

/// Attempts of one claim request before the start fails (transient errors).
const CLAIM_ATTEMPTS: u32 = 6;

/// Writes objects to one bucket.
#[derive(Debug, Clone)]
pub struct S3Sink {
    client: Client,
    options: Arc<S3Options>,
    filter: UploadFilter,
    /// This instance's id, once [`S3Sink::claim`] succeeded.
    instance_id: Arc<OnceLock<String>>,
    /// Who this instance is, for claims made on first use
    /// ([`S3Sink::with_holder`]).
    holder: Option<Arc<Holder>>,
}

impl S3Sink {
    /// A sink on `client` (built once per process and shared).
    pub fn new(client: Client, options: S3Options, filter: UploadFilter) -> Self {
        S3Sink {
            client,
            options: Arc::new(options),
            filter,
            instance_id: Arc::new(OnceLock::new()),
            holder: None,
        }
    }

    /// The same sink, claiming the stream's prefix as `holder` before it
    /// first aborts anything (if [`S3Sink::claim`] did not succeed at start,
    /// e.g. because S3 was unreachable or the bucket is still missing: the
    /// pipeline's recovery then retries the claim with its backoff).
    pub fn with_holder(mut self, holder: Holder) -> Self {
        self.holder = Some(Arc::new(holder));
        self
    }

    /// Claims now unless already claimed. Like every other S3 call of the
    /// pipeline it never gives up on S3 failures: an error an operator must
    /// fix (bucket missing, access denied) is retried slowly, so the stream
    /// heals once it is fixed; only a claim held by another instance ends it.
    async fn ensure_claimed(&self) -> Result<(), SinkError> {
        let Some(holder) = &self.holder else {
            return Ok(());
        };
        let mut backoff = Duration::from_secs(1);
        while self.instance_id.get().is_none() {
            match self.claim(holder).await {
                Ok(()) => {}
                Err(SinkError::S3 {
                    code,
                    message,
                    fault,
                    retriable,
                    ..
                }) => {
                    let failure = Failure {
                        operation: "claim",
                        key: &self.filter.claim_key(),
                        code: code.as_deref(),
                        message: &message,
                        fault,
                        retriable,
                        attempt: 0,
                    };
                    failure.wait(&mut backoff).await;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    async fn create_upload(&self, key: &str) -> Result<String, SinkError> {
        retry("CreateMultipartUpload", key, || async {
            let mut request = self
                .client
                .create_multipart_upload()
                .bucket(&self.options.bucket)
                .key(key);
            request = match &self.options.encryption {
                Encryption::None => request,
                Encryption::SseS3 => request.server_side_encryption(ServerSideEncryption::Aes256),
                Encryption::SseKms { key_arn } => request
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(key_arn),
            };
            let output = request
                .send()
                .await
                .map_err(|e| s3_error("CreateMultipartUpload", key, e))?;
            output.upload_id.ok_or_else(|| SinkError::S3 {
                operation: "CreateMultipartUpload",
                key: key.to_owned(),
                code: None,
                message: "response has no UploadId".into(),
                fault: Fault::Remote,
                retriable: true,
            })
        })
        .await
    }

    async fn object_exists(&self, key: &str) -> Result<bool, SinkError> {
        retry("HeadObject", key, || async {
            match self
                .client
                .head_object()
                .bucket(&self.options.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
                Err(e) => Err(s3_error("HeadObject", key, e)),
            }
        })
        .await
    }
}

impl S3Sink {
    /// Claims the stream's marker for `me` (see the module docs), or refuses.
    ///
    /// # Errors
    /// [`SinkError::Claimed`] when another instance holds the marker or a
    /// marker above it; [`SinkError::S3`] when S3 keeps failing.
    pub async fn claim(&self, me: &Holder) -> Result<(), SinkError> {
        self.claim_marker(me).await?;
        // Set once per sink; a second claim by the same process is the same id.
        let _ = self.instance_id.set(me.instance_id.clone());
        Ok(())
    }

    async fn claim_marker(&self, me: &Holder) -> Result<(), SinkError> {
        let key = self.filter.claim_key();
        for above in self.filter.ancestor_claim_keys() {
            if let Marker::Present(holder, _) = self.read_marker(&above).await?
                && holder
                    .as_ref()
                    .is_none_or(|h| h.instance_id != me.instance_id)
            {
                return Err(self.claimed(&above, holder.as_ref(), true));
            }
        }
        let body = serde_json::to_vec_pretty(me).map_err(|e| SinkError::S3 {
            operation: "PutObject",
            key: key.clone(),
            code: None,
            message: format!("encoding the claim: {e}"),
            fault: Fault::Bug,
            retriable: false,
        })?;
        // A few rounds: the marker may change between the conditional put and
        // the read (deleted by an operator, refreshed by its holder).
        for _ in 0..CLAIM_ATTEMPTS {
            if self.put_marker(&key, &body, None).await? {
                tracing::info!(stream = %self.filter.stream, marker = %self.marker_url(&key), "Claimed the stream's S3 prefix.");
                return Ok(());
            }
            match self.read_marker(&key).await? {
                Marker::Absent => continue,
                Marker::Present(Some(holder), etag) if holder.instance_id == me.instance_id => {
                    // Our own claim from before a restart: refresh who and when,
                    // only if it is still the marker just read.
                    if self
                        .put_marker(&key, &body, Some(etag.as_deref().unwrap_or("*")))
                        .await?
                    {
                        tracing::info!(stream = %self.filter.stream, marker = %self.marker_url(&key), previous_pid = holder.pid, "Re-claimed this instance's S3 prefix.");
                        return Ok(());
                    }
                }
                Marker::Present(holder, _) => {
                    return Err(self.claimed(&key, holder.as_ref(), false));
                }
            }
        }
        Err(SinkError::S3 {
            operation: "PutObject",
            key,
            code: None,
            message: "the claim marker kept changing while it was being claimed".into(),
            fault: Fault::Remote,
            retriable: true,
        })
    }

    fn marker_url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.options.bucket)
    }

    fn claimed(&self, key: &str, holder: Option<&Holder>, above: bool) -> SinkError {
        let url = self.marker_url(key);
        let holder = holder.map_or_else(
            || "the marker does not say which (it is not a sluice claim)".to_owned(),
            Holder::describe,
        );
        let what = if above {
            "a prefix above this stream's, so its recovery would abort this one's uploads"
        } else {
            "this prefix; two instances delivering one stream there would abort each other's staged uploads"
        };
        SinkError::Claimed {
            stream: self.filter.stream.clone(),
            location: format!("S3 claim marker {url}"),
            holder,
            remedy: format!(
                "it delivers this stream to {what}. If that instance still runs, stop it or give this \
                 stream another name or prefix; if it is gone for good (its state directory lost), \
                 delete the marker (aws s3 rm {url}) and start again"
            ),
        }
    }

    /// `PutObject` of the marker, conditional on it being absent (`if_match`
    /// `None`) or unchanged (its ETag). `false`: the condition did not hold.
    async fn put_marker(
        &self,
        key: &str,
        body: &[u8],
        if_match: Option<&str>,
    ) -> Result<bool, SinkError> {
        claim_request("PutObject", key, || async {
            let request = self
                .client
                .put_object()
                .bucket(&self.options.bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(body.to_vec()));
            let request = match if_match {
                None => request.if_none_match("*"),
                Some(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(_) => Ok(true),
                Err(e) if status_of(&e) == Some(412) => Ok(false),
                // If-Match on a marker deleted meanwhile: go round again.
                Err(e) if if_match.is_some() && status_of(&e) == Some(404) => Ok(false),
                Err(e) => Err(s3_error("PutObject", key, e)),
            }
        })
        .await
    }

    async fn read_marker(&self, key: &str) -> Result<Marker, SinkError> {
        claim_request("GetObject", key, || self.read_marker_once(key)).await
    }

    async fn read_marker_once(&self, key: &str) -> Result<Marker, SinkError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.options.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(Marker::Absent);
            }
            Err(e) => return Err(s3_error("GetObject", key, e)),
        };
        let etag = output.e_tag().map(str::to_owned);
        let body = output.body.collect().await.map_err(|e| SinkError::S3 {
            operation: "GetObject",
            key: key.to_owned(),
            code: None,
            message: e.to_string(),
            fault: Fault::Remote,
            retriable: true,
        })?;
        let holder = serde_json::from_slice::<Holder>(&body.into_bytes()).ok();
        Ok(Marker::Present(holder, etag))
    }

    /// Leaves out of `doomed` the uploads that lie below a deeper claim of
    /// the same stream by another instance: one whose prefix head is below
    /// this one's, started first, so its claim could not refuse this one.
    /// Those uploads are its own, and aborting them would lose its records.
    async fn without_foreign_claims(
        &self,
        doomed: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, SinkError> {
        use futures_util::{StreamExt, TryStreamExt};
        let Some(me) = self.instance_id.get() else {
            return Ok(doomed);
        };
        let own = self.filter.claim_dir();
        // Every directory strictly below the own claim's, down to each key's:
        // one marker each, read once and many at a time (a partitioned prefix
        // has a few levels per partition, hundreds of partitions).
        let markers_of = |key: &str| -> Vec<String> {
            let Some(rest) = key.strip_prefix(own) else {
                return Vec::new();
            };
            rest.match_indices('/')
                .map(|(i, _)| marker_key(&key[..own.len() + i + 1], &self.filter.stream))
                .collect()
        };
        let mut wanted: Vec<String> = doomed.iter().flat_map(|(k, _)| markers_of(k)).collect();
        wanted.sort();
        wanted.dedup();
        let reads: Vec<_> = wanted
            .into_iter()
            .map(|marker| async move {
                let read = retry("GetObject", &marker, || self.read_marker_once(&marker)).await?;
                let foreign = match read {
                    Marker::Absent => false,
                    Marker::Present(holder, _) => holder.is_none_or(|h| h.instance_id != *me),
                };
                Ok::<_, SinkError>((marker, foreign))
            })
            .collect();
        let foreign: HashMap<String, bool> = futures_util::stream::iter(reads)
            .buffer_unordered(RECOVERY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut mine = Vec::with_capacity(doomed.len());
        for (key, id) in doomed {
            if let Some(marker) = markers_of(&key).into_iter().find(|m| foreign[m]) {
                tracing::warn!(stream = %self.filter.stream, key, marker = %self.marker_url(&marker), "Not aborting an upload below another instance's claim of this stream.");
                continue;
            }
            mine.push((key, id));
        }
        Ok(mine)
    }
}

/// S3 requests recovery runs at once (claim markers read, uploads aborted).
const RECOVERY_CONCURRENCY: usize = 16;

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Runs one claim request, retrying transient failures a few times. Unlike
/// [`retry`], it gives up: a start that cannot claim fails and says why
/// (the service manager restarts it), instead of waiting silently.
async fn claim_request<T, F, Fut>(
    operation: &'static str,
    key: &str,
    mut op: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        let result = op().await;
        if let Err(SinkError::S3 { code, fault, .. }) = &result {
            count(operation, code.as_deref(), *fault);
        }
        match result {
            Err(
                e @ SinkError::S3 {
                    retriable: true, ..
                },
            ) if attempt < CLAIM_ATTEMPTS => {
                tracing::warn!(operation, key, attempt, error = %e, "S3 claim request failed; retrying.");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl ObjectSink for S3Sink {
    fn stage<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StagingWriter>, SinkError>> {
        Box::pin(async move {
            let upload_id = self.create_upload(key).await?;
            Ok(Box::new(S3StagingWriter {
                upload: Upload {
                    client: self.client.clone(),
                    bucket: self.options.bucket.clone(),
                    key: key.to_owned(),
                    upload_id,
                },
                runtime: tokio::runtime::Handle::current(),
                part_size: self.options.part_size_bytes,
                max_in_flight: self.options.max_concurrent_parts.max(1),
                buf: Vec::new(),
                next_part: 1,
                written: 0,
                in_flight: VecDeque::new(),
                done: Vec::new(),
            }) as Box<dyn StagingWriter>)
        })
    }

    fn complete<'a>(&'a self, staged: &'a StagedObject) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let StagedHandle::S3Multipart {
                bucket,
                upload_id,
                parts,
            } = &staged.handle
            else {
                return Err(SinkError::Foreign {
                    key: staged.key.clone(),
                });
            };
            let key = staged.key.as_str();
            let completed = CompletedMultipartUpload::builder()
                .set_parts(Some(
                    parts
                        .iter()
                        .map(|p| {
                            CompletedPart::builder()
                                .part_number(p.number)
                                .e_tag(&p.etag)
                                .build()
                        })
                        .collect(),
                ))
                .build();
            let confirmed = retry("CompleteMultipartUpload", key, || async {
                match self
                    .client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(completed.clone())
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if e.code() == Some("NoSuchUpload") => Ok(false),
                    // A success status with a body the SDK cannot parse (moto
                    // names the XML root `CompleteMultipartUploadResponse`;
                    // proxies may mangle bodies): check the object instead.
                    Err(e) if e.raw_response().is_some_and(|r| r.status().is_success()) => {
                        tracing::debug!(key, "CompleteMultipartUpload succeeded with an unparseable body; checking the object.");
                        Ok(false)
                    }
                    Err(e) => Err(s3_error("CompleteMultipartUpload", key, e)),
                }
            })
            .await?;
            if confirmed {
                return Ok(());
            }
            // Not confirmed by the response: completed by this or an earlier
            // attempt (the object exists) or aborted by someone else (it does not).
            if self.object_exists(key).await? {
                Ok(())
            } else {
                Err(SinkError::Vanished {
                    key: key.to_owned(),
                })
            }
        })
    }

    fn abort_uncommitted<'a>(
        &'a self,
        keep: &'a [StagedObject],
    ) -> BoxFuture<'a, Result<usize, SinkError>> {
        Box::pin(async move {
            // Nothing under the prefix is aborted before the claim holds.
            self.ensure_claimed().await?;
            let keep: Vec<&str> = keep
                .iter()
                .filter_map(|s| match &s.handle {
                    StagedHandle::S3Multipart { upload_id, .. } => Some(upload_id.as_str()),
                    StagedHandle::LocalFile { .. } => None,
                })
                .collect();
            let mut doomed = Vec::new();
            let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
            loop {
                let page = retry("ListMultipartUploads", &self.filter.list_prefix, || async {
                    self.client
                        .list_multipart_uploads()
                        .bucket(&self.options.bucket)
                        .prefix(&self.filter.list_prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                        .await
                        .map_err(|e| s3_error("ListMultipartUploads", &self.filter.list_prefix, e))
                })
                .await?;
                for upload in page.uploads() {
                    let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                        continue;
                    };
                    if self.filter.matches(key) && !keep.contains(&id) {
                        doomed.push((key.to_owned(), id.to_owned()));
                    }
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(str::to_owned);
                id_marker = page.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            }
            let doomed = self.without_foreign_claims(doomed).await?;
            use futures_util::{StreamExt, TryStreamExt};
            // Built up front (not polled until buffered): a closure over the
            // borrowed pairs would not be general enough for the boxed future.
            let aborts: Vec<_> = doomed
                .iter()
                .map(|(key, id)| abort(&self.client, &self.options.bucket, key, id))
                .collect();
            futures_util::stream::iter(aborts)
                .buffer_unordered(RECOVERY_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
            Ok(doomed.len())
        })
    }

    fn describe(&self) -> String {
        format!("arn:aws:s3:::{}", self.options.bucket)
    }
}

async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Result<(), SinkError> {
    retry("AbortMultipartUpload", key, || async {
        match client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(s3_error("AbortMultipartUpload", key, e)),
        }
    })
    .await
}

/// One part of a staged upload, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1-based part number.
    pub number: i32,
    /// ETag S3 returned for the part.
    pub etag: String,
}

/// Identity of an in-progress upload.
#[derive(Debug, Clone)]
struct Upload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
}

impl Upload {
    async fn put_part(self, number: i32, data: Bytes) -> Result<Part, SinkError> {
        retry("UploadPart", &self.key, || async {
            let output = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .part_number(number)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", &self.key, e))?;
            let etag = output.e_tag.ok_or_else(|| SinkError::S3 {
                operation: "UploadPart",
                key: self.key.clone(),
                code: None,
                message: "response has no ETag".into(),
                fault: Fault::Remote,
                retriable: true,
            })?;
            Ok(Part { number, etag })
        })
        .await
    }
}

/// Streams an object's bytes into parts. `Write` is called from blocking
/// threads (encoders are synchronous), which may wait on the runtime.
struct S3StagingWriter {
    upload: Upload,
    runtime: tokio::runtime::Handle,
    part_size: usize,
    max_in_flight: usize,
    buf: Vec<u8>,
    next_part: i32,
    in_flight: VecDeque<JoinHandle<Result<Part, SinkError>>>,
    done: Vec<Part>,
    /// Bytes written so far.
    written: u64,
}

impl std::fmt::Debug for S3StagingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3StagingWriter")
            .field("key", &self.upload.key)
            .field("upload_id", &self.upload.upload_id)
            .field("next_part", &self.next_part)
            .finish()
    }
}

impl S3StagingWriter {
    /// Starts uploading `data` as the next part, first waiting for the oldest
    /// part when the concurrency limit is reached (that wait is the memory
    /// bound and the backpressure).
    fn start_part(&mut self, data: Bytes) -> io::Result<()> {
        while self.in_flight.len() >= self.max_in_flight {
            self.wait_oldest()?;
        }
        let number = self.next_part;
        self.next_part += 1;
        let upload = self.upload.clone();
        self.in_flight.push_back(
            self.runtime
                .spawn(crate::status::in_current(upload.put_part(number, data))),
        );
        Ok(())
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        if let Some(task) = self.in_flight.pop_front() {
            let part = self
                .runtime
                .block_on(task)
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
            self.done.push(part);
        }
        Ok(())
    }
}

impl Write for S3StagingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written += data.len() as u64;
        self.buf.extend_from_slice(data);
        while self.buf.len() >= self.part_size {
            let rest = self.buf.split_off(self.part_size);
            let part = std::mem::replace(&mut self.buf, rest);
            self.start_part(Bytes::from(part))?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StagingWriter for S3StagingWriter {
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<StagedObject, SinkError>> {
        Box::pin(async move {
            let mut this = *self;
            // The tail (possibly empty for an empty object) is the last part,
            // which S3 allows to be smaller than 5 MiB.
            if !this.buf.is_empty() || this.next_part == 1 {
                let tail = Bytes::from(std::mem::take(&mut this.buf));
                let number = this.next_part;
                this.next_part += 1;
                let upload = this.upload.clone();
                this.in_flight
                    .push_back(tokio::spawn(crate::status::in_current(
                        upload.put_part(number, tail),
                    )));
            }
            for task in std::mem::take(&mut this.in_flight) {
                let part = task
                    .await
                    .map_err(|e| SinkError::io(this.upload.key.clone(), io::Error::other(e)))??;
                this.done.push(part);
            }
            this.done.sort_by_key(|p| p.number);
            Ok(StagedObject {
                key: this.upload.key.clone(),
                handle: StagedHandle::S3Multipart {
                    bucket: this.upload.bucket.clone(),
                    upload_id: this.upload.upload_id.clone(),
                    parts: this.done,
                },
                bytes: this.written,
            })
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            for task in &self.in_flight {
                task.abort();
            }
            let u = &self.upload;
            let _ = abort(&u.client, &u.bucket, &u.key, &u.upload_id).await;
        })
    }
}

/// Classifies an SDK error by its S3 error code.
fn s3_error<E>(operation: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    // S3's own words when it answered ("The specified bucket does not
    // exist"); the whole error chain only when it did not (timeouts,
    // connection failures), where the chain is what explains it.
    let message = match (&err, err.message()) {
        (SdkError::ServiceError(_), Some(text)) => text.to_owned(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
    };
    let (fault, retriable) = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (Fault::Remote, true)
        }
        SdkError::ConstructionFailure(_) => (Fault::Bug, false),
        _ => classify_code(
            code.as_deref(),
            err.raw_response().map(|r| r.status().as_u16()),
        ),
    };
    SinkError::S3 {
        operation,
        key: key.to_owned(),
        code,
        message,
        fault,
        retriable,
    }
}

/// Whose fault an S3 error code is, and whether retrying can help soon.
fn classify_code(code: Option<&str>, status: Option<u16>) -> (Fault, bool) {
    match code {
        Some(
            "AccessDenied"
            | "NoSuchBucket"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AllAccessDisabled"
            | "AccountProblem"
            | "InvalidPayer"
            | "NotSignedUp"
            | "MethodNotAllowed"
            | "InvalidBucketName"
            | "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "InvalidRequest"
            | "InvalidArgument",
        ) => (Fault::Config, false),
        Some(c) if c.starts_with("KMS") => (Fault::Config, false),
        Some(
            "SlowDown"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "Throttling"
            | "ThrottlingException",
        ) => (Fault::Remote, true),
        _ => match status {
            Some(s) if s >= 500 || s == 429 || s == 408 => (Fault::Remote, true),
            Some(403 | 404) => (Fault::Config, false),
            _ => (Fault::Remote, true),
        },
    }
}

/// Backoff for failures retrying can fix soon.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Failed attempts of a retriable request after which its stream reports
/// itself failing (about 3 s of backoff).
const FAILING_AFTER_ATTEMPTS: u32 = 5;

/// Runs `op` until it succeeds. Returns only success, `NoSuchUpload`, or an
/// error that is not an S3 failure: sluice never skips undelivered data.
async fn retry<T, F, Fut>(operation: &'static str, key: &str, mut op: F) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0u32;
    let status = crate::status::current();
    loop {
        attempt += 1;
        match op().await {
            Ok(value) => {
                if let Some(status) = &status {
                    // Progress: an upload of many parts ticks per part.
                    status.tick();
                    if attempt > 1 {
                        status.cleared();
                    }
                }
                return Ok(value);
            }
            // The upload is gone (aborted by recovery after a pipeline
            // restart, while this part was still being retried): retrying
            // cannot help; the caller's pipeline starts over.
            Err(e @ SinkError::S3 { .. }) if e.s3_code() == Some("NoSuchUpload") => return Err(e),
            Err(SinkError::S3 {
                code,
                message,
                fault,
                retriable,
                ..
            }) => {
                count(operation, code.as_deref(), fault);
                let failure = Failure {
                    operation,
                    key,
                    code: code.as_deref(),
                    message: &message,
                    fault,
                    retriable,
                    attempt,
                };
                failure.wait(&mut backoff).await;
            }
            Err(other) => return Err(other),
        }
    }
}

/// One failed S3 request that will be tried again.
struct Failure<'a> {
    operation: &'static str,
    key: &'a str,
    code: Option<&'a str>,
    message: &'a str,
    fault: Fault,
    retriable: bool,
    attempt: u32,
}

impl Failure<'_> {
    /// Logs the failure and sleeps until the next attempt: soon (growing
    /// `backoff`) when retrying can fix it, [`crate::status::operator_retry`] when an operator
    /// must (bucket missing, access denied): nothing is dropped meanwhile.
    async fn wait(&self, backoff: &mut Duration) {
        let wait = if self.retriable {
            jitter(*backoff)
        } else {
            crate::status::operator_retry()
        };
        let (operation, key, code) = (self.operation, self.key, self.code.unwrap_or("-"));
        // The stream reports what an operator must fix at once, a transient
        // fault once it persists (a few quick retries are routine).
        let status = crate::status::current();
        if let Some(status) = &status
            && (!self.retriable || self.attempt >= FAILING_AFTER_ATTEMPTS)
        {
            status.failing(
                format!("S3 {operation} {key}: {code}: {}", self.message),
                self.fault,
            );
        }
        let (attempt, error, retry_in_ms) = (self.attempt, self.message, wait.as_millis() as u64);
        if self.retriable {
            tracing::warn!(
                operation,
                key,
                code,
                attempt,
                error,
                retry_in_ms,
                "S3 request failed; retrying."
            );
        } else {
            let fault = self.fault.to_string();
            tracing::error!(
                operation,
                key,
                code,
                fault,
                attempt,
                error,
                retry_in_ms,
                "S3 request failed and needs an operator; retrying slowly, nothing is dropped."
            );
        }
        // A wait by design: the stream's loops are alive (the watchdog's view).
        crate::status::sleep_ticking(status.as_deref(), wait).await;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    }
}

/// Counts a failed S3 request on `/metrics`.
fn count(operation: &'static str, code: Option<&str>, fault: Fault) {
    crate::metrics::inc(
        "sluice_s3_errors_total",
        "Failed S3 requests by operation and S3 error code.",
        &[
            ("operation", operation),
            ("code", code.unwrap_or("none")),
            ("fault", &fault.to_string()),
        ],
        1,
    );
}

/// Full jitter between 50% and 100% of `d`.
fn jitter(d: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() % 1000;
    d.mul_f64(0.5 + r as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_filter_matches_only_this_streams_object_names() {
        let f = UploadFilter {
            list_prefix: "logs/".into(),
            stream: "my".into(),
        };
        assert!(f.matches("logs/2026/01/01/00/my-1-2026-01-01-00-00-00-uuid.gz"));
        assert!(f.matches("my-12-x"));
        assert!(!f.matches("logs/my-stream-1-2026"));
        assert!(!f.matches("logs/other-1-2026"));
        assert!(!f.matches("logs/my-"));
        assert!(!f.matches("logs/my-1"));
        // The claim marker is never one of the stream's uploads.
        assert_eq!(f.claim_key(), "logs/.sluice/my.claim");
        assert!(!f.matches(&f.claim_key()));
        assert!(!f.matches("logs/.sluice/my-1-x"));
    }

    #[test]
    fn claim_markers_sit_at_the_head_directory_and_above() {
        let filter = |head: &str| UploadFilter {
            list_prefix: head.into(),
            stream: "s".into(),
        };
        assert_eq!(filter("").claim_key(), ".sluice/s.claim");
        assert!(filter("").ancestor_claim_keys().is_empty());
        // A head cut inside a name claims its directory: `data-` lists `data-x/` too.
        assert_eq!(filter("data-").claim_key(), ".sluice/s.claim");
        assert_eq!(filter("logs/").claim_key(), "logs/.sluice/s.claim");
        assert_eq!(filter("logs/x/y").claim_key(), "logs/x/.sluice/s.claim");
        assert_eq!(
            filter("logs/x/y").ancestor_claim_keys(),
            ["logs/.sluice/s.claim", ".sluice/s.claim"]
        );
        assert_eq!(filter("logs/").ancestor_claim_keys(), [".sluice/s.claim"]);
    }

    #[test]
    fn path_style_is_automatic_for_ip_and_localhost_endpoints() {
        assert!(is_ip_or_localhost("http://127.0.0.1:5000"));
        assert!(is_ip_or_localhost("http://localhost:9000/"));
        assert!(is_ip_or_localhost("http://[::1]:9000"));
        assert!(is_ip_or_localhost("https://10.0.0.7"));
        assert!(!is_ip_or_localhost("https://s3.eu-west-1.amazonaws.com"));
        assert!(!is_ip_or_localhost("http://minio.internal:9000"));
    }

    #[test]
    fn error_codes_are_classified_by_whose_fault_and_retriable() {
        assert_eq!(
            classify_code(Some("AccessDenied"), Some(403)),
            (Fault::Config, false)
        );
        assert_eq!(
            classify_code(Some("NoSuchBucket"), Some(404)),
            (Fault::Config, false)
        );
        assert_eq!(
            classify_code(Some("KMS.NotFoundException"), Some(400)),
            (Fault::Config, false)
        );
        assert_eq!(
            classify_code(Some("SlowDown"), Some(503)),
            (Fault::Remote, true)
        );
        assert_eq!(
            classify_code(Some("InternalError"), Some(500)),
            (Fault::Remote, true)
        );
        assert_eq!(classify_code(None, Some(502)), (Fault::Remote, true));
        assert_eq!(classify_code(None, Some(403)), (Fault::Config, false));
    }
}
