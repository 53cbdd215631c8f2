//! Figures: HDR histograms (µs, 1 µs to 1 h, 3 significant digits) of E2EL,
//! TTFT, ITL, TPOT, inter-chunk latency, time to first text and the wait for
//! a free client; where output tokens were counted from; counts by outcome; token
//! sums; goodput. The result JSON uses the key names of `vllm bench serve`'s
//! result file where one exists (`completed`, `request_throughput`,
//! `mean_ttft_ms`, `p99_itl_ms`, …).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde_json::{Map, Value, json};

use crate::stream::TokenSource;
use crate::workload::{ErrorKind, Outcome};

/// The percentiles reported for every latency (`p50_…`, `p90_…`, …).
pub const PERCENTILES: [f64; 4] = [50.0, 90.0, 95.0, 99.0];

/// Service-level objectives for goodput (`--goodput ttft:MS tpot:MS e2el:MS`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slo {
    /// TTFT at most this (ms).
    pub ttft_ms: Option<f64>,
    /// TPOT at most this (ms).
    pub tpot_ms: Option<f64>,
    /// E2EL at most this (ms).
    pub e2el_ms: Option<f64>,
}

impl Slo {
    /// True when at least one objective is set.
    pub fn any(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2el_ms.is_some()
    }

    /// A successful request meets every given objective (an absent TPOT, one
    /// output token, meets it).
    pub fn met(&self, o: &Outcome) -> bool {
        let within = |limit: Option<f64>, d: Option<Duration>| match (limit, d) {
            (Some(l), Some(d)) => d.as_secs_f64() * 1000.0 <= l,
            (Some(_), None) => false,
            (None, _) => true,
        };
        o.error.is_none()
            && within(self.ttft_ms, o.ttft)
            && within(self.e2el_ms, Some(o.e2el))
            && (self.tpot_ms.is_none() || o.tpot().is_none() || within(self.tpot_ms, o.tpot()))
    }
}

/// One latency: its histogram (µs) and the exact sum (s).
#[derive(Debug, Clone)]
pub struct Latency {
    /// Values in microseconds.
    pub hist: Histogram<u64>,
    /// Exact sum of the values, seconds.
    pub sum_s: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            // Bounds are constants: this cannot fail.
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            sum_s: 0.0,
        }
    }
}

