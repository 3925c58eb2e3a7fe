//! systemd's service protocol (`Type=notify`): readiness, status lines, stopping and
//! the watchdog, sent over `$NOTIFY_SOCKET` with the sd-notify crate. Without that
//! variable (not under systemd) every call here does nothing.
//!
//! Neighbours: `app` calls [`ready`] once no stream is starting any more (recovery
//! done and transforms compiled, or failing with a reason it reports), [`status`] as
//! streams change, [`stopping`] when the drain begins, and runs [`watchdog`] for the
//! life of the process. The watchdog's pings come from the streams' own liveness
//! ([`crate::status::StreamStatus::since_tick`]): while any stream's loops have not
//! ticked for half the watchdog interval, no ping is sent, and systemd restarts the
//! wedged service when the interval runs out.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::status::{State, StreamStatus};

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        // The service manager is gone or the socket is wrong: nothing to do
        // but say so; sluice itself keeps working.
        tracing::warn!(error = %e, "Cannot notify the service manager.");
    }
}

/// Start-up is finished: every stream is serving or reports why not.
pub fn ready(line: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(line)]);
}

/// A new status line (`systemctl status` shows it).
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// A reload began (READY follows when it is done).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The drain began.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// One line on the streams: how many are in each state, and the first failure.
pub fn summary(streams: &[Arc<StreamStatus>]) -> String {
    let (mut active, mut starting, mut draining) = (0, 0, 0);
    let mut failing = Vec::new();
    for s in streams {
        match s.state() {
            State::Active => active += 1,
            State::Starting => starting += 1,
            State::Draining => draining += 1,
            State::Failing { reason, .. } => failing.push(format!("{}: {reason}", s.name())),
        }
    }
    let mut line = format!("{active} of {} streams active", streams.len());
    for (n, what) in [(starting, "starting"), (draining, "draining")] {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    }
    if let Some(first) = failing.first() {
        line.push_str(&format!(", {} failing ({first})", failing.len()));
    }
    line.chars().take(200).collect()
}

/// Pings systemd's watchdog every third of `interval` while every stream's loops
/// tick at least every half `interval`; logs the stream that stopped ticking, once,
/// and again when it ticks again. Also refreshes the status line. Never returns.
pub async fn watchdog(streams: impl Fn() -> Vec<Arc<StreamStatus>>, interval: Duration) {
    let allowed = interval / 2;
    let mut wedged: Option<String> = None;
    let mut last_line = String::new();
    loop {
        tokio::time::sleep(interval / 3).await;
        let streams = streams();
        let stuck = streams.iter().find(|s| s.since_tick() > allowed);
        match (stuck, &wedged) {
            (Some(s), None) => {
                tracing::error!(
                    stream = s.name(),
                    silent_ms = s.since_tick().as_millis() as u64,
                    "A stream's pipeline has not made progress; no watchdog ping until it does."
                );
                wedged = Some(s.name().to_owned());
            }
            (None, Some(name)) => {
                tracing::info!(stream = %name, "The stream's pipeline runs again; watchdog pings resume.");
                wedged = None;
            }
            _ => {}
        }
        if wedged.is_none() {
            send(&[NotifyState::Watchdog]);
        }
        let line = summary(&streams);
        if line != last_line {
            status(&line);
            last_line = line;
        }
    }
}

/// The watchdog interval systemd set (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;

    #[test]
    fn the_summary_counts_states_and_names_the_first_failure() {
        let streams: Vec<Arc<StreamStatus>> = ["a", "b", "c"]
            .iter()
            .map(|n| Arc::new(StreamStatus::new(n)))
            .collect();
        assert_eq!(summary(&streams), "0 of 3 streams active, 3 starting");
        streams[0].active();
        streams[1].failing("S3 PutObject k: NoSuchBucket: gone", Fault::Config);
        streams[2].draining();
        assert_eq!(
            summary(&streams),
            "1 of 3 streams active, 1 draining, 1 failing (b: S3 PutObject k: NoSuchBucket: gone)"
        );
    }
}
