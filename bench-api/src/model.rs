//! The records the API serves and the request bodies it accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::run_options::{DatasetSpec, SweepSpec};
use crate::validate::ApiError;

/// Lifecycle status of a service or a benchmark run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted, not started (queued in Slurm).
    Pending,
    /// The process or job runs; its health check has not passed yet.
    Starting,
    /// Healthy (services) or measuring (runs).
    Running,
    /// Ended with exit code 0 (services) or ran its duration (runs).
    Completed,
    /// Ended with a non-zero exit code, a signal, or could not start.
    Failed,
    /// Cancelled by a client.
    Cancelled,
    /// The backend no longer knows the job and no exit state was recorded.
    Unknown,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Starting,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::Unknown,
    ];

    /// The lowercase name used in JSON, SQL and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Unknown => "unknown",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for statuses nothing moves out of (`completed`, `failed`, `cancelled`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// One entry of a record's status history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    /// The status entered.
    pub status: Status,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Why, when known (exit code, error, who cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A service started from a recipe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// `svc-` and 16 hex digits.
    pub id: String,
    /// The recipe's name.
    pub recipe: String,
    /// Parameters as used (defaults filled in).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Current status.
    pub status: Status,
    /// `local`, `slurm` or `slurm-rest`.
    pub backend: String,
    /// Process-group id (local) or Slurm job id, once launched.
    pub backend_ref: Option<String>,
    /// Host the service runs on, once known.
    pub host: Option<String>,
    /// TCP port of the service's endpoint, when the recipe has one.
    pub port: Option<u16>,
    /// Exit code once ended (128 + signal for a signal).
    pub exit_code: Option<i32>,
    /// Last status detail (error message, reason).
    pub detail: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
    /// Status history, oldest first (only on `GET /api/v1/services/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<StatusChange>>,
}

/// `POST /api/v1/services`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    /// Recipe name.
    pub recipe: String,
    /// Recipe parameters; omitted ones take the recipe's defaults.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// `POST /api/v1/services/{id}/status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetServiceStatus {
    /// Only `cancelled` may be set by a client.
    pub status: String,
}

/// Optional body of the cancel routes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (stored in the status history).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Closed loop (N concurrent clients) or open loop (a fixed request rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// `concurrency` clients, each sending its next request when the last ends.
    ClosedLoop,
    /// `requests_per_second` requests, whatever the latency.
    OpenLoop,
}

/// What the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Plain HTTP GET of `path`.
    Http,
    /// OpenAI-compatible streaming completions (`path` defaults to `/v1/completions`).
    OpenaiCompletions,
    /// OpenAI-compatible streaming chat completions (`path` defaults to `/v1/chat/completions`).
    OpenaiChat,
}

/// How open-loop requests arrive (as `vllm bench serve` draws them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalKind {
    /// Evenly spaced.
    Constant,
    /// A Poisson process (exponential gaps).
    Poisson,
    /// Gamma gaps of shape `burstiness`.
    Gamma,
}

impl ArrivalKind {
    /// The name `aif-loadgen --arrivals` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ArrivalKind::Constant => "constant",
            ArrivalKind::Poisson => "poisson",
            ArrivalKind::Gamma => "gamma",
        }
    }
}

/// Goodput objectives: a request counts when it meets every one given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodputSlo {
    /// Time to first token at most this (ms; OpenAI workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Time per output token at most this (ms; OpenAI workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// End-to-end latency at most this (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2el_ms: Option<f64>,
}