impl Latency {
    /// Adds one value.
    pub fn record(&mut self, d: Duration) {
        self.hist.saturating_record((d.as_micros() as u64).max(1));
        self.sum_s += d.as_secs_f64();
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Values at most `le` seconds (for Prometheus buckets).
    pub fn count_le(&self, le_s: f64) -> u64 {
        self.hist.count_between(0, (le_s * 1e6) as u64)
    }

    /// `{mean,median,std,min,max,pNN}_{name}_ms` keys into `m` (nothing when empty).
    fn write(&self, name: &str, m: &mut Map<String, Value>) {
        if self.count() == 0 {
            return;
        }
        let ms = |us: f64| round3(us / 1000.0);
        let h = &self.hist;
        m.insert(
            format!("mean_{name}_ms"),
            json!(round3(self.sum_s * 1000.0 / self.count() as f64)),
        );
        m.insert(
            format!("median_{name}_ms"),
            json!(ms(h.median_equivalent(h.value_at_quantile(0.5)) as f64)),
        );
        m.insert(format!("std_{name}_ms"), json!(ms(h.stdev())));
        m.insert(format!("min_{name}_ms"), json!(ms(h.min() as f64)));
        m.insert(format!("max_{name}_ms"), json!(ms(h.max() as f64)));
        for p in PERCENTILES {
            m.insert(
                format!("p{p}_{name}_ms"),
                json!(ms(
                    h.median_equivalent(h.value_at_quantile(p / 100.0)) as f64
                )),
            );
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Format version of [`Recorder::to_json`] (key `version`).
pub const RECORDER_JSON_VERSION: u64 = 1;

/// The histograms of a [`Recorder`], by their key in [`Recorder::to_json`].
const HISTOGRAMS: [&str; 5] = ["e2el", "ttft", "itl", "tpot", "wait"];

/// Histograms added after version 1 was written: an empty one when missing.
const LATER_HISTOGRAMS: [&str; 2] = ["icl", "ttft_text"];

/// The counters of a [`Recorder`], by their key in [`Recorder::to_json`].
const COUNTERS: [&str; 6] = [
    "completed",
    "input_tokens",
    "input_tokens_known",
    "output_tokens",
    "good",
    "warmup_requests",
];

/// Why [`Recorder::from_json`] refused its input.
#[derive(Debug, thiserror::Error)]
pub enum RecorderDecodeError {
    /// The value is not a JSON object.
    #[error("recorder: not a JSON object")]
    NotAnObject,
    /// A key is missing.
    #[error("recorder: key `{key}` is missing")]
    Missing {
        /// The key (`histograms.e2el.hdr` for a nested one).
        key: String,
    },
    /// A key holds the wrong JSON type or an out-of-range number.
    #[error("recorder: key `{key}` must be {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What it must hold.
        expected: &'static str,
    },
    /// The format version is not [`RECORDER_JSON_VERSION`].
    #[error(
        "recorder: version {found} is not supported (this build reads {RECORDER_JSON_VERSION})"
    )]
    Version {
        /// The version found.
        found: u64,
    },
    /// A histogram is not valid base64.
    #[error("recorder: key `{key}` is not base64: {source}")]
    Base64 {
        /// The key.
        key: String,
        /// The decoder's error.
        source: base64::DecodeError,
    },
    /// A histogram is not a valid HdrHistogram V2 serialization.
    #[error("recorder: key `{key}` is not an HdrHistogram V2 histogram: {source}")]
    Histogram {
        /// The key.
        key: String,
        /// The deserializer's error.
        source: hdrhistogram::serialization::DeserializeError,
    },
    /// An error kind or HTTP status is not known.
    #[error("recorder: `{name}` under key `{key}` is not {expected}")]
    UnknownName {
        /// The key (`errors` or `statuses`).
        key: &'static str,
        /// The name found.
        name: String,
        /// What it must be.
        expected: &'static str,
    },
}

fn decode_u64(m: &Map<String, Value>, key: &str) -> Result<u64, RecorderDecodeError> {
    m.get(key)
        .ok_or_else(|| RecorderDecodeError::Missing { key: key.into() })?
        .as_u64()
        .ok_or_else(|| RecorderDecodeError::WrongType {
            key: key.into(),
            expected: "an unsigned integer",
        })
}

fn decode_object<'a>(
    m: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, RecorderDecodeError> {
    m.get(key)
        .ok_or_else(|| RecorderDecodeError::Missing { key: key.into() })?
        .as_object()
        .ok_or_else(|| RecorderDecodeError::WrongType {
            key: key.into(),
            expected: "an object",
        })
}

/// The object `key` of `m` as counts by a key that `parse` reads from each
/// name (`expected` says what a name must be).
fn decode_counts<K: Ord>(
    m: &Map<String, Value>,
    key: &'static str,
    parse: impl Fn(&str) -> Option<K>,
    expected: &'static str,
) -> Result<BTreeMap<K, u64>, RecorderDecodeError> {
    let mut out = BTreeMap::new();
    for (name, n) in decode_object(m, key)? {
        let k = parse(name).ok_or_else(|| RecorderDecodeError::UnknownName {
            key,
            name: name.clone(),
            expected,
        })?;
        let n = n.as_u64().ok_or_else(|| RecorderDecodeError::WrongType {
            key: format!("{key}.{name}"),
            expected: "an unsigned integer",
        })?;
        out.insert(k, n);
    }
    Ok(out)
}

impl Latency {
    /// `{"hdr": base64 of the V2 deflate serialization, "sum_s": "…"}`: the
    /// sum as a string in Rust's shortest round-trip form, since JSON parsers
    /// (serde_json's default one too) may read a number 1 ulp off.
    fn to_json(&self) -> Value {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail, and every count fits the format.
        let _ = V2DeflateSerializer::new().serialize(&self.hist, &mut bytes);
        json!({"hdr": BASE64.encode(&bytes), "sum_s": format!("{:?}", self.sum_s)})
    }

