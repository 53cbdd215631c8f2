//! What a run sends beyond prompts, and the search it may run instead of one
//! measurement: `dataset` and `sweep` of `POST /api/v1/benchmarks`, checked
//! here and turned into the load generator's flags (`aif-loadgen
//! --dataset …`, `--sweep …`; the generator's README sections define them).
//!
//! - `dataset` (OpenAI workloads; replaces `prompts` and
//!   `synthetic_prompt_words`), by `kind`:
//!   - `random`: `input_len`, `output_len`, `range_ratio`, `prefix_len` as
//!     `vllm bench serve`'s random dataset (words stand for tokens); sets
//!     each request's `max_tokens`, so `max_tokens` is refused;
//!   - `sharegpt`: `path` of a ShareGPT JSON file on the load node(s);
//!     `output_len` N or `"reference"` (the reference answer's length) sets
//!     `max_tokens` (then refused), absent: `max_tokens` as usual;
//!   - `trace`: `path` of a Mooncake-layout JSONL trace on the load node(s),
//!     replayed at its own times: closed-loop mode without `concurrency`
//!     (the trace is the load), no `max_tokens`, no `sweep`.
//! - `sweep`: the SLO capacity search. Its load is the mode's: from
//!   `requests_per_second` (open loop) or `concurrency` (closed loop, by
//!   default one client) up to `sweep.max` (at or below the start: the start
//!   alone, one step); `duration_seconds` and `warmup_seconds` are each
//!   step's. Needs `goodput`; one load node; no live metrics (the result
//!   holds every step).
//!
//! - `tokenizer_path` (OpenAI workloads): a Hugging Face `tokenizer.json`
//!   that counts prompt and output tokens (`aif-loadgen --tokenizer`).
//!
//! Paths are absolute, printable and passed as one argument each: the API
//! never reads them (the files live on the nodes); the generator refuses a
//! missing or malformed file, and the run fails naming it.

use aif_loadgen::plan::Args;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits;
use crate::model::{LoadMode, RunSpec};
use crate::validate::ApiError;

/// `dataset` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// vLLM's random dataset.
    Random {
        /// Mean input length, words (default 1024).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_len: Option<i64>,
        /// Mean output length: each request's `max_tokens` (default 128).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_len: Option<i64>,
        /// Lengths drawn from `[len·(1−r), len·(1+r)]`, r in [0, 1) (default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range_ratio: Option<f64>,
        /// Words of a prefix every prompt shares (default 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_len: Option<i64>,
    },
    /// A ShareGPT JSON file.
    Sharegpt {
        /// The file on the load node(s).
        path: String,
        /// Each request's `max_tokens`: a number, or the reference answer's length.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_len: Option<ShareGptOutputLen>,
    },
    /// A Mooncake-layout JSONL trace, replayed at its own times.
    Trace {
        /// The file on the load node(s).
        path: String,
    },
}

/// `dataset.output_len` of a ShareGPT dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareGptOutputLen {
    /// This many tokens for every request.
    Tokens(i64),
    /// `"reference"`: the reference answer's length in words.
    Reference,
}

impl Serialize for ShareGptOutputLen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ShareGptOutputLen::Tokens(n) => s.serialize_i64(*n),
            ShareGptOutputLen::Reference => s.serialize_str("reference"),
        }
    }
}

impl<'de> Deserialize<'de> for ShareGptOutputLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == "reference" => Ok(ShareGptOutputLen::Reference),
            serde_json::Value::Number(n) if n.is_i64() => {
                Ok(ShareGptOutputLen::Tokens(n.as_i64().unwrap_or_default()))
            }
            other => Err(serde::de::Error::custom(format!(
                "`dataset.output_len` must be a whole number or \"reference\", got {other}"
            ))),
        }
    }
}

impl DatasetSpec {
    /// `random`, `sharegpt` or `trace`.
    pub fn kind(&self) -> &'static str {
        match self {
            DatasetSpec::Random { .. } => "random",
            DatasetSpec::Sharegpt { .. } => "sharegpt",
            DatasetSpec::Trace { .. } => "trace",
        }
    }

    /// Whether it sets each request's `max_tokens` (which the run then
    /// may not give).
    pub fn sets_max_tokens(&self) -> bool {
        match self {
            DatasetSpec::Random { .. } | DatasetSpec::Trace { .. } => true,
            DatasetSpec::Sharegpt { output_len, .. } => output_len.is_some(),
        }
    }

    /// Checks the ranges and the path.
    ///
    /// # Errors
    /// `400` naming the field (`dataset.input_len`, …).
    pub fn validate(&self) -> Result<(), ApiError> {
        match self {
            DatasetSpec::Random {
                input_len,
                output_len,
                range_ratio,
                prefix_len,
            } => {
                for (v, limit) in [
                    (input_len, limits::DATASET_INPUT_LEN),
                    (output_len, limits::DATASET_OUTPUT_LEN),
                    (prefix_len, limits::DATASET_PREFIX_LEN),
                ] {
                    if let Some(v) = v {
                        limit.check(*v)?;
                    }
                }
                if let Some(r) = range_ratio
                    && !(r.is_finite() && (0.0..1.0).contains(r))
                {
                    return Err(ApiError::bad_field(
                        "dataset.range_ratio",
                        "`dataset.range_ratio` must be at least 0 and below 1",
                    ));
                }
                Ok(())
            }
            DatasetSpec::Sharegpt { path, output_len } => {
                check_path("dataset.path", path)?;
                if let Some(ShareGptOutputLen::Tokens(n)) = output_len {
                    limits::DATASET_OUTPUT_LEN.check(*n)?;
                }
                Ok(())
            }
            DatasetSpec::Trace { path } => check_path("dataset.path", path),
        }
    }
}

