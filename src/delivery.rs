//! Delivery protocol.
