//! The HTTP server under the Firehose API: our own accept loop and one hyper
//! HTTP/1.1 connection per client, with the limits that keep a slow, stalled
//! or hostile client from growing sluice's memory or using up its file
//! descriptors.
//!
//! Neighbours: [`crate::app`] binds the listener and calls [`serve`] with
//! [`super::router`] and the [`ApiLimits`] that `sluice run` parsed from
//! [`LimitArgs`]; every request reaches the router only after this module
//! has read its whole body within the limits, so [`super`] never waits on a
//! client. Refusals are answered in Firehose's error shape ([`super::ApiError`]).
//!
//! | limit | default | when passed |
//! |---|---|---|
//! | open connections | 4096 | the new connection is accepted and closed at once |
//! | header read: accept (or first byte of a request) to end of headers | 10 s | connection closed |
//! | idle keep-alive: response produced to first byte of the next request | 60 s | connection closed |
//! | body read: end of headers to last body byte | 30 s | `RequestTimeoutException` (408), connection closed |
//! | body size | 8 MiB | `InvalidArgumentException` (413): before reading when `Content-Length` says so, else on reaching it |
//! | body bytes in flight, all requests together | 256 MiB | `ServiceUnavailableException` (503) |
//!
//! A body's bytes count against the in-flight budget as they arrive and are
//! given back when its request has been answered: a client that sent only
//! headers holds no memory and no budget, and memory for bodies is bounded by
//! the budget, whatever the number of connections.
//!
//! Why the header and idle timeouts are ours, not hyper's `header_read_timeout`:
//! in hyper 1.x (1.12, `proto/h1/conn.rs`: `State::idle` sets `notify_read` so
//! that `poll_read_head` arms the timer) that timer starts as soon as a
//! keep-alive connection goes idle, so it is one budget for idle wait plus
//! header read. A 10 s value would close SDK clients' pooled connections
//! after 10 s of quiet, a 60 s value would give a slowloris client 60 s per
//! header. A per-connection watchdog tracks the two phases separately.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ApiError;
use crate::error::{Classify, Fault};

/// Default largest request body: 4 MiB of batch data grows by 4/3 in base64
/// (5.6 MB), plus the JSON around 500 records; 8 MiB leaves room for both.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest request head (request line and headers). SDK requests carry
/// 1-2 KiB; a hostile client can make hyper buffer this much per connection.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's read buffer cap per connection (its default is ~400 KiB). Body
/// chunks are at most this big, and it bounds what an idle or stalled
/// connection can keep allocated in hyper, outside the body budget.
const MAX_READ_BUFFER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for in-flight requests before closing their
/// connections. By then the streams have drained and puts are refused at
/// once, so only a body still arriving can take this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after an accept error that is not about one connection (EMFILE,
/// ENFILE, ENOBUFS): retrying at once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this long about refused connections or accept errors.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The API server's limits, validated ([`LimitArgs::validate`]).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait from accept (or a request's first byte) to the end of its headers.
    pub header_timeout: Duration,
    /// Longest quiet time between a response and the next request.
    pub idle_timeout: Duration,
    /// Longest wait from the end of headers to the end of the body.
    pub body_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most body bytes held by all requests together.
    pub max_body_bytes_in_flight: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
        }
    }
}

/// The limits as `sluice run` flags (each with a `SLUICE_...` variable).
///
/// Defaults, and why: 4096 connections cost ~100 MB at most in buffers and
/// stay under the usual 4096+ descriptor hard limit once raised; 10 s is
/// ample for headers that SDKs send in one write; 60 s of idle keep-alive
/// matches common load-balancer and SDK pool idle times, so pooled
/// connections are reused rather than raced; 30 s moves an 8 MiB body at
/// about 2 Mbit/s; 256 MiB in flight is 32 full-size batches, more than two
/// cores can decode and fsync at once.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most open API connections; more are closed as soon as accepted.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "SLUICE_HEADER_TIMEOUT_SECS", default_value_t = 10.0)]
    pub header_timeout_secs: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_SECS", default_value_t = 60.0)]
    pub idle_timeout_secs: f64,
    /// Seconds a client has to send a request's whole body.
    #[arg(long, env = "SLUICE_BODY_TIMEOUT_SECS", default_value_t = 30.0)]
    pub body_timeout_secs: f64,
    /// Largest request body in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most request-body bytes held by all requests together; over it, puts
    /// get ServiceUnavailableException.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 256 * 1024 * 1024)]
    pub max_body_bytes_in_flight: usize,
}

