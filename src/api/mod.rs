//! The Firehose data-plane HTTP API (AWS JSON 1.1), so unmodified AWS SDKs and
//! the AWS CLI can put records with an endpoint override.
//!
//! Neighbours: requests for a stream are appended to that stream's
//! write-ahead log ([`crate::source::direct_put::Wal`]); a record is
//! acknowledged only after the group commit holding it is fsynced. [`crate::app`]
//! builds the [`ApiState`] and flips it to draining on shutdown.
//!
//! Operations: `PutRecord`, `PutRecordBatch`, `DescribeDeliveryStream`,
//! `ListDeliveryStreams`, and the control plane of [`control`] (create, delete,
//! update, tags), dispatched on `X-Amz-Target: Firehose_20150804.<Op>`.
//! Errors have Firehose's shape: `{"__type": "...", "message": "..."}` plus the
//! `X-Amzn-ErrorType` header. Which error each bad request gets:
//!
//! | request | error |
//! |---|---|
//! | body is not JSON of the operation's shape, bad base64 | `SerializationException` (400) |
//! | required member missing | `ValidationException` (400) |
//! | record > 1,000 KiB, batch > 500 records or > 4 MiB, empty batch | `InvalidArgumentException` (400) |
//! | unknown stream | `ResourceNotFoundException` (400) |
//! | unknown `X-Amz-Target` | `UnknownOperationException` (400) |
//! | log over its cap, disk full, or shutting down | `ServiceUnavailableException` (503) |
//! | body over the size limit | `InvalidArgumentException` (413) |
//! | bodies in flight over their budget | `ServiceUnavailableException` (503) |
//! | body not received within the body timeout | `RequestTimeoutException` (408) |
//! | create: name taken; a stream deleting, creating, or that cannot deliver for a delete | `ResourceInUseException` (400) |
//! | update: `CurrentDeliveryStreamVersionId` not current | `ConcurrentModificationException` (400) |
//! | more than 100 created streams or 50 tags | `LimitExceededException` (400) |
//! | invalid definition or update; a config file's stream changed through the API | `InvalidArgumentException` (400) |
//!
//! The last three, and the connection limits and timeouts, are the
//! [`server`]'s: it reads every body before the router sees the request.
//!
//! With access keys configured ([`auth`]), every operation must carry a valid
//! SigV4 signature of a key allowed to run it on that stream
//! (`MissingAuthenticationToken`, `IncompleteSignature`, `InvalidSignatureException`,
//! `UnrecognizedClientException`, `AccessDeniedException`); without them requests are
//! not checked, which `sluice run` allows only on loopback.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::source::direct_put::{Wal, WalError};
use crate::status::{State as StreamState, StreamStatus};

pub mod auth;
pub mod control;
pub mod server;
pub mod tls;

pub use server::{ApiLimits, LimitArgs, ServerError, serve};

/// Largest decoded record (Firehose: 1,000 KiB).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// Most records per PutRecordBatch.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Most decoded bytes per PutRecordBatch (4 MiB).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Target prefix of every operation.
const TARGET_PREFIX: &str = "Firehose_20150804.";

/// One stream as the API sees it.
#[derive(Debug, Clone)]
pub struct ApiStream {
    /// Where its records go; `None` for a Kinesis-sourced stream, which
    /// (as in Firehose) takes no Direct PUT records.
    pub wal: Option<Wal>,
    /// Its `DeliveryStreamDescription` for `DescribeDeliveryStream`, but its
    /// status, which comes from `status` at each call.
    pub description: Value,
    /// What it is doing now.
    pub status: Arc<StreamStatus>,
    /// Where its definition lives.
    pub origin: control::Origin,
    /// Its tags, by key.
    pub tags: BTreeMap<String, String>,
    /// A delete is draining it (`DeliveryStreamStatus` `DELETING`).
    pub deleting: bool,
}

/// Shared state of the HTTP server: the registry of streams it serves, which
/// `app` changes at runtime (a reload adds, replaces and removes streams).
#[derive(Debug)]
pub struct ApiState {
    streams: std::sync::RwLock<BTreeMap<String, Arc<ApiStream>>>,
    draining: AtomicBool,
    keys: Option<auth::Keys>,
    control: Option<control::Calls>,
}

