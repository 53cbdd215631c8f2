//! The records the API serves and the request bodies it accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2024-05-01T12:00:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// A fresh id: `prefix-` and 16 random hex digits.
pub fn new_id(prefix: &str) -> String {
    use std::io::Read;
    let mut buf = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if random.is_err() {
        // Fall back to time and a counter; ids stay unique within a process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        buf = ((now_ms() as u64) << 16 ^ n).to_be_bytes();
    }
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn status_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(Status::Cancelled.is_terminal() && !Status::Unknown.is_terminal());
    }

    #[test]
    fn ids_differ() {
        let a = new_id("svc");
        assert!(a.starts_with("svc-") && a.len() == 20);
        assert_ne!(a, new_id("svc"));
    }
}
