//! The workloads benchmark users bring (`--dataset sharegpt|random|trace`),
//! as `vllm bench serve` defines them (`benchmark_dataset.py`), turned into
//! one request per entry: a prompt and, where the layout says, its own
//! `max_tokens`. Only `--workload completions|chat` takes them.
//!
//! # Design
//!
//! There is no tokenizer here: **whitespace-separated words stand for
//! tokens** everywhere below (a word is about 1.3 tokens of an English BPE
//! vocabulary; the server's `usage` still reports the real counts).
//!
//! - **sharegpt** (`--dataset-path FILE`): the ShareGPT JSON layout, one JSON
//!   array of objects, each with `conversations: [{"from": "human"|"gpt"|…,
//!   "value": "…"}]` (other keys ignored). An entry counts when it has at
//!   least 2 turns, one of them with `from == "human"` and a turn after it:
//!   the first human turn is the prompt, the turn after it the reference
//!   answer; other entries are skipped. `max_tokens`: `--sharegpt-output-len
//!   N` for every request (vLLM's `--sharegpt-output-len`), or with
//!   `--sharegpt-reference-len` the reference answer's length in words (vLLM
//!   uses its length in tokens), else `--max-tokens` as for other prompts.
//!   vLLM's pruning of short (< 4 tokens) and long (> 1024 prompt, > 2048
//!   total) entries needs a tokenizer and is not done. The file is parsed
//!   whole by serde (a ShareGPT file is ~650 MB in the wild: it is read once
//!   through a buffer, and only the prompt and the reference length of each
//!   entry are kept, not the other turns); a malformed file is refused naming
//!   `--dataset-path`, the file and the entry's index (0-based). Request n
//!   uses entry n mod count, as other prompts do.
//! - **random**: vLLM's random dataset. Each request's input length is drawn
//!   uniformly from the integers in `[floor(input_len * (1 - r)),
//!   ceil(input_len * (1 + r))]` (`--input-len`, default 1024;
//!   `--range-ratio` r, default 0, in [0, 1)), its output length likewise
//!   from `--output-len` (default 128); both are at least 1. The prompt is a
//!   random prefix of `--prefix-len` words (default 0) shared by every
//!   request, then input-length random words; `max_tokens` is the drawn output
//!   length (vLLM also sends `ignore_eos`; this does not, so a server may stop
//!   early). A pool of [`RANDOM_POOL`] requests is drawn once from `--seed`
//!   (fewer for very long prompts, so the prebuilt bodies stay under
//!   [`RANDOM_POOL_WORDS`] words); request n uses pool entry n mod pool.
//! - **trace** (`--dataset-path FILE`): the Mooncake trace layout, JSONL, one
//!   `{"timestamp": MS, "input_length": N, "output_length": N}` a line (other
//!   keys such as `hash_ids` ignored; timestamps non-decreasing, at most 7
//!   days from first to last). It is replayed at its own times: request i is
//!   due at the run's start + (timestamp_i − timestamp_0) ms, open loop
//!   (`--request-rate` and `--concurrency` refused, `--max-concurrency`
//!   allowed); its prompt is input_length random words (from `--seed`), its
//!   `max_tokens` the output_length. The run ends at the end of the trace or
//!   at `--duration`, whichever is first (`--duration` is optional), then
//!   drains. Each request's lateness (actual − scheduled send time, the open
//!   loop's `queue_wait`) is reported as `*_lateness_ms`. With `--parts N`
//!   part I replays lines I, I + N, I + 2N, … Bodies are built up front: a
//!   trace is limited to [`TRACE_MAX_WORDS`] input words in all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gpu_metrics::rng::{Rng, Xoshiro256};

use crate::plan::{Args, Part, PlanError};
use crate::prompts;
use crate::workload::{Api, OpenAiParams, openai_body};

/// Requests drawn once for `--dataset random`.
pub const RANDOM_POOL: usize = 1000;

/// Most words of all prebuilt random prompts together (the pool shrinks for
/// very long prompts).
pub const RANDOM_POOL_WORDS: usize = 40_000_000;

/// Most input words of all requests of a trace together.
pub const TRACE_MAX_WORDS: usize = 100_000_000;

/// Longest `--input-len`, `--prefix-len` and trace `input_length`, in words.
pub const MAX_WORDS: usize = 1_000_000;

/// Longest span of a trace (first to last timestamp), ms.
const TRACE_MAX_SPAN_MS: u64 = 7 * 86_400_000;

/// Which layout (`--dataset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// ShareGPT conversations.
    ShareGpt,
    /// vLLM's random dataset.
    Random,
    /// A Mooncake trace, replayed at its times.
    Trace,
}

