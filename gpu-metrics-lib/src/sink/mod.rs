//! Sinks: where buffered batches go (DESIGN.md §6).
//!
//! A sink client knows HTTP and nothing of sampling or of the buffer. A
//! [`Sink`] wraps a client for [`crate::delivery`], the one loop that reads
//! the buffer and drives every sink: a sink supplies only how to deliver a
//! set of batches ([`Sink::deliver`]) and how to classify a failure
//! ([`SinkFailure::class`]). Retry policy is shared: exponential backoff with
//! full jitter ([`crate::retry`]).
//!
//! - [`PushgatewaySink`]: the live view, newest batch only ([`Order::Newest`]).
//! - [`RemoteWriteSink`]: history, every batch oldest first with its original
//!   timestamp ([`Order::Oldest`]).
//!
//! Both clients share their HTTP settings (URL, authentication, timeouts,
//! retry policy, `User-Agent`), their build error ([`BuildError`]) and the
//! failure classes ([`FailureClass`]), in `http.rs`.

mod http;
pub mod prompb;
pub mod pushgateway;
pub mod remote_write;
mod sinks;
mod wire;

use std::sync::Arc;

pub use http::{
    BuildError, DEFAULT_USER_AGENT, FailureClass, Secret, SinkKind, normalize_base_url,
};
pub use pushgateway::{PushError, PushgatewayBuilder, PushgatewayClient};
pub use remote_write::{
    DEFAULT_MAX_SAMPLES_PER_REQUEST, Refusal, RemoteWriteBuilder, RemoteWriteClient,
    RemoteWriteError,
};
pub(crate) use sinks::SELF_METRICS_EVERY;
pub use sinks::{PUSHGATEWAY_SINK, PushgatewaySink, REMOTE_WRITE_SINK, RemoteWriteSink};

use crate::retry::BackoffPolicy;
use crate::sample::Batch;

/// Which batches a sink wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Latest state: only the newest batch; older undelivered ones are
    /// superseded (counted, never sent).
    Newest,
    /// History: every batch, oldest first, with its original timestamp.
    Oldest {
        /// The most samples one delivery should carry (the loop reads about
        /// this many from the buffer at a time; at least one batch).
        max_samples: usize,
    },
}

/// What one successful [`Sink::deliver`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Samples the receiver accepted.
    pub samples: u64,
    /// Samples the receiver refused for good, by reason label (they are
    /// dropped, counted and never retried).
    pub refused: Vec<(&'static str, u64)>,
}

/// A failed delivery: how to handle it.
pub trait SinkFailure: std::error::Error + Send + Sync + 'static {
    /// Permanent (drop these batches, count them), configuration (keep the
    /// data, retry at the maximum backoff) or retryable (back off).
    fn class(&self) -> FailureClass;
    /// Short label value for `aif_exporter_pushes_total{result}`.
    fn result_label(&self) -> &'static str;
}

impl SinkFailure for PushError {
    fn class(&self) -> FailureClass {
        PushError::class(self)
    }
    fn result_label(&self) -> &'static str {
        PushError::result_label(self)
    }
}

impl SinkFailure for RemoteWriteError {
    fn class(&self) -> FailureClass {
        RemoteWriteError::class(self)
    }
    fn result_label(&self) -> &'static str {
        RemoteWriteError::result_label(self)
    }
}

/// One destination of buffered batches, driven by [`crate::delivery`].
pub trait Sink: Send {
    /// The sink's name: its cursor in the buffer and its `sink` label.
    fn name(&self) -> &'static str;
    /// Where it delivers, for logs (never credentials).
    fn target(&self) -> &str;
    /// Which batches it wants.
    fn order(&self) -> Order;
    /// Its retry policy.
    fn backoff(&self) -> BackoffPolicy;
    /// Delivers `batches` (oldest first; one batch for [`Order::Newest`]).
    ///
    /// # Errors
    /// A [`SinkFailure`] whose class decides what the loop does.
    fn deliver(&mut self, batches: &[Arc<Batch>]) -> Result<Delivered, Box<dyn SinkFailure>>;
    /// Whether the loop makes one last delivery on clean shutdown; called
    /// once, then, before that delivery.
    fn flush_on_shutdown(&mut self) -> bool {
        true
    }
    /// Called once on clean shutdown, after the last delivery (e.g. to
    /// delete a Pushgateway group).
    fn close(&mut self) {}
}
