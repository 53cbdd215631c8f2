//! Tick lateness while a day-long backlog is acknowledged (DESIGN.md §6).
//!
//! A buffer holds 24 hours of 8 simulated GPUs at 1 Hz (86 400 batches). The
//! agent then samples at 10 Hz while a sink takes the whole backlog:
//!
//! - `newest`: a latest-state sink (the Pushgateway's order) delivers the
//!   newest batch and acknowledges all 86 400 at once;
//! - `oldest`: a history sink (the remote-write order) with a receiver that
//!   takes everything at once drains the backlog as fast as the buffer reads.
//!
//! Printed: the agent's own `aif_exporter_tick_lateness_seconds` (the largest
//! delay from a tick's slot to its batch being committed, per 5 s window) for
//! every window of a 30 s run, and their maximum (target ≤ 50 ms).
//!
//! `cargo bench -p aif-benches --bench ack_lateness`

use std::sync::Arc;
use std::time::{Duration, Instant};

use gpu_metrics::agent::{self, AgentOptions, BatchSource};
use gpu_metrics::buffer::{Buffer, BufferConfig};
use gpu_metrics::retry::BackoffPolicy;
use gpu_metrics::sink::{Delivered, Order, Sink, SinkFailure};
use gpu_metrics::source::{GpuSource, SimulatedSource};
use gpu_metrics::{Batch, Labels, NameScheme, Namer, now_ms};
use metrics_exporter_prometheus::PrometheusBuilder;

const DAY: i64 = 86_400;

/// A receiver that takes everything at once.
struct TakesAll {
    order: Order,
}

impl Sink for TakesAll {
    fn name(&self) -> &'static str {
        "bench"
    }
    fn target(&self) -> &str {
        "nowhere"
    }
    fn order(&self) -> Order {
        self.order
    }
    fn backoff(&self) -> BackoffPolicy {
        BackoffPolicy::default()
    }
    fn deliver(&mut self, batches: &[Arc<Batch>]) -> Result<Delivered, Box<dyn SinkFailure>> {
        Ok(Delivered {
            samples: batches.iter().map(|b| b.len() as u64).sum(),
            refused: Vec::new(),
        })
    }
}

struct Gpus {
    source: SimulatedSource,
    namer: Namer,
}

impl BatchSource for Gpus {
    fn next_batch(&mut self, ts: i64) -> Result<Batch, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.namer.batch(ts, &self.source.sample(ts)?))
    }
}

fn gpus() -> Gpus {
    Gpus {
        source: SimulatedSource::new(8, 7).expect("source"),
        namer: Namer::new(NameScheme::Native, Labels::new(), "node001"),
    }
}

fn lateness(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("aif_exporter_tick_lateness_seconds "))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("recorder");
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("day.db");
    {
        let t0 = Instant::now();
        let mut buf = Buffer::open(BufferConfig::new(&template, ["bench"])).expect("open");
        let mut g = gpus();
        let end = now_ms() - 60_000;
        for i in 0..DAY {
            let ts = end - (DAY - i) * 1000;
            let batch = g.next_batch(ts).expect("batch");
            buf.append(&batch).expect("append");
        }
        eprintln!("filled {DAY} batches in {:.1}s", t0.elapsed().as_secs_f64());
    }
    for (what, order) in [
        ("newest", Order::Newest),
        ("oldest", Order::Oldest { max_samples: 2000 }),
    ] {
        let path = dir.path().join(format!("{what}.db"));
        std::fs::copy(&template, &path).expect("copy");
        let buf = Buffer::open(BufferConfig::new(&path, ["bench"])).expect("open");
        let start = Instant::now();
        let agent = agent::start_source(
            Box::new(gpus()),
            buf,
            AgentOptions {
                interval: Duration::from_millis(100),
                sinks: vec![Box::new(TakesAll { order })],
                self_metrics: Some(handle.clone()),
                ..AgentOptions::default()
            },
        )
        .expect("agent");
        let mut windows = Vec::new();
        for _ in 0..6 {
            std::thread::sleep(Duration::from_secs(5));
            if let Some(l) = lateness(&agent.metrics_text()) {
                windows.push(l * 1000.0);
            }
        }
        agent.shutdown();
        let stats = Buffer::open(BufferConfig::new(&path, ["bench"]))
            .expect("reopen")
            .stats()
            .expect("stats");
        let max = windows.iter().copied().fold(0.0, f64::max);
        println!(
            "{what}: tick lateness per 5 s window (ms): {}; max {max:.1} ms; after {:.0}s {} batches left stored",
            windows
                .iter()
                .map(|w| format!("{w:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
            start.elapsed().as_secs_f64(),
            stats.batches
        );
    }
}
