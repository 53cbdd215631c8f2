//! The command line of `aif-loadgen` and its validation into a [`Plan`].
//! Every mistake is a [`PlanError`] naming the flag, found before any request
//! is sent (the binary exits 2).
//!
//! A run may be split over several processes (one per node, one Slurm step
//! with the same argv in every task): `--parts N` and `--part-index I` (default
//! `$SLURM_PROCID`) give this process its share ([`Part::share`] of
//! `--concurrency` and `--max-concurrency`, `--request-rate` / N, seed + I),
//! `--start-at` aligns their starts, and `%t` in `--result-file` and
//! `--progress-file` becomes the part index; [`crate::merge`] merges
//! their results.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gpu_metrics::ssh::{SshArgs, SshArgsError, SshConfig};

use crate::arrivals::Arrivals;
use crate::dataset::{self, DatasetKind};
use crate::prompts::{self, PromptError};
use crate::stats::Slo;
use crate::workload::{Api, OpenAiParams, Workload};

/// Most clients (closed loop) or concurrent requests (open loop).
pub const MAX_CLIENTS: usize = 10_000;

/// `aif-loadgen` flags.
#[derive(Debug, Clone, Default, PartialEq, Parser)]
#[command(
    name = "aif-loadgen",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AIF_GIT_COMMIT"), ")"),
    about = "Load generator: closed loop (N clients) or open loop (a request rate), plain HTTP or OpenAI-compatible streaming; figures as `vllm bench serve` defines them"
)]
pub struct Args {
    /// Base URL of the service, `http://HOST:PORT` (TLS is not built in).
    #[arg(long, value_name = "BASE")]
    pub url: Option<String>,
    /// Closed loop: N clients, each sending its next request when the last ended.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Open loop: requests per second, latency measured from the scheduled send time.
    #[arg(long, value_name = "R")]
    pub request_rate: Option<f64>,
    /// Open loop arrivals: constant, poisson or gamma (default poisson).
    #[arg(long, value_name = "constant|poisson|gamma")]
    pub arrivals: Option<String>,
    /// Shape of gamma arrivals (< 1 burstier, > 1 steadier; 1 is Poisson).
    #[arg(long, value_name = "F")]
    pub burstiness: Option<f64>,
    /// Open loop: at most N requests in flight; later ones wait for a free
    /// client, the wait reported separately (default: up to 10000).
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// How long to send, with a unit (`30s`, `5m`); required.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Leading time excluded from the results (default 0s).
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// Limit for one request, connect to end of body (default 60s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// After the duration, how long requests in flight may still finish (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// What to send: http, completions or chat (default http).
    #[arg(long, value_name = "http|completions|chat")]
    pub workload: Option<String>,
    /// HTTP method (http workload; default GET).
    #[arg(long, value_name = "METHOD")]
    pub method: Option<String>,
    /// Request path (default `/`, `/v1/completions`, `/v1/chat/completions`).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Request body (http workload).
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,
    /// Request body from a file (http workload).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A prompt (repeatable; OpenAI workloads).
    #[arg(long = "prompt", value_name = "TEXT")]
    pub prompts: Vec<String>,
    /// Prompts from a JSONL file, one `{"prompt": "..."}` a line.
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Synthetic prompts of this many words.
    #[arg(long, value_name = "N")]
    pub synthetic_prompt_words: Option<usize>,
    /// A benchmark dataset instead of prompts: sharegpt, random or trace
    /// (OpenAI workloads; see [`crate::dataset`]; words stand for tokens).
    #[arg(long, value_name = "sharegpt|random|trace")]
    pub dataset: Option<String>,
    /// The dataset file: ShareGPT JSON, or a Mooncake trace (JSONL).
    #[arg(long, value_name = "FILE")]
    pub dataset_path: Option<PathBuf>,
    /// sharegpt: `max_tokens` of every request.
    #[arg(long, value_name = "N")]
    pub sharegpt_output_len: Option<u32>,
    /// sharegpt: each request's `max_tokens` is its reference answer's length
    /// in words (no tokenizer: words stand for tokens).
    #[arg(long)]
    pub sharegpt_reference_len: bool,
    /// random: input length in words, standing for tokens (default 1024).
    #[arg(long, value_name = "N")]
    pub input_len: Option<usize>,
    /// random: output length, each request's `max_tokens` (default 128).
    #[arg(long, value_name = "N")]
    pub output_len: Option<u32>,
    /// random: lengths drawn from [len * (1 - F), len * (1 + F)], F in [0, 1) (default 0).
    #[arg(long, value_name = "F")]
    pub range_ratio: Option<f64>,
    /// random: words of a random prefix every prompt shares (default 0).
    #[arg(long, value_name = "N")]
    pub prefix_len: Option<usize>,
    /// `model` of OpenAI requests.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// `max_tokens` of OpenAI requests.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// `temperature` of OpenAI requests.
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Do not send `stream_options.include_usage` (servers that refuse it).
    #[arg(long)]
    pub no_usage: bool,
    /// Count prompt and output tokens with this Hugging Face `tokenizer.json`
    /// instead of the server's usage or the SSE events (OpenAI workloads;
    /// see [`crate::tokenizer`]).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Goodput SLOs in ms: `ttft:MS`, `tpot:MS`, `e2el:MS` (any of them).
    #[arg(long, value_name = "METRIC:MS", num_args = 1..)]
    pub goodput: Vec<String>,
    /// Write the result JSON here (`%t` becomes the part index; required in
    /// the name with `--parts` > 1).
    #[arg(long, value_name = "FILE")]
    pub result_file: Option<PathBuf>,
    /// Rewrite a progress JSON here every second, for the API (`%t` becomes
    /// the part index).
    #[arg(long, value_name = "FILE")]
    pub progress_file: Option<PathBuf>,
    /// Progress line on stderr this often (default 5s; `0s` for none).
    #[arg(long, value_name = "DURATION")]
    pub progress_every: Option<String>,
    /// Run id (label `run_id`, grouping key); default `run-` and 16 hex digits.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Service id (label `service_id`).
    #[arg(long, value_name = "ID")]
    pub service_id: Option<String>,
    /// Seed for arrivals and synthetic prompts (default: random); part I of
    /// `--parts` draws its arrivals from seed + I.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// This process is one of N (1..=256) sharing the load: it runs its share
    /// of `--concurrency`, `--max-concurrency` and `--request-rate` (default 1).
    #[arg(long, value_name = "N")]
    pub parts: Option<usize>,
    /// Which of the `--parts` this process is, 0..N-1 (default: `$SLURM_PROCID`
    /// when `--parts` > 1).
    #[arg(long, value_name = "I")]
    pub part_index: Option<usize>,
    /// Start the run (first request and warm-up) at this wall-clock time, ms
    /// since the Unix epoch: wait until then, or start at once (with a warning)
    /// when it has passed.
    #[arg(long, value_name = "UNIX_MS")]
    pub start_at: Option<i64>,
    /// Push live metrics to this Pushgateway (job `aif_benchmark`).
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// Push interval (default 1s).
    #[arg(long, value_name = "DURATION")]
    pub push_interval: Option<String>,
    /// Keep the Pushgateway group after the run (default: deleted at the end).
    #[arg(long)]
    pub keep_group: bool,
    /// Buffer file of live metrics (default `$TMPDIR/aif-loadgen-<run_id>.sqlite`).
    #[arg(long, value_name = "FILE")]
    pub buffer: Option<PathBuf>,
    /// SLO capacity search: the largest `rate` (--request-rate) or
    /// `concurrency` whose goodput share meets --goodput-target (see
    /// [`crate::sweep`]); needs --goodput, replaces --duration.
    #[arg(long, value_name = "rate|concurrency")]
    pub sweep: Option<String>,
    /// Lowest load of the sweep (default 1).
    #[arg(long, value_name = "X")]
    pub sweep_min: Option<f64>,
    /// Highest load of the sweep (required with --sweep).
    #[arg(long, value_name = "X")]
    pub sweep_max: Option<f64>,
    /// Measured time of each sweep step (default 10s; --warmup precedes each).
    #[arg(long, value_name = "DURATION")]
    pub sweep_step_duration: Option<String>,
    /// Share of good requests a sweep step needs, percent in (0, 100] (default 99).
    #[arg(long, value_name = "PERCENT")]
    pub goodput_target: Option<f64>,
    /// The sweep bisects until (hi - lo) / lo is at most this, percent (default 5).
    #[arg(long, value_name = "PERCENT")]
    pub sweep_tolerance: Option<f64>,
    /// How the clients are run: `events` (non-blocking sockets, one event
    /// loop per core, the default; see [`crate::evloop`]) or `threads` (one
    /// OS thread and blocking connection per client, the engine before it).
    #[arg(long, value_name = "threads|events")]
    pub engine: Option<String>,
    /// The SSH gateway (`--ssh-*`) the pushes travel through.
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A flag's value is not acceptable.
    #[error("--{flag}: {message}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A required flag is missing.
    #[error("--{0} is required")]
    Missing(&'static str),
    /// A flag that only goes with another choice.
    #[error("--{flag} {only}")]
    Misplaced {
        /// The flag given.
        flag: &'static str,
        /// Which choice it belongs to.
        only: &'static str,
    },
    /// A total cannot be split over `--parts` (a part would get nothing).
    #[error(
        "--{flag} {value} cannot be shared by --parts {parts}: each part needs at least one client"
    )]
    Unshareable {
        /// The flag (`concurrency` or `max-concurrency`).
        flag: &'static str,
        /// Its value.
        value: usize,
        /// `--parts`.
        parts: usize,
    },
    /// `--parts` > 1 without `--part-index`, and `$SLURM_PROCID` is not set.
    #[error(
        "--part-index is required with --parts {parts} when ${PART_INDEX_ENV} is not set (srun sets it in each task)"
    )]
    NoPartIndex {
        /// `--parts`.
        parts: usize,
    },
    /// `$SLURM_PROCID` (the default of `--part-index`) is not a number.
    #[error("${PART_INDEX_ENV} `{value}` is not a part index (a number); give --part-index")]
    BadPartIndexEnv {
        /// Its value.
        value: String,
    },
    /// Prompts could not be loaded.
    #[error(transparent)]
    Prompts(#[from] PromptError),
}

