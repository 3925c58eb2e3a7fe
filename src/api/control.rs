//! The Firehose control plane: `CreateDeliveryStream`, `DeleteDeliveryStream`,
//! `UpdateDestination`, `TagDeliveryStream`, `UntagDeliveryStream` and
//! `ListTagsForDeliveryStream` (`DescribeDeliveryStream` and `ListDeliveryStreams`
//! read the registry in [`super`]).
//!
//! Neighbours: this module decodes and checks a request's shape (names, tags,
//! version ids, Firehose's limits on them), then hands it as a [`Request`] to the
//! stream supervisor in `app`, which owns the running streams, validates stream
//! definitions with the config parser (the same messages as `sluice validate`),
//! persists API-created streams under the state directory, and answers with a
//! [`ControlError`] or the operation's output. Requests are applied one at a time
//! in arrival order; the data plane and `Describe`/`List` do not wait for them.
//!
//! Streams from config files are reported with their origin and refused for
//! update, delete and tagging: the file is their definition, and a change made
//! here would be undone by the next reload.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{ApiError, ApiState, parse, stream};
use crate::error::{Classify, Fault};
use axum::body::Bytes;

/// Most tags a stream may carry (and a `TagDeliveryStream` may set).
pub const MAX_TAGS: usize = 50;
/// The one destination id of every stream (sluice streams have one destination).
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// Where a stream's definition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `--config` file: changed by editing it and reloading.
    ConfigFile,
    /// `CreateDeliveryStream`: kept under the state directory.
    Api,
}

impl Origin {
    /// How `/readyz` names it.
    pub fn name(self) -> &'static str {
        match self {
            Origin::ConfigFile => "config-file",
            Origin::Api => "api",
        }
    }
}

/// A control-plane change for the supervisor.
#[derive(Debug)]
pub enum Request {
    /// Create a stream from a whole `CreateDeliveryStreamInput` document.
    Create {
        /// `DeliveryStreamName`.
        name: String,
        /// The request body, parsed.
        document: Value,
        /// The request body, as sent (error positions refer to it).
        text: String,
        /// Its checked `Tags`.
        tags: BTreeMap<String, String>,
    },
    /// Drain, deliver and remove a stream.
    Delete {
        /// `DeliveryStreamName`.
        name: String,
        /// `AllowForceDelete`: remove it even when what it holds cannot be
        /// delivered (those records are then dropped).
        force: bool,
    },
    /// Merge an `ExtendedS3DestinationUpdate` into a stream's definition.
    Update {
        /// `DeliveryStreamName`.
        name: String,
        /// `CurrentDeliveryStreamVersionId`: the update applies only while this is current.
        current_version: u32,
        /// The `ExtendedS3DestinationUpdate` object.
        update: serde_json::Map<String, Value>,
    },
    /// Add or replace tags.
    Tag {
        /// `DeliveryStreamName`.
        name: String,
        /// Checked tags.
        tags: BTreeMap<String, String>,
    },
    /// Remove tags by key.
    Untag {
        /// `DeliveryStreamName`.
        name: String,
        /// Keys to remove (absent ones are ignored, as in Firehose).
        keys: Vec<String>,
    },
}

/// A request and where its answer goes.
#[derive(Debug)]
pub struct Call {
    /// What to do.
    pub request: Request,
    /// The operation's output, or why it was refused.
    pub reply: oneshot::Sender<Result<Value, ControlError>>,
}

/// The sending side the API holds; the supervisor receives.
pub type Calls = mpsc::Sender<Call>;

/// Why a control-plane request was refused, as Firehose's error types.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// The name is taken, or the stream is busy (creating, deleting) or
    /// defined by a config file.
    #[error("{0}")]
    InUse(String),
    /// No such stream.
    #[error("{0}")]
    NotFound(String),
    /// The definition or a member is invalid (the message says which and why).
    #[error("{0}")]
    Invalid(String),
    /// Too many streams or tags.
    #[error("{0}")]
    Limit(String),
    /// `CurrentDeliveryStreamVersionId` is not the current version.
    #[error("{0}")]
    Concurrent(String),
    /// sluice could not do it (state directory, a drain that failed); the
    /// stream is as it was; retry.
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// Firehose's answer for a stream this instance does not serve.
    pub fn not_found(name: &str) -> Self {
        ControlError::NotFound(format!(
            "Firehose {name} under this sluice instance not found."
        ))
    }

    /// Firehose's `__type` for it.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::InUse(_) => "ResourceInUseException",
            ControlError::NotFound(_) => "ResourceNotFoundException",
            ControlError::Invalid(_) => "InvalidArgumentException",
            ControlError::Limit(_) => "LimitExceededException",
            ControlError::Concurrent(_) => "ConcurrentModificationException",
            ControlError::Internal(_) => "ServiceUnavailableException",
        }
    }
}

