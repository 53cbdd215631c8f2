//! `GET /metrics`: the API's own counters plus service and run states, in the
//! Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use gpu_metrics::exposition::{escape_label_value, write_value};

use crate::model::{Run, Status};
use crate::state::MetricsView;

#[derive(Debug, Default)]
struct RouteStats {
    count: u64,
    seconds_sum: f64,
}

/// The API's own counters.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), RouteStats>>,
    panics: AtomicU64,
    disconnects: AtomicU64,
    launch_failures: AtomicU64,
    ticks: AtomicU64,
    http: OnceLock<Weak<tiny_http::Server>>,
}

/// Escapes a label value for the text format (the library's
/// [`escape_label_value`], as a `String` for `format!` arguments).
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    escape_label_value(&mut out, v);
    out
}

/// Writes the gauge `name` (one series per item and status: 1 for the status
/// the item is in, 0 for the others, after the item's two labels) and the
/// gauge `total` (`counts`: all items by status, shown or not); each `(name, help)`.
fn write_statuses(
    out: &mut String,
    (name, help): (&str, &str),
    (total, total_help): (&str, &str),
    items: &[([(&str, &str); 2], Status)],
    counts: &std::collections::HashMap<Status, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, status) in items {
        for st in Status::ALL {
            out.push_str(name);
            out.push('{');
            for (key, value) in labels {
                out.push_str(key);
                out.push_str("=\"");
                escape_label_value(out, value);
                out.push_str("\",");
            }
            let _ = writeln!(
                out,
                "status=\"{}\"}} {}",
                st.as_str(),
                u8::from(*status == st)
            );
        }
    }
    let _ = writeln!(out, "# HELP {total} {total_help}\n# TYPE {total} gauge");
    for st in Status::ALL {
        let n = counts.get(&st).copied().unwrap_or(0);
        let _ = writeln!(out, "{total}{{status=\"{}\"}} {n}", st.as_str());
    }
}

impl ApiMetrics {
    /// Counts one answered request (`route` is the route pattern, not the path).
    pub fn observe(&self, route: &'static str, method: &'static str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry((route, method, status)).or_default();
        s.count += 1;
        s.seconds_sum += seconds;
    }