impl LimitArgs {
    /// Checks the flags and turns them into [`ApiLimits`].
    ///
    /// # Errors
    /// [`ServerError::InvalidLimit`] naming the flag and what is wrong.
    pub fn validate(&self) -> Result<ApiLimits, ServerError> {
        let invalid =
            |flag: &'static str, message: String| ServerError::InvalidLimit { flag, message };
        let secs = |flag: &'static str, value: f64| {
            // An hour is far beyond any sane HTTP timeout; it also keeps
            // `Instant + Duration` from overflowing.
            if !(value > 0.0 && value <= 3600.0) {
                return Err(invalid(
                    flag,
                    format!("{value} must be more than 0 and at most 3600 seconds"),
                ));
            }
            Ok(Duration::from_secs_f64(value))
        };
        if self.max_connections == 0 {
            return Err(invalid("--max-connections", "must be at least 1".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("--max-body-bytes", "must be at least 1".into()));
        }
        if self.max_body_bytes_in_flight < self.max_body_bytes {
            return Err(invalid(
                "--max-body-bytes-in-flight",
                format!(
                    "{} is below --max-body-bytes ({}): a request of the largest allowed size could never be read",
                    self.max_body_bytes_in_flight, self.max_body_bytes
                ),
            ));
        }
        if self.max_body_bytes_in_flight > Semaphore::MAX_PERMITS {
            return Err(invalid(
                "--max-body-bytes-in-flight",
                format!(
                    "{} is above {}",
                    self.max_body_bytes_in_flight,
                    Semaphore::MAX_PERMITS
                ),
            ));
        }
        Ok(ApiLimits {
            max_connections: self.max_connections,
            header_timeout: secs("--header-timeout-secs", self.header_timeout_secs)?,
            idle_timeout: secs("--idle-timeout-secs", self.idle_timeout_secs)?,
            body_timeout: secs("--body-timeout-secs", self.body_timeout_secs)?,
            max_body_bytes: self.max_body_bytes,
            max_body_bytes_in_flight: self.max_body_bytes_in_flight,
        })
    }
}

/// What went wrong in the server, or with one request's body.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A limit flag is out of range.
    #[error("{flag}: {message}")]
    InvalidLimit {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Connections still busy when the shutdown grace ran out were closed.
    #[error(
        "{open} connections were still busy {SHUTDOWN_GRACE:?} after shutdown began; closed them"
    )]
    ShutdownTimedOut {
        /// How many.
        open: usize,
    },
    /// A body is larger than `--max-body-bytes`.
    #[error("request body {} exceeds the limit of {max} bytes", body_size(.declared))]
    BodyTooLarge {
        /// Its `Content-Length`, when it has one.
        declared: Option<u64>,
        /// The limit.
        max: usize,
    },
    /// All requests together hold `--max-body-bytes-in-flight`.
    #[error("sluice is receiving too many request bodies at once; retry later")]
    OverBudget,
    /// The body did not arrive within `--body-timeout-secs`.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// The client broke off the body or sent a malformed one.
    #[error("request body could not be read: {0}")]
    BodyRead(hyper::Error),
}

fn body_size(declared: &Option<u64>) -> String {
    match declared {
        Some(n) => format!("of {n} bytes"),
        None => "read so far".to_owned(),
    }
}