impl Classify for ControlError {
    fn is_retriable(&self) -> bool {
        // A stream busy creating or deleting is worth retrying too.
        matches!(self, ControlError::Internal(_) | ControlError::InUse(_))
    }
    fn fault(&self) -> Fault {
        // The caller's request is what is wrong, but the internal case: the
        // machine (state directory, a drain that failed).
        match self {
            ControlError::Internal(_) => Fault::Remote,
            _ => Fault::Config,
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        // The HTTP status follows whose fault it is: 5xx only for sluice's own.
        let error = ApiError::new(e.code(), e.to_string());
        if e.fault() == Fault::Config {
            error.with_status(axum::http::StatusCode::BAD_REQUEST)
        } else {
            error
        }
    }
}

/// Checks a stream name by the rule stream definitions follow (Firehose's
/// pattern, and not a name of the state directory's own), with the SDKs' error.
fn check_name(name: Option<String>) -> Result<String, ApiError> {
    let name = name.ok_or_else(|| ApiError::missing("deliveryStreamName"))?;
    crate::config::check_stream_name(&name).map_err(|why| {
        ApiError::new(
            "ValidationException",
            format!("1 validation error detected: Value '{name}' at 'deliveryStreamName' failed to satisfy constraint: {why}"),
        )
    })?;
    Ok(name)
}

/// Firehose's tag key rule: 1-128 characters, no `aws:` prefix, letters,
/// spaces, digits and `_.:/=+-@%`.
fn check_tag_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars == 0 || chars > 128 {
        return Err(format!(
            "tag key `{key}` has {chars} characters; it must have 1 to 128"
        ));
    }
    if key.starts_with("aws:") {
        return Err(format!(
            "tag key `{key}` starts with `aws:`, which is reserved"
        ));
    }
    check_tag_chars(key).map_err(|c| format!("tag key `{key}` has the character {c:?}, which tags may not hold (letters, spaces, digits and _.:/=+-@% only)"))
}

fn check_tag_value(key: &str, value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > 256 {
        return Err(format!(
            "the value of tag `{key}` has {chars} characters; at most 256"
        ));
    }
    check_tag_chars(value).map_err(|c| format!("the value of tag `{key}` has the character {c:?}, which tags may not hold (letters, spaces, digits and _.:/=+-@% only)"))
}

fn check_tag_chars(text: &str) -> Result<(), char> {
    match text
        .chars()
        .find(|&c| !(c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@%".contains(c)))
    {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
struct TagIn {
    #[serde(rename = "Key")]
    key: Option<String>,
    #[serde(rename = "Value")]
    value: Option<String>,
}

/// Checks a `Tags` list: 1 to [`MAX_TAGS`] valid tags with distinct keys.
fn check_tags(tags: Option<Vec<TagIn>>) -> Result<BTreeMap<String, String>, ApiError> {
    let tags = tags.ok_or_else(|| ApiError::missing("tags"))?;
    if tags.is_empty() || tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "Tags has {} entries; it takes 1 to {MAX_TAGS}",
            tags.len()
        )));
    }
    let mut checked = BTreeMap::new();
    for (i, tag) in tags.into_iter().enumerate() {
        let key = tag
            .key
            .ok_or_else(|| ApiError::missing(&format!("tags.{}.member.key", i + 1)))?;
        let value = tag.value.unwrap_or_default();
        check_tag_key(&key).map_err(ApiError::invalid)?;
        check_tag_value(&key, &value).map_err(ApiError::invalid)?;
        if checked.insert(key.clone(), value).is_some() {
            return Err(ApiError::invalid(format!(
                "tag key `{key}` appears twice in Tags"
            )));
        }
    }
    Ok(checked)
}

/// Sends `request` to the supervisor and waits for its answer.
async fn call(state: &ApiState, request: Request) -> Result<Value, ApiError> {
    let Some(calls) = &state.control else {
        return Err(ApiError::new(
            "ServiceUnavailableException",
            "this sluice instance has no control plane",
        ));
    };
    let (reply, answer) = oneshot::channel();
    calls.send(Call { request, reply }).await.map_err(|_| {
        ApiError::new(
            "ServiceUnavailableException",
            "sluice is shutting down; retry later",
        )
    })?;
    let output = answer.await.map_err(|_| {
        ApiError::new(
            "ServiceUnavailableException",
            "sluice stopped before the request was done; retry",
        )
    })?;
    Ok(output?)
}