impl DatasetKind {
    /// `sharegpt`, `random` or `trace` (the flag's value, the result's `dataset`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::ShareGpt => "sharegpt",
            DatasetKind::Random => "random",
            DatasetKind::Trace => "trace",
        }
    }

    /// The kind named `s`.
    ///
    /// # Errors
    /// [`PlanError::Invalid`] naming `--dataset`.
    pub fn parse(s: &str) -> Result<DatasetKind, PlanError> {
        match s {
            "sharegpt" => Ok(DatasetKind::ShareGpt),
            "random" => Ok(DatasetKind::Random),
            "trace" => Ok(DatasetKind::Trace),
            other => Err(PlanError::Invalid {
                flag: "dataset",
                message: format!("`{other}` is not one of: sharegpt, random, trace"),
            }),
        }
    }
}

/// One request of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The prompt.
    pub prompt: String,
    /// Its `max_tokens` (`None`: `--max-tokens`).
    pub max_tokens: Option<u32>,
}

/// A dataset loaded for a run.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Its layout.
    pub kind: DatasetKind,
    /// The requests (request n uses n mod len).
    pub requests: Vec<Request>,
    /// Trace only: request i's due time, seconds after the start.
    pub due_s: Option<Arc<[f64]>>,
}

/// Why a dataset file was refused (always `--dataset-path`).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One entry (ShareGPT: 0-based array index; trace: 1-based line) is malformed.
    #[error("{}: {what} {index}: {message}", path.display())]
    Entry {
        /// The file.
        path: PathBuf,
        /// `entry` or `line`.
        what: &'static str,
        /// Where.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is not acceptable.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl From<DatasetError> for PlanError {
    fn from(e: DatasetError) -> PlanError {
        PlanError::Invalid {
            flag: "dataset-path",
            message: e.to_string(),
        }
    }
}

/// How ShareGPT requests get `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareGptMaxTokens {
    /// `--max-tokens` (or none).
    Default,
    /// `--sharegpt-output-len N`.
    Fixed(u32),
    /// `--sharegpt-reference-len`: the reference answer's words.
    Reference,
}

#[derive(serde::Deserialize)]
struct Turn {
    from: String,
    value: String,
}

#[derive(serde::Deserialize)]
struct Conversation {
    conversations: Vec<Turn>,
}

/// The prompt and reference length of one ShareGPT entry, if it has them.
fn sharegpt_pair(c: Conversation) -> Option<(String, usize)> {
    if c.conversations.len() < 2 {
        return None;
    }
    let human = c.conversations.iter().position(|t| t.from == "human")?;
    let answer = c.conversations.get(human + 1)?;
    let words = answer.value.split_whitespace().count();
    let mut turns = c.conversations;
    Some((turns.swap_remove(human).value, words))
}

/// Visits the top-level array entry by entry, keeping only the pairs, and
/// naming the index of a malformed entry.
struct Entries;

impl<'de> serde::de::Visitor<'de> for Entries {
    type Value = Vec<(String, usize)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of {\"conversations\": [{\"from\": …, \"value\": …}]}")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut index = 0usize;
        loop {
            match seq.next_element::<Conversation>() {
                Ok(Some(c)) => out.extend(sharegpt_pair(c)),
                Ok(None) => return Ok(out),
                Err(e) => return Err(serde::de::Error::custom(format!("entry {index}: {e}"))),
            }
            index += 1;
        }
    }
}

struct EntriesSeed;

impl<'de> serde::de::DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<(String, usize)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(Entries)
    }
}

/// Reads a ShareGPT file (see the module doc): the first human turn of each
/// usable conversation, `max_tokens` as `max` says.
///
/// # Errors
/// [`DatasetError`] naming the file, and the entry's index when one is malformed.
pub fn read_sharegpt(path: &Path, max: ShareGptMaxTokens) -> Result<Vec<Request>, DatasetError> {
    use serde::de::DeserializeSeed;
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, file));
    let pairs = EntriesSeed
        .deserialize(&mut de)
        .and_then(|p| de.end().map(|()| p))
        .map_err(|e| {
            let message = e.to_string();
            match message
                .strip_prefix("entry ")
                .and_then(|r| r.split_once(':'))
                .and_then(|(i, m)| Some((i.parse().ok()?, m.trim_start().to_string())))
            {
                Some((index, message)) => DatasetError::Entry {
                    path: path.to_path_buf(),
                    what: "entry",
                    index,
                    message,
                },
                None => DatasetError::File {
                    path: path.to_path_buf(),
                    message: format!("not ShareGPT JSON: {message}"),
                },
            }
        })?;
    if pairs.is_empty() {
        return Err(DatasetError::File {
            path: path.to_path_buf(),
            message: "no conversation with a human turn followed by an answer".into(),
        });
    }
    Ok(pairs
        .into_iter()
        .map(|(prompt, words)| Request {
            prompt,
            max_tokens: match max {
                ShareGptMaxTokens::Default => None,
                ShareGptMaxTokens::Fixed(n) => Some(n),
                ShareGptMaxTokens::Reference => {
                    Some(u32::try_from(words.max(1)).unwrap_or(u32::MAX))
                }
            },
        })
        .collect())
}