impl ApiState {
    /// State serving the given streams.
    pub fn new(streams: BTreeMap<String, ApiStream>) -> Self {
        ApiState {
            streams: std::sync::RwLock::new(
                streams.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            ),
            draining: AtomicBool::new(false),
            keys: None,
            control: None,
        }
    }

    /// Control-plane requests go to `calls` (`None`: refused as unavailable).
    pub fn with_control(mut self, calls: Option<control::Calls>) -> Self {
        self.control = calls;
        self
    }

    /// Requests must be signed by one of `keys` (`None`: not checked).
    pub fn with_keys(mut self, keys: Option<auth::Keys>) -> Self {
        self.keys = keys;
        self
    }

    /// From now on, puts are refused with `ServiceUnavailableException`.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Serves `stream` as `name`, in place of any stream of that name.
    pub fn insert(&self, name: &str, stream: ApiStream) {
        self.write().insert(name.to_owned(), Arc::new(stream));
    }

    /// Changes what is served for `name` (tags, deleting), if it is served.
    pub fn modify(&self, name: &str, change: impl FnOnce(&mut ApiStream)) {
        let mut streams = self.write();
        if let Some(stream) = streams.get_mut(name) {
            change(Arc::make_mut(stream));
        }
    }

    /// Stops serving `name`: its requests get `ResourceNotFoundException`.
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// The stream called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ApiStream>> {
        self.read().get(name).cloned()
    }

    /// Every stream, by name.
    pub fn all(&self) -> Vec<(String, Arc<ApiStream>)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ApiStream>>> {
        // Inserts and removes only: a poisoned lock is still consistent.
        self.streams.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<ApiStream>>> {
        self.streams.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The HTTP routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", axum::routing::post(handle))
        .route("/metrics", axum::routing::get(metrics_page))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .with_state(state)
}

/// `GET /metrics`. The gauges that age by themselves (data freshness) or that
/// several stages move (what is held and not delivered, the log's size) are
/// read from each stream when scraped: a stream stuck on a failing S3 shows its
/// data ageing although none of its loops updates anything.
async fn metrics_page(State(state): State<Arc<ApiState>>) -> String {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    for (name, stream) in state.all() {
        let labels = [("stream", name.as_str())];
        let undelivered = stream.status.undelivered();
        let freshness = undelivered.map_or(0.0, |h| (now_ms - h.oldest_ms).max(0) as f64 / 1000.0);
        let held = undelivered.unwrap_or_default();
        crate::metrics::set(
            "sluice_delivery_to_s3_data_freshness_seconds",
            "Age of the oldest record read and not yet delivered; 0 when nothing waits (DeliveryToS3.DataFreshness).",
            &labels,
            freshness,
        );
        crate::metrics::set(
            "sluice_buffered_records",
            "Source records read and not yet delivered (open and closing objects).",
            &labels,
            held.records as f64,
        );
        crate::metrics::set(
            "sluice_buffered_bytes",
            "Source bytes read and not yet delivered (open and closing objects).",
            &labels,
            held.bytes as f64,
        );
        if let Some(wal) = &stream.wal {
            crate::metrics::set(
                "sluice_wal_bytes",
                "Bytes of the write-ahead log not yet released (acknowledged, not all delivered).",
                &labels,
                wal.live_bytes() as f64,
            );
        }
    }
    crate::metrics::render()
}

/// A stream whose loops have not ticked for this long makes `/healthz` fail.
/// Loops tick at least every second while they run or wait by design, so this is
/// a wedged pipeline, not a slow one.
pub const HEALTH_SILENCE: std::time::Duration = std::time::Duration::from_secs(30);

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Liveness: the process answers and every stream's loops tick (a container's
/// liveness probe, Docker's HEALTHCHECK). A failing stream is alive: it retries.
async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    let silent: Vec<Value> = state
        .all()
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.status.since_tick() > HEALTH_SILENCE)
        .map(|s| json!({"stream": s.status.name(), "silent_ms": s.status.since_tick().as_millis() as u64}))
        .collect();
    if silent.is_empty() {
        json_response(StatusCode::OK, json!({"status": "ok"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "wedged", "streams": silent}),
        )
    }
}

