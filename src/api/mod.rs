//! Firehose data-plane HTTP API.
