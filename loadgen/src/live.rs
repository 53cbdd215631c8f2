//! Live metrics of a run, through the library's agent: a [`BatchSource`] over
//! the run's figures, the write-ahead buffer, and the Pushgateway sink (job
//! `aif_benchmark`, grouping key `instance` + `run_id`, + `part` for each part
//! of a run split with `--parts`), optionally through an
//! SSH local forward as the node exporter does. The group is deleted at the
//! end unless `--keep-group`.
//!
//! Series (labels `run_id`, and `service_id` when given):
//!
//! | name | type | what |
//! |---|---|---|
//! | `aif_benchmark_requests_total` | counter | successful requests (after the warm-up) |
//! | `aif_benchmark_request_errors_total{kind}` | counter | failed requests: `connect`, `timeout`, `http_status`, `stream_broken`, `transport` |
//! | `aif_benchmark_warmup_requests_total` | counter | requests sent during the warm-up |
//! | `aif_benchmark_request_duration_seconds_bucket{le}`, `_sum`, `_count` | counter | E2EL histogram (cumulative buckets, Prometheus histogram layout) |
//! | `aif_benchmark_time_to_first_token_seconds_bucket{le}`, `_sum`, `_count` | counter | TTFT histogram (OpenAI workloads) |
//! | `aif_benchmark_inter_token_latency_seconds_bucket{le}`, `_sum`, `_count` | counter | ITL histogram (OpenAI workloads) |
//! | `aif_benchmark_input_tokens_total`, `aif_benchmark_output_tokens_total` | counter | tokens (OpenAI workloads) |
//! | `aif_benchmark_in_flight_requests` | gauge | requests in flight |
//! | `aif_benchmark_clients` | gauge | client threads |
//! | `aif_benchmark_elapsed_seconds`, `aif_benchmark_planned_duration_seconds` | gauge | progress |
//! | `aif_benchmark_progress_ratio` | gauge | elapsed / planned, 0..1 |
//!
//! Grafana: `histogram_quantile(0.99, sum by (le) (rate(aif_benchmark_request_duration_seconds_bucket{run_id="…"}[1m])))`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use gpu_metrics::agent::{AgentError, AgentHandle, AgentOptions, BatchSource, start_source};
use gpu_metrics::buffer::{Buffer, BufferConfig, BufferError};
use gpu_metrics::sink::{BuildError, PushgatewayBuilder};
use gpu_metrics::ssh::SshError;
use gpu_metrics::tunnel::{LocalForward, TunnelOptions};
use gpu_metrics::{Batch, Labels, MetricKind, Series};

use crate::engine::Shared;
use crate::plan::{LivePlan, Plan};
use crate::stats::{Latency, Recorder};
use crate::workload::ErrorKind;

/// The Pushgateway job of live metrics.
pub const JOB: &str = "aif_benchmark";