/// Readiness: every stream active (a readiness probe). Otherwise 503 with each
/// stream's state and, for failing ones, the reason.
async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let mut ready = !state.draining.load(Ordering::SeqCst);
    let streams: Vec<Value> = state
        .all()
        .into_iter()
        .map(|(_, s)| {
            let current = s.status.state();
            ready &= matches!(current, StreamState::Active);
            let mut entry = json!({
                "stream": s.status.name(),
                "state": current.name(),
                "origin": s.origin.name(),
            });
            if let StreamState::Failing {
                reason,
                fault,
                since_ms,
            } = current
            {
                entry["reason"] = json!(reason);
                entry["fault"] = json!(fault.to_string());
                entry["since"] = json!(
                    jiff::Timestamp::from_millisecond(since_ms)
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                );
            }
            entry
        })
        .collect();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, json!({"ready": ready, "streams": streams}))
}

/// A Firehose error response.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        let status = match kind {
            "ServiceUnavailableException" => StatusCode::SERVICE_UNAVAILABLE,
            "RequestTimeoutException" => StatusCode::REQUEST_TIMEOUT,
            "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }
    /// The same error with another HTTP status (SDKs go by `__type`).
    fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    fn invalid(message: impl Into<String>) -> Self {
        ApiError::new("InvalidArgumentException", message)
    }
    fn serialization(message: impl Into<String>) -> Self {
        ApiError::new("SerializationException", message)
    }
    fn missing(member: &str) -> Self {
        ApiError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.kind, "message": self.message}).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.kind));
        response
    }
}

fn ok(body: Value) -> Response {
    json_text(body.to_string())
}

/// A 200 answer carrying `body`, already JSON.
fn json_text(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

/// Adds the request id every Firehose response carries.
fn with_request_id(mut response: Response) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

async fn handle(
    State(state): State<Arc<ApiState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Signed {
        method: method.as_str(),
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    let response = match dispatch(&state, &request, &headers, body).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(kind = err.kind, message = %err.message, "Request refused.");
            err.into_response()
        }
    };
    with_request_id(response)
}

/// What a signature covers besides the headers and body.
struct Signed<'a> {
    method: &'a str,
    path_and_query: &'a str,
}

/// Refuses a request the configured keys do not allow (see [`auth`]).
fn authorize(
    keys: &auth::Keys,
    request: &Signed<'_>,
    operation: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let refuse = |e: auth::AuthError| {
        tracing::info!(operation, error = %e, code = e.code(), "Request refused: not authorized.");
        let status = match e {
            auth::AuthError::Missing => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(e.code(), e.to_string()).with_status(status)
    };
    let caller = keys
        .verify(
            request.method,
            request.path_and_query,
            headers,
            body,
            std::time::SystemTime::now(),
        )
        .map_err(refuse)?;
    // Only a key limited to some streams needs the name (a second scan of the body).
    let stream = if caller.stream_scoped() {
        #[derive(Deserialize)]
        struct Named {
            #[serde(rename = "DeliveryStreamName")]
            name: Option<String>,
        }
        serde_json::from_slice::<Named>(body)
            .ok()
            .and_then(|n| n.name)
    } else {
        None
    };
    caller.allows(operation, stream.as_deref()).map_err(refuse)
}

async fn dispatch(
    state: &ApiState,
    request: &Signed<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or("");
    // The server has already read the whole body within its size limit,
    // budget and timeout; this only takes it out of its wrapper.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::invalid(format!("request body: {e}")))?;
    if let Some(keys) = &state.keys {
        authorize(keys, request, operation, headers, &body)?;
    }
    match operation {
        "PutRecord" => put_record(state, &body).await,
        "PutRecordBatch" => put_record_batch(state, &body).await,
        "DescribeDeliveryStream" => describe(state, &body),
        "ListDeliveryStreams" => list(state, &body),
        "CreateDeliveryStream" => control::create(state, &body).await.map(ok),
        "DeleteDeliveryStream" => control::delete(state, &body).await.map(ok),
        "UpdateDestination" => control::update(state, &body).await.map(ok),
        "TagDeliveryStream" => control::tag(state, &body).await.map(ok),
        "UntagDeliveryStream" => control::untag(state, &body).await.map(ok),
        "ListTagsForDeliveryStream" => control::list_tags(state, &body).map(ok),
        _ => Err(ApiError::new(
            "UnknownOperationException",
            format!("unknown operation `{target}`"),
        )),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a Bytes) -> Result<T, ApiError> {
    // An empty body is an empty object for AWS JSON protocols.
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::serialization(format!("request body: {e}")))
}

/// A record of a request. `Data` borrows from the body unless JSON escapes
/// forced a copy: base64 needs none, so nearly every record is read in place.
#[derive(Deserialize)]
struct RecordIn<'a> {
    #[serde(rename = "Data", borrow)]
    data: Option<Base64Text<'a>>,
}