fn invalid(flag: &'static str, message: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        flag,
        message: message.into(),
    }
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// N clients back to back.
    Closed {
        /// Clients.
        concurrency: usize,
    },
    /// A request rate.
    Open {
        /// Requests per second.
        rate: f64,
        /// How gaps are drawn.
        arrivals: Arrivals,
        /// Most requests in flight (`None`: up to [`MAX_CLIENTS`]).
        max_concurrency: Option<usize>,
    },
}

/// An SSH gateway for the Pushgateway.
#[derive(Debug, Clone)]
pub struct SshPlan {
    /// Login to the gateway.
    pub ssh: SshConfig,
    /// Pushgateway host as the gateway resolves it.
    pub remote_host: String,
    /// Its port.
    pub remote_port: u16,
    /// The URL's path prefix (may be empty).
    pub path: String,
}

/// Live metrics.
#[derive(Debug, Clone)]
pub struct LivePlan {
    /// Pushgateway base URL.
    pub pushgateway: String,
    /// Push interval.
    pub interval: Duration,
    /// Keep the group at the end.
    pub keep_group: bool,
    /// Buffer file.
    pub buffer: PathBuf,
    /// SSH gateway.
    pub ssh: Option<SshPlan>,
}

/// Which engine runs the clients (`--engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// One OS thread (and blocking connection) per client.
    Threads,
    /// Non-blocking connections, one event loop thread per core ([`crate::evloop`]).
    #[default]
    Events,
}

