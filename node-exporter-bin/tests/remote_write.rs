//! The exporter's remote-write sink after an outage longer than Prometheus's
//! out-of-order window: VictoriaMetrics takes all of the history; Prometheus
//! refuses what is too old (counted, logged, dropped) and takes the rest.

mod support;

use std::path::Path;
use std::time::Duration;

use aif_testbed::{
    Prometheus, VictoriaMetrics, free_port, metric_value, metric_values, raw_samples, wait_until,
};
use gpu_metrics::buffer::{Buffer, BufferConfig};
use gpu_metrics::sink::{RemoteWriteBuilder, RemoteWriteSink, Sink};
use gpu_metrics::source::{GpuSource, SimulatedSource};
use gpu_metrics::{Labels, NameScheme, Namer, now_ms};
use support::Exporter;

/// Three hours of 2 simulated GPUs, one batch a minute, left in the buffer
/// by a node whose network was down, the newest a minute ago; returns the
/// batch count, the newest batch's time and the samples in a batch.
fn three_hour_backlog(buffer: &Path) -> (i64, i64, usize) {
    let mut buf = Buffer::open(BufferConfig::new(buffer, ["remote_write"])).expect("open");
    let mut source = SimulatedSource::new(2, 1).expect("sim");
    let mut namer = Namer::new(NameScheme::Native, Labels::new(), "node-rw");
    let end = now_ms() - 60_000;
    let mut per_batch = 0;
    for i in 1..=180 {
        let ts = end - (180 - i) * 60_000;
        let batch = namer.batch(ts, &source.sample(ts).expect("sample"));
        per_batch = batch.len();
        buf.append(&batch).expect("append");
    }
    (buf.head().get(), end, per_batch)
}

fn exporter(dir: &Path, url: &str) -> Exporter {
    let listen = format!("127.0.0.1:{}", free_port());
    Exporter::start(
        dir,
        &[
            "--source",
            "simulated",
            "--gpus",
            "2",
            "--interval",
            "200ms",
            "--instance",
            "node-rw",
            "--remote-write",
            url,
            "--listen",
            &listen,
            "--buffer",
            dir.join("b.db").to_str().expect("utf8"),
        ],
    )
}

fn count(base: &str) -> usize {
    raw_samples(base, r#"aif_gpu_up{gpu="1",instance="node-rw"}"#, "4h")
        .map(|s| s.len())
        .unwrap_or(0)
}

#[test]
fn victoria_metrics_receives_history_older_than_any_out_of_order_window() {
    let vm = VictoriaMetrics::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tmp");
    let (backlog, _, _) = three_hour_backlog(&dir.path().join("b.db"));
    let mut exp = exporter(dir.path(), &vm.remote_write_url());
    assert!(
        wait_until(Duration::from_secs(60), || count(&vm.url()) as i64
            >= backlog + 10),
        "{} of {backlog}+ samples\n{}",
        count(&vm.url()),
        exp.log_text()
    );
    let samples =
        raw_samples(&vm.url(), r#"aif_gpu_up{gpu="1",instance="node-rw"}"#, "4h").expect("query");
    let oldest = samples.first().expect("samples").0;
    assert!(
        now_ms() - oldest > 3 * 3_600_000 - 120_000,
        "the three-hour-old history is there"
    );
    assert_eq!(exp.terminate().code(), Some(0));
}

#[test]
fn prometheus_refuses_what_is_older_than_its_window_and_takes_the_rest() {
    let prom = Prometheus::start_with_window("", "30m").unwrap_or_else(|e| panic!("{e}"));
    // Other nodes' current samples: the receiver's head is at "now", as on
    // any monitoring host (the window is measured from the newest sample of
    // the whole TSDB, not per series).
    let mut other = SimulatedSource::new(1, 2).expect("sim");
    let mut namer = Namer::new(NameScheme::Native, Labels::new(), "node-other");
    let t = now_ms();
    let current = std::sync::Arc::new(namer.batch(t, &other.sample(t).expect("sample")));
    RemoteWriteSink::new(
        RemoteWriteBuilder::new(prom.remote_write_url())
            .build()
            .expect("client"),
    )
    .deliver(&[current])
    .expect("current samples");
    let dir = tempfile::tempdir().expect("tmp");
    let (backlog, end, per_batch) = three_hour_backlog(&dir.path().join("b.db"));
    let exp = exporter(dir.path(), &prom.remote_write_url());
    // `too old sample`, or `out of bounds` for what lies before the head.
    let refused = || {
        metric_values(
            &exp.scrape(),
            "aif_exporter_dropped_samples_total",
            &[("sink", "remote_write")],
        )
        .iter()
        .sum::<f64>()
    };
    // What lies more than 30 min behind the newest sample is refused; the
    // last half hour of the backlog and the live ticks are taken.
    assert!(
        wait_until(Duration::from_secs(60), || {
            refused() > 0.0 && count(&prom.url()) >= 40 && {
                let p = metric_value(
                    &exp.scrape(),
                    "aif_exporter_buffer_pending_batches",
                    &[("sink", "remote_write")],
                );
                p == Some(0.0)
            }
        }),
        "refused {}; {} samples in Prometheus\n{}",
        refused(),
        count(&prom.url()),
        exp.log_text()
    );
    let log = exp.log_text();
    assert!(
        log.contains("too old sample"),
        "the receiver's message is logged:\n{log}"
    );
    // Whole batches are refused and the rest is
    // kept: at least the last 30 minutes (the window; Prometheus 2.42 also
    // appends new series in order up to half a head block, 1 h, back).
    let refused_batches = refused() / per_batch as f64;
    assert_eq!(
        refused_batches.fract(),
        0.0,
        "{} samples refused",
        refused()
    );
    let old_kept = raw_samples(
        &prom.url(),
        r#"aif_gpu_up{gpu="1",instance="node-rw"}"#,
        "4h",
    )
    .expect("query")
    .iter()
    .filter(|(ts, _)| *ts <= end)
    .count();
    assert!(old_kept >= 25, "{old_kept} backlog minutes kept");
    assert_eq!(
        refused_batches as i64 + old_kept as i64,
        backlog,
        "every backlog batch was either stored or refused and counted"
    );
    eprintln!(
        "prometheus: {} samples ({refused_batches} batches) refused as too old, {old_kept} backlog batches kept",
        refused()
    );
}
