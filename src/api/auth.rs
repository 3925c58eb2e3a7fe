//! Who may call the API: AWS Signature Version 4 verification of requests,
//! with per-key permissions.
//!
//! Role: [`Keys`] holds the access keys an operator configured (`--auth-file`);
//! the API's `dispatch` asks [`Keys::verify`] for every Firehose operation
//! before it reads the body's fields, then [`Caller::allows`] for the operation
//! and stream. `/healthz`, `/readyz` and `/metrics` are not signed (probes and
//! scrapers do not sign). [`listen_rule`] is what `sluice run` checks at start:
//! off loopback, verification is required unless the operator opted out.
//!
//! The canonical request is aws-sigv4's, the same code the SDKs sign with: the
//! request is signed again with the secret of the key it names, over exactly the
//! headers it says it signed, with the date and scope it carries, and the two
//! signatures are compared in constant time. A request whose body was changed
//! after signing (a replay with another body) fails, since the body's hash is part
//! of what is signed; one dated more than 15 minutes from now either way has
//! expired, as at AWS.

use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use serde::Deserialize;

use crate::error::{Classify, Fault};

/// How far a request's `X-Amz-Date` may be from the server's clock (AWS: 15 min).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allow {
    /// `PutRecord` and `PutRecordBatch` only: what producers need.
    Data,
    /// Every operation, the control plane's included.
    All,
}

/// One configured access key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default = "default_allow")]
    allow: Allow,
    /// Stream name patterns (`*` matches any run of characters); all when absent.
    #[serde(default)]
    streams: Option<Vec<String>>,
}

fn default_allow() -> Allow {
    Allow::Data
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(rename = "key", default)]
    keys: Vec<Key>,
}

/// The access keys requests are verified against.
#[derive(Debug, Clone)]
pub struct Keys {
    keys: Vec<Key>,
}

/// A verified caller: the key that signed the request.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    key: &'a Key,
}

/// Why a request was refused, with AWS's error code for each case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header (an unsigned request).
    #[error("Missing Authentication Token")]
    Missing,
    /// An `Authorization` header that is not a whole SigV4 signature.
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not configured.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match (wrong secret, changed body or headers).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
    )]
    Signature,
    /// Dated too far from now.
    #[error("Signature expired: {date} is now earlier than {earliest} ({now} - 15 min.)")]
    Expired {
        /// The request's `X-Amz-Date`.
        date: String,
        /// The oldest date still accepted.
        earliest: String,
        /// The server's time.
        now: String,
    },
    /// Signed by a key that may not do this.
    #[error(
        "User: {key} is not authorized to perform: firehose:{operation} on resource: {resource}"
    )]
    Denied {
        /// The access key id.
        key: String,
        /// The operation.
        operation: String,
        /// The stream, or `*`.
        resource: String,
    },
}

impl AuthError {
    /// AWS's error code (`__type`) for this refusal (AWS's common errors;
    /// JSON services add `Exception` to some, SDKs match the code as given).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::Signature | AuthError::Expired { .. } => "InvalidSignatureException",
            AuthError::Denied { .. } => "AccessDeniedException",
        }
    }
}

impl Classify for AuthError {
    fn is_retriable(&self) -> bool {
        false
    }
    /// The caller's request is what is wrong: as with bad input data, the
    /// sender has to change it.
    fn fault(&self) -> Fault {
        Fault::Data
    }
}

