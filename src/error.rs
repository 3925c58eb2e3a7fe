//! Error classification shared by every module.
//!
//! Each module keeps its own error enum (`WalError`, `SinkError`, ...). What the
//! pipeline needs from all of them is the same two answers: may the operation be
//! retried, and whose fault is it. [`Classify`] gives those answers so retry loops
//! and logs treat every stage alike without knowing its error type.

/// Who has to act for an error to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operator's configuration is wrong (bad option, missing bucket, denied access).
    Config,
    /// A remote service or the machine failed (5xx, timeout, disk full).
    Remote,
    /// The input data is bad (malformed record, schema mismatch).
    Data,
    /// sluice itself is wrong: a state that should not be reachable.
    Bug,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Config => "config",
            Fault::Remote => "remote",
            Fault::Data => "data",
            Fault::Bug => "bug",
        })
    }
}

/// Implemented by every module error enum.
pub trait Classify {
    /// Whether repeating the same operation later can succeed.
    fn is_retriable(&self) -> bool;
    /// Whose fault the error is.
    fn fault(&self) -> Fault;
}