impl EngineKind {
    /// `threads` or `events`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Threads => "threads",
            EngineKind::Events => "events",
        }
    }
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URL (no trailing `/`).
    pub base_url: String,
    /// Closed or open loop.
    pub load: Load,
    /// Sending time, warm-up included.
    pub duration: Duration,
    /// Warm-up (excluded from results).
    pub warmup: Duration,
    /// One request's limit.
    pub timeout: Duration,
    /// Grace for requests in flight after the duration.
    pub drain: Duration,
    /// What to send.
    pub workload: Workload,
    /// OpenAI parameters (for the result).
    pub openai: OpenAiParams,
    /// Number of distinct prompts.
    pub prompt_count: usize,
    /// `--tokenizer`, loaded: it counts the tokens (the workload holds it too).
    pub tokenizer: Option<std::sync::Arc<crate::tokenizer::Tokenizer>>,
    /// `--dataset`, when given.
    pub dataset: Option<DatasetKind>,
    /// `--dataset trace`: request i's due time, seconds after the start.
    pub trace_due_s: Option<std::sync::Arc<[f64]>>,
    /// Goodput objectives.
    pub slo: Slo,
    /// Result JSON.
    pub result_file: Option<PathBuf>,
    /// Progress JSON.
    pub progress_file: Option<PathBuf>,
    /// Progress line period (`None`: never).
    pub progress_every: Option<Duration>,
    /// Run id.
    pub run_id: String,
    /// Service id.
    pub service_id: Option<String>,
    /// Seed of this part's arrivals (`--seed` + part index).
    pub seed: u64,
    /// Live metrics.
    pub live: Option<LivePlan>,
    /// This process's part of the run.
    pub part: Part,
    /// Start time, ms since the Unix epoch (`None`: at once).
    pub start_at_ms: Option<i64>,
    /// Which engine runs the clients.
    pub engine: EngineKind,
    /// SLO capacity search (`--sweep`); `None`: one run.
    pub sweep: Option<SweepPlan>,
    /// Keys added to every progress file (a sweep's step and load).
    pub progress_extra: Option<serde_json::Value>,
}