impl Classify for ServerError {
    fn is_retriable(&self) -> bool {
        matches!(
            self,
            ServerError::OverBudget | ServerError::BodyTimeout(_) | ServerError::BodyRead(_)
        )
    }
    fn fault(&self) -> Fault {
        match self {
            ServerError::InvalidLimit { .. } => Fault::Config,
            ServerError::BodyTooLarge { .. } => Fault::Data,
            // Clients (or the network) that are slow, stalled or too many.
            ServerError::ShutdownTimedOut { .. }
            | ServerError::OverBudget
            | ServerError::BodyTimeout(_)
            | ServerError::BodyRead(_) => Fault::Remote,
        }
    }
}

impl ServerError {
    /// The Firehose error a refused request gets, and its metric label.
    fn refusal(&self) -> (ApiError, &'static str) {
        let message = self.to_string();
        match self {
            // 413 rather than 400: SDKs pick the exception from `__type`
            // either way (InvalidArgumentException, like Firehose's other
            // size limits, and not retried by any SDK), while proxies, curl
            // and logs understand 413 without reading the body.
            ServerError::BodyTooLarge { .. } => (
                ApiError::invalid(message).with_status(StatusCode::PAYLOAD_TOO_LARGE),
                "max_body_bytes",
            ),
            // 503: every AWS SDK retries it with backoff.
            ServerError::OverBudget => (
                ApiError::new("ServiceUnavailableException", message),
                "max_body_bytes_in_flight",
            ),
            // `RequestTimeoutException` is in the transient error lists of
            // botocore and the Rust SDK, so a slow but honest client retries.
            ServerError::BodyTimeout(_) => (
                ApiError::new("RequestTimeoutException", message),
                "body_timeout",
            ),
            _ => (ApiError::invalid(message), "body_read"),
        }
    }
}

/// Raises this process's open-file soft limit to its hard limit, so
/// thousands of connections do not run into EMFILE at the usual soft limit
/// of 1024. Returns the new (soft, hard) limits.
///
/// # Errors
/// The OS error of `getrlimit`/`setrlimit`.
pub fn raise_fd_limit() -> io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a pointer to a live,
    // properly aligned local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the `rlimit` behind the pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Queue length for connections the kernel has completed but we have not
/// accepted yet. The standard library binds with 128: a burst of new
/// connections (clients reconnecting after a restart) overflows that while
/// the accept loop catches up, and each dropped SYN costs its client a 1 s
/// retransmit. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// Raises the listening socket's backlog to [`LISTEN_BACKLOG`]. Linux updates
/// the backlog when `listen` is called again on a listening socket; where
/// that fails the bound socket keeps its backlog, which is only slower.
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: `listen` on a descriptor the listener owns and keeps open for
    // the duration of the call; it touches no memory of ours.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "Cannot widen the listen backlog.");
    }
}