    /// Counts a handler panic.
    pub fn panicked(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client that hung up before its answer was written.
    pub fn disconnected(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes `/metrics` show `server`'s connection counters.
    pub fn attach_http(&self, server: &Arc<tiny_http::Server>) {
        let _ = self.http.set(Arc::downgrade(server));
    }

    fn write_connections(&self, out: &mut String) {
        let Some(server) = self.http.get().and_then(Weak::upgrade) else {
            return;
        };
        let c = server.connection_stats();
        let _ = writeln!(
            out,
            "# HELP aif_api_http_connections_open HTTP connections open now (waiting or being answered).\n\
             # TYPE aif_api_http_connections_open gauge\naif_api_http_connections_open {}\n\
             # HELP aif_api_http_connections_accepted_total HTTP connections accepted.\n\
             # TYPE aif_api_http_connections_accepted_total counter\naif_api_http_connections_accepted_total {}\n\
             # HELP aif_api_http_connections_closed_total HTTP connections the server closed, by reason.\n\
             # TYPE aif_api_http_connections_closed_total counter",
            c.open, c.accepted
        );
        for (reason, n) in [
            ("idle_timeout", c.idle_closed),
            ("header_timeout", c.header_timeouts),
            ("header_too_large", c.header_too_large),
            ("evicted", c.evicted),
            ("refused", c.refused),
            ("overloaded", c.overloaded),
        ] {
            let _ = writeln!(
                out,
                "aif_api_http_connections_closed_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }

    /// Counts a finished monitor pass.
    pub fn ticked(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a service the backend could not launch.
    pub fn launch_failed(&self) {
        self.launch_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders everything: the counters, and the services and runs of `view`
    /// (open ones and those of the retention window; totals of all).
    pub fn render(&self, view: &MetricsView) -> String {
        let (services, runs) = (&view.services, &view.runs);
        let mut out = String::with_capacity(4096);
        self.write_connections(&mut out);
        out.push_str("# HELP aif_api_requests_total HTTP requests answered, by route pattern, method and status.\n");
        out.push_str("# TYPE aif_api_requests_total counter\n");
        let snapshot: Vec<_> = {
            let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            m.iter()
                .map(|(k, v)| (*k, v.count, v.seconds_sum))
                .collect()
        };
        for ((route, method, status), count, _) in &snapshot {
            let _ = writeln!(
                out,
                "aif_api_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                escape_label(route)
            );
        }
        out.push_str("# HELP aif_api_request_seconds_total Time spent answering, by route pattern and method.\n");
        out.push_str("# TYPE aif_api_request_seconds_total counter\n");
        let mut sums: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        for ((route, method, _), _, secs) in &snapshot {
            *sums.entry((route, method)).or_default() += secs;
        }
        for ((route, method), secs) in sums {
            let _ = write!(
                out,
                "aif_api_request_seconds_total{{route=\"{}\",method=\"{method}\"}} ",
                escape_label(route)
            );
            write_value(&mut out, secs);
            out.push('\n');
        }
        for (name, help, v) in [
            (
                "aif_api_handler_panics_total",
                "Handler panics caught (answered 500).",
                &self.panics,
            ),
            (
                "aif_api_client_disconnects_total",
                "Clients that hung up before their answer was written.",
                &self.disconnects,
            ),
            (
                "aif_api_launch_failures_total",
                "Services the backend could not launch.",
                &self.launch_failures,
            ),
            (
                "aif_api_monitor_ticks_total",
                "Finished monitor passes over open services and runs.",
                &self.ticks,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let services: Vec<_> = services
            .iter()
            .map(|s| {
                (
                    [("service_id", s.id.as_str()), ("recipe", &s.recipe)],
                    s.status,
                )
            })
            .collect();
        write_statuses(
            &mut out,
            (
                "aif_service_status",
                "1 for the status a service is in, 0 for the others.",
            ),
            ("aif_services", "Services by status."),
            &services,
            &view.service_counts,
        );
        let run_statuses: Vec<_> = runs
            .iter()
            .map(|r| {
                (
                    [("run_id", r.id.as_str()), ("service_id", &r.service_id)],
                    r.status,
                )
            })
            .collect();
        write_statuses(
            &mut out,
            (
                "aif_benchmark_run_status",
                "1 for the status a benchmark run is in, 0 for the others.",
            ),
            ("aif_benchmark_runs", "Benchmark runs by status."),
            &run_statuses,
            &view.run_counts,
        );
        out.push_str("# HELP aif_benchmark_run_duration_seconds Requested duration of each run.\n");
        out.push_str("# TYPE aif_benchmark_run_duration_seconds gauge\n");
        for r in runs {
            let _ = writeln!(
                out,
                "aif_benchmark_run_duration_seconds{{run_id=\"{}\",service_id=\"{}\"}} {}",
                escape_label(&r.id),
                escape_label(&r.service_id),
                r.spec.duration_seconds
            );
        }
        write_results(&mut out, runs);
        out
    }
}

/// Result gauges of finished runs (`aif_benchmark_result_*{run_id, service_id}`):
/// `(name, help, result key, scale)`; a key a result lacks (or holds null)
/// gives no series, never a 0.
const RESULT_GAUGES: &[(&str, &str, &str, f64)] = &[
    (
        "aif_benchmark_result_completed_requests",
        "Requests that succeeded in the run's measurement window.",
        "completed",
        1.0,
    ),
    (
        "aif_benchmark_result_failed_requests",
        "Requests that failed in the run's measurement window.",
        "failed",
        1.0,
    ),
    (
        "aif_benchmark_result_requests_per_second",
        "Successful requests per second (vLLM request_throughput).",
        "request_throughput",
        1.0,
    ),
    (
        "aif_benchmark_result_goodput_requests_per_second",
        "Requests per second meeting every goodput SLO (vLLM request_goodput).",
        "request_goodput",
        1.0,
    ),
    (
        "aif_benchmark_result_output_tokens_per_second",
        "Output tokens per second (vLLM output_throughput).",
        "output_throughput",
        1.0,
    ),
    (
        "aif_benchmark_result_input_tokens_per_second",
        "Input tokens per second.",
        "input_throughput",
        1.0,
    ),
    (
        "aif_benchmark_result_energy_joules",
        "GPU energy over the run's window.",
        "energy_joules",
        1.0,
    ),
    (
        "aif_benchmark_result_joules_per_request",
        "GPU energy per successful request.",
        "joules_per_request",
        1.0,
    ),
    (
        "aif_benchmark_result_joules_per_output_token",
        "GPU energy per output token.",
        "joules_per_output_token",
        1.0,
    ),
    (
        "aif_benchmark_result_output_tokens_per_joule",
        "Output tokens per joule of GPU energy.",
        "output_tokens_per_joule",
        1.0,
    ),
    (
        "aif_benchmark_result_mean_power_watts",
        "Mean GPU power over the run's window.",
        "mean_power_watts",
        1.0,
    ),
];

fn write_results(out: &mut String, runs: &[Run]) {
    let with_result: Vec<(&Run, &serde_json::Map<String, serde_json::Value>)> = runs
        .iter()
        .filter_map(|r| {
            r.result
                .as_ref()
                .and_then(|v| v.as_object())
                .map(|m| (r, m))
        })
        .collect();
    let labels = |r: &Run| {
        format!(
            "run_id=\"{}\",service_id=\"{}\"",
            escape_label(&r.id),
            escape_label(&r.service_id)
        )
    };
    for (name, help, key, scale) in RESULT_GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (r, m) in &with_result {
            if let Some(v) = m.get(*key).and_then(serde_json::Value::as_f64) {
                let _ = write!(out, "{name}{{{}}} ", labels(r));
                write_value(out, v * scale);
                out.push('\n');
            }
        }
    }
    let name = "aif_benchmark_result_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Latency quantiles of a run (metric: ttft, tpot, itl, e2el, queue_wait; vLLM's definitions).\n# TYPE {name} gauge"
    );
    let mean = "aif_benchmark_result_latency_mean_seconds";
    let mut means = String::new();
    let _ = writeln!(
        means,
        "# HELP {mean} Mean latency of a run, by metric.\n# TYPE {mean} gauge"
    );
    for (r, m) in &with_result {
        for metric in ["ttft", "tpot", "itl", "e2el", "queue_wait"] {
            for (q, key) in [
                ("0", format!("min_{metric}_ms")),
                ("0.5", format!("median_{metric}_ms")),
                ("0.9", format!("p90_{metric}_ms")),
                ("0.95", format!("p95_{metric}_ms")),
                ("0.99", format!("p99_{metric}_ms")),
                ("1", format!("max_{metric}_ms")),
            ] {
                if let Some(v) = m.get(&key).and_then(serde_json::Value::as_f64) {
                    let _ = write!(
                        out,
                        "{name}{{{},metric=\"{metric}\",quantile=\"{q}\"}} ",
                        labels(r)
                    );
                    write_value(out, v / 1000.0);
                    out.push('\n');
                }
            }
            if let Some(v) = m
                .get(&format!("mean_{metric}_ms"))
                .and_then(serde_json::Value::as_f64)
            {
                let _ = write!(means, "{mean}{{{},metric=\"{metric}\"}} ", labels(r));
                write_value(&mut means, v / 1000.0);
                means.push('\n');
            }
        }
    }
    out.push_str(&means);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_families_render_one_series_per_status_with_escaped_labels() {
        let mut out = String::new();
        write_statuses(
            &mut out,
            ("aif_x_status", "Help."),
            ("aif_xs", "By status."),
            &[([("id", "a\"b"), ("recipe", "r\\1")], Status::ALL[1])],
            &std::collections::HashMap::from([(Status::ALL[1], 1)]),
        );
        let mut want = String::from("# HELP aif_x_status Help.\n# TYPE aif_x_status gauge\n");
        for (i, st) in Status::ALL.into_iter().enumerate() {
            want.push_str(&format!(
                "aif_x_status{{id=\"a\\\"b\",recipe=\"r\\\\1\",status=\"{}\"}} {}\n",
                st.as_str(),
                u8::from(i == 1)
            ));
        }
        want.push_str("# HELP aif_xs By status.\n# TYPE aif_xs gauge\n");
        for (i, st) in Status::ALL.into_iter().enumerate() {
            want.push_str(&format!(
                "aif_xs{{status=\"{}\"}} {}\n",
                st.as_str(),
                u8::from(i == 1)
            ));
        }
        assert_eq!(out, want);
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