/// A JSON string read as the bytes between its quotes (escapes undone), not
/// as `str`: decoding base64 refuses every byte outside its alphabet, so
/// checking UTF-8 first (serde's `str` does) would only repeat that work.
struct Base64Text<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Base64Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Base64Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Base64Text(Cow::Owned(v.to_vec())))
            }
        }
        // serde_json answers `deserialize_bytes` on a string with its raw
        // bytes (`visit_borrowed_bytes` when no escape needed a copy, else
        // `visit_bytes`), never with `visit_str`.
        deserializer.deserialize_bytes(Text)
    }
}

#[derive(Deserialize)]
struct PutRecordIn<'a> {
    #[serde(rename = "DeliveryStreamName")]
    stream: Option<String>,
    #[serde(rename = "Record", borrow)]
    record: Option<RecordIn<'a>>,
}

#[derive(Deserialize)]
struct PutRecordBatchIn<'a> {
    #[serde(rename = "DeliveryStreamName")]
    stream: Option<String>,
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<RecordIn<'a>>>,
}

fn stream(state: &ApiState, name: Option<&str>) -> Result<Arc<ApiStream>, ApiError> {
    let name = name.ok_or_else(|| ApiError::missing("deliveryStreamName"))?;
    state
        .get(name)
        .ok_or_else(|| control::ControlError::not_found(name).into())
}

/// Standard base64 with padding, decoded with the widest SIMD instructions
/// the CPU has (detected once): decoding was 5% of the daemon's CPU under
/// PutRecordBatch load with the scalar engine.
static BASE64: std::sync::LazyLock<base64::engine::simd::Simd> = std::sync::LazyLock::new(|| {
    base64::engine::simd::Simd::standard(base64::engine::general_purpose::PAD)
});

/// Decodes a record's base64 `Data`, appending the bytes to `into` (a batch's
/// records share one buffer: one allocation per request, not one per record).
/// Returns how many bytes it appended. `member` names the record in an error
/// (built only then: this runs for every record).
fn decode_into(
    record: &RecordIn<'_>,
    member: impl Fn() -> String,
    into: &mut Vec<u8>,
) -> Result<usize, ApiError> {
    let data = record
        .data
        .as_ref()
        .ok_or_else(|| ApiError::missing(&format!("{}.data", member())))?;
    let start = into.len();
    BASE64.decode_vec(&*data.0, into).map_err(|e| {
        ApiError::serialization(format!("{}.Data is not valid base64: {e}", member()))
    })?;
    let len = into.len() - start;
    if len > MAX_RECORD_BYTES {
        return Err(ApiError::invalid(format!(
            "{}.Data is {len} bytes; a record may be at most {MAX_RECORD_BYTES} bytes (1,000 KiB) before base64",
            member()
        )));
    }
    Ok(len)
}

/// Appends a record's id (its WAL position as 32 hex digits) to `out`.
fn push_record_id(out: &mut String, pos: crate::record::WalPosition) {
    // By hand, not `write!(out, "{:016x}")`: the formatter pushes each padding
    // zero with its own `write_char`, and this runs for every record (2.7% of
    // the daemon's CPU under PutRecordBatch load, measured with perf).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        let word = if i < 16 { pos.segment } else { pos.offset };
        *digit = HEX[(word >> ((15 - i % 16) * 4)) as usize & 0xf];
    }
    out.push_str(std::str::from_utf8(&id).expect("hex digits are ASCII"));
}

fn record_id(pos: crate::record::WalPosition) -> String {
    let mut id = String::with_capacity(32);
    push_record_id(&mut id, pos);
    id
}

/// PutRecordBatch's answer, written directly: it is on every batch's path, and
/// a `Value` tree would cost a map per record.
fn batch_response(ids: &[crate::record::WalPosition]) -> String {
    const HEAD: &str = r#"{"Encrypted":false,"FailedPutCount":0,"RequestResponses":["#;
    let mut out = String::with_capacity(HEAD.len() + 2 + ids.len() * 48);
    out.push_str(HEAD);
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"RecordId":""#);
        push_record_id(&mut out, id);
        out.push_str(r#""}"#);
    }
    out.push_str("]}");
    out
}