/// Why the keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML of the expected shape, or a key without what it needs.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Keys {
    /// Reads `[[key]]` tables (`access_key_id`, `secret_access_key`, `allow` =
    /// "data" | "all", `streams` = patterns) from a TOML file.
    ///
    /// # Errors
    /// [`KeysError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Keys, KeysError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: shown.clone(),
            source,
        })?;
        Keys::parse(&text).map_err(|message| KeysError::Invalid {
            path: shown,
            message,
        })
    }

    fn parse(text: &str) -> Result<Keys, String> {
        let file: KeysFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        if file.keys.is_empty() {
            return Err("no [[key]] tables: configure at least one access key".into());
        }
        for (i, key) in file.keys.iter().enumerate() {
            if key.access_key_id.is_empty()
                || !key.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(format!(
                    "key {}: access_key_id must be letters and digits",
                    i + 1
                ));
            }
            if key.secret_access_key.len() < 16 {
                return Err(format!(
                    "key {} ({}): secret_access_key must be at least 16 characters",
                    i + 1,
                    key.access_key_id
                ));
            }
            if file.keys[..i]
                .iter()
                .any(|k| k.access_key_id == key.access_key_id)
            {
                return Err(format!("access key {} is listed twice", key.access_key_id));
            }
        }
        Ok(Keys { keys: file.keys })
    }

    /// How many keys are configured (for the start-up log).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is configured (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a request's signature: `path_and_query` as received, every
    /// header, the whole body, at `now`.
    ///
    /// # Errors
    /// [`AuthError`]: unsigned, malformed, unknown key, expired, or not matching.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Caller<'_>, AuthError> {
        let authorization = headers
            .get("authorization")
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Incomplete("Authorization header is not ASCII".into()))?;
        let parsed = Authorization::parse(authorization)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.access_key_id == parsed.access_key_id)
            .ok_or(AuthError::UnknownKey)?;
        let date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                AuthError::Incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
                )
            })?;
        let signed_at = parse_amz_date(date).ok_or_else(|| {
            AuthError::Incomplete(format!("X-Amz-Date {date:?} is not yyyyMMddTHHmmssZ"))
        })?;
        if !date.starts_with(parsed.date) {
            return Err(AuthError::Incomplete(format!(
                "the credential's date {} is not X-Amz-Date's day",
                parsed.date
            )));
        }
        let skew = match now.duration_since(signed_at) {
            Ok(past) => past,
            Err(future) => future.duration(),
        };
        if skew > MAX_SKEW {
            return Err(AuthError::Expired {
                date: date.to_owned(),
                earliest: format_amz_date(now - MAX_SKEW),
                now: format_amz_date(now),
            });
        }
        if !parsed.signed_headers.contains(&"host") {
            return Err(AuthError::Incomplete(
                "SignedHeaders must include host".into(),
            ));
        }
        // Exactly the headers the client signed, as received; the signer adds
        // x-amz-date itself (from the time given, the same value).
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(parsed.signed_headers.len());
        for name in &parsed.signed_headers {
            if *name == "x-amz-date" {
                continue;
            }
            let mut values = headers.get_all(*name).iter().peekable();
            if values.peek().is_none() {
                return Err(AuthError::Incomplete(format!(
                    "signed header {name} is not in the request"
                )));
            }
            for value in values {
                let value = value.to_str().map_err(|_| AuthError::Signature)?;
                signed.push((name, value));
            }
        }
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let uri = format!("http://{host}{path_and_query}");
        let signer = Signer {
            access_key_id: &key.access_key_id,
            secret_access_key: &key.secret_access_key,
            session_token: None,
            region: parsed.region,
            service: parsed.service,
            time: signed_at,
        };
        let (_, expected) = signer
            .sign(method, &uri, &signed, body)
            .map_err(|_| AuthError::Signature)?;
        if constant_time_eq(expected.as_bytes(), parsed.signature.as_bytes()) {
            Ok(Caller { key })
        } else {
            Err(AuthError::Signature)
        }
    }
}

/// What a SigV4 signature is computed with. One signer for the verifier and for
/// `sluice put`, so both canonicalise exactly as aws-sigv4 (the SDKs) does.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// The access key id (`Credential=` names it).
    pub access_key_id: &'a str,
    /// Its secret.
    pub secret_access_key: &'a str,
    /// A temporary credential's token (`x-amz-security-token`).
    pub session_token: Option<&'a str>,
    /// The credential scope's region.
    pub region: &'a str,
    /// The credential scope's service (`firehose`).
    pub service: &'a str,
    /// `X-Amz-Date`.
    pub time: SystemTime,
}

impl Signer<'_> {
    /// Signs `method uri` over every header given and the whole body. Returns
    /// the headers to add (`authorization`, `x-amz-date`, ...) and the signature.
    ///
    /// # Errors
    /// aws-sigv4's reason (an unparsable URI, an invalid header value).
    pub fn sign(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(Vec<(String, String)>, String), String> {
        let request = aws_sigv4::http_request::SignableRequest::new(
            method,
            uri,
            headers.iter().copied(),
            aws_sigv4::http_request::SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let identity = aws_credential_types::Credentials::new(
            self.access_key_id,
            self.secret_access_key,
            self.session_token.map(str::to_owned),
            None,
            "sluice",
        )
        .into();
        let mut settings = aws_sigv4::http_request::SigningSettings::default();
        // Nothing is excluded: what is signed is the caller's choice (a
        // verifier's list is the client's SignedHeaders).
        settings.excluded_headers = Some(Vec::new());
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(self.time)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let (instructions, signature) = aws_sigv4::http_request::sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let add = instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok((add, signature))
    }
}

impl Caller<'_> {
    /// Whether the key is limited to some streams (then [`Caller::allows`]
    /// needs the stream's name).
    pub fn stream_scoped(&self) -> bool {
        self.key.streams.is_some()
    }

    /// Whether this key may run `operation` (`PutRecord`, ...) on `stream`
    /// (`None`: an operation on no one stream, such as `ListDeliveryStreams`).
    ///
    /// # Errors
    /// [`AuthError::Denied`] naming the key, operation and stream.
    pub fn allows(&self, operation: &str, stream: Option<&str>) -> Result<(), AuthError> {
        let data = matches!(operation, "PutRecord" | "PutRecordBatch");
        let scope_ok = data || self.key.allow == Allow::All;
        let stream_ok = match (&self.key.streams, stream) {
            (None, _) => true,
            (Some(patterns), Some(name)) => patterns.iter().any(|p| glob(p, name)),
            // Listing is allowed to stream-limited keys only with `*`.
            (Some(patterns), None) => patterns.iter().any(|p| p == "*"),
        };
        if scope_ok && stream_ok {
            Ok(())
        } else {
            Err(AuthError::Denied {
                key: self.key.access_key_id.clone(),
                operation: operation.to_owned(),
                resource: stream.unwrap_or("*").to_owned(),
            })
        }
    }
}