#[derive(Deserialize)]
struct CreateIn {
    #[serde(rename = "DeliveryStreamName")]
    name: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<TagIn>>,
}

/// `CreateDeliveryStream`: the body is the stream's whole definition.
pub(super) async fn create(state: &ApiState, body: &Bytes) -> Result<Value, ApiError> {
    let document: Value = parse(body)?;
    if !document.is_object() {
        return Err(ApiError::serialization(
            "request body: expected a JSON object",
        ));
    }
    let input: CreateIn = serde_json::from_value(document.clone())
        .map_err(|e| ApiError::serialization(format!("request body: {e}")))?;
    let name = check_name(input.name)?;
    let tags = match input.tags {
        None => BTreeMap::new(),
        tags => check_tags(tags)?,
    };
    let text = String::from_utf8_lossy(body).into_owned();
    call(
        state,
        Request::Create {
            name,
            document,
            text,
            tags,
        },
    )
    .await
}

#[derive(Deserialize)]
struct DeleteIn {
    #[serde(rename = "DeliveryStreamName")]
    name: Option<String>,
    #[serde(rename = "AllowForceDelete")]
    force: Option<bool>,
}

/// `DeleteDeliveryStream`: answers once the stream delivered what it held and is gone.
pub(super) async fn delete(state: &ApiState, body: &Bytes) -> Result<Value, ApiError> {
    let input: DeleteIn = parse(body)?;
    let name = check_name(input.name)?;
    call(
        state,
        Request::Delete {
            name,
            force: input.force.unwrap_or(false),
        },
    )
    .await
}

#[derive(Deserialize)]
struct UpdateIn {
    #[serde(rename = "DeliveryStreamName")]
    name: Option<String>,
    #[serde(rename = "CurrentDeliveryStreamVersionId")]
    version: Option<String>,
    #[serde(rename = "DestinationId")]
    destination: Option<String>,
    #[serde(rename = "ExtendedS3DestinationUpdate")]
    extended_s3: Option<serde_json::Map<String, Value>>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// `UpdateDestination`, with `CurrentDeliveryStreamVersionId` as an optimistic lock.
pub(super) async fn update(state: &ApiState, body: &Bytes) -> Result<Value, ApiError> {
    let input: UpdateIn = parse(body)?;
    let name = check_name(input.name)?;
    let version = input
        .version
        .ok_or_else(|| ApiError::missing("currentDeliveryStreamVersionId"))?;
    let current_version = version.parse::<u32>().map_err(|_| {
        ApiError::new(
            "ValidationException",
            format!("1 validation error detected: Value '{version}' at 'currentDeliveryStreamVersionId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9]+"),
        )
    })?;
    let destination = input
        .destination
        .ok_or_else(|| ApiError::missing("destinationId"))?;
    if destination != DESTINATION_ID {
        return Err(ApiError::invalid(format!(
            "DestinationId `{destination}` is not a destination of {name}; its only destination is {DESTINATION_ID}"
        )));
    }
    if let Some(kind) = input.other.keys().next() {
        return Err(ApiError::invalid(format!(
            "{kind}: sluice streams have an Extended S3 destination; update it with ExtendedS3DestinationUpdate"
        )));
    }
    let update = input.extended_s3.ok_or_else(|| {
        ApiError::invalid(
            "ExtendedS3DestinationUpdate is required: it is the destination sluice streams have",
        )
    })?;
    call(
        state,
        Request::Update {
            name,
            current_version,
            update,
        },
    )
    .await
}

#[derive(Deserialize)]
struct TagStreamIn {
    #[serde(rename = "DeliveryStreamName")]
    name: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<TagIn>>,
}

/// `TagDeliveryStream`.
pub(super) async fn tag(state: &ApiState, body: &Bytes) -> Result<Value, ApiError> {
    let input: TagStreamIn = parse(body)?;
    let name = check_name(input.name)?;
    let tags = check_tags(input.tags)?;
    call(state, Request::Tag { name, tags }).await
}

#[derive(Deserialize)]
struct UntagIn {
    #[serde(rename = "DeliveryStreamName")]
    name: Option<String>,
    #[serde(rename = "TagKeys")]
    keys: Option<Vec<String>>,
}

/// `UntagDeliveryStream`.
pub(super) async fn untag(state: &ApiState, body: &Bytes) -> Result<Value, ApiError> {
    let input: UntagIn = parse(body)?;
    let name = check_name(input.name)?;
    let keys = input.keys.ok_or_else(|| ApiError::missing("tagKeys"))?;
    if keys.is_empty() || keys.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "TagKeys has {} entries; it takes 1 to {MAX_TAGS}",
            keys.len()
        )));
    }
    for key in &keys {
        check_tag_key(key).map_err(ApiError::invalid)?;
    }
    call(state, Request::Untag { name, keys }).await
}