async fn append(
    state: &ApiState,
    stream: &ApiStream,
    records: Vec<Bytes>,
) -> Result<Vec<crate::record::WalPosition>, ApiError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            "ServiceUnavailableException",
            "sluice is shutting down; retry later",
        ));
    }
    let Some(wal) = &stream.wal else {
        return Err(ApiError::invalid(
            "This operation is not permitted on KinesisStreamAsSource type.",
        ));
    };
    let arrival_ms = jiff::Timestamp::now().as_millisecond();
    let (count, bytes) = (
        records.len() as u64,
        records.iter().map(|r| r.len() as u64).sum::<u64>(),
    );
    let stream_name = stream.description["DeliveryStreamName"]
        .as_str()
        .unwrap_or("");
    match wal.append(records, arrival_ms).await {
        Ok(ids) => {
            crate::metrics::INCOMING_RECORDS.inc(stream_name, count);
            crate::metrics::INCOMING_BYTES.inc(stream_name, bytes);
            crate::metrics::INCOMING_PUT_REQUESTS.inc(stream_name, 1);
            Ok(ids)
        }
        Err(e @ (WalError::Full { .. } | WalError::NoSpace(_) | WalError::Closed)) => {
            crate::metrics::THROTTLED_RECORDS.inc(stream_name, count);
            Err(ApiError::new("ServiceUnavailableException", e.to_string()))
        }
        Err(e) => {
            tracing::error!(error = %e, "Write-ahead log append failed.");
            Err(ApiError::new("InternalFailure", e.to_string()))
        }
    }
}

/// Decodes a request body as `operation`'s input with every check that needs
/// no stream (shape, base64, Firehose's limits) and returns how many records
/// it carries. The handlers run the same code; this entry exists for the
/// fuzz target (`fuzz/fuzz_targets/api_request.rs`).
///
/// # Errors
/// The message of the error a client would get.
pub fn decode_request(operation: &str, body: &Bytes) -> Result<usize, String> {
    let message = |e: ApiError| format!("{}: {}", e.kind, e.message);
    match operation {
        "PutRecord" => decode_put_record(body).map(|_| 1).map_err(message),
        "PutRecordBatch" => decode_put_record_batch(body)
            .map(|(_, records)| records.len())
            .map_err(message),
        "DescribeDeliveryStream" => parse::<DescribeIn>(body).map(|_| 0).map_err(message),
        "ListDeliveryStreams" => parse::<ListIn>(body).map(|_| 0).map_err(message),
        _ => Err(format!("UnknownOperationException: {operation}")),
    }
}

fn decode_put_record(body: &Bytes) -> Result<(Option<String>, Bytes), ApiError> {
    let input: PutRecordIn<'_> = parse(body)?;
    let record = input.record.ok_or_else(|| ApiError::missing("record"))?;
    let mut data = Vec::new();
    decode_into(&record, || "record".to_owned(), &mut data)?;
    Ok((input.stream, Bytes::from(data)))
}

async fn put_record(state: &ApiState, body: &Bytes) -> Result<Response, ApiError> {
    let (name, data) = decode_put_record(body)?;
    let stream = stream(state, name.as_deref())?;
    let ids = append(state, &stream, vec![data]).await?;
    Ok(ok(
        json!({"RecordId": record_id(ids[0]), "Encrypted": false}),
    ))
}

async fn put_record_batch(state: &ApiState, body: &Bytes) -> Result<Response, ApiError> {
    let (name, data) = decode_put_record_batch(body)?;
    let stream = stream(state, name.as_deref())?;
    let ids = append(state, &stream, data).await?;
    Ok(json_text(batch_response(&ids)))
}

