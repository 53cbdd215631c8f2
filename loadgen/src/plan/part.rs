//! `--parts`, `--part-index` and `--start-at`: one process's share of a run
//! split over several (one per node of a Slurm step), and when they all start.

use std::path::PathBuf;

use super::{Args, PlanError, invalid};

/// Most processes a run can be split over (`--parts`).
pub const MAX_PARTS: usize = 256;

/// The environment variable `--part-index` defaults to (set by Slurm in each
/// task of a step).
pub const PART_INDEX_ENV: &str = "SLURM_PROCID";

/// `--start-at` values below this (2001-09-09 in ms) are refused: seconds
/// given for milliseconds.
const START_AT_MIN_MS: i64 = 1_000_000_000_000;

/// `--start-at` may be at most this far ahead (a typo would hang the run).
const START_AT_MAX_AHEAD_MS: i64 = 86_400_000;

/// This process's part of a run split over `count` processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// 0..count-1.
    pub index: usize,
    /// How many processes share the run (1: not split).
    pub count: usize,
}

impl Default for Part {
    fn default() -> Self {
        Part { index: 0, count: 1 }
    }
}

impl Part {
    /// This part's share of `total` clients: `total / count`, plus one for the
    /// parts whose index is below `total % count` (the shares sum to `total`).
    pub fn share(&self, total: usize) -> usize {
        total / self.count + usize::from(self.index < total % self.count)
    }

    /// `path` with every `%t` replaced by the part index (as in Slurm's
    /// filename patterns).
    pub fn expand(&self, path: &std::path::Path) -> PathBuf {
        match path.to_str() {
            Some(s) if s.contains("%t") => PathBuf::from(s.replace("%t", &self.index.to_string())),
            _ => path.to_path_buf(),
        }
    }
}

pub(super) fn part(a: &Args, procid: Option<&str>) -> Result<Part, PlanError> {
    let count = a.parts.unwrap_or(1);
    if !(1..=MAX_PARTS).contains(&count) {
        return Err(invalid(
            "parts",
            format!("{count} is not in 1..={MAX_PARTS}"),
        ));
    }
    let index = match (a.part_index, procid) {
        (Some(i), _) => i,
        (None, _) if count == 1 => 0,
        (None, None) => return Err(PlanError::NoPartIndex { parts: count }),
        (None, Some(v)) => v
            .trim()
            .parse()
            .map_err(|_| PlanError::BadPartIndexEnv { value: v.into() })?,
    };
    if index >= count {
        let from = if a.part_index.is_some() {
            String::new()
        } else {
            format!(" (from ${PART_INDEX_ENV})")
        };
        return Err(invalid(
            "part-index",
            format!("{index}{from} is not below --parts {count}"),
        ));
    }
    Ok(Part { index, count })
}

pub(super) fn start_at(v: Option<i64>) -> Result<Option<i64>, PlanError> {
    let Some(ms) = v else { return Ok(None) };
    if ms < START_AT_MIN_MS {
        return Err(invalid(
            "start-at",
            format!("{ms} is not a time in ms since the Unix epoch (seconds given?)"),
        ));
    }
    if ms > gpu_metrics::now_ms() + START_AT_MAX_AHEAD_MS {
        return Err(invalid(
            "start-at",
            format!("{ms} is more than a day ahead"),
        ));
    }
    Ok(Some(ms))
}

/// `total` clients split over the parts: this part's share, refused when a
/// part would get none.
pub(super) fn shared_clients(
    part: Part,
    flag: &'static str,
    total: usize,
) -> Result<usize, PlanError> {
    if total < part.count {
        return Err(PlanError::Unshareable {
            flag,
            value: total,
            parts: part.count,
        });
    }
    Ok(part.share(total))
}