fn duration(flag: &'static str, v: Option<&str>, default: Duration) -> Result<Duration, PlanError> {
    match v {
        None => Ok(default),
        Some(s) => gpu_metrics::units::parse_duration(s).map_err(|e| invalid(flag, e.to_string())),
    }
}

use gpu_metrics::url::split_http_url;

fn check_id(flag: &'static str, id: &str) -> Result<(), PlanError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            flag,
            format!("`{id}` must be 1..=128 of [A-Za-z0-9._-]"),
        ));
    }
    Ok(())
}

fn parse_goodput(items: &[String]) -> Result<Slo, PlanError> {
    let mut slo = Slo::default();
    for item in items {
        let (metric, ms) = item
            .split_once(':')
            .ok_or_else(|| invalid("goodput", format!("`{item}` is not METRIC:MS (ttft:500)")))?;
        let ms: f64 = ms
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| invalid("goodput", format!("`{item}`: MS must be a number > 0")))?;
        let slot = match metric {
            "ttft" => &mut slo.ttft_ms,
            "tpot" => &mut slo.tpot_ms,
            "e2el" => &mut slo.e2el_ms,
            other => {
                return Err(invalid(
                    "goodput",
                    format!("`{other}` is not one of: ttft, tpot, e2el"),
                ));
            }
        };
        *slot = Some(ms);
    }
    Ok(slo)
}

