//! Logging from a plugin to sluice's log.
//!
//! In a component, [`log`] calls the world's `log` import: sluice writes the
//! line tagged with the module's name and rate-limits it, so a plugin that logs
//! per record cannot flood the daemon's log. On the host (plugin unit tests)
//! there is no sluice, so a line goes to stderr, where `cargo test` shows it
//! for a failing test, and to [`capture`]'s buffer when a test asks for it.

/// Severity of a log line (the WIT `level` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Writes one line to sluice's log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::wasm::log(level, message);

    #[cfg(not(target_arch = "wasm32"))]
    native::log(level, message);
}

/// Runs `f` and returns what it returned with the lines it logged on this
/// thread (host only: a test's way to check a plugin logs what it should).
#[cfg(not(target_arch = "wasm32"))]
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<(Level, String)>) {
    native::capture(f)
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::Level;
    use std::cell::RefCell;

    thread_local! {
        // Some(lines) while a capture() is running on this thread. Per thread
        // because cargo test runs tests on parallel threads.
        static CAPTURE: RefCell<Option<Vec<(Level, String)>>> = const { RefCell::new(None) };
    }

    pub(super) fn log(level: Level, message: &str) {
        // eprintln! goes through the test harness's output capture, so the
        // line shows under a failing test and stays quiet for passing ones.
        eprintln!("[{}] {message}", level.as_str());
        CAPTURE.with(|c| {
            if let Some(lines) = c.borrow_mut().as_mut() {
                lines.push((level, message.to_string()));
            }
        });
    }

    pub(super) fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<(Level, String)>) {
        let outer = CAPTURE.with(|c| c.replace(Some(Vec::new())));
        let result = f();
        let lines = CAPTURE.with(|c| c.replace(outer)).unwrap_or_default();
        (result, lines)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn capture_collects_lines_of_this_call_only() {
        log(Level::Info, "before");
        let ((), lines) = capture(|| {
            log(Level::Warn, "one");
            log(Level::Error, "two");
        });
        assert_eq!(
            lines,
            [
                (Level::Warn, "one".to_string()),
                (Level::Error, "two".to_string())
            ]
        );
    }
}