/// What every connection shares.
struct Shared {
    limits: ApiLimits,
    /// Body bytes not yet received by any request; one permit per byte.
    budget: Arc<Semaphore>,
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, lets requests in flight finish for a few seconds,
/// and closes what is left.
///
/// Accept errors never stop the loop; the listener lives until shutdown.
///
/// # Errors
/// [`ServerError::ShutdownTimedOut`] when connections had to be cut off.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ApiLimits,
    tls: Option<Arc<super::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    // 64 descriptors for everything else: logs, checkpoints, S3 connections.
    match raise_fd_limit() {
        Ok((soft, _))
            if usize::try_from(soft).unwrap_or(usize::MAX)
                < limits.max_connections.saturating_add(64) =>
        {
            tracing::warn!(
                open_files = soft,
                max_connections = limits.max_connections,
                "The open-file limit is below --max-connections; some connections will fail to be accepted (EMFILE)."
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "Cannot raise the open-file limit."),
    }
    widen_backlog(&listener);
    let shared = Arc::new(Shared {
        // Clamped: `Semaphore::new` panics above MAX_PERMITS, and in-process
        // callers may build `ApiLimits` without `LimitArgs::validate`.
        budget: Arc::new(Semaphore::new(
            limits.max_body_bytes_in_flight.min(Semaphore::MAX_PERMITS),
        )),
        limits,
    });
    let slots = Arc::new(Semaphore::new(
        shared.limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let app = TowerToHyperService::new(router);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    let mut warn_now = move || {
        let now = Instant::now();
        let due = last_warning.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        if due {
            last_warning = Some(now);
        }
        due
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over the limit the connection is accepted and closed
                    // at once rather than left in the backlog: a full backlog
                    // makes clients hang until their connect timeout and
                    // then drops SYNs for everyone, while a closed connection
                    // is a connection error that every SDK retries with
                    // backoff. No 503 is written: answering means reading
                    // the request first (closing a socket with unread data
                    // sends a reset that destroys the answer), and reading
                    // is the very cost the limit is there to refuse.
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        crate::metrics::inc(
                            "sluice_api_connections_refused_total",
                            "API connections closed at accept because --max-connections were open.",
                            &[],
                            1,
                        );
                        if warn_now() {
                            tracing::warn!(%peer, max_connections = shared.limits.max_connections, "Connection limit reached; closing new connections.");
                        }
                        drop(stream);
                        continue;
                    };
                    let (app, shared, stopping) = (app.clone(), shared.clone(), stopping.clone());
                    let tls = tls.clone();
                    connections.spawn(async move {
                        serve_accepted(stream, peer, app, shared, stopping, tls).await;
                        drop(slot);
                    });
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "A connection failed before it was accepted.");
                }
                Err(e) => {
                    if warn_now() {
                        tracing::warn!(error = %e, "Accepting a connection failed; backing off.");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    // Closing the listener makes new connection attempts fail at once.
    drop(listener);
    stop.send_replace(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let open = connections.len();
        connections.shutdown().await;
        return Err(ServerError::ShutdownTimedOut { open });
    }
    Ok(())
}

/// Errors `accept` reports about one connection (the peer gave up while it
/// waited in the backlog); the next accept may well succeed.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One connection, until it ends, times out, or shutdown has drained it.
/// Serves one accepted connection: over TLS when the listener has it (the
/// handshake must finish within the header timeout, as headers must).
async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    app: TowerToHyperService<Router>,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
    tls: Option<Arc<super::tls::Tls>>,
) {
    // Responses are written whole; don't let Nagle hold their last segment.
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_connection(stream, peer, app, shared, stopping).await;
    };
    let handshake = tls.acceptor().accept(stream);
    match tokio::time::timeout(shared.limits.header_timeout, handshake).await {
        Ok(Ok(stream)) => serve_connection(stream, peer, app, shared, stopping).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
        Err(_) => {
            crate::metrics::inc(
                "sluice_api_connections_timed_out_total",
                "API connections closed because headers (phase=header) or the next request (phase=idle) did not arrive in time.",
                &[("phase", "tls")],
                1,
            );
            tracing::debug!(%peer, "TLS handshake timed out.");
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: TowerToHyperService<Router>,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = ConnService {
        app,
        shared: shared.clone(),
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Replaced by the watchdog below (see the module docs).
        .header_read_timeout(None)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_READ_BUFFER_BYTES);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let limits = &shared.limits;
    let mut draining = false;
    loop {
        let now = Instant::now();
        let (phase, deadline) = activity.deadline(limits);
        if let Some(deadline) = deadline
            && now >= deadline
        {
            // Dropping the connection closes the socket and frees its buffers.
            crate::metrics::inc(
                "sluice_api_connections_timed_out_total",
                "API connections closed because headers (phase=header) or the next request (phase=idle) did not arrive in time.",
                &[("phase", phase)],
                1,
            );
            tracing::debug!(%peer, phase, "Closing a connection that timed out.");
            return;
        }
        // While a request is being served the watchdog has nothing to time
        // (the body timeout is the service's); it wakes at the shortest
        // timeout to pick up the next phase, which can only start later.
        let wake = deadline.unwrap_or(now + limits.header_timeout.min(limits.idle_timeout));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "Connection ended with an error.");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {}
            _ = stopping.changed(), if !draining => {
                // Finishes the request in flight, then closes; closes an idle
                // connection at once.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection is in its request cycle, for the watchdog.
///
/// Only the connection's own task touches it (the watchdog, hyper's reads
/// and the service all run in it); atomics just make it `Sync`.
struct Activity {
    origin: Instant,
    phase: AtomicU8,
    /// When the phase began, in milliseconds after `origin`.
    since_ms: AtomicU64,
}

/// Serving a request: reading its body (bounded by the body timeout) or
/// running the handler.
const BUSY: u8 = 0;
/// Waiting for headers to complete.
const HEADERS: u8 = 1;
/// Response produced, no byte of a next request yet.
const IDLE: u8 = 2;

impl Activity {
    /// A new connection waits for its first request's headers.
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            phase: AtomicU8::new(HEADERS),
            since_ms: AtomicU64::new(0),
        }
    }

    fn enter(&self, phase: u8) {
        let since = self.origin.elapsed().as_millis() as u64;
        self.since_ms.store(since, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Bytes arrived: on an idle connection, a request has begun.
    fn on_read(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.enter(HEADERS);
        }
    }

    /// The current phase's name and deadline, if it has one.
    fn deadline(&self, limits: &ApiLimits) -> (&'static str, Option<Instant>) {
        let since = self.origin + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match self.phase.load(Ordering::Relaxed) {
            HEADERS => ("header", Some(since + limits.header_timeout)),
            IDLE => ("idle", Some(since + limits.idle_timeout)),
            _ => ("busy", None),
        }
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The per-connection hyper service: reads the body within the limits, then
/// hands the request to the router.
#[derive(Clone)]
struct ConnService {
    app: TowerToHyperService<Router>,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            this.activity.enter(BUSY);
            let response = this.respond(request).await;
            this.activity.enter(IDLE);
            Ok(response)
        })
    }
}

impl ConnService {
    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        match read_body(body, &self.shared).await {
            Ok((bytes, hold)) => {
                let request = Request::from_parts(parts, Body::from(bytes));
                let response = match hyper::service::Service::call(&self.app, request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                // The handler is done with the body: give its bytes back.
                drop(hold);
                response
            }
            Err(e) => {
                let (error, limit) = e.refusal();
                if limit != "body_read" {
                    crate::metrics::inc(
                        "sluice_api_requests_refused_total",
                        "API requests refused by a server limit, before reaching their operation.",
                        &[("limit", limit)],
                        1,
                    );
                }
                tracing::debug!(error = %e, "Request refused by a server limit.");
                let mut response = super::with_request_id(error.into_response());
                // The body was not read to its end: the connection cannot
                // carry another request. Say so rather than leave it to hyper.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
        }
    }
}

/// Body bytes a request holds from the in-flight budget; given back on drop.
struct BudgetHold {
    budget: Arc<Semaphore>,
    held: usize,
}

impl BudgetHold {
    fn take(&mut self, bytes: usize) -> Result<(), ServerError> {
        let n = u32::try_from(bytes).map_err(|_| ServerError::OverBudget)?;
        // Never wait for budget: requests that each hold part of it and wait
        // for more would deadlock. A refusal is retried by the SDK.
        let permits = self
            .budget
            .try_acquire_many(n)
            .map_err(|_| ServerError::OverBudget)?;
        permits.forget();
        self.held += bytes;
        Ok(())
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.budget.add_permits(self.held);
    }
}

/// Reads a whole body within the size limit, the budget and the body timeout.
async fn read_body(
    mut body: Incoming,
    shared: &Shared,
) -> Result<(Bytes, BudgetHold), ServerError> {
    let limits = &shared.limits;
    let max = limits.max_body_bytes;
    // Refused before a byte is read (and before hyper sends `100 Continue`).
    if let Some(declared) = hyper::body::Body::size_hint(&body).exact()
        && declared > max as u64
    {
        return Err(ServerError::BodyTooLarge {
            declared: Some(declared),
            max,
        });
    }
    let deadline = Instant::now() + limits.body_timeout;
    let mut hold = BudgetHold {
        budget: shared.budget.clone(),
        held: 0,
    };
    // Chunks as hyper hands them over (views of its read buffer); they are
    // copied once, at the end, into one contiguous body. Nothing is
    // allocated ahead of the bytes that arrived.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ServerError::BodyTimeout(limits.body_timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ServerError::BodyRead(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers carry nothing the API uses.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > max {
            return Err(ServerError::BodyTooLarge {
                declared: None,
                max,
            });
        }
        hold.take(data.len())?;
        chunks.push(data);
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut whole = Vec::with_capacity(total);
            for chunk in &chunks {
                whole.extend_from_slice(chunk);
            }
            Bytes::from(whole)
        }
    };
    Ok((bytes, hold))
}

#[cfg(test)]
mod tests {
    //! An in-process server on 127.0.0.1 with tiny limits and real (short)
    //! timeouts, driven through raw sockets.

    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::api::{ApiState, router};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tiny() -> ApiLimits {
        ApiLimits {
            max_connections: 16,
            header_timeout: ms(200),
            idle_timeout: ms(500),
            body_timeout: ms(1000),
            max_body_bytes: 1000,
            max_body_bytes_in_flight: 1000,
        }
    }

