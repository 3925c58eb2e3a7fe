//! `sluice put`: a small Direct PUT producer for demos and scripts.
//!
//! Reads newline-separated records, packs them into PutRecordBatch calls
//! within Firehose's limits (500 records, 4 MiB), and resends what the server
//! refused: whole requests answered `ServiceUnavailableException` (backoff),
//! and single records listed as failed in `RequestResponses`. With
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` set (and `AWS_SESSION_TOKEN`,
//! `AWS_REGION` if given), requests are SigV4-signed as an SDK signs them, for a
//! listener with `--auth-file`; otherwise they go unsigned.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const MAX_RECORDS: usize = 500;
const MAX_BYTES: usize = 4 * 1024 * 1024;
const MAX_ATTEMPTS: u32 = 8;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Sends every line of `file` (stdin for `None` or `-`); returns how many.
pub(crate) async fn run(endpoint: &str, stream: &str, file: Option<&Path>) -> Result<u64, String> {
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(format!(
            "--endpoint {endpoint:?} must be a URL with a scheme, e.g. http://{endpoint}"
        ));
    }
    let input: Box<dyn BufRead> = match file {
        None => Box::new(BufReader::new(std::io::stdin())),
        Some(p) if p == Path::new("-") => Box::new(BufReader::new(std::io::stdin())),
        Some(p) => Box::new(BufReader::new(
            std::fs::File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?,
        )),
    };
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let credentials = Credentials::from_env();
    let to = Target {
        client: &client,
        endpoint,
        stream,
        credentials: credentials.as_ref(),
    };
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0;
    let mut sent = 0u64;
    for line in input.split(b'\n') {
        let mut line = line.map_err(|e| format!("reading input: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        if batch.len() == MAX_RECORDS || batch_bytes + line.len() > MAX_BYTES {
            sent += send(&to, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
        batch_bytes += line.len();
        batch.push(line);
    }
    if !batch.is_empty() {
        sent += send(&to, batch).await?;
    }
    Ok(sent)
}

/// The SigV4 credentials of the environment (read once per run).
struct Credentials {
    key: String,
    secret: String,
    token: Option<String>,
    region: String,
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION` if set); `None` without both.
    fn from_env() -> Option<Credentials> {
        let var = |name| std::env::var(name).ok();
        Some(Credentials {
            key: var("AWS_ACCESS_KEY_ID")?,
            secret: var("AWS_SECRET_ACCESS_KEY")?,
            token: var("AWS_SESSION_TOKEN"),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
        })
    }
}

/// Signs `request` (whose body is `body`) with `credentials`.
fn sign(
    request: &mut hyper::Request<Full<Bytes>>,
    body: &[u8],
    credentials: &Credentials,
) -> Result<(), String> {
    let signer = sluice::api::auth::Signer {
        access_key_id: &credentials.key,
        secret_access_key: &credentials.secret,
        session_token: credentials.token.as_deref(),
        region: &credentials.region,
        service: "firehose",
        time: std::time::SystemTime::now(),
    };
    let uri = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let (add, _) = signer
        .sign("POST", &uri, &headers, body)
        .map_err(|e| format!("signing: {e}"))?;
    for (name, value) in add {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("signing: {e}"))?;
        let value =
            hyper::header::HeaderValue::from_str(&value).map_err(|e| format!("signing: {e}"))?;
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

/// Where batches go.
struct Target<'a> {
    client: &'a HttpClient,
    endpoint: &'a str,
    stream: &'a str,
    /// Signs every request when present.
    credentials: Option<&'a Credentials>,
}

/// Sends one batch, retrying refused records; returns how many were accepted.
async fn send(to: &Target<'_>, mut records: Vec<Vec<u8>>) -> Result<u64, String> {
    let Target {
        client,
        endpoint,
        stream,
        credentials,
    } = *to;
    let total = records.len() as u64;
    let b64 = base64::engine::general_purpose::STANDARD;
    for attempt in 0..MAX_ATTEMPTS {
        let body = json!({
            "DeliveryStreamName": stream,
            "Records": records.iter().map(|r| json!({"Data": b64.encode(r)})).collect::<Vec<_>>(),
        });
        let body = Bytes::from(body.to_string());
        let mut request = hyper::Request::post(endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Firehose_20150804.PutRecordBatch")
            .body(Full::new(body.clone()))
            .map_err(|e| format!("building request: {e}"))?;
        if let Some(credentials) = credentials {
            sign(&mut request, &body, credentials)?;
        }
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading response: {e}"))?
            .to_bytes();
        let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.as_u16() == 503 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            continue;
        }
        if !status.is_success() {
            return Err(format!(
                "{}: {}",
                reply["__type"].as_str().unwrap_or(status.as_str()),
                reply["message"].as_str().unwrap_or("")
            ));
        }
        if reply["FailedPutCount"].as_u64().unwrap_or(0) == 0 {
            return Ok(total);
        }
        // Keep only the records the server did not take.
        let responses = reply["RequestResponses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut i = 0;
        records.retain(|_| {
            let failed = responses
                .get(i)
                .is_some_and(|r| r.get("ErrorCode").is_some());
            i += 1;
            failed
        });
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(format!(
        "{} records still refused after {MAX_ATTEMPTS} attempts",
        records.len()
    ))
}