/// The flags of `--dataset random`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomSpec {
    /// `--input-len`: mean input length, words.
    pub input_len: usize,
    /// `--output-len`: mean output length (`max_tokens`).
    pub output_len: u32,
    /// `--range-ratio`, in [0, 1).
    pub range_ratio: f64,
    /// `--prefix-len`: words of the prefix every prompt shares.
    pub prefix_len: usize,
}

/// `[floor(len * (1 - r)), ceil(len * (1 + r))]`, the low end at least 1.
pub fn length_range(len: usize, ratio: f64) -> (usize, usize) {
    let low = (len as f64 * (1.0 - ratio)).floor() as usize;
    let high = (len as f64 * (1.0 + ratio)).ceil() as usize;
    (low.max(1), high.max(1))
}

/// `words` random words (the vocabulary of [`prompts::synthetic`]) from `seed`.
fn words(n: usize, seed: u64) -> String {
    prompts::synthetic(1, n, seed).pop().unwrap_or_default()
}

impl RandomSpec {
    /// How many requests are drawn: [`RANDOM_POOL`], fewer when the prompts
    /// are so long that the pool would pass [`RANDOM_POOL_WORDS`].
    pub fn pool_size(&self) -> usize {
        let longest = self.prefix_len + length_range(self.input_len, self.range_ratio).1;
        (RANDOM_POOL_WORDS / longest.max(1)).clamp(1, RANDOM_POOL)
    }

    /// The pool of requests, reproducible for `seed`.
    pub fn requests(&self, seed: u64) -> Vec<Request> {
        let mut rng = Xoshiro256::new(seed ^ 0x0DA7_A5E7_0000_0001);
        let prefix = words(self.prefix_len, rng.next_u64());
        let (in_lo, in_hi) = length_range(self.input_len, self.range_ratio);
        let (out_lo, out_hi) = length_range(self.output_len as usize, self.range_ratio);
        (0..self.pool_size())
            .map(|_| {
                let n_in = in_lo + rng.below(in_hi - in_lo + 1);
                let n_out = out_lo + rng.below(out_hi - out_lo + 1);
                let body = words(n_in, rng.next_u64());
                let prompt = if prefix.is_empty() {
                    body
                } else {
                    format!("{prefix} {body}")
                };
                Request {
                    prompt,
                    max_tokens: Some(u32::try_from(n_out).unwrap_or(u32::MAX)),
                }
            })
            .collect()
    }
}

/// One line of a Mooncake trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TraceLine {
    /// When the request came, ms (any origin).
    pub timestamp: u64,
    /// Its input length (words here).
    pub input_length: usize,
    /// Its output length (`max_tokens`).
    pub output_length: u32,
}

/// Reads a Mooncake trace (JSONL; blank lines skipped).
///
/// # Errors
/// [`DatasetError`] naming the file and the 1-based line.
pub fn read_trace(path: &Path) -> Result<Vec<TraceLine>, DatasetError> {
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let entry = |index: usize, message: String| DatasetError::Entry {
        path: path.to_path_buf(),
        what: "line",
        index,
        message,
    };
    let mut out: Vec<TraceLine> = Vec::new();
    let mut total_words = 0usize;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| DatasetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let t: TraceLine = serde_json::from_str(&line).map_err(|e| {
            entry(
                i + 1,
                format!(
                    "{e} (expected {{\"timestamp\": MS, \"input_length\": N, \"output_length\": N}})"
                ),
            )
        })?;
        if !(1..=MAX_WORDS).contains(&t.input_length) {
            return Err(entry(
                i + 1,
                format!("input_length {} is not in 1..={MAX_WORDS}", t.input_length),
            ));
        }
        if t.output_length == 0 {
            return Err(entry(i + 1, "output_length must be at least 1".into()));
        }
        if let Some(first) = out.first() {
            if out.last().is_some_and(|l| t.timestamp < l.timestamp) {
                return Err(entry(
                    i + 1,
                    format!("timestamp {} is before the line above's", t.timestamp),
                ));
            }
            if t.timestamp - first.timestamp > TRACE_MAX_SPAN_MS {
                return Err(entry(i + 1, "more than 7 days after the first line".into()));
            }
        }
        total_words += t.input_length;
        if total_words > TRACE_MAX_WORDS {
            return Err(entry(
                i + 1,
                format!("the trace passes {TRACE_MAX_WORDS} input words in all"),
            ));
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err(DatasetError::File {
            path: path.to_path_buf(),
            message: "no requests (empty file)".into(),
        });
    }
    Ok(out)
}