/// `POST /api/v1/benchmarks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The service to load.
    pub service_id: String,
    /// How long to run, 1..=86400 s. Required: there is no default.
    pub duration_seconds: i64,
    /// Concurrent clients (closed loop), 1..=1024; default 1.
    #[serde(default)]
    pub concurrency: Option<i64>,
    /// `closed_loop` (default) or `open_loop`.
    #[serde(default)]
    pub mode: Option<LoadMode>,
    /// Request rate for `open_loop`, 1..=100000; required there, refused otherwise.
    #[serde(default)]
    pub requests_per_second: Option<i64>,
    /// `http` (default) or `openai_completions`.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Request path on the service, starting with `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Model name for `openai_completions`.
    #[serde(default)]
    pub model: Option<String>,
    /// `max_tokens` for `openai_completions`, 1..=32768.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Open loop: `constant`, `poisson` (default) or `gamma`.
    #[serde(default)]
    pub arrivals: Option<ArrivalKind>,
    /// Gamma arrivals: the shape, (0, 1000]; required there, refused otherwise.
    #[serde(default)]
    pub burstiness: Option<f64>,
    /// Open loop: most requests in flight, 1..=10000.
    #[serde(default)]
    pub max_concurrency: Option<i64>,
    /// Leading seconds excluded from the results, 0..duration_seconds.
    #[serde(default)]
    pub warmup_seconds: Option<i64>,
    /// OpenAI workloads: the prompts (1..=100, 32 KiB in all).
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    /// OpenAI workloads: synthetic prompts of this many words, 1..=4096.
    #[serde(default)]
    pub synthetic_prompt_words: Option<i64>,
    /// OpenAI workloads: `temperature`, 0..=2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Goodput objectives.
    #[serde(default)]
    pub goodput: Option<GoodputSlo>,
    /// Nodes the load is sent from, 1..=[`crate::benchmark::MAX_LOAD_NODES`]
    /// (one `aif-loadgen` per node, one Slurm job of that many tasks); default 1.
    #[serde(default)]
    pub load_nodes: Option<i64>,
    /// OpenAI workloads: a dataset instead of prompts ([`crate::run_options`]).
    #[serde(default)]
    pub dataset: Option<DatasetSpec>,
    /// An SLO capacity search instead of one measurement ([`crate::run_options`]).
    #[serde(default)]
    pub sweep: Option<SweepSpec>,
    /// OpenAI workloads: a Hugging Face `tokenizer.json` on the load node(s)
    /// that counts prompt and output tokens.
    #[serde(default)]
    pub tokenizer_path: Option<String>,
}