    fn from_json(v: &Value, name: &str) -> Result<Latency, RecorderDecodeError> {
        let key = format!("histograms.{name}");
        let m = v
            .as_object()
            .ok_or_else(|| RecorderDecodeError::WrongType {
                key: key.clone(),
                expected: "an object",
            })?;
        let hdr_key = format!("{key}.hdr");
        let text = m
            .get("hdr")
            .ok_or_else(|| RecorderDecodeError::Missing {
                key: hdr_key.clone(),
            })?
            .as_str()
            .ok_or_else(|| RecorderDecodeError::WrongType {
                key: hdr_key.clone(),
                expected: "a base64 string",
            })?;
        let bytes = BASE64
            .decode(text)
            .map_err(|source| RecorderDecodeError::Base64 {
                key: hdr_key.clone(),
                source,
            })?;
        let hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|source| RecorderDecodeError::Histogram {
                key: hdr_key,
                source,
            })?;
        let sum_key = format!("{key}.sum_s");
        let sum_s = match m.get("sum_s") {
            None => return Err(RecorderDecodeError::Missing { key: sum_key }),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(t)) => t.parse::<f64>().ok(),
            Some(_) => None,
        }
        .filter(|v| v.is_finite())
        .ok_or(RecorderDecodeError::WrongType {
            key: sum_key,
            expected: "a number (or one as a string)",
        })?;
        Ok(Latency { hist, sum_s })
    }
}

/// Everything measured so far (requests sent after the warm-up).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// End-to-end latency of successful requests.
    pub e2el: Latency,
    /// Time to first token.
    pub ttft: Latency,
    /// Inter-token latency (every gap).
    pub itl: Latency,
    /// Time per output token (per request).
    pub tpot: Latency,
    /// Wait for a free client (open loop: actual − scheduled send time).
    pub wait: Latency,
    /// Inter-chunk latency (every gap between chunks: vLLM's ITL).
    pub icl: Latency,
    /// Time to the first non-empty text.
    pub ttft_text: Latency,
    /// Successful OpenAI requests by where their output tokens came from.
    pub token_sources: BTreeMap<TokenSource, u64>,
    /// Successful requests.
    pub completed: u64,
    /// Failed requests, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Answers by HTTP status (successes and failures).
    pub statuses: BTreeMap<u16, u64>,
    /// Sum of reported input tokens.
    pub input_tokens: u64,
    /// Successful requests whose input tokens the server reported.
    pub input_tokens_known: u64,
    /// Sum of output tokens of successful requests.
    pub output_tokens: u64,
    /// Successful requests that met every SLO.
    pub good: u64,
    /// Requests sent during the warm-up (not measured).
    pub warmup_requests: u64,
}

