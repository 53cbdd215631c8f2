//! `GET /metrics`: the API's own counters plus service and run states, in the
//! Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Run, Service, Status};

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
}

/// Escapes a label value for the text format.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
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

    /// Counts a service the backend could not launch.
    pub fn launch_failed(&self) {
        self.launch_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders everything.
    pub fn render(&self, services: &[Service], runs: &[Run]) -> String {
        let mut out = String::with_capacity(4096);
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
            let _ = writeln!(
                out,
                "aif_api_request_seconds_total{{route=\"{}\",method=\"{method}\"}} {secs}",
                escape_label(route)
            );
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
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP aif_service_status 1 for the status a service is in, 0 for the others.\n",
        );
        out.push_str("# TYPE aif_service_status gauge\n");
        for s in services {
            for st in Status::ALL {
                let _ = writeln!(
                    out,
                    "aif_service_status{{service_id=\"{}\",recipe=\"{}\",status=\"{}\"}} {}",
                    escape_label(&s.id),
                    escape_label(&s.recipe),
                    st.as_str(),
                    u8::from(s.status == st)
                );
            }
        }
        out.push_str("# HELP aif_services Services by status.\n# TYPE aif_services gauge\n");
        for st in Status::ALL {
            let n = services.iter().filter(|s| s.status == st).count();
            let _ = writeln!(out, "aif_services{{status=\"{}\"}} {n}", st.as_str());
        }
        out.push_str("# HELP aif_benchmark_run_status 1 for the status a benchmark run is in, 0 for the others.\n");
        out.push_str("# TYPE aif_benchmark_run_status gauge\n");
        for r in runs {
            for st in Status::ALL {
                let _ = writeln!(
                    out,
                    "aif_benchmark_run_status{{run_id=\"{}\",service_id=\"{}\",status=\"{}\"}} {}",
                    escape_label(&r.id),
                    escape_label(&r.service_id),
                    st.as_str(),
                    u8::from(r.status == st)
                );
            }
        }
        out.push_str("# HELP aif_benchmark_runs Benchmark runs by status.\n# TYPE aif_benchmark_runs gauge\n");
        for st in Status::ALL {
            let n = runs.iter().filter(|r| r.status == st).count();
            let _ = writeln!(out, "aif_benchmark_runs{{status=\"{}\"}} {n}", st.as_str());
        }
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
        out
    }
}