/// A batch's records, each a slice of one buffer holding all their bytes.
fn decode_put_record_batch(body: &Bytes) -> Result<(Option<String>, Vec<Bytes>), ApiError> {
    let input: PutRecordBatchIn<'_> = parse(body)?;
    if input.stream.is_none() {
        return Err(ApiError::missing("deliveryStreamName"));
    }
    let records = input.records.ok_or_else(|| ApiError::missing("records"))?;
    if records.is_empty() || records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::invalid(format!(
            "Records has {} entries; PutRecordBatch takes 1 to {MAX_BATCH_RECORDS} records",
            records.len()
        )));
    }
    // base64 decodes to at most 3/4 of its length: one allocation for all.
    let estimate = records
        .iter()
        .map(|r| r.data.as_ref().map_or(0, |d| d.0.len() / 4 * 3 + 3))
        .sum();
    let mut all = Vec::with_capacity(estimate);
    let mut lens = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        lens.push(decode_into(
            record,
            || format!("records.{}", i + 1),
            &mut all,
        )?);
    }
    if all.len() > MAX_BATCH_BYTES {
        return Err(ApiError::invalid(format!(
            "PutRecordBatch carries {} bytes of data; the limit is {MAX_BATCH_BYTES} bytes (4 MiB)",
            all.len()
        )));
    }
    let all = Bytes::from(all);
    let mut start = 0;
    let data = lens
        .into_iter()
        .map(|len| {
            start += len;
            all.slice(start - len..start)
        })
        .collect();
    Ok((input.stream, data))
}

#[derive(Deserialize)]
struct DescribeIn {
    #[serde(rename = "DeliveryStreamName")]
    stream: Option<String>,
    #[serde(rename = "Limit")]
    _limit: Option<i64>,
    #[serde(rename = "ExclusiveStartDestinationId")]
    _start: Option<String>,
}

fn describe(state: &ApiState, body: &Bytes) -> Result<Response, ApiError> {
    let input: DescribeIn = parse(body)?;
    let stream = stream(state, input.stream.as_deref())?;
    let mut description = stream.description.clone();
    // Firehose keeps a stream ACTIVE while its deliveries fail (they show in
    // CloudWatch); sluice says why in FailureDescription, Firehose's shape for it.
    let (status, failure) = match stream.status.state() {
        _ if stream.deleting => ("DELETING", None),
        StreamState::Starting => ("CREATING", None),
        StreamState::Active | StreamState::Draining => ("ACTIVE", None),
        StreamState::Failing { reason, .. } => ("ACTIVE", Some(reason)),
    };
    description["DeliveryStreamStatus"] = json!(status);
    if let Some(details) = failure {
        description["FailureDescription"] = json!({"Type": "UNKNOWN_ERROR", "Details": details});
    }
    Ok(ok(json!({"DeliveryStreamDescription": description})))
}

#[derive(Deserialize)]
struct ListIn {
    #[serde(rename = "Limit")]
    limit: Option<i64>,
    #[serde(rename = "DeliveryStreamType")]
    kind: Option<String>,
    #[serde(rename = "ExclusiveStartDeliveryStreamName")]
    start: Option<String>,
}