/// Histogram bucket bounds (seconds) of the latency series.
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why live metrics could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The Pushgateway settings are invalid.
    #[error("pushgateway: {0}")]
    Pushgateway(#[from] BuildError),
    /// The buffer could not be opened.
    #[error("buffer: {0}")]
    Buffer(#[from] BufferError),
    /// The agent could not start.
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    /// The SSH tunnel could not start.
    #[error("ssh tunnel: {0}")]
    Tunnel(#[from] SshError),
}

struct Histogram {
    buckets: Vec<Arc<Series>>,
    sum: Arc<Series>,
    count: Arc<Series>,
}

impl Histogram {
    fn new(name: &str, labels: &Labels) -> Histogram {
        let with_le = |le: String| {
            let mut l = labels.clone();
            l.insert("le", le);
            Arc::new(Series::new(
                format!("{name}_bucket"),
                MetricKind::Counter,
                l,
            ))
        };
        let mut buckets: Vec<Arc<Series>> =
            BUCKETS.iter().map(|b| with_le(b.to_string())).collect();
        buckets.push(with_le("+Inf".into()));
        Histogram {
            buckets,
            sum: Arc::new(Series::new(
                format!("{name}_sum"),
                MetricKind::Counter,
                labels.clone(),
            )),
            count: Arc::new(Series::new(
                format!("{name}_count"),
                MetricKind::Counter,
                labels.clone(),
            )),
        }
    }

    fn push(&self, batch: &mut Batch, l: &Latency) {
        for (series, le) in self.buckets.iter().zip(BUCKETS) {
            batch.push(Arc::clone(series), l.count_le(le) as f64);
        }
        if let Some(inf) = self.buckets.last() {
            batch.push(Arc::clone(inf), l.count() as f64);
        }
        batch.push(Arc::clone(&self.sum), l.sum_s);
        batch.push(Arc::clone(&self.count), l.count() as f64);
    }
}

/// A flag set once and waited for (woken when set, no polling).
#[derive(Debug, Default)]
struct Flag {
    set: Mutex<bool>,
    woken: Condvar,
}

impl Flag {
    fn set(&self) {
        *self.set.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.woken.notify_all();
    }

    /// Waits until the flag is set or `deadline` passes; true when set.
    fn wait_until(&self, deadline: Instant) -> bool {
        let set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (set, _) = self
            .woken
            .wait_timeout_while(set, timeout, |set| !*set)
            .unwrap_or_else(PoisonError::into_inner);
        *set
    }
}

/// Sets its flag when dropped: when the thread holding it ends, even by a
/// panic.
struct SetOnDrop(Arc<Flag>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// The run's figures as batches (series built once).
struct Source {
    run: Arc<OnceLock<Arc<Shared>>>,
    /// Set when the run ended: the next tick is the final one.
    ended: Arc<AtomicBool>,
    /// Set by the first tick after `ended`.
    final_taken: Arc<Flag>,
    openai: bool,
    planned_s: f64,
    requests: Arc<Series>,
    errors: Vec<(ErrorKind, Arc<Series>)>,
    warmup: Arc<Series>,
    e2el: Histogram,
    ttft: Histogram,
    itl: Histogram,
    input_tokens: Arc<Series>,
    output_tokens: Arc<Series>,
    in_flight: Arc<Series>,
    clients: Arc<Series>,
    elapsed: Arc<Series>,
    planned: Arc<Series>,
    progress: Arc<Series>,
}

impl Source {
    fn new(
        plan: &Plan,
        run: Arc<OnceLock<Arc<Shared>>>,
        ended: Arc<AtomicBool>,
        final_taken: Arc<Flag>,
    ) -> Source {
        let mut labels = Labels::from_pairs([("run_id", plan.run_id.as_str())]);
        if let Some(s) = &plan.service_id {
            labels.insert("service_id", s.clone());
        }
        let s = |name: &str, kind| Arc::new(Series::new(name, kind, labels.clone()));
        Source {
            run,
            ended,
            final_taken,
            openai: plan.workload.api.is_openai(),
            planned_s: plan.duration.as_secs_f64(),
            requests: s("aif_benchmark_requests_total", MetricKind::Counter),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| {
                    let mut l = labels.clone();
                    l.insert("kind", k.name());
                    (
                        *k,
                        Arc::new(Series::new(
                            "aif_benchmark_request_errors_total",
                            MetricKind::Counter,
                            l,
                        )),
                    )
                })
                .collect(),
            warmup: s("aif_benchmark_warmup_requests_total", MetricKind::Counter),
            e2el: Histogram::new("aif_benchmark_request_duration_seconds", &labels),
            ttft: Histogram::new("aif_benchmark_time_to_first_token_seconds", &labels),
            itl: Histogram::new("aif_benchmark_inter_token_latency_seconds", &labels),
            input_tokens: s("aif_benchmark_input_tokens_total", MetricKind::Counter),
            output_tokens: s("aif_benchmark_output_tokens_total", MetricKind::Counter),
            in_flight: s("aif_benchmark_in_flight_requests", MetricKind::Gauge),
            clients: s("aif_benchmark_clients", MetricKind::Gauge),
            elapsed: s("aif_benchmark_elapsed_seconds", MetricKind::Gauge),
            planned: s("aif_benchmark_planned_duration_seconds", MetricKind::Gauge),
            progress: s("aif_benchmark_progress_ratio", MetricKind::Gauge),
        }
    }

    fn batch(&self, ts: i64, r: &Recorder, run: Option<&Shared>) -> Batch {
        let mut b = Batch::new(ts);
        b.push(Arc::clone(&self.requests), r.completed as f64);
        for (kind, series) in &self.errors {
            b.push(
                Arc::clone(series),
                r.errors.get(kind).copied().unwrap_or(0) as f64,
            );
        }
        b.push(Arc::clone(&self.warmup), r.warmup_requests as f64);
        self.e2el.push(&mut b, &r.e2el);
        if self.openai {
            self.ttft.push(&mut b, &r.ttft);
            self.itl.push(&mut b, &r.itl);
            b.push(Arc::clone(&self.input_tokens), r.input_tokens as f64);
            b.push(Arc::clone(&self.output_tokens), r.output_tokens as f64);
        }
        let (elapsed, in_flight, clients) = match run {
            Some(s) => (
                s.elapsed_s().min(self.planned_s),
                s.in_flight.load(Ordering::Acquire) as f64,
                s.clients.load(Ordering::Acquire) as f64,
            ),
            None => (0.0, 0.0, 0.0),
        };
        b.push(Arc::clone(&self.in_flight), in_flight);
        b.push(Arc::clone(&self.clients), clients);
        b.push(Arc::clone(&self.elapsed), elapsed);
        b.push(Arc::clone(&self.planned), self.planned_s);
        b.push(
            Arc::clone(&self.progress),
            (elapsed / self.planned_s).clamp(0.0, 1.0),
        );
        b
    }
}

impl BatchSource for Source {
    fn next_batch(&mut self, ts: i64) -> Result<Batch, Box<dyn std::error::Error + Send + Sync>> {
        let last = self.ended.load(Ordering::Acquire);
        let batch = match self.run.get() {
            Some(s) => self.batch(ts, &s.snapshot(), Some(s)),
            None => self.batch(ts, &Recorder::default(), None),
        };
        if last {
            self.final_taken.set();
        }
        Ok(batch)
    }
}

/// Live metrics of one run.
pub struct Live {
    run: Arc<OnceLock<Arc<Shared>>>,
    ended: Arc<AtomicBool>,
    final_taken: Arc<Flag>,
    interval: Duration,
    agent: AgentHandle,
    tunnel: Option<LocalForward>,
    buffer: std::path::PathBuf,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`; `localhost` when
/// unreadable): the Pushgateway `instance` and a part's `host`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Live {
    /// Opens the buffer, the tunnel when asked, and starts pushing.
    ///
    /// # Errors
    /// [`LiveError`] naming what failed.
    pub fn start(live: &LivePlan, plan: &Plan) -> Result<Live, LiveError> {
        let tunnel = match &live.ssh {
            Some(s) => Some(LocalForward::start_with(
                &s.ssh,
                &s.remote_host,
                s.remote_port,
                TunnelOptions {
                    wait_for_first_login: false,
                    ..TunnelOptions::default()
                },
            )?),
            None => None,
        };
        let base = match (&tunnel, &live.ssh) {
            (Some(t), Some(s)) => format!("http://{}{}", t.local_addr(), s.path),
            _ => live.pushgateway.clone(),
        };
        let mut grouping = Labels::from_pairs([("run_id", plan.run_id.as_str())]);
        if let Some(s) = &plan.service_id {
            grouping.insert("service_id", s.clone());
        }
        // The parts of a split run push side by side, not over each other.
        if plan.part.count > 1 {
            grouping.insert("part", plan.part.index.to_string());
        }
        let client = PushgatewayBuilder::new(base)
            .job(JOB)
            .instance(hostname())
            .grouping(grouping)
            .build()?;
        let buffer = Buffer::open(BufferConfig::new(
            &live.buffer,
            [gpu_metrics::agent::PUSHGATEWAY_SINK],
        ))?;
        let run = Arc::new(OnceLock::new());
        let ended = Arc::new(AtomicBool::new(false));
        let final_taken = Arc::new(Flag::default());
        let agent = start_source(
            Box::new(Source::new(
                plan,
                Arc::clone(&run),
                Arc::clone(&ended),
                Arc::clone(&final_taken),
            )),
            buffer,
            AgentOptions {
                interval: live.interval,
                pushgateway: Some(client),
                delete_on_exit: !live.keep_group,
                ..Default::default()
            },
        )?;
        log::info!(
            "live metrics: pushing every {:?} to {} (job {JOB}, run_id {}){}",
            live.interval,
            live.pushgateway,
            plan.run_id,
            if live.keep_group {
                ", group kept at the end"
            } else {
                ", group deleted at the end"
            }
        );
        Ok(Live {
            run,
            ended,
            final_taken,
            interval: live.interval,
            agent,
            tunnel,
            buffer: live.buffer.clone(),
        })
    }

    /// Hands the running load to the source (once; later calls do nothing).
    pub fn attach(&self, s: &Arc<Shared>) {
        let _ = self.run.set(Arc::clone(s));
    }

    /// One more tick with the final figures, the last push (or the DELETE
    /// of the group), waiting at most `limit` in all; then the tunnel closes
    /// and the buffer file is removed.
    pub fn shutdown(self, limit: Duration) {
        let Live {
            agent,
            tunnel,
            buffer,
            ended,
            final_taken,
            interval,
            ..
        } = self;
        let until = Instant::now() + limit;
        // The agent's shutdown pushes the newest batch it has: wait for one
        // taken after the end, so the group holds the final figures.
        ended.store(true, Ordering::Release);
        let tick_by = Instant::now() + interval + Duration::from_millis(200);
        final_taken.wait_until(until.min(tick_by));
        std::thread::sleep(
            Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
        );
        let finished = Arc::new(Flag::default());
        let t = {
            let finished = SetOnDrop(Arc::clone(&finished));
            std::thread::spawn(move || {
                let _finished = finished;
                agent.shutdown()
            })
        };
        if finished.wait_until(until) {
            let _ = t.join();
            for ext in ["", "-wal", "-shm", ".lock"] {
                let mut p = buffer.clone().into_os_string();
                p.push(ext);
                let _ = std::fs::remove_file(p);
            }
        } else {
            log::warn!("live metrics: the final push did not finish within {limit:?}");
        }
        drop(tunnel);
    }
}
