//! Sinks: where buffered batches go (DESIGN.md §6).
//!
//! A sink client knows HTTP and nothing of sampling or of the buffer; the
//! [`crate::agent`] reads the buffer and drives the clients. Retry policy is
//! shared: exponential backoff with full jitter ([`backoff`]).

pub mod backoff;
pub mod pushgateway;

pub use backoff::{Backoff, BackoffPolicy};
pub use pushgateway::{
    PushClass, PushError, PushgatewayBuilder, PushgatewayClient, PushgatewayConfigError, Secret,
};
