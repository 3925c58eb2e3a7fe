//! `sluice health`: asks a running daemon's `/healthz` (or `/readyz`) and
//! exits 0 when it answers 200, 1 otherwise.
//!
//! For probes that run a command inside the container rather than an HTTP
//! GET: the sidecar image is `FROM scratch`, with no curl or wget to call, so
//! its Dockerfile `HEALTHCHECK` and ECS's `healthCheck` use this. Neighbours:
//! the handlers in `sluice::api` decide what healthy and ready mean.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A probe that hangs is a failed probe; container runtimes time out too,
/// but then they report a timeout instead of the reason.
const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `/healthz` (or `/readyz` with `ready`) from `listen`; returns the
/// body when the answer is 200, else why not.
pub(crate) async fn check(listen: std::net::SocketAddr, ready: bool) -> Result<String, String> {
    // A daemon bound to 0.0.0.0 (a container's usual listener) answers on loopback.
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let url = format!(
        "http://{}/{}",
        std::net::SocketAddr::new(host, listen.port()),
        if ready { "readyz" } else { "healthz" }
    );
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let answer = async {
        let response = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the answer: {e}"))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).trim().to_string();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{url}: {status}: {body}"))
        }
    };
    tokio::time::timeout(TIMEOUT, answer)
        .await
        .map_err(|_| format!("{url}: no answer within {} s", TIMEOUT.as_secs()))?
}