/// Checks that `path` (of request field `field`) is absolute, printable and
/// at most [`limits::DATASET_PATH_CHARS`] long.
///
/// # Errors
/// `400` naming `field`.
pub fn check_path(field: &str, path: &str) -> Result<(), ApiError> {
    let l = limits::DATASET_PATH_CHARS;
    if !path.starts_with('/')
        || !l.contains_len(path.chars().count())
        || path.chars().any(char::is_control)
    {
        return Err(ApiError::bad_field(
            field,
            format!(
                "`{field}` must be an absolute path of at most {} printable characters",
                l.max
            ),
        ));
    }
    Ok(())
}

/// `sweep` of a run: the SLO capacity search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The highest load: request rate (open loop) or clients (closed loop).
    pub max: i64,
    /// Percent of requests that must meet every goodput SLO, (0, 100] (default 99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_percent: Option<f64>,
    /// The bisection stops when the bounds are this close, percent, (0, 100] (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_percent: Option<f64>,
}

impl SweepSpec {
    /// The search's first load: the mode's rate or clients.
    pub fn start(spec: &RunSpec) -> i64 {
        match spec.mode {
            LoadMode::OpenLoop => spec.requests_per_second.unwrap_or(1),
            LoadMode::ClosedLoop => spec.concurrency,
        }
    }

    /// The most steps the search can run: the doublings from the start to
    /// `max`, then the halvings of the last doubling down to the tolerance
    /// (for clients, to adjacent integers), each bound plus one.
    pub fn max_steps(&self, spec: &RunSpec) -> i64 {
        let start = SweepSpec::start(spec).max(1) as f64;
        let growth = (self.max as f64 / start).log2().max(0.0).ceil() as i64 + 1;
        let tolerance = self.tolerance_percent.unwrap_or(5.0).max(1e-6) / 100.0;
        let mut bisect = (1.0 / tolerance).log2().max(0.0).ceil() as i64 + 1;
        if spec.mode == LoadMode::ClosedLoop {
            bisect = bisect.min((self.max as f64).log2().ceil() as i64 + 1);
        }
        growth + bisect
    }

    /// Checks the sweep against the run it belongs to (`spec` holds the
    /// validated mode, load and goodput).
    ///
    /// # Errors
    /// `400` naming the field: `sweep.max` out of the mode's range, a
    /// percent out of range, no `goodput`.
    pub fn validate(&self, spec: &RunSpec) -> Result<(), ApiError> {
        let limit = match spec.mode {
            LoadMode::OpenLoop => limits::SWEEP_MAX_RATE,
            LoadMode::ClosedLoop => limits::SWEEP_MAX_CLIENTS,
        };
        limit.check(self.max)?;
        for (v, field) in [
            (self.target_percent, "sweep.target_percent"),
            (self.tolerance_percent, "sweep.tolerance_percent"),
        ] {
            if let Some(v) = v
                && !limits::SWEEP_PERCENT.contains(v)
            {
                return Err(ApiError::bad_field(
                    field,
                    format!("`{field}` must be > 0 and at most 100"),
                ));
            }
        }
        if spec.goodput.is_none() {
            return Err(ApiError::bad_field(
                "goodput",
                "missing field `goodput` (a sweep searches for the largest load meeting it)",
            ));
        }
        Ok(())
    }
}

/// Sets the dataset and sweep flags of `spec` on the generator's `args`
/// (built for one plain run: a sweep replaces its load and duration flags).
pub fn apply(spec: &RunSpec, args: &mut Args) {
    if let Some(d) = &spec.dataset {
        args.dataset = Some(d.kind().to_string());
        match d {
            DatasetSpec::Random {
                input_len,
                output_len,
                range_ratio,
                prefix_len,
            } => {
                args.input_len = input_len.and_then(|v| usize::try_from(v).ok());
                args.output_len = output_len.and_then(|v| u32::try_from(v).ok());
                args.range_ratio = *range_ratio;
                args.prefix_len = prefix_len.and_then(|v| usize::try_from(v).ok());
            }
            DatasetSpec::Sharegpt { path, output_len } => {
                args.dataset_path = Some(path.into());
                match output_len {
                    Some(ShareGptOutputLen::Tokens(n)) => {
                        args.sharegpt_output_len = u32::try_from(*n).ok();
                    }
                    Some(ShareGptOutputLen::Reference) => args.sharegpt_reference_len = true,
                    None => {}
                }
            }
            DatasetSpec::Trace { path } => {
                args.dataset_path = Some(path.into());
                // The trace is the load.
                args.concurrency = None;
            }
        }
    }
    if let Some(t) = &spec.tokenizer_path {
        args.tokenizer = Some(t.into());
    }
    if let Some(s) = &spec.sweep {
        let start = SweepSpec::start(spec) as f64;
        args.sweep = Some(
            match spec.mode {
                LoadMode::OpenLoop => "rate",
                LoadMode::ClosedLoop => "concurrency",
            }
            .to_string(),
        );
        args.sweep_min = Some(start);
        // A `max` at or below the start: the start alone (one step).
        args.sweep_max = Some(start.max(s.max as f64));
        args.sweep_step_duration = Some(format!("{}s", spec.duration_seconds));
        args.goodput_target = s.target_percent;
        args.sweep_tolerance = s.tolerance_percent;
        args.concurrency = None;
        args.request_rate = None;
        args.duration = None;
        // Steps have no live metrics: the result holds every step.
        args.pushgateway = None;
    }
}

#[cfg(test)]
mod tests;