#[derive(Deserialize)]
struct ListTagsIn {
    #[serde(rename = "DeliveryStreamName")]
    name: Option<String>,
    #[serde(rename = "ExclusiveStartTagKey")]
    start: Option<String>,
    #[serde(rename = "Limit")]
    limit: Option<i64>,
}

/// `ListTagsForDeliveryStream`: by key, from `ExclusiveStartTagKey`, `Limit` (1-50) at a time.
pub(super) fn list_tags(state: &ApiState, body: &Bytes) -> Result<Value, ApiError> {
    let input: ListTagsIn = parse(body)?;
    let limit = input.limit.unwrap_or(MAX_TAGS as i64);
    if !(1..=MAX_TAGS as i64).contains(&limit) {
        return Err(ApiError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {MAX_TAGS}"
            ),
        ));
    }
    let stream = stream(state, input.name.as_deref())?;
    let after: Vec<(&String, &String)> = stream
        .tags
        .iter()
        .filter(|(k, _)| input.start.as_ref().is_none_or(|s| *k > s))
        .collect();
    let more = after.len() > limit as usize;
    let page: Vec<Value> = after
        .into_iter()
        .take(limit as usize)
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"Tags": page, "HasMoreTags": more}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules_are_firehose_s() {
        assert!(check_tag_key("team").is_ok());
        assert!(check_tag_key("cost-center/eu:1 @x=y+z%").is_ok());
        assert!(check_tag_key("Größe").is_ok(), "letters of any script");
        assert!(check_tag_key("").unwrap_err().contains("1 to 128"));
        assert!(check_tag_key(&"k".repeat(129)).unwrap_err().contains("129"));
        assert!(
            check_tag_key("aws:created")
                .unwrap_err()
                .contains("reserved")
        );
        assert!(check_tag_key("a#b").unwrap_err().contains("'#'"));
        assert!(check_tag_value("k", "").is_ok());
        assert!(
            check_tag_value("k", &"v".repeat(257))
                .unwrap_err()
                .contains("257")
        );
        assert!(
            check_tag_value("k", "a\"b")
                .unwrap_err()
                .contains("tag `k`")
        );
    }

    #[test]
    fn tag_lists_are_checked_whole() {
        let tags = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| TagIn {
                        key: Some((*k).to_owned()),
                        value: Some((*v).to_owned()),
                    })
                    .collect(),
            )
        };
        let ok = check_tags(tags(&[("b", "2"), ("a", "1")])).unwrap();
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(check_tags(None).unwrap_err().kind, "ValidationException");
        assert!(
            check_tags(tags(&[]))
                .unwrap_err()
                .message
                .contains("1 to 50")
        );
        let many: Vec<(String, String)> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(check_tags(tags(&many)).unwrap_err().message.contains("51"));
        assert!(
            check_tags(tags(&[("a", "1"), ("a", "2")]))
                .unwrap_err()
                .message
                .contains("twice")
        );
    }

    #[test]
    fn names_are_checked_before_the_supervisor_sees_them() {
        assert_eq!(check_name(Some("a.b-c_9".into())).unwrap(), "a.b-c_9");
        for bad in ["", "a/b", "a b", &"x".repeat(65), "..", "api-streams"] {
            let e = check_name(Some(bad.to_owned())).unwrap_err();
            assert_eq!(e.kind, "ValidationException", "{bad}");
        }
        assert_eq!(check_name(None).unwrap_err().kind, "ValidationException");
    }

    #[test]
    fn errors_map_to_firehose_types_and_statuses() {
        let e = ApiError::from(ControlError::Concurrent("stale".into()));
        assert_eq!(
            (e.kind, e.status.as_u16()),
            ("ConcurrentModificationException", 400)
        );
        let e = ApiError::from(ControlError::Internal("disk".into()));
        assert_eq!(
            (e.kind, e.status.as_u16()),
            ("ServiceUnavailableException", 503)
        );
        let e = ApiError::from(ControlError::InUse("busy".into()));
        assert_eq!((e.kind, e.status.as_u16()), ("ResourceInUseException", 400));
    }
}
