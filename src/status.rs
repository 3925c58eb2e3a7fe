//! What each stream is doing, for operators: its state and its liveness.
//!
//! Role: one [`StreamStatus`] per stream, shared (`Arc`) by the stages that know
//! something about it and by those that report it. Writers: the supervisor in
//! `app` (starting, active after recovery, failing when the pipeline fails, draining
//! at shutdown), the S3 sink (failing while a request fails in a way an operator must
//! fix, such as a missing bucket; active again when it succeeds) and every loop of the
//! pipeline, which [`StreamStatus::tick`]s as it makes progress or waits by design.
//! Readers: the API (`/readyz`, `DescribeDeliveryStream`'s status and
//! `FailureDescription`, `/healthz`), the metrics, and the systemd notifier in
//! `service` (READY once no stream is starting, the watchdog only while every
//! stream's loops tick).
//!
//! It also knows what the stream holds but has not delivered (the open epoch and
//! the closed ones delivery has not committed yet): the buffer and delivery report
//! epochs opening, growing, closing and committing, and `/metrics` reads the age of
//! the oldest such record (Firehose's `DeliveryToS3.DataFreshness`) and the counts
//! when it is scraped, so a stream stuck on a failing S3 shows its data ageing.
//!
//! Liveness is not a timer that pings regardless: ticks come from the loops
//! themselves (the buffer's between batches and while idle, delivery's per epoch and
//! per S3 attempt, including the waits between attempts), so a pipeline stuck in a
//! call that never returns stops ticking and the watchdog notices.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::Fault;

/// Where a stream is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Recovering (claims, staged objects, the log) before it first runs.
    Starting,
    /// Running.
    Active,
    /// Something fails and is being retried; `reason` says what, `fault` whose.
    Failing {
        /// The error, as logged.
        reason: String,
        /// Whose fault it is (Firehose's `FailureDescription.Type` is derived from it).
        fault: Fault,
        /// When it started failing (ms since the epoch).
        since_ms: i64,
    },
    /// Shutting down: delivering what it holds.
    Draining,
}

impl State {
    /// A short name for logs, metrics and the API.
    pub fn name(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Active => "active",
            State::Failing { .. } => "failing",
            State::Draining => "draining",
        }
    }
}

/// Source records read into one epoch and not delivered yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Arrival time of its oldest record (ms since the epoch).
    pub oldest_ms: i64,
    /// Source records.
    pub records: u64,
    /// Their bytes, as they came from the source.
    pub bytes: u64,
}

/// What a stream holds and has not delivered.
#[derive(Debug, Default)]
struct Undelivered {
    /// The epoch the buffer is filling.
    open: Option<Held>,
    /// Closed epochs, oldest first, until delivery commits them (in order).
    closed: VecDeque<Held>,
}

/// One stream's state and the time of its loops' last tick.
#[derive(Debug)]
pub struct StreamStatus {
    name: String,
    state: Mutex<State>,
    undelivered: Mutex<Undelivered>,
    /// Milliseconds since `born` at the last tick.
    last_tick: AtomicU64,
    born: Instant,
}