impl Recorder {
    /// Adds one measured request; `wait` is its wait for a free client.
    pub fn record(&mut self, o: &Outcome, wait: Option<Duration>, slo: &Slo) {
        if let Some(s) = o.status {
            *self.statuses.entry(s).or_default() += 1;
        }
        if let Some(w) = wait {
            self.wait.record(w);
        }
        if let Some(kind) = o.error {
            *self.errors.entry(kind).or_default() += 1;
            return;
        }
        self.completed += 1;
        self.e2el.record(o.e2el);
        if let Some(t) = o.ttft {
            self.ttft.record(t);
        }
        for g in o.itl.iter() {
            self.itl.record(g);
        }
        for g in o.inter_chunk.iter() {
            self.icl.record(g);
        }
        if let Some(t) = o.ttft_text {
            self.ttft_text.record(t);
        }
        if o.ttft.is_some() {
            *self.token_sources.entry(o.token_source).or_default() += 1;
        }
        if let Some(t) = o.tpot() {
            self.tpot.record(t);
        }
        self.output_tokens += o.output_tokens;
        if let Some(n) = o.input_tokens {
            self.input_tokens += n;
            self.input_tokens_known += 1;
        }
        if slo.any() && slo.met(o) {
            self.good += 1;
        }
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Merges another recorder into this one.
    pub fn merge(&mut self, other: &Recorder) {
        for (a, b) in [
            (&mut self.e2el, &other.e2el),
            (&mut self.ttft, &other.ttft),
            (&mut self.itl, &other.itl),
            (&mut self.tpot, &other.tpot),
            (&mut self.wait, &other.wait),
            (&mut self.icl, &other.icl),
            (&mut self.ttft_text, &other.ttft_text),
        ] {
            // Same bounds on both sides: addition cannot fail.
            let _ = a.hist.add(&b.hist);
            a.sum_s += b.sum_s;
        }
        self.completed += other.completed;
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.token_sources {
            *self.token_sources.entry(*k).or_default() += v;
        }
        self.input_tokens += other.input_tokens;
        self.input_tokens_known += other.input_tokens_known;
        self.output_tokens += other.output_tokens;
        self.good += other.good;
        self.warmup_requests += other.warmup_requests;
    }

    /// Everything this recorder holds, as JSON (the result's `recorder` key):
    /// `version`, the counters as numbers, `errors` by kind name, `statuses`
    /// by status code, `token_sources` by source name, and `histograms`
    /// (`e2el`, `ttft`, `itl`, `tpot`, `wait`, `icl`, `ttft_text`), each `{"hdr": base64 of HdrHistogram's V2 deflate
    /// serialization, "sum_s": exact sum in seconds, as a string}`.
    /// [`Recorder::from_json`] rebuilds it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), json!(RECORDER_JSON_VERSION));
        let counters = [
            self.completed,
            self.input_tokens,
            self.input_tokens_known,
            self.output_tokens,
            self.good,
            self.warmup_requests,
        ];
        for (key, v) in COUNTERS.iter().zip(counters) {
            m.insert((*key).into(), json!(v));
        }
        m.insert(
            "errors".into(),
            Value::Object(
                self.errors
                    .iter()
                    .map(|(k, v)| (k.name().to_string(), json!(v)))
                    .collect(),
            ),
        );
        m.insert(
            "statuses".into(),
            Value::Object(
                self.statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect(),
            ),
        );
        m.insert(
            "token_sources".into(),
            Value::Object(
                self.token_sources
                    .iter()
                    .map(|(k, v)| (k.name().to_string(), json!(v)))
                    .collect(),
            ),
        );
        let hists = [
            &self.e2el,
            &self.ttft,
            &self.itl,
            &self.tpot,
            &self.wait,
            &self.icl,
            &self.ttft_text,
        ];
        m.insert(
            "histograms".into(),
            Value::Object(
                HISTOGRAMS
                    .iter()
                    .chain(&LATER_HISTOGRAMS)
                    .zip(hists)
                    .map(|(k, h)| ((*k).to_string(), h.to_json()))
                    .collect(),
            ),
        );
        Value::Object(m)
    }