/// What `sluice run` requires of its listener: on loopback anything goes (the
/// embedded default stays one command); elsewhere keys must be configured, or the
/// operator must have said `--allow-unauthenticated`.
///
/// # Errors
/// The reason to refuse the start, for the operator.
pub fn listen_rule(
    listen: std::net::SocketAddr,
    keys: bool,
    allow_unauthenticated: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() || keys || allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {listen} without request signing: anyone who can reach it could put records. \
         Configure access keys (--auth-file FILE), listen on loopback (127.0.0.1), or pass --allow-unauthenticated."
    ))
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(header: &'a str) -> Result<Self, AuthError> {
        let incomplete = |what: &str| {
            AuthError::Incomplete(format!(
                "Authorization header requires '{what}' parameter. Authorization={header}"
            ))
        };
        let rest = header
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| {
                AuthError::Incomplete(format!(
                    "Authorization header must start with {ALGORITHM} (Signature Version 4)"
                ))
            })?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let credential = credential.ok_or_else(|| incomplete("Credential"))?;
        let signed = signed.ok_or_else(|| incomplete("SignedHeaders"))?;
        let signature = signature.ok_or_else(|| incomplete("Signature"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
            return Err(AuthError::Incomplete(format!(
                "Credential should be scoped to a valid region and service: KEY/yyyyMMdd/REGION/SERVICE/aws4_request, not {credential:?}"
            )));
        };
        let signed_headers: Vec<&str> = signed.split(';').filter(|h| !h.is_empty()).collect();
        if signed_headers
            .iter()
            .any(|h| h.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(AuthError::Incomplete(
                "SignedHeaders must be lowercase".into(),
            ));
        }
        Ok(Authorization {
            access_key_id,
            date,
            region,
            service,
            signed_headers,
            signature,
        })
    }
}

/// `yyyyMMddTHHmmssZ` -> a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    let ts: jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(ts))
}