fn list(state: &ApiState, body: &Bytes) -> Result<Response, ApiError> {
    let input: ListIn = parse(body)?;
    // Firehose lists 10 at a time unless told otherwise.
    let limit = input.limit.unwrap_or(10);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
            ),
        ));
    }
    let limit = limit as usize;
    let all = state.all();
    let names: Vec<&String> = all
        .iter()
        .filter(|(name, _)| input.start.as_ref().is_none_or(|start| name > start))
        .filter(|(_, s)| {
            input
                .kind
                .as_ref()
                .is_none_or(|k| s.description["DeliveryStreamType"] == **k)
        })
        .map(|(name, _)| name)
        .collect();
    let more = names.len() > limit;
    let page: Vec<&String> = names.into_iter().take(limit).collect();
    Ok(ok(
        json!({"DeliveryStreamNames": page, "HasMoreDeliveryStreams": more}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::WalPosition;

    fn body(value: Value) -> Bytes {
        Bytes::from(value.to_string())
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn a_batch_decodes_to_its_records_in_order() {
        let records: Vec<Vec<u8>> = vec![
            b"one".to_vec(),
            Vec::new(),
            vec![0, 255, 10],
            b"four!".to_vec(),
        ];
        let input = json!({
            "DeliveryStreamName": "s",
            "Records": records.iter().map(|r| json!({"Data": b64(r)})).collect::<Vec<_>>(),
        });
        let (name, got) = decode_put_record_batch(&body(input)).unwrap();
        assert_eq!(name.as_deref(), Some("s"));
        assert_eq!(got, records);
    }

    /// A JSON escape in `Data` (`\/` is legal JSON for `/`) makes serde copy
    /// the string instead of borrowing it; the record is the same.
    #[test]
    fn escaped_base64_decodes_like_plain() {
        let data = b64(&[0xff, 0xfe, 0xfd]); // "//79"
        assert!(data.contains('/'));
        let raw = format!(
            r#"{{"DeliveryStreamName":"s","Records":[{{"Data":"{}"}}]}}"#,
            data.replace('/', "\\/")
        );
        let (_, got) = decode_put_record_batch(&Bytes::from(raw)).unwrap();
        assert_eq!(got, vec![vec![0xff, 0xfe, 0xfd]]);
    }

    /// Asserts that the batch `input` is refused with error `kind` and a
    /// message containing `says`.
    fn refused(input: Value, kind: &str, says: &str) {
        let e = decode_put_record_batch(&body(input)).unwrap_err();
        assert_eq!(e.kind, kind, "{}", e.message);
        assert!(e.message.contains(says), "{}", e.message);
    }

    #[test]
    fn a_bad_record_is_named_by_its_position() {
        refused(
            json!({"DeliveryStreamName": "s", "Records": [{"Data": b64(b"ok")}, {"Data": "@@@"}]}),
            "SerializationException",
            "records.2.Data is not valid base64",
        );
        refused(
            json!({"DeliveryStreamName": "s", "Records": [{"Data": b64(b"ok")}, {}]}),
            "ValidationException",
            "'records.2.data'",
        );
        let big = vec![7u8; MAX_RECORD_BYTES + 1];
        refused(
            json!({"DeliveryStreamName": "s", "Records": [{"Data": b64(&big)}]}),
            "InvalidArgumentException",
            "records.1.Data is 1024001 bytes",
        );
    }

    /// `Data` is read as the string's bytes without a UTF-8 check: whatever is
    /// not base64 (letters beyond its alphabet, escapes of them) is still
    /// refused by the decoder (which, SIMD or not, wants canonical padding and
    /// trailing bits), and what is not a string by the reader.
    #[test]
    fn data_must_be_a_base64_string() {
        for data in [json!("aGk=é"), json!("aG\tk="), json!("aGl="), json!("aGk")] {
            refused(
                json!({"DeliveryStreamName": "s", "Records": [{"Data": data}]}),
                "SerializationException",
                "records.1.Data is not valid base64",
            );
        }
        for data in [json!(42), json!([1, 2]), json!({"a": 1})] {
            refused(
                json!({"DeliveryStreamName": "s", "Records": [{"Data": data}]}),
                "SerializationException",
                "expected a base64 string",
            );
        }
    }

    #[test]
    fn the_batch_limits_hold() {
        let one = json!({"Data": b64(b"x")});
        refused(
            json!({"DeliveryStreamName": "s", "Records": vec![one; MAX_BATCH_RECORDS + 1]}),
            "InvalidArgumentException",
            "Records has 501 entries",
        );
        refused(
            json!({"DeliveryStreamName": "s", "Records": []}),
            "InvalidArgumentException",
            "Records has 0 entries",
        );
        // Five records of 1,000,000 bytes: each within its limit, 5 MB in all.
        let record = json!({"Data": b64(&vec![1u8; 1_000_000])});
        refused(
            json!({"DeliveryStreamName": "s", "Records": vec![record; 5]}),
            "InvalidArgumentException",
            "carries 5000000 bytes",
        );
        refused(
            json!({"Records": [{"Data": b64(b"x")}]}),
            "ValidationException",
            "'deliveryStreamName'",
        );
    }

    /// The hand-written answer is JSON of PutRecordBatch's output shape, and
    /// each id is the record's WAL position in 32 hex digits.
    #[test]
    fn the_batch_answer_is_firehose_json() {
        let ids = [
            WalPosition {
                segment: 0,
                offset: 0,
            },
            WalPosition {
                segment: 1,
                offset: 0xdead_beef,
            },
            WalPosition {
                segment: u64::MAX,
                offset: 0x0123_4567_89ab_cdef,
            },
        ];
        let answer: Value = serde_json::from_str(&batch_response(&ids)).unwrap();
        assert_eq!(
            answer,
            json!({
                "Encrypted": false,
                "FailedPutCount": 0,
                "RequestResponses": [
                    {"RecordId": "00000000000000000000000000000000"},
                    {"RecordId": "000000000000000100000000deadbeef"},
                    {"RecordId": "ffffffffffffffff0123456789abcdef"},
                ],
            })
        );
        assert_eq!(record_id(ids[1]), "000000000000000100000000deadbeef");
    }
}