    /// Rebuilds a recorder from [`Recorder::to_json`]'s output.
    ///
    /// # Errors
    /// [`RecorderDecodeError`] naming the key that is missing, of the wrong
    /// type, or undecodable.
    pub fn from_json(v: &Value) -> Result<Recorder, RecorderDecodeError> {
        let m = v.as_object().ok_or(RecorderDecodeError::NotAnObject)?;
        let version = decode_u64(m, "version")?;
        if version != RECORDER_JSON_VERSION {
            return Err(RecorderDecodeError::Version { found: version });
        }
        let mut counters = [0u64; COUNTERS.len()];
        for (slot, key) in counters.iter_mut().zip(COUNTERS) {
            *slot = decode_u64(m, key)?;
        }
        let [
            completed,
            input_tokens,
            input_tokens_known,
            output_tokens,
            good,
            warmup_requests,
        ] = counters;
        let errors = decode_counts(
            m,
            "errors",
            |name| ErrorKind::ALL.into_iter().find(|k| k.name() == name),
            "an error kind (connect, timeout, http_status, stream_broken, transport)",
        )?;
        let statuses = decode_counts(
            m,
            "statuses",
            |name| name.parse::<u16>().ok(),
            "an HTTP status code",
        )?;
        // Written since token sources were counted; absent in older files.
        let token_sources = if m.contains_key("token_sources") {
            decode_counts(
                m,
                "token_sources",
                |name| TokenSource::ALL.into_iter().find(|s| s.name() == name),
                "a token source (usage, usage_delta, events, tokenizer)",
            )?
        } else {
            BTreeMap::new()
        };
        let hists = decode_object(m, "histograms")?;
        let later = |name: &str| match hists.get(name) {
            None => Ok(Latency::default()),
            Some(v) => Latency::from_json(v, name),
        };
        let hist = |name: &str| {
            hists
                .get(name)
                .ok_or_else(|| RecorderDecodeError::Missing {
                    key: format!("histograms.{name}"),
                })
                .and_then(|v| Latency::from_json(v, name))
        };
        Ok(Recorder {
            e2el: hist("e2el")?,
            ttft: hist("ttft")?,
            itl: hist("itl")?,
            tpot: hist("tpot")?,
            wait: hist("wait")?,
            icl: later("icl")?,
            ttft_text: later("ttft_text")?,
            token_sources,
            completed,
            errors,
            statuses,
            input_tokens,
            input_tokens_known,
            output_tokens,
            good,
            warmup_requests,
        })
    }

    /// The figures as result-file keys (vLLM's names where one exists), for a
    /// measurement window of `duration_s` seconds. `openai` adds the token
    /// latencies; `slo` adds `request_goodput`.
    pub fn figures(&self, duration_s: f64, openai: bool, slo: &Slo) -> Map<String, Value> {
        let mut m = Map::new();
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                round3(n as f64 / duration_s)
            } else {
                0.0
            }
        };
        m.insert("duration".into(), json!(round3(duration_s)));
        m.insert("completed".into(), json!(self.completed));
        m.insert("failed".into(), json!(self.failed()));
        m.insert(
            "errors_by_kind".into(),
            Value::Object(
                ErrorKind::ALL
                    .iter()
                    .map(|k| {
                        (
                            k.name().to_string(),
                            json!(self.errors.get(k).copied().unwrap_or(0)),
                        )
                    })
                    .collect(),
            ),
        );
        m.insert(
            "http_status_counts".into(),
            Value::Object(
                self.statuses
                    .iter()
                    .map(|(s, n)| (s.to_string(), json!(n)))
                    .collect(),
            ),
        );
        m.insert("request_throughput".into(), json!(per_s(self.completed)));
        if slo.any() {
            m.insert("request_goodput".into(), json!(per_s(self.good)));
        }
        if openai {
            m.insert("total_output_tokens".into(), json!(self.output_tokens));
            m.insert("output_throughput".into(), json!(per_s(self.output_tokens)));
            if self.input_tokens_known == self.completed && self.completed > 0 {
                m.insert("total_input_tokens".into(), json!(self.input_tokens));
                m.insert("input_throughput".into(), json!(per_s(self.input_tokens)));
                m.insert(
                    "total_token_throughput".into(),
                    json!(per_s(self.input_tokens + self.output_tokens)),
                );
            } else {
                m.insert("total_input_tokens".into(), Value::Null);
                m.insert(
                    "input_tokens_note".into(),
                    json!(format!(
                        "the server reported usage.prompt_tokens for {} of {} successful requests",
                        self.input_tokens_known, self.completed
                    )),
                );
            }
            self.ttft.write("ttft", &mut m);
            self.tpot.write("tpot", &mut m);
            self.itl.write("itl", &mut m);
            self.icl.write("icl", &mut m);
            self.ttft_text.write("ttft_text", &mut m);
            let mut sources = self.token_sources.iter().filter(|(_, n)| **n > 0);
            let source = match (sources.next(), sources.next()) {
                (Some((s, _)), None) => Some(s.name()),
                (Some(_), Some(_)) => Some("mixed"),
                _ => None,
            };
            if let Some(s) = source {
                m.insert("output_token_source".into(), json!(s));
                m.insert(
                    "output_token_sources".into(),
                    Value::Object(
                        self.token_sources
                            .iter()
                            .map(|(k, v)| (k.name().to_string(), json!(v)))
                            .collect(),
                    ),
                );
            }
        }
        self.e2el.write("e2el", &mut m);
        self.wait.write("queue_wait", &mut m);
        m
    }
}