/// The requests and due times (s after the start) of `lines`: a line is due
/// at its timestamp − `origin_ms` (the trace's first timestamp); prompts
/// reproducible for `seed`.
pub fn trace_requests(lines: &[TraceLine], origin_ms: u64, seed: u64) -> (Vec<Request>, Vec<f64>) {
    let mut rng = Xoshiro256::new(seed ^ 0x0DA7_A5E7_0000_0002);
    lines
        .iter()
        .map(|l| {
            let r = Request {
                prompt: words(l.input_length, rng.next_u64()),
                max_tokens: Some(l.output_length),
            };
            (r, l.timestamp.saturating_sub(origin_ms) as f64 / 1000.0)
        })
        .unzip()
}

/// [`openai_body`] for `prompt` with its own `max_tokens` (`None`: the
/// params' `--max-tokens`).
pub fn body(api: Api, params: &OpenAiParams, prompt: &str, max_tokens: Option<u32>) -> Vec<u8> {
    match max_tokens {
        None => openai_body(api, params, prompt),
        Some(n) => {
            let params = OpenAiParams {
                max_tokens: Some(n),
                ..params.clone()
            };
            openai_body(api, &params, prompt)
        }
    }
}

/// The mean rate of a trace's due times (requests per second over its span,
/// at least 1 s): the result's `request_rate`.
pub fn trace_rate(due_s: &[f64]) -> f64 {
    due_s.len() as f64 / due_s.last().copied().unwrap_or(0.0).max(1.0)
}

/// How long a trace's run sends: to just after its last request is due
/// (1 ms), or `given` (`--duration`) when that is shorter.
pub fn trace_duration(due_s: &[f64], given: Option<Duration>) -> Duration {
    let span = Duration::from_secs_f64(due_s.last().copied().unwrap_or(0.0).max(0.0))
        + Duration::from_millis(1);
    given.map_or(span, |g| g.min(span))
}

fn misplaced(flag: &'static str, only: &'static str) -> PlanError {
    PlanError::Misplaced { flag, only }
}

fn invalid(flag: &'static str, message: String) -> PlanError {
    PlanError::Invalid { flag, message }
}