impl StreamStatus {
    /// A starting stream.
    pub fn new(name: &str) -> Self {
        StreamStatus {
            name: name.to_owned(),
            state: Mutex::new(State::Starting),
            undelivered: Mutex::default(),
            last_tick: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change is one assignment: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.lock().clone()
    }

    fn set(&self, next: State) {
        let mut state = self.lock();
        if *state != next {
            tracing::debug!(stream = %self.name, from = state.name(), to = next.name(), "Stream state changed.");
            crate::metrics::set(
                "sluice_stream_up",
                "1 while the stream is active, 0 while it is starting, failing or draining.",
                &[("stream", &self.name)],
                f64::from(matches!(next, State::Active)),
            );
            *state = next;
        }
        drop(state);
        self.tick();
    }

    /// Recovery is done, or a failure cleared. A draining stream stays draining.
    pub fn active(&self) {
        match self.state() {
            State::Draining => return,
            State::Failing { .. } => tracing::info!(stream = %self.name, "Stream recovered."),
            State::Starting | State::Active => {}
        }
        self.set(State::Active);
    }

    /// Something fails and is retried. A draining stream stays draining (its
    /// failures are logged by whoever retries).
    pub fn failing(&self, reason: impl Into<String>, fault: Fault) {
        let reason = reason.into();
        let since_ms = match &*self.lock() {
            State::Draining => return,
            State::Failing { since_ms, .. } => *since_ms,
            _ => jiff::Timestamp::now().as_millisecond(),
        };
        self.set(State::Failing {
            reason,
            fault,
            since_ms,
        });
    }

    /// A failure an S3 request reported is gone: back to active, unless the
    /// stream is still starting (recovery says when it is done) or draining.
    pub fn cleared(&self) {
        if matches!(*self.lock(), State::Failing { .. }) {
            self.active();
        }
    }

    /// Shutdown began.
    pub fn draining(&self) {
        self.set(State::Draining);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Undelivered> {
        self.undelivered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buffer's open epoch holds this much (set after each source batch).
    pub fn epoch_holds(&self, held: Held) {
        self.held().open = Some(held);
    }

    /// The buffer closed its open epoch and hands it to delivery.
    pub fn epoch_closed(&self) {
        let mut u = self.held();
        if let Some(held) = u.open.take() {
            u.closed.push_back(held);
        }
    }

    /// Delivery committed (and completed) the oldest closed epoch.
    pub fn epoch_delivered(&self) {
        self.held().closed.pop_front();
    }

    /// The pipeline (re)starts from its checkpoint: what it held is read again.
    pub fn pipeline_started(&self) {
        *self.held() = Undelivered::default();
    }

    /// Everything read and not delivered, summed; `oldest_ms` is the oldest
    /// arrival among it. `None` when nothing is held.
    pub fn undelivered(&self) -> Option<Held> {
        let u = self.held();
        u.closed.iter().chain(&u.open).copied().reduce(|a, b| Held {
            oldest_ms: a.oldest_ms.min(b.oldest_ms),
            records: a.records + b.records,
            bytes: a.bytes + b.bytes,
        })
    }

    /// The stream's loops made progress, or are waiting by design.
    pub fn tick(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last_tick.store(now, Ordering::Relaxed);
    }

    /// Time since the last tick.
    pub fn since_tick(&self) -> Duration {
        let now = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_tick.load(Ordering::Relaxed)))
    }
}

/// How often a failure an operator must fix (bucket missing, access denied,
/// stream not found) is retried: `sluice run --operator-retry-secs`, 60 s by
/// default. One value per process, set at start-up, read by the S3 retry loop and
/// the pipeline supervisor.
static OPERATOR_RETRY_MS: AtomicU64 = AtomicU64::new(60_000);

/// Sets [`operator_retry`].
pub fn set_operator_retry(every: Duration) {
    OPERATOR_RETRY_MS.store(every.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// How often a failure an operator must fix is retried.
pub fn operator_retry() -> Duration {
    Duration::from_millis(OPERATOR_RETRY_MS.load(Ordering::Relaxed))
}

tokio::task_local! {
    /// The stream whose pipeline runs in this task ([`scope`]).
    static CURRENT: std::sync::Arc<StreamStatus>;
}

/// Runs `f` as work of the stream `status`: code deep in a stage (the S3 retry
/// loop) reports to it through [`current`] without every call carrying it, as a
/// tracing span carries the stream's name. Tasks spawned for the stream take it
/// along with [`current`] + `scope`.
pub async fn scope<F: std::future::Future>(
    status: std::sync::Arc<StreamStatus>,
    f: F,
) -> F::Output {
    CURRENT.scope(status, f).await
}

/// The stream this task works for, if any.
pub fn current() -> Option<std::sync::Arc<StreamStatus>> {
    CURRENT.try_with(std::sync::Arc::clone).ok()
}

/// A future that runs as work of the current stream, for spawning: its status
/// and its tracing span (every log line of the task names the stream).
pub fn in_current<F: std::future::Future>(f: F) -> impl std::future::Future<Output = F::Output> {
    use tracing::Instrument;
    let status = current();
    async move {
        match status {
            Some(status) => scope(status, f).await,
            None => f.await,
        }
    }
    .in_current_span()
}

/// Sleeps `total`, ticking `status` every second: a wait by design (a retry's
/// backoff) is not a wedged loop.
pub async fn sleep_ticking(status: Option<&StreamStatus>, total: Duration) {
    let deadline = tokio::time::Instant::now() + total;
    loop {
        if let Some(status) = status {
            status.tick();
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_move_as_the_supervisor_and_the_sink_say() {
        let s = StreamStatus::new("s");
        assert_eq!(s.state(), State::Starting);
        // A sink's success during recovery does not make the stream active.
        s.cleared();
        assert_eq!(s.state(), State::Starting);
        s.failing("NoSuchBucket", Fault::Config);
        let State::Failing { since_ms, .. } = s.state() else {
            panic!("{:?}", s.state());
        };
        // Failing again keeps the first time it failed.
        std::thread::sleep(Duration::from_millis(5));
        s.failing("AccessDenied", Fault::Config);
        assert!(
            matches!(s.state(), State::Failing { since_ms: t, ref reason, .. } if t == since_ms && reason == "AccessDenied")
        );
        s.cleared();
        assert_eq!(s.state(), State::Active);
        s.draining();
        s.failing("late", Fault::Remote);
        s.active();
        assert_eq!(s.state(), State::Draining);
    }

    #[test]
    fn undelivered_records_are_counted_until_their_epoch_is_delivered() {
        let s = StreamStatus::new("s");
        assert_eq!(s.undelivered(), None);
        let first = Held {
            oldest_ms: 1_000,
            records: 2,
            bytes: 20,
        };
        s.epoch_holds(first);
        s.epoch_closed();
        // An epoch with nothing opened (a shard's end alone) moves nothing.
        s.epoch_closed();
        s.epoch_holds(Held {
            oldest_ms: 5_000,
            records: 3,
            bytes: 30,
        });
        assert_eq!(
            s.undelivered(),
            Some(Held {
                oldest_ms: 1_000,
                records: 5,
                bytes: 50
            })
        );
        s.epoch_delivered();
        assert_eq!(
            s.undelivered(),
            Some(Held {
                oldest_ms: 5_000,
                records: 3,
                bytes: 30
            })
        );
        s.pipeline_started();
        assert_eq!(s.undelivered(), None);
    }

    #[test]
    fn ticks_measure_liveness() {
        let s = StreamStatus::new("s");
        std::thread::sleep(Duration::from_millis(30));
        assert!(s.since_tick() >= Duration::from_millis(30));
        s.tick();
        assert!(s.since_tick() < Duration::from_millis(30));
    }
}
