//! Live metrics (placeholder until the agent's `BatchSource` lands).

use crate::loadgen::engine::Shared;
use crate::loadgen::plan::{LivePlan, Plan};

/// Why live metrics could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Not available in this build.
    #[error("live metrics are not available yet")]
    Unavailable,
}

/// The running live metrics.
#[derive(Debug)]
pub struct Live;

impl Live {
    /// Starts pushing.
    ///
    /// # Errors
    /// [`LiveError`].
    pub fn start(_live: &LivePlan, _plan: &Plan) -> Result<Live, LiveError> {
        Err(LiveError::Unavailable)
    }

    /// Hands the run's shared state to the metrics source.
    pub fn attach(&self, _s: &std::sync::Arc<Shared>) {}

    /// Last push (or DELETE of the group), waiting at most `limit`.
    pub fn shutdown(self, _limit: std::time::Duration) {}
}