/// Checks the dataset flags of `a` and loads the dataset (`None` without
/// `--dataset`). `part`: a trace is split line by line over the parts; `seed`:
/// the base seed (every part draws the same prompts).
///
/// # Errors
/// [`PlanError`] naming the flag (a file's errors name `--dataset-path`).
pub fn from_args(a: &Args, part: Part, seed: u64) -> Result<Option<Dataset>, PlanError> {
    let random_flags = [
        (a.input_len.is_some(), "input-len"),
        (a.output_len.is_some(), "output-len"),
        (a.range_ratio.is_some(), "range-ratio"),
        (a.prefix_len.is_some(), "prefix-len"),
    ];
    let sharegpt_flags = [
        (a.sharegpt_output_len.is_some(), "sharegpt-output-len"),
        (a.sharegpt_reference_len, "sharegpt-reference-len"),
    ];
    let Some(name) = &a.dataset else {
        if a.dataset_path.is_some() {
            return Err(misplaced(
                "dataset-path",
                "goes with --dataset sharegpt|trace",
            ));
        }
        for (given, flag) in random_flags {
            if given {
                return Err(misplaced(flag, "goes with --dataset random"));
            }
        }
        for (given, flag) in sharegpt_flags {
            if given {
                return Err(misplaced(flag, "goes with --dataset sharegpt"));
            }
        }
        return Ok(None);
    };
    let kind = DatasetKind::parse(name)?;
    if matches!(a.workload.as_deref(), None | Some("http")) {
        return Err(misplaced(
            "dataset",
            "goes with --workload completions|chat",
        ));
    }
    for (given, flag) in [
        (!a.prompts.is_empty(), "prompt"),
        (a.prompt_file.is_some(), "prompt-file"),
        (a.synthetic_prompt_words.is_some(), "synthetic-prompt-words"),
    ] {
        if given {
            return Err(misplaced(
                flag,
                "replaces --dataset: give one source of prompts",
            ));
        }
    }
    if kind == DatasetKind::Trace {
        for (given, flag) in [
            (a.concurrency.is_some(), "concurrency"),
            (a.request_rate.is_some(), "request-rate"),
            (a.arrivals.is_some(), "arrivals"),
            (a.burstiness.is_some(), "burstiness"),
        ] {
            if given {
                return Err(misplaced(
                    flag,
                    "does not go with --dataset trace: it is replayed at its own times (--max-concurrency may cap it)",
                ));
            }
        }
    }
    if kind != DatasetKind::Random {
        for (given, flag) in random_flags {
            if given {
                return Err(misplaced(flag, "goes with --dataset random"));
            }
        }
    }
    if kind != DatasetKind::ShareGpt {
        for (given, flag) in sharegpt_flags {
            if given {
                return Err(misplaced(flag, "goes with --dataset sharegpt"));
            }
        }
        if a.max_tokens.is_some() {
            return Err(misplaced(
                "max-tokens",
                "does not go with --dataset random|trace: they set max_tokens per request",
            ));
        }
    }
    let path = match (kind, &a.dataset_path) {
        (DatasetKind::Random, Some(_)) => {
            return Err(misplaced(
                "dataset-path",
                "goes with --dataset sharegpt|trace",
            ));
        }
        (DatasetKind::Random, None) => None,
        (_, None) => return Err(PlanError::Missing("dataset-path")),
        (_, Some(p)) => Some(p.as_path()),
    };
    let dataset = match (kind, path) {
        (DatasetKind::ShareGpt, Some(path)) => {
            let max = match (a.sharegpt_output_len, a.sharegpt_reference_len) {
                (Some(_), true) => {
                    return Err(misplaced(
                        "sharegpt-reference-len",
                        "replaces --sharegpt-output-len: give one",
                    ));
                }
                (Some(0), false) => {
                    return Err(invalid("sharegpt-output-len", "must be at least 1".into()));
                }
                (Some(n), false) => ShareGptMaxTokens::Fixed(n),
                (None, true) => ShareGptMaxTokens::Reference,
                (None, false) => ShareGptMaxTokens::Default,
            };
            if max != ShareGptMaxTokens::Default && a.max_tokens.is_some() {
                return Err(misplaced(
                    "max-tokens",
                    "does not go with --sharegpt-output-len or --sharegpt-reference-len",
                ));
            }
            Dataset {
                kind,
                requests: read_sharegpt(path, max)?,
                due_s: None,
            }
        }
        (DatasetKind::Trace, Some(path)) => {
            let all = read_trace(path)?;
            // Every part keeps the trace's origin: part I's first request is
            // due at its own line's offset.
            let origin = all.first().map_or(0, |l| l.timestamp);
            let lines: Vec<TraceLine> = all
                .into_iter()
                .skip(part.index)
                .step_by(part.count.max(1))
                .collect();
            if lines.is_empty() {
                return Err(invalid(
                    "parts",
                    format!(
                        "the trace has fewer lines than --parts {}: part {} gets none",
                        part.count, part.index
                    ),
                ));
            }
            let (requests, due) = trace_requests(&lines, origin, seed);
            Dataset {
                kind,
                requests,
                due_s: Some(due.into()),
            }
        }
        _ => {
            let spec = RandomSpec {
                input_len: a.input_len.unwrap_or(1024),
                output_len: a.output_len.unwrap_or(128),
                range_ratio: a.range_ratio.unwrap_or(0.0),
                prefix_len: a.prefix_len.unwrap_or(0),
            };
            if !(1..=MAX_WORDS).contains(&spec.input_len) {
                return Err(invalid(
                    "input-len",
                    format!("{} is not in 1..={MAX_WORDS}", spec.input_len),
                ));
            }
            if spec.output_len == 0 {
                return Err(invalid("output-len", "must be at least 1".into()));
            }
            if !(spec.range_ratio.is_finite() && (0.0..1.0).contains(&spec.range_ratio)) {
                return Err(invalid(
                    "range-ratio",
                    format!("{} is not in [0, 1)", spec.range_ratio),
                ));
            }
            if spec.prefix_len > MAX_WORDS {
                return Err(invalid(
                    "prefix-len",
                    format!("{} is not in 0..={MAX_WORDS}", spec.prefix_len),
                ));
            }
            Dataset {
                kind,
                requests: spec.requests(seed),
                due_s: None,
            }
        }
    };
    Ok(Some(dataset))
}

#[cfg(test)]
mod tests;
