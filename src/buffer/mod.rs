//! Buffer.