fn num(m: &Map<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::Number(n)) => {
            let f = n.as_f64().unwrap_or(0.0);
            if n.is_u64() || n.is_i64() {
                format!("{f:.0}")
            } else {
                format!("{f:.2}")
            }
        }
        Some(Value::Null) | None => "-".into(),
        Some(Value::String(t)) => t.clone(),
        Some(v) => v.to_string(),
    }
}

/// The one-screen summary, in the layout of `vllm bench serve`.
pub fn summary_table(result: &Map<String, Value>) -> String {
    let mut s = String::new();
    let mut row = |label: &str, key: &str| {
        if result.contains_key(key) {
            let _ = writeln!(s, "{label:<40} {}", num(result, key));
        }
    };
    let title = |s: &str| format!("{s:-^50}");
    let mut out = format!("{:=^50}\n", " Serving Benchmark Result ");
    row("Successful requests:", "completed");
    row("Failed requests:", "failed");
    row("Request rate configured (RPS):", "request_rate");
    row("Maximum request concurrency:", "max_concurrency");
    row("Benchmark duration (s):", "duration");
    row("Total input tokens:", "total_input_tokens");
    row("Total generated tokens:", "total_output_tokens");
    row("Request throughput (req/s):", "request_throughput");
    row("Request goodput (req/s):", "request_goodput");
    row("Output token throughput (tok/s):", "output_throughput");
    row("Total token throughput (tok/s):", "total_token_throughput");
    row("Output tokens counted from:", "output_token_source");
    if result.get("dataset").is_some_and(|d| !d.is_null()) {
        row("Dataset:", "dataset");
    }
    out.push_str(&s);
    for (name, key) in [
        ("Time to First Token", "ttft"),
        ("Time per Output Token (excl. 1st token)", "tpot"),
        ("Inter-token Latency", "itl"),
        ("Inter-chunk Latency", "icl"),
        ("Time to First Text", "ttft_text"),
        ("End-to-end Latency", "e2el"),
        ("Wait for a free client", "queue_wait"),
        ("Lateness against the trace", "lateness"),
    ] {
        if !result.contains_key(&format!("mean_{key}_ms")) {
            continue;
        }
        let _ = writeln!(out, "{}", title(&format!(" {name} ")));
        let upper = key.to_uppercase();
        for (label, k) in [
            ("Mean", format!("mean_{key}_ms")),
            ("Median", format!("median_{key}_ms")),
            ("P99", format!("p99_{key}_ms")),
            ("Max", format!("max_{key}_ms")),
        ] {
            let _ = writeln!(
                out,
                "{:<40} {}",
                format!("{label} {upper} (ms):"),
                num(result, &k)
            );
        }
    }
    if let Some(Value::Object(errors)) = result.get("errors_by_kind") {
        let nonzero: Vec<String> = errors
            .iter()
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !nonzero.is_empty() {
            let _ = writeln!(out, "{:<40} {}", "Errors by kind:", nonzero.join(" "));
        }
    }
    out.push_str(&"=".repeat(50));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(e2el_ms: u64, ttft_ms: u64, tokens: u64) -> Outcome {
        Outcome {
            status: Some(200),
            e2el: Duration::from_millis(e2el_ms),
            ttft: Some(Duration::from_millis(ttft_ms)),
            itl: std::iter::repeat_n(Duration::from_millis(10), tokens.saturating_sub(1) as usize)
                .collect(),
            output_tokens: tokens,
            input_tokens: Some(5),
            ..Outcome::default()
        }
    }

    #[test]
    fn figures_use_vllm_keys_and_definitions() {
        let slo = Slo {
            ttft_ms: Some(150.0),
            ..Slo::default()
        };
        let mut r = Recorder::default();
        r.record(&ok(200, 100, 11), None, &slo);
        r.record(&ok(400, 200, 11), None, &slo);
        r.record(
            &Outcome {
                error: Some(ErrorKind::HttpStatus),
                status: Some(503),
                ..Outcome::default()
            },
            None,
            &slo,
        );
        let mut total = Recorder::default();
        total.merge(&r);
        let f = total.figures(2.0, true, &slo);
        assert_eq!(f["completed"], 2);
        assert_eq!(f["failed"], 1);
        assert_eq!(f["errors_by_kind"]["http_status"], 1);
        assert_eq!(f["http_status_counts"]["503"], 1);
        assert_eq!(f["request_throughput"], 1.0);
        assert_eq!(f["request_goodput"], 0.5);
        assert_eq!(f["total_output_tokens"], 22);
        assert_eq!(f["total_input_tokens"], 10);
        assert_eq!(f["mean_ttft_ms"], 150.0);
        assert_eq!(f["mean_e2el_ms"], 300.0);
        // TPOT = (E2EL − TTFT) / (tokens − 1): 10 ms and 20 ms.
        assert_eq!(f["mean_tpot_ms"], 15.0);
        let itl = f["median_itl_ms"].as_f64().unwrap();
        assert!((itl - 10.0).abs() < 0.01, "{itl}");
        let p99 = f["p99_e2el_ms"].as_f64().unwrap();
        assert!((p99 - 400.0).abs() < 0.5, "{p99}");
        let table = summary_table(&f);
        assert!(table.contains("Successful requests:") && table.contains("Mean TTFT (ms):"));
    }

    #[test]
    fn recorder_json_round_trips_exactly() {
        let slo = Slo {
            ttft_ms: Some(150.0),
            e2el_ms: Some(350.0),
            ..Slo::default()
        };
        let mut r = Recorder::default();
        for i in 0..200u64 {
            r.record(
                &ok(100 + i * 3, 50 + i, 2 + i % 7),
                Some(Duration::from_micros(i * 17)),
                &slo,
            );
        }
        r.record(
            &Outcome {
                error: Some(ErrorKind::Timeout),
                ..Outcome::default()
            },
            None,
            &slo,
        );
        r.record(
            &Outcome {
                error: Some(ErrorKind::HttpStatus),
                status: Some(503),
                ..Outcome::default()
            },
            None,
            &slo,
        );
        r.warmup_requests = 7;
        // Through the text of a result file, as the merge reads it.
        let text = serde_json::to_string(&r.to_json()).unwrap();
        let back = Recorder::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.figures(3.0, true, &slo), r.figures(3.0, true, &slo));
        assert_eq!(back.e2el.hist, r.e2el.hist);
        assert_eq!(back.itl.hist, r.itl.hist);
        assert_eq!(back.wait.hist, r.wait.hist);
        assert_eq!(
            (
                back.errors.clone(),
                back.statuses.clone(),
                back.warmup_requests
            ),
            (r.errors.clone(), r.statuses.clone(), 7)
        );
        assert_eq!(back.to_json(), r.to_json());
        // A merge of decoded recorders works (same bounds).
        let mut two = back.clone();
        two.merge(&r);
        assert_eq!(two.completed, 2 * r.completed);

        let mut v = r.to_json();
        v["histograms"]["ttft"]["hdr"] = json!("!!");
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(
            matches!(&e, RecorderDecodeError::Base64 { key, .. } if key == "histograms.ttft.hdr"),
            "{e}"
        );
        v["histograms"]["ttft"]["hdr"] = json!("AAAA");
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(matches!(e, RecorderDecodeError::Histogram { .. }), "{e}");
        let mut v = r.to_json();
        v.as_object_mut().unwrap().remove("good");
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(
            matches!(&e, RecorderDecodeError::Missing { key } if key == "good"),
            "{e}"
        );
        v["good"] = json!("x");
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(e.to_string().contains("`good`"), "{e}");
        v["good"] = json!(1);
        v["errors"]["nope"] = json!(1);
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(
            matches!(e, RecorderDecodeError::UnknownName { key: "errors", .. }),
            "{e}"
        );
        v["version"] = json!(9);
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(
            matches!(e, RecorderDecodeError::Version { found: 9 }),
            "{e}"
        );
        assert!(matches!(
            Recorder::from_json(&json!([])),
            Err(RecorderDecodeError::NotAnObject)
        ));
    }

    #[test]
    fn figures_say_where_output_tokens_were_counted_from() {
        let slo = Slo::default();
        let mut r = Recorder::default();
        let mut o = ok(300, 100, 5);
        o.inter_chunk = [Duration::from_millis(40); 2].into_iter().collect();
        o.ttft_text = Some(Duration::from_millis(120));
        r.record(&o, None, &slo);
        let f = r.figures(1.0, true, &slo);
        assert_eq!(f["output_token_source"], "events");
        assert_eq!(f["mean_icl_ms"], 40.0);
        assert_eq!(f["mean_ttft_text_ms"], 120.0);
        assert!(summary_table(&f).contains("Output tokens counted from:              events"));
        o.token_source = TokenSource::Usage;
        r.record(&o, None, &slo);
        let f = r.figures(1.0, true, &slo);
        assert_eq!(f["output_token_source"], "mixed");
        assert_eq!(f["output_token_sources"], json!({"usage": 1, "events": 1}));
        // A recorder written before token sources were kept still reads.
        let mut v = r.to_json();
        let m = v.as_object_mut().unwrap();
        m.remove("token_sources");
        for k in LATER_HISTOGRAMS {
            m["histograms"].as_object_mut().unwrap().remove(k);
        }
        let back = Recorder::from_json(&v).unwrap();
        assert_eq!((back.completed, back.icl.count()), (2, 0));
        assert!(back.token_sources.is_empty());
        v["token_sources"] = json!({"guess": 1});
        let e = Recorder::from_json(&v).unwrap_err();
        assert!(
            matches!(
                e,
                RecorderDecodeError::UnknownName {
                    key: "token_sources",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn http_figures_have_no_token_keys() {
        let mut r = Recorder::default();
        let o = Outcome {
            status: Some(200),
            e2el: Duration::from_millis(3),
            ..Outcome::default()
        };
        r.record(&o, Some(Duration::from_millis(1)), &Slo::default());
        let f = r.figures(1.0, false, &Slo::default());
        assert!(f.contains_key("mean_e2el_ms") && f.contains_key("mean_queue_wait_ms"));
        assert!(!f.contains_key("mean_ttft_ms") && !f.contains_key("request_goodput"));
        assert_eq!(r.e2el.count_le(0.0025), 0);
        assert_eq!(r.e2el.count_le(0.0035), 1);
    }
}