impl CreateRun {
    /// Checks every choice of the body that needs no state (ranges from
    /// [`crate::limits`], the fields each `mode`, `arrivals` and `workload`
    /// takes) and fills in the defaults: the [`RunSpec`] to run. What needs
    /// the service or the backend (`service_id`,
    /// [`crate::benchmark::check_load_nodes`]) is checked by the caller.
    ///
    /// The checks run in a fixed order and the first failure is the answer,
    /// so a body with several faults always blames the same field.
    ///
    /// # Errors
    /// `400` naming the field (`prompts[i]`, `goodput.ttft_ms` for nested
    /// ones): out of range, given for a mode or workload that does not take
    /// it, missing where its choice requires it, or given with a field it
    /// excludes.
    pub fn validate(&self) -> Result<RunSpec, ApiError> {
        let req = self;
        limits::DURATION_SECONDS.check(req.duration_seconds)?;
        let concurrency = req.concurrency.unwrap_or(1);
        limits::CONCURRENCY.check(concurrency)?;
        let mode = req.mode.unwrap_or(LoadMode::ClosedLoop);
        match (mode, req.requests_per_second) {
            (LoadMode::OpenLoop, None) => {
                return Err(ApiError::bad_field(
                    "requests_per_second",
                    "missing field `requests_per_second` (required for mode `open_loop`)",
                ));
            }
            (LoadMode::OpenLoop, Some(r)) => limits::REQUESTS_PER_SECOND.check(r)?,
            (LoadMode::ClosedLoop, Some(_)) => {
                return Err(ApiError::bad_field(
                    "requests_per_second",
                    "`requests_per_second` is for mode `open_loop`; closed_loop uses `concurrency`",
                ));
            }
            (LoadMode::ClosedLoop, None) => {}
        }
        let workload = req.workload.unwrap_or(Workload::Http);
        let path = match &req.path {
            Some(p) => {
                if !p.starts_with('/')
                    || p.chars().count() > limits::PATH_CHARS.max as usize
                    || p.chars().any(|c| c.is_control() || c == ' ')
                {
                    return Err(ApiError::bad_field(
                        "path",
                        "`path` must start with `/` and hold no spaces",
                    ));
                }
                p.clone()
            }
            None if workload == Workload::OpenaiCompletions => "/v1/completions".into(),
            None if workload == Workload::OpenaiChat => "/v1/chat/completions".into(),
            None => "/".into(),
        };
        if workload == Workload::Http && (req.model.is_some() || req.max_tokens.is_some()) {
            let field = if req.model.is_some() {
                "model"
            } else {
                "max_tokens"
            };
            return Err(ApiError::bad_field(
                field,
                format!("`{field}` is for workload `openai_completions`"),
            ));
        }
        if let Some(m) = &req.model
            && (!limits::MODEL_CHARS.contains_len(m.chars().count())
                || m.chars().any(char::is_control))
        {
            let l = limits::MODEL_CHARS;
            return Err(ApiError::bad_field(
                "model",
                format!("`model` must be {}..={} printable characters", l.min, l.max),
            ));
        }
        if let Some(t) = req.max_tokens {
            limits::MAX_TOKENS.check(t)?;
        }
        let mut spec = RunSpec {
            duration_seconds: req.duration_seconds,
            concurrency,
            mode,
            requests_per_second: req.requests_per_second,
            workload,
            path,
            model: req.model.clone(),
            max_tokens: req.max_tokens,
            ..RunSpec::default()
        };
        let open = spec.mode == LoadMode::OpenLoop;
        match (open, req.arrivals, req.burstiness) {
            (false, Some(_), _) => return Err(only_for("arrivals", "mode `open_loop`")),
            (false, None, Some(_)) => return Err(only_for("burstiness", "`arrivals: gamma`")),
            (true, Some(ArrivalKind::Gamma), None) => {
                return Err(ApiError::bad_field(
                    "burstiness",
                    "missing field `burstiness` (required for `arrivals: gamma`)",
                ));
            }
            (true, Some(ArrivalKind::Gamma), Some(b)) => {
                if !limits::BURSTINESS.contains(b) {
                    return Err(ApiError::bad_field(
                        "burstiness",
                        format!(
                            "`burstiness` must be > {} and at most {}",
                            limits::BURSTINESS.min,
                            limits::BURSTINESS.max
                        ),
                    ));
                }
            }
            (true, _, Some(_)) => return Err(only_for("burstiness", "`arrivals: gamma`")),
            (true, _, None) | (false, None, None) => {}
        }
        if open {
            spec.arrivals = Some(req.arrivals.unwrap_or(ArrivalKind::Poisson));
            spec.burstiness = req.burstiness;
        }
        if let Some(m) = req.max_concurrency {
            if !open {
                return Err(only_for(
                    "max_concurrency",
                    "mode `open_loop` (closed_loop uses `concurrency`)",
                ));
            }
            limits::MAX_CONCURRENCY.check(m)?;
            spec.max_concurrency = Some(m);
        }
        if open && req.concurrency.is_some() {
            return Err(only_for(
                "concurrency",
                "mode `closed_loop` (open_loop caps requests in flight with `max_concurrency`)",
            ));
        }
        let warmup = req.warmup_seconds.unwrap_or(0);
        limits::WARMUP_SECONDS.check(warmup)?;
        spec.warmup_seconds = warmup;
        let openai = spec.workload != Workload::Http;
        let what = "workloads `openai_completions` and `openai_chat`";
        for (given, field) in [
            (req.prompts.is_some(), "prompts"),
            (
                req.synthetic_prompt_words.is_some(),
                "synthetic_prompt_words",
            ),
            (req.temperature.is_some(), "temperature"),
        ] {
            if given && !openai {
                return Err(only_for(field, what));
            }
        }
        if let Some(p) = &req.prompts {
            if req.synthetic_prompt_words.is_some() {
                return Err(ApiError::bad_field(
                    "synthetic_prompt_words",
                    "give `prompts` or `synthetic_prompt_words`, not both",
                ));
            }
            let (n, chars) = (limits::PROMPTS, limits::PROMPT_CHARS);
            if !n.contains_len(p.len()) {
                return Err(ApiError::bad_field(
                    "prompts",
                    format!("`prompts` must hold {}..={} prompts", n.min, n.max),
                ));
            }
            if let Some(i) = p
                .iter()
                .position(|s| !chars.contains_len(s.chars().count()) || s.contains('\0'))
            {
                return Err(ApiError::bad_field(
                    format!("prompts[{i}]"),
                    format!(
                        "a prompt must be {}..={} characters without NUL",
                        chars.min, chars.max
                    ),
                ));
            }
            spec.prompts = Some(p.clone());
        }
        if let Some(n) = req.synthetic_prompt_words {
            limits::SYNTHETIC_PROMPT_WORDS.check(n)?;
        }
        if let Some(d) = &req.dataset {
            spec.dataset = Some(check_dataset(req, d, openai)?);
        }
        if let Some(t) = &req.tokenizer_path {
            if !openai {
                return Err(only_for("tokenizer_path", what));
            }
            crate::run_options::check_path("tokenizer_path", t)?;
            spec.tokenizer_path = Some(t.clone());
        }
        if openai && spec.prompts.is_none() && spec.dataset.is_none() {
            spec.synthetic_prompt_words = Some(req.synthetic_prompt_words.unwrap_or(128));
        }
        if let Some(t) = req.temperature {
            if !limits::TEMPERATURE.contains(t) {
                return Err(ApiError::bad_field(
                    "temperature",
                    format!(
                        "`temperature` must be in {}..={}",
                        limits::TEMPERATURE.min,
                        limits::TEMPERATURE.max
                    ),
                ));
            }
            spec.temperature = Some(t);
        }
        if let Some(g) = &req.goodput {
            for (v, field, needs_openai) in [
                (g.ttft_ms, "goodput.ttft_ms", true),
                (g.tpot_ms, "goodput.tpot_ms", true),
                (g.e2el_ms, "goodput.e2el_ms", false),
            ] {
                let Some(v) = v else { continue };
                if needs_openai && !openai {
                    return Err(only_for(field, what));
                }
                if !limits::GOODPUT_MS.contains(v) {
                    return Err(ApiError::bad_field(
                        field,
                        format!("`{field}` must be > {} ms", limits::GOODPUT_MS.min),
                    ));
                }
            }
            if g.ttft_ms.is_none() && g.tpot_ms.is_none() && g.e2el_ms.is_none() {
                return Err(ApiError::bad_field(
                    "goodput",
                    "`goodput` needs at least one of ttft_ms, tpot_ms, e2el_ms",
                ));
            }
            spec.goodput = Some(*g);
        }
        let load_nodes = req.load_nodes.unwrap_or(1);
        limits::LOAD_NODES.check(load_nodes)?;
        spec.load_nodes = load_nodes;
        if let Some(w) = &req.sweep {
            if matches!(spec.dataset, Some(DatasetSpec::Trace { .. })) {
                return Err(only_for(
                    "sweep",
                    "a load the run sets (a trace sets its own)",
                ));
            }
            w.validate(&spec)?;
            spec.sweep = Some(*w);
        }
        Ok(spec)
    }
}

