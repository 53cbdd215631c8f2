//! Sinks: where buffered batches go (DESIGN.md §6).
//!
//! A sink client knows HTTP and nothing of sampling or of the buffer; the
//! [`crate::agent`] reads the buffer and drives the clients. Retry policy is
//! shared: exponential backoff with full jitter ([`crate::retry`]).

pub mod pushgateway;

pub use pushgateway::{
    PushClass, PushError, PushgatewayBuilder, PushgatewayClient, PushgatewayConfigError, Secret,
    normalize_base_url,
};