fn parse_header(h: &str) -> Result<(String, String), PlanError> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| invalid("header", format!("`{h}` is not `Name: value`")))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        || value.chars().any(|c| c.is_control() && c != '\t')
    {
        return Err(invalid("header", format!("`{h}` is not a valid header")));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn live_plan(a: &Args, run_id: &str, part: Part) -> Result<Option<LivePlan>, PlanError> {
    let Some(url) = &a.pushgateway else {
        for (given, flag) in [
            (a.ssh.ssh_host.is_some(), "ssh-host"),
            (a.keep_group, "keep-group"),
            (a.push_interval.is_some(), "push-interval"),
            (a.buffer.is_some(), "buffer"),
        ] {
            if given {
                return Err(PlanError::Misplaced {
                    flag,
                    only: "goes with --pushgateway",
                });
            }
        }
        return Ok(None);
    };
    let pushgateway = gpu_metrics::sink::normalize_base_url(url)
        .map_err(|e| invalid("pushgateway", e.to_string()))?;
    let interval = duration(
        "push-interval",
        a.push_interval.as_deref(),
        Duration::from_secs(1),
    )?;
    if interval < Duration::from_millis(100) {
        return Err(invalid("push-interval", "must be at least 100ms"));
    }
    if let Some(flag) = a.ssh.given_without_host() {
        return Err(PlanError::Misplaced {
            flag: flag.flag(),
            only: "goes with --ssh-host",
        });
    }
    let ssh = match a.ssh.to_config().map_err(|e| match e {
        SshArgsError::NeedsIdentity => PlanError::Missing("ssh-identity"),
        other => invalid(other.flag().flag(), other.to_string()),
    })? {
        None => None,
        Some(ssh) => {
            let (remote_host, remote_port, path) =
                split_http_url(&pushgateway).ok_or_else(|| {
                    invalid(
                        "pushgateway",
                        "through --ssh-host the URL must be http://HOST[:PORT][/PATH]",
                    )
                })?;
            Some(SshPlan {
                ssh,
                remote_host,
                remote_port,
                path,
            })
        }
    };
    let buffer = match &a.buffer {
        Some(b) => part.expand(b),
        None if part.count > 1 => {
            std::env::temp_dir().join(format!("aif-loadgen-{run_id}-part{}.sqlite", part.index))
        }
        None => std::env::temp_dir().join(format!("aif-loadgen-{run_id}.sqlite")),
    };
    Ok(Some(LivePlan {
        pushgateway,
        interval,
        keep_group: a.keep_group,
        buffer,
        ssh,
    }))
}

impl Args {
    /// Checks every flag and builds the plan (reads the prompt and body files;
    /// `--part-index` defaults to `$SLURM_PROCID`).
    ///
    /// # Errors
    /// [`PlanError`] naming the flag.
    pub fn build(&self) -> Result<Plan, PlanError> {
        self.build_with(std::env::var(PART_INDEX_ENV).ok().as_deref())
    }

    /// [`Args::build`] with `procid` as the value of `$SLURM_PROCID`.
    fn build_with(&self, procid: Option<&str>) -> Result<Plan, PlanError> {
        let part = part(self, procid)?;
        let start_at_ms = start_at(self.start_at)?;
        let engine = match self.engine.as_deref().map(str::trim) {
            Some("threads") => EngineKind::Threads,
            None | Some("events") => EngineKind::Events,
            Some(other) => {
                return Err(invalid(
                    "engine",
                    format!("`{other}` is not one of: threads, events"),
                ));
            }
        };
        let url = self.url.as_deref().ok_or(PlanError::Missing("url"))?;
        if url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        {
            return Err(invalid(
                "url",
                format!("`{url}`: https is not supported (no TLS built in); use http://"),
            ));
        }
        let target = gpu_metrics::url::parse_http_url(url).map_err(|_| {
            invalid(
                "url",
                format!("`{url}` is not http://HOST[:PORT] (a scheme is required)"),
            )
        })?;
        let addrs: Vec<std::net::SocketAddr> = {
            use std::net::ToSocketAddrs;
            (target.host.as_str(), target.port)
                .to_socket_addrs()
                .map_err(|e| invalid("url", format!("`{}` does not resolve: {e}", target.host)))?
                .collect()
        };
        let base_url = format!(
            "http://{}{}",
            target.authority(),
            target.path_and_query.trim_end_matches('/')
        );

        let max_clients = |flag: &'static str, n: usize| {
            if (1..=MAX_CLIENTS).contains(&n) {
                Ok(n)
            } else {
                Err(invalid(flag, format!("{n} is not in 1..={MAX_CLIENTS}")))
            }
        };
        // Synthetic prompts and datasets come from the base seed (every part
        // has the same prompts); arrivals from seed + part index.
        let seed = self.seed.unwrap_or_else(gpu_metrics::retry::random_seed);
        let mut data = dataset::from_args(self, part, seed)?;
        let dataset_kind = data.as_ref().map(|d| d.kind);
        let trace = data.as_ref().and_then(|d| d.due_s.clone());
        let sweep = sweep_plan(self)?;
        let (concurrency, request_rate) = match &sweep {
            Some(w) if w.by == SweepBy::Rate => (None, Some(w.min)),
            Some(w) => (Some(w.min as usize), None),
            None => (self.concurrency, self.request_rate),
        };
        let load = match (concurrency, request_rate) {
            // The trace's other load flags were refused by `from_args`.
            _ if trace.is_some() => Load::Open {
                rate: dataset::trace_rate(trace.as_deref().unwrap_or_default()),
                arrivals: Arrivals::Trace,
                max_concurrency: self
                    .max_concurrency
                    .map(|n| {
                        shared_clients(part, "max-concurrency", max_clients("max-concurrency", n)?)
                    })
                    .transpose()?,
            },
            (Some(_), Some(_)) => {
                return Err(PlanError::Misplaced {
                    flag: "concurrency",
                    only: "is closed loop and --request-rate open loop: give one (--max-concurrency caps an open loop)",
                });
            }
            (None, None) => {
                return Err(invalid(
                    "concurrency",
                    "give --concurrency N (closed loop) or --request-rate R (open loop)",
                ));
            }
            (Some(n), None) => {
                for (given, flag) in [
                    (self.arrivals.is_some(), "arrivals"),
                    (self.burstiness.is_some(), "burstiness"),
                    (self.max_concurrency.is_some(), "max-concurrency"),
                ] {
                    if given {
                        return Err(PlanError::Misplaced {
                            flag,
                            only: "goes with --request-rate (open loop)",
                        });
                    }
                }
                Load::Closed {
                    concurrency: shared_clients(
                        part,
                        "concurrency",
                        max_clients("concurrency", n)?,
                    )?,
                }
            }
            (None, Some(rate)) => {
                if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
                    return Err(invalid(
                        "request-rate",
                        format!("{rate} is not in (0, 1000000]"),
                    ));
                }
                let arrivals = match (
                    self.arrivals.as_deref().unwrap_or("poisson"),
                    self.burstiness,
                ) {
                    ("constant", None) => Arrivals::Constant,
                    ("poisson", None) => Arrivals::Poisson,
                    ("gamma", Some(k)) if k.is_finite() && k > 0.0 && k <= 1000.0 => {
                        Arrivals::Gamma(k)
                    }
                    ("gamma", Some(k)) => {
                        return Err(invalid("burstiness", format!("{k} is not in (0, 1000]")));
                    }
                    ("gamma", None) => return Err(PlanError::Missing("burstiness")),
                    ("constant" | "poisson", Some(_)) => {
                        return Err(PlanError::Misplaced {
                            flag: "burstiness",
                            only: "goes with --arrivals gamma",
                        });
                    }
                    (other, _) => {
                        return Err(invalid(
                            "arrivals",
                            format!("`{other}` is not one of: constant, poisson, gamma"),
                        ));
                    }
                };
                let max_concurrency = self
                    .max_concurrency
                    .map(|n| {
                        shared_clients(part, "max-concurrency", max_clients("max-concurrency", n)?)
                    })
                    .transpose()?;
                Load::Open {
                    rate: rate / part.count as f64,
                    arrivals,
                    max_concurrency,
                }
            }
        };
        let mut duration_v = duration("duration", self.duration.as_deref(), Duration::ZERO)?;
        if let Some(w) = &sweep {
            // Each step: the warm-up, then the measured step duration.
            duration_v = w.step_duration
                + match self.warmup.as_deref().map(str::trim) {
                    Some("0" | "0s") => Duration::ZERO,
                    other => duration("warmup", other, Duration::ZERO)?,
                };
        } else if self.duration.is_none() && trace.is_none() {
            return Err(PlanError::Missing("duration"));
        }
        if let Some(due) = &trace {
            duration_v =
                dataset::trace_duration(due, self.duration.is_some().then_some(duration_v));
        }
        if duration_v.is_zero() || duration_v > Duration::from_secs(86_400 * 7) {
            return Err(invalid("duration", "must be > 0 and at most 7 days"));
        }
        let warmup = match self.warmup.as_deref().map(str::trim) {
            Some("0" | "0s") => Duration::ZERO,
            other => duration("warmup", other, Duration::ZERO)?,
        };
        if warmup >= duration_v {
            return Err(invalid("warmup", "must be shorter than --duration"));
        }
        let timeout = duration("timeout", self.timeout.as_deref(), Duration::from_secs(60))?;
        if timeout < Duration::from_millis(1) {
            return Err(invalid("timeout", "must be at least 1ms"));
        }
        let drain = duration(
            "drain-timeout",
            self.drain_timeout.as_deref(),
            Duration::from_secs(30),
        )?;
        let progress_every = match self.progress_every.as_deref().map(str::trim) {
            Some("0" | "0s") => Duration::ZERO,
            other => duration("progress-every", other, Duration::from_secs(5))?,
        };

        let api = match self.workload.as_deref().unwrap_or("http") {
            "http" => Api::Http,
            "completions" => Api::Completions,
            "chat" => Api::Chat,
            other => {
                return Err(invalid(
                    "workload",
                    format!("`{other}` is not one of: http, completions, chat"),
                ));
            }
        };
        let path = match &self.path {
            Some(p) if !p.starts_with('/') || p.chars().any(|c| c.is_control() || c == ' ') => {
                return Err(invalid(
                    "path",
                    format!("`{p}` must start with `/` and hold no spaces"),
                ));
            }
            Some(p) => p.clone(),
            None => match api {
                Api::Http => "/".into(),
                Api::Completions => "/v1/completions".into(),
                Api::Chat => "/v1/chat/completions".into(),
            },
        };
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let openai = OpenAiParams {
            model: self.model.clone(),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            include_usage: !self.no_usage,
        };
        let mut tokenizer = None;
        let (method, bodies, prompt_count, input_tokens) = if api == Api::Http {
            for (given, flag) in [
                (!self.prompts.is_empty(), "prompt"),
                (self.prompt_file.is_some(), "prompt-file"),
                (
                    self.synthetic_prompt_words.is_some(),
                    "synthetic-prompt-words",
                ),
                (self.model.is_some(), "model"),
                (self.max_tokens.is_some(), "max-tokens"),
                (self.temperature.is_some(), "temperature"),
                (self.no_usage, "no-usage"),
                (self.tokenizer.is_some(), "tokenizer"),
            ] {
                if given {
                    return Err(PlanError::Misplaced {
                        flag,
                        only: "goes with --workload completions|chat",
                    });
                }
            }
            let method = self.method.clone().unwrap_or_else(|| "GET".into());
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(
                    "method",
                    format!("`{method}` is not an upper-case HTTP method"),
                ));
            }
            let body = match (&self.body, &self.body_file) {
                (Some(_), Some(_)) => {
                    return Err(PlanError::Misplaced {
                        flag: "body-file",
                        only: "replaces --body: give one",
                    });
                }
                (Some(b), None) => b.clone().into_bytes(),
                (None, Some(f)) => std::fs::read(f)
                    .map_err(|e| invalid("body-file", format!("{}: {e}", f.display())))?,
                (None, None) => Vec::new(),
            };
            (method, vec![body], 0, Vec::new())
        } else {
            for (given, flag) in [
                (self.method.is_some(), "method"),
                (self.body.is_some(), "body"),
                (self.body_file.is_some(), "body-file"),
            ] {
                if given {
                    return Err(PlanError::Misplaced {
                        flag,
                        only: "goes with --workload http",
                    });
                }
            }
            if let Some(t) = self.temperature
                && !(t.is_finite() && (0.0..=2.0).contains(&t))
            {
                return Err(invalid("temperature", format!("{t} is not in 0..=2")));
            }
            if self.max_tokens == Some(0) {
                return Err(invalid("max-tokens", "must be at least 1"));
            }
            let given = usize::from(!self.prompts.is_empty())
                + usize::from(self.prompt_file.is_some())
                + usize::from(self.synthetic_prompt_words.is_some());
            if given != 1 && data.is_none() {
                return Err(invalid(
                    "prompt",
                    "give exactly one of --prompt (repeatable), --prompt-file FILE.jsonl, --synthetic-prompt-words N, --dataset NAME",
                ));
            }
            // Datasets may set each request's max_tokens.
            let (prompts, max_tokens): (Vec<String>, Vec<Option<u32>>) = if let Some(d) = &mut data
            {
                std::mem::take(&mut d.requests)
                    .into_iter()
                    .map(|r| (r.prompt, r.max_tokens))
                    .unzip()
            } else if let Some(f) = &self.prompt_file {
                (prompts::read_jsonl(f)?, Vec::new())
            } else if let Some(n) = self.synthetic_prompt_words {
                if !(1..=100_000).contains(&n) {
                    return Err(invalid(
                        "synthetic-prompt-words",
                        format!("{n} is not in 1..=100000"),
                    ));
                }
                (prompts::synthetic(64, n, seed), Vec::new())
            } else {
                (self.prompts.clone(), Vec::new())
            };
            let mut bodies: Vec<Vec<u8>> = prompts
                .iter()
                .zip(max_tokens.into_iter().chain(std::iter::repeat(None)))
                .map(|(p, max)| dataset::body(api, &openai, p, max))
                .collect();
            // The prompt as sent: completions' `prompt`, chat's user content.
            let mut input_tokens = Vec::new();
            if let Some(f) = &self.tokenizer {
                let t = crate::tokenizer::load(f)?;
                input_tokens = crate::tokenizer::count_prompts(&t, &prompts)?;
                tokenizer = Some(std::sync::Arc::new(t));
            }
            // Request n takes body n mod len: each part starts its picks at
            // another place in the list (a trace's part already holds its
            // own lines, in order).
            let offset = part.index * bodies.len() / part.count * usize::from(trace.is_none());
            bodies.rotate_left(offset);
            if !input_tokens.is_empty() {
                input_tokens.rotate_left(offset);
            }
            ("POST".to_string(), bodies, prompts.len(), input_tokens)
        };
        let slo = parse_goodput(&self.goodput)?;
        if api == Api::Http && (slo.ttft_ms.is_some() || slo.tpot_ms.is_some()) {
            return Err(PlanError::Misplaced {
                flag: "goodput",
                only: "ttft and tpot go with --workload completions|chat (http has e2el only)",
            });
        }
        let run_id = match &self.run_id {
            Some(id) => {
                check_id("run-id", id)?;
                id.clone()
            }
            None => gpu_metrics::clock::new_id("run"),
        };
        if let Some(s) = &self.service_id {
            check_id("service-id", s)?;
        }
        let live = live_plan(self, &run_id, part)?;
        let result_file = self.result_file.as_deref().map(|f| part.expand(f));
        if part.count > 1
            && let (Some(given), Some(expanded)) = (&self.result_file, &result_file)
            && given == expanded
        {
            return Err(invalid(
                "result-file",
                format!(
                    "`{}` has no %t: with --parts {} the parts would overwrite each other's result",
                    given.display(),
                    part.count
                ),
            ));
        }
        Ok(Plan {
            workload: Workload {
                api,
                method,
                url: format!("{base_url}{path}"),
                headers,
                bodies,
                addrs,
                timeout,
                tokenizer: tokenizer.clone(),
                input_tokens,
            },
            tokenizer,
            base_url,
            load,
            duration: duration_v,
            warmup,
            timeout,
            drain,
            openai,
            prompt_count,
            dataset: dataset_kind,
            trace_due_s: trace,
            slo,
            result_file,
            progress_file: self.progress_file.as_deref().map(|f| part.expand(f)),
            progress_every: (!progress_every.is_zero()).then_some(progress_every),
            run_id,
            service_id: self.service_id.clone(),
            seed: seed.wrapping_add(part.index as u64),
            sweep,
            progress_extra: None,
            live,
            part,
            start_at_ms,
            engine,
        })
    }
}

#[cfg(test)]
mod tests;

mod argv;
mod part;
mod sweep;

pub use part::{MAX_PARTS, PART_INDEX_ENV, Part};
use part::{part, shared_clients, start_at};

use sweep::sweep_plan;
pub use sweep::{SweepBy, SweepPlan};
