//! Every metric a dashboard query may name: the exporter's (from
//! `gpu_metrics::catalogue` and the agent's own self-metric descriptions), the
//! API's and the load generator's (an explicit list, to update with their code),
//! and the Prometheus/Pushgateway series the dashboards read.

use std::collections::BTreeSet;
use std::sync::Mutex;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    with_local_recorder,
};

/// The API's own metrics (`aif-bench-api` `/metrics`, bench-api/src/metrics.rs).
pub const BENCH_API: &[&str] = &[
    "aif_api_requests_total",
    "aif_api_request_seconds_total",
    "aif_api_handler_panics_total",
    "aif_api_client_disconnects_total",
    "aif_api_launch_failures_total",
    "aif_service_status",
    "aif_services",
    "aif_benchmark_run_status",
    "aif_benchmark_runs",
    "aif_benchmark_run_duration_seconds",
];

/// The load generator's live metrics (pushed, job `aif_benchmark`) and the
/// per-run result gauges the API serves (README of the load-generator issue).
pub const BENCHMARK: &[&str] = &[
    "aif_benchmark_requests_total",
    "aif_benchmark_request_errors_total",
    "aif_benchmark_warmup_requests_total",
    "aif_benchmark_request_duration_seconds",
    "aif_benchmark_time_to_first_token_seconds",
    "aif_benchmark_inter_token_latency_seconds",
    "aif_benchmark_input_tokens_total",
    "aif_benchmark_output_tokens_total",
    "aif_benchmark_in_flight_requests",
    "aif_benchmark_clients",
    "aif_benchmark_elapsed_seconds",
    "aif_benchmark_planned_duration_seconds",
    "aif_benchmark_progress_ratio",
    "aif_benchmark_result_completed_requests",
    "aif_benchmark_result_failed_requests",
    "aif_benchmark_result_requests_per_second",
    "aif_benchmark_result_goodput_requests_per_second",
    "aif_benchmark_result_output_tokens_per_second",
    "aif_benchmark_result_input_tokens_per_second",
    "aif_benchmark_result_energy_joules",
    "aif_benchmark_result_joules_per_request",
    "aif_benchmark_result_joules_per_output_token",
    "aif_benchmark_result_output_tokens_per_joule",
    "aif_benchmark_result_mean_power_watts",
    "aif_benchmark_result_latency_seconds",
    "aif_benchmark_result_latency_mean_seconds",
];

/// Series Prometheus and the Pushgateway add themselves.
pub const PLATFORM: &[&str] = &["up", "push_time_seconds", "push_failure_time_seconds"];

/// Collects the names the agent describes (no values are recorded).
#[derive(Default)]
struct NameCollector(Mutex<BTreeSet<String>>);

impl NameCollector {
    fn add(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.to_string());
        }
    }
}

impl Recorder for NameCollector {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.add(key.as_str());
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.add(key.as_str());
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.add(key.as_str());
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.add(key.name());
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.add(key.name());
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.add(key.name());
        Histogram::noop()
    }
}

/// The exporter's self-metrics, as `gpu_metrics::agent::describe_self_metrics` describes them.
pub fn exporter_self_metrics() -> BTreeSet<String> {
    let collector = NameCollector::default();
    with_local_recorder(&collector, gpu_metrics::agent::describe_self_metrics);
    collector.0.into_inner().unwrap_or_default()
}

/// Every known metric name (histograms by their base name).
pub fn known_metrics() -> BTreeSet<String> {
    let mut s = exporter_self_metrics();
    for (_, def) in gpu_metrics::catalogue::NATIVE
        .iter()
        .chain(gpu_metrics::catalogue::DCGM)
    {
        s.insert(def.name.to_string());
    }
    for n in BENCH_API.iter().chain(BENCHMARK).chain(PLATFORM) {
        s.insert((*n).to_string());
    }
    s
}

/// Whether `name` is known, directly or as a histogram's `_bucket`/`_sum`/`_count`.
pub fn is_known(known: &BTreeSet<String>, name: &str) -> bool {
    known.contains(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suf| name.strip_suffix(suf).is_some_and(|b| known.contains(b)))
}