    /// Serves an API without streams; the server stops when the sender drops.
    async fn start(limits: ApiLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(Arc::new(ApiState::new(BTreeMap::new())));
        tokio::spawn(serve(listener, app, limits, None, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    fn head(content_length: usize, close: bool) -> String {
        format!(
            "POST / HTTP/1.1\r\nHost: sluice\r\nX-Amz-Target: Firehose_20150804.ListDeliveryStreams\r\n\
             Content-Type: application/x-amz-json-1.1\r\nContent-Length: {content_length}{}\r\n\r\n",
            if close { "\r\nConnection: close" } else { "" }
        )
    }

    /// A valid ListDeliveryStreams body of exactly `size` bytes.
    fn body(size: usize) -> String {
        format!("{:<size$}", "{}")
    }

    /// Reads until the peer closes (or 2 s pass); returns what came and when the close came.
    async fn until_closed(stream: &mut TcpStream) -> (String, Option<Duration>) {
        let start = Instant::now();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut got)).await;
        let closed = read.is_ok().then(|| start.elapsed());
        (String::from_utf8_lossy(&got).into_owned(), closed)
    }

    /// Reads one response with a `content-length` off a keep-alive connection.
    async fn one_response(stream: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "closed before a whole response: {text:?}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.expect("connect")
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_at_once() {
        let (addr, _stop) = start(ApiLimits {
            max_connections: 1,
            header_timeout: Duration::from_secs(5),
            ..tiny()
        })
        .await;
        let holder = connect(addr).await;
        tokio::time::sleep(ms(50)).await;
        let mut refused = connect(addr).await;
        let (text, closed) = until_closed(&mut refused).await;
        let closed = closed.expect("the connection over the limit is closed");
        assert!(
            text.is_empty() && closed < ms(500),
            "{text:?} after {closed:?}"
        );
        // The slot comes back when the holder leaves.
        drop(holder);
        tokio::time::sleep(ms(50)).await;
        let mut next = connect(addr).await;
        next.write_all(format!("{}{}", head(2, true), body(2)).as_bytes())
            .await
            .expect("write");
        let (text, _) = until_closed(&mut next).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(crate::metrics::render().contains("sluice_api_connections_refused_total"));
    }

    #[tokio::test]
    async fn stalled_headers_and_idle_keep_alive_are_closed_after_their_timeouts() {
        let (addr, _stop) = start(tiny()).await;
        let stalled = async {
            let mut stream = connect(addr).await;
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: sluice\r\n")
                .await
                .expect("write");
            until_closed(&mut stream).await
        };
        let idle = async {
            let mut stream = connect(addr).await;
            stream
                .write_all(format!("{}{}", head(2, false), body(2)).as_bytes())
                .await
                .expect("write");
            let response = one_response(&mut stream).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            until_closed(&mut stream).await
        };
        let ((stalled_text, stalled), (idle_text, idle)) = tokio::join!(stalled, idle);
        let stalled = stalled.expect("stalled headers: connection closed");
        assert!(stalled_text.is_empty(), "{stalled_text}");
        assert!(
            stalled >= ms(150) && stalled < ms(800),
            "header timeout 200 ms, closed after {stalled:?}"
        );
        // Idle keeps its own, longer, timeout: not cut at the header timeout.
        let idle = idle.expect("idle keep-alive: connection closed");
        assert!(idle_text.is_empty(), "{idle_text}");
        assert!(
            idle >= ms(450) && idle < ms(1200),
            "idle timeout 500 ms, closed after {idle:?}"
        );
    }

    #[tokio::test]
    async fn bodies_over_the_budget_get_503_and_the_budget_comes_back() {
        let (addr, _stop) = start(tiny()).await;
        // Holds 600 of the 1000 budget bytes, waiting for the rest of its body.
        let mut holder = connect(addr).await;
        holder
            .write_all(format!("{}{}", head(900, false), body(600)).as_bytes())
            .await
            .expect("write");
        tokio::time::sleep(ms(100)).await;
        let mut over = connect(addr).await;
        over.write_all(format!("{}{}", head(600, false), body(600)).as_bytes())
            .await
            .expect("write");
        let (text, _) = until_closed(&mut over).await;
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(
            text.contains("\"__type\":\"ServiceUnavailableException\""),
            "{text}"
        );
        drop(holder);
        tokio::time::sleep(ms(100)).await;
        let mut after = connect(addr).await;
        after
            .write_all(format!("{}{}", head(600, true), body(600)).as_bytes())
            .await
            .expect("write");
        let (text, _) = until_closed(&mut after).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    #[tokio::test]
    async fn oversize_bodies_are_refused_without_reading_them() {
        let (addr, _stop) = start(tiny()).await;
        // Only the headers are sent: the answer cannot have waited for a body.
        let mut declared = connect(addr).await;
        declared
            .write_all(head(10_000_000, false).as_bytes())
            .await
            .expect("write");
        let (text, closed) = until_closed(&mut declared).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(
            text.contains("\"__type\":\"InvalidArgumentException\""),
            "{text}"
        );
        assert!(closed.is_some_and(|t| t < ms(500)), "{closed:?}");
        // A chunked body is cut off where it passes the limit.
        let mut chunked = connect(addr).await;
        let chunk = format!("258\r\n{}\r\n", body(600));
        chunked
            .write_all(
                format!(
                    "POST / HTTP/1.1\r\nHost: sluice\r\nX-Amz-Target: Firehose_20150804.ListDeliveryStreams\r\n\
                     Transfer-Encoding: chunked\r\n\r\n{chunk}{chunk}"
                )
                .as_bytes(),
            )
            .await
            .expect("write");
        let (text, _) = until_closed(&mut chunked).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_stalls_gets_408_after_the_body_timeout() {
        let (addr, _stop) = start(ApiLimits {
            body_timeout: ms(300),
            ..tiny()
        })
        .await;
        let mut stream = connect(addr).await;
        stream
            .write_all(format!("{}{}", head(100, false), body(10)).as_bytes())
            .await
            .expect("write");
        let (text, closed) = until_closed(&mut stream).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            text.contains("\"__type\":\"RequestTimeoutException\""),
            "{text}"
        );
        let closed = closed.expect("closed after the answer");
        assert!(closed >= ms(250) && closed < ms(1000), "{closed:?}");
    }
}