/// `dataset` checked against the rest of the body: OpenAI workloads only,
/// no other source of prompts, no `max_tokens` where it sets them, and a
/// trace is the load (closed loop, no `concurrency`).
fn check_dataset(req: &CreateRun, d: &DatasetSpec, openai: bool) -> Result<DatasetSpec, ApiError> {
    if !openai {
        return Err(only_for(
            "dataset",
            "workloads `openai_completions` and `openai_chat`",
        ));
    }
    for (given, field) in [
        (req.prompts.is_some(), "prompts"),
        (
            req.synthetic_prompt_words.is_some(),
            "synthetic_prompt_words",
        ),
    ] {
        if given {
            return Err(ApiError::bad_field(
                field,
                format!("give `{field}` or `dataset`, not both"),
            ));
        }
    }
    d.validate()?;
    if d.sets_max_tokens() && req.max_tokens.is_some() {
        return Err(ApiError::bad_field(
            "max_tokens",
            format!(
                "`max_tokens` is set per request by dataset `{}`: leave it out",
                d.kind()
            ),
        ));
    }
    if let DatasetSpec::Trace { .. } = d {
        if req.mode == Some(LoadMode::OpenLoop) {
            return Err(only_for(
                "dataset",
                "mode `closed_loop` when its kind is `trace` (a trace is its own open loop)",
            ));
        }
        if req.concurrency.is_some() {
            return Err(ApiError::bad_field(
                "concurrency",
                "`concurrency` does not go with dataset `trace`: it is replayed at its own times",
            ));
        }
    }
    Ok(d.clone())
}

/// "`field` is for WHAT": `field` given where it does not apply.
fn only_for(field: &str, what: &str) -> ApiError {
    ApiError::bad_field(field, format!("`{field}` is for {what}"))
}