fn format_amz_date(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|ts| ts.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = r#"
[[key]]
access_key_id = "AKIDPRODUCER"
secret_access_key = "producer-secret-0123456789"
streams = ["orders-*"]

[[key]]
access_key_id = "AKIDADMIN"
secret_access_key = "admin-secret-0123456789"
allow = "all"
"#;

    /// Signs like an SDK does (aws-sigv4 with its defaults), for the verifier.
    fn signed(key: &str, secret: &str, body: &[u8], at: SystemTime) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:4195".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-amz-json-1.1".parse().unwrap(),
        );
        headers.insert(
            "x-amz-target",
            "Firehose_20150804.PutRecord".parse().unwrap(),
        );
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        let signer = Signer {
            access_key_id: key,
            secret_access_key: secret,
            session_token: None,
            region: "us-east-1",
            service: "firehose",
            time: at,
        };
        let (add, _) = signer
            .sign("POST", "http://127.0.0.1:4195/", &pairs, body)
            .unwrap();
        for (name, value) in add {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_signed_request_passes_and_every_change_to_it_fails() {
        let keys = Keys::parse(KEYS).unwrap();
        let now = SystemTime::now();
        let body = br#"{"DeliveryStreamName":"orders-eu"}"#;
        let h = signed("AKIDPRODUCER", "producer-secret-0123456789", body, now);
        let caller = keys.verify("POST", "/", &h, body, now).unwrap();
        assert!(caller.allows("PutRecord", Some("orders-eu")).is_ok());
        // Another body (a replay), a wrong secret, an unknown key, no signature.
        let err = |r: Result<Caller<'_>, AuthError>| r.unwrap_err().code();
        assert_eq!(
            err(keys.verify("POST", "/", &h, b"{}", now)),
            "InvalidSignatureException"
        );
        let wrong = signed("AKIDPRODUCER", "not-the-secret-0123456789", body, now);
        assert_eq!(
            err(keys.verify("POST", "/", &wrong, body, now)),
            "InvalidSignatureException"
        );
        let unknown = signed("AKIDNOBODY", "producer-secret-0123456789", body, now);
        assert_eq!(
            err(keys.verify("POST", "/", &unknown, body, now)),
            "UnrecognizedClientException"
        );
        let mut unsigned = h.clone();
        unsigned.remove("authorization");
        assert_eq!(
            err(keys.verify("POST", "/", &unsigned, body, now)),
            "MissingAuthenticationToken"
        );
        // A signed header changed on the way.
        let mut target = h.clone();
        target.insert(
            "x-amz-target",
            "Firehose_20150804.DeleteDeliveryStream".parse().unwrap(),
        );
        assert_eq!(
            err(keys.verify("POST", "/", &target, body, now)),
            "InvalidSignatureException"
        );
        // 16 minutes off either way has expired; 14 has not.
        let old = signed(
            "AKIDPRODUCER",
            "producer-secret-0123456789",
            body,
            now - Duration::from_secs(16 * 60),
        );
        assert!(matches!(
            keys.verify("POST", "/", &old, body, now),
            Err(AuthError::Expired { .. })
        ));
        let ahead = signed(
            "AKIDPRODUCER",
            "producer-secret-0123456789",
            body,
            now + Duration::from_secs(14 * 60),
        );
        assert!(keys.verify("POST", "/", &ahead, body, now).is_ok());
    }

    #[test]
    fn permissions_limit_operations_and_streams() {
        let keys = Keys::parse(KEYS).unwrap();
        let now = SystemTime::now();
        let h = signed("AKIDPRODUCER", "producer-secret-0123456789", b"", now);
        let producer = keys.verify("POST", "/", &h, b"", now).unwrap();
        assert!(producer.allows("PutRecordBatch", Some("orders-us")).is_ok());
        let denied = producer.allows("PutRecord", Some("billing")).unwrap_err();
        assert_eq!(denied.code(), "AccessDeniedException");
        assert!(
            denied
                .to_string()
                .contains("firehose:PutRecord on resource: billing")
        );
        assert!(
            producer
                .allows("DescribeDeliveryStream", Some("orders-us"))
                .is_err()
        );
        let h = signed("AKIDADMIN", "admin-secret-0123456789", b"", now);
        let admin = keys.verify("POST", "/", &h, b"", now).unwrap();
        assert!(
            admin
                .allows("DescribeDeliveryStream", Some("billing"))
                .is_ok()
        );
        assert!(admin.allows("ListDeliveryStreams", None).is_ok());
    }

    #[test]
    fn malformed_headers_and_key_files_are_named() {
        let keys = Keys::parse(KEYS).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDADMIN/20261202/us-east-1/firehose/aws4_request"
                .parse()
                .unwrap(),
        );
        let e = keys
            .verify("POST", "/", &h, b"", SystemTime::now())
            .unwrap_err();
        assert_eq!(e.code(), "IncompleteSignature");
        assert!(e.to_string().contains("SignedHeaders"), "{e}");
        h.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        let e = keys
            .verify("POST", "/", &h, b"", SystemTime::now())
            .unwrap_err();
        assert_eq!(e.code(), "IncompleteSignature");
        for (text, why) in [
            ("", "no [[key]] tables"),
            (
                "[[key]]\naccess_key_id = \"A\"\nsecret_access_key = \"short\"\n",
                "at least 16",
            ),
            (
                "[[key]]\naccess_key_id = \"A\"\nsecret_access_key = \"0123456789abcdef\"\nallow = \"root\"\n",
                "unknown variant",
            ),
            (
                &format!(
                    "{KEYS}\n[[key]]\naccess_key_id = \"AKIDADMIN\"\nsecret_access_key = \"0123456789abcdef\"\n"
                ),
                "listed twice",
            ),
        ] {
            let e = Keys::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn only_loopback_listens_without_keys_unless_told() {
        let public: std::net::SocketAddr = "0.0.0.0:4195".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:4195".parse().unwrap();
        let v6: std::net::SocketAddr = "[::1]:4195".parse().unwrap();
        assert!(listen_rule(local, false, false).is_ok());
        assert!(listen_rule(v6, false, false).is_ok());
        let refused = listen_rule(public, false, false).unwrap_err();
        assert!(refused.contains("--auth-file") && refused.contains("--allow-unauthenticated"));
        assert!(listen_rule(public, true, false).is_ok());
        assert!(listen_rule(public, false, true).is_ok());
    }

    #[test]
    fn stream_patterns_glob() {
        assert!(glob("orders-*", "orders-eu"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("orders", "orders-eu"));
    }
}
