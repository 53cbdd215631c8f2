//! # gpu_metrics
//!
//! Sample GPUs through NVML, keep every sample, push it where it is needed.
//! Synchronous: plain threads, no async runtime (DESIGN.md §3).
//!
//! The pieces, each usable alone:
//! - [`source`]: where readings come from ([`source::NvmlSource`] for real GPUs,
//!   [`source::SimulatedSource`] for machines without one). Knows nothing of names
//!   or HTTP.
//! - [`naming`]: readings → a [`Batch`] of series, native (`aif_gpu_*`) or
//!   dcgm-exporter compatible names, with attribution labels.
//! - [`sample`]: the series, labels and batches everything passes around;
//!   [`catalogue`]: every name the crate emits, with its type and help text;
//!   [`units`]: human-written durations (`100ms`, `5m`); [`url`]: the one
//!   `http://`/`https://` URL parser every program uses.
//! - [`exposition`]: a batch → Prometheus text exposition.
//! - [`retry`]: exponential backoff with full jitter, for every retry loop.
//! - [`rng`]: the seeded pseudo-random generators (SplitMix64, xoshiro256\*\*).
//! - [`sink`], [`buffer`], [`agent`]: the write-ahead buffer and the
//!   Pushgateway and remote-write clients that deliver it; [`delivery`]: the
//!   one loop a sink runs in. `fasthash` (private): the hasher of the hot maps.
//! - `ssh`, `tunnel` (feature `ssh`, on by default; libssh2 and a static
//!   OpenSSL): SSH sessions and the tunnels the sinks can push through.
//!   Without it (`default-features = false`) the crate samples, buffers and
//!   pushes directly. [`shell`] (quoting for POSIX shells) needs no SSH.
//!
//! ## Sample and render once
//!
//! ```
//! use gpu_metrics::{Exposition, Labels, NameScheme, Namer};
//! use gpu_metrics::source::{GpuSource, SimulatedSource};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Real GPUs: `NvmlSource::builder().build()?` instead.
//! let mut source = SimulatedSource::new(8, 42)?;
//! let mut namer = Namer::new(NameScheme::Native, Labels::from_pairs([("run_id", "r1")]), "node1");
//! let now = gpu_metrics::now_ms();
//! let batch = namer.batch(now, &source.sample(now)?);
//! let text = Exposition::new().render(&batch);
//! assert!(text.contains("aif_gpu_power_watts{"));
//! # Ok(())
//! # }
//! ```

pub mod agent;
pub mod buffer;
pub mod catalogue;
pub mod clock;
pub mod delivery;
pub mod exposition;
mod fasthash;
pub mod naming;
pub mod retry;
pub mod rng;
pub mod sample;
pub mod shell;
pub mod sink;
pub mod source;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod transport;
#[cfg(feature = "ssh")]
pub mod tunnel;
pub mod units;
pub mod url;

pub use exposition::Exposition;
pub use naming::{HostLabel, NameScheme, Namer};
pub use sample::{Batch, Labels, MetricKind, Sample, Series, now_ms};

/// The README's Rust examples, compiled and run as doc tests so the README
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