/// What a run does: the validated, defaulted form of [`CreateRun`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Requested duration (s).
    pub duration_seconds: i64,
    /// Concurrent clients.
    pub concurrency: i64,
    /// Load mode.
    pub mode: LoadMode,
    /// Request rate (open loop only).
    pub requests_per_second: Option<i64>,
    /// Workload.
    pub workload: Workload,
    /// Request path.
    pub path: String,
    /// Model (OpenAI workload).
    pub model: Option<String>,
    /// `max_tokens` (OpenAI workload).
    pub max_tokens: Option<i64>,
    /// Arrivals (open loop).
    #[serde(default)]
    pub arrivals: Option<ArrivalKind>,
    /// Gamma shape (gamma arrivals).
    #[serde(default)]
    pub burstiness: Option<f64>,
    /// Most requests in flight (open loop).
    #[serde(default)]
    pub max_concurrency: Option<i64>,
    /// Warm-up seconds, excluded from the results.
    #[serde(default)]
    pub warmup_seconds: i64,
    /// Prompts (OpenAI workloads).
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    /// Synthetic prompt length in words (OpenAI workloads without prompts).
    #[serde(default)]
    pub synthetic_prompt_words: Option<i64>,
    /// `temperature` (OpenAI workloads).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Goodput objectives.
    #[serde(default)]
    pub goodput: Option<GoodputSlo>,
    /// Nodes the load is sent from (1 for runs stored before the field).
    #[serde(default = "one")]
    pub load_nodes: i64,
    /// The dataset (OpenAI workloads; none for runs stored before the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSpec>,
    /// The capacity search (none: one measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSpec>,
    /// The tokenizer counting tokens (OpenAI workloads; none: the server's usage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_path: Option<String>,
}

fn one() -> i64 {
    1
}

impl Default for RunSpec {
    /// One closed-loop client for 1 s against `/` (a base for struct literals).
    fn default() -> Self {
        RunSpec {
            duration_seconds: 1,
            concurrency: 1,
            mode: LoadMode::ClosedLoop,
            requests_per_second: None,
            workload: Workload::Http,
            path: "/".into(),
            model: None,
            max_tokens: None,
            arrivals: None,
            burstiness: None,
            max_concurrency: None,
            warmup_seconds: 0,
            prompts: None,
            synthetic_prompt_words: None,
            temperature: None,
            goodput: None,
            load_nodes: 1,
            dataset: None,
            sweep: None,
            tokenizer_path: None,
        }
    }
}

/// A benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// `run-` and 16 hex digits.
    pub id: String,
    /// The service under load.
    pub service_id: String,
    /// Current status.
    pub status: Status,
    /// What it does.
    #[serde(flatten)]
    pub spec: RunSpec,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// When it began running.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// Last status detail.
    pub detail: Option<String>,
    /// Measurements (filled by the load generator; `null` until then).
    pub result: Option<serde_json::Value>,
    /// Status history (only on `GET /api/v1/benchmarks/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<StatusChange>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal `CreateRun` with `field` set to `value` and the choices
    /// (`mode`, `arrivals`, `workload`) that take `field`.
    fn create_run_with(field: &str, value: serde_json::Value) -> CreateRun {
        let mut body = serde_json::json!({"service_id": "svc-x", "duration_seconds": 10});
        let context = match field {
            "requests_per_second" | "max_concurrency" => {
                serde_json::json!({"mode": "open_loop", "requests_per_second": 1})
            }
            "burstiness" => serde_json::json!({
                "mode": "open_loop", "requests_per_second": 1, "arrivals": "gamma"
            }),
            "max_tokens" | "synthetic_prompt_words" | "temperature" => {
                serde_json::json!({"workload": "openai_completions"})
            }
            _ => serde_json::json!({}),
        };
        for (k, v) in context.as_object().unwrap() {
            body[k] = v.clone();
        }
        body[field] = value;
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn validate_takes_its_ranges_from_the_table() {
        for l in limits::CREATE_RUN_INTEGERS {
            for v in [l.min, l.max] {
                let spec = create_run_with(l.field, v.into()).validate();
                assert!(spec.is_ok(), "{} = {v}: {spec:?}", l.field);
            }
            for v in [l.min - 1, l.max + 1] {
                let e = create_run_with(l.field, v.into()).validate().unwrap_err();
                assert_eq!(e.status, 400);
                assert_eq!(e.field.as_deref(), Some(l.field));
                assert_eq!(
                    e.error,
                    format!(
                        "`{}` must be between {} and {}, got {v}",
                        l.field, l.min, l.max
                    )
                );
            }
        }
        for l in limits::CREATE_RUN_NUMBERS {
            let (min, max) = (l.min as f64, l.max as f64);
            let ok = |v: f64| create_run_with(l.field, v.into()).validate().is_ok();
            assert!(
                ok(max) && !ok(max + 0.001) && !ok(min - 0.001),
                "{}",
                l.field
            );
            assert_eq!(ok(min), !l.exclusive_min, "{}", l.field);
        }
        let spec = create_run_with("warmup_seconds", 5.into())
            .validate()
            .unwrap();
        assert_eq!((spec.warmup_seconds, spec.load_nodes), (5, 1));
    }

    #[test]
    fn status_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(Status::Cancelled.is_terminal() && !Status::Unknown.is_terminal());
    }
}
