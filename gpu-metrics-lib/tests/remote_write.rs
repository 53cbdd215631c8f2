//! The remote-write sink against real receivers: Prometheus 2.42 (Debian's,
//! `--web.enable-remote-write-receiver`, out-of-order window) and
//! VictoriaMetrics.

use std::sync::Arc;
use std::time::Duration;

use aif_testbed::{Prometheus, VictoriaMetrics, free_port, raw_samples, wait_until};
use gpu_metrics::sink::{
    FailureClass, Refusal, RemoteWriteBuilder, RemoteWriteError, RemoteWriteSink, Sink,
};
use gpu_metrics::{Batch, Labels, MetricKind, Series, now_ms};

/// A batch of `aif_test_value{gpu}` for 4 GPUs, value `base + gpu`.
fn batch(ts: i64, base: f64) -> Arc<Batch> {
    let mut b = Batch::new(ts);
    for gpu in 0..4 {
        b.push(
            Arc::new(Series::new(
                "aif_test_value",
                MetricKind::Gauge,
                Labels::from_pairs([("gpu", gpu.to_string()), ("uuid", format!("SIM-{gpu}"))]),
            )),
            base + f64::from(gpu),
        );
    }
    Arc::new(b)
}

fn raw(base: &str, selector: &str, range: &str) -> Vec<(i64, f64)> {
    raw_samples(base, selector, range).expect("query")
}

fn sink(url: &str) -> RemoteWriteSink {
    RemoteWriteSink::new(
        RemoteWriteBuilder::new(url)
            .job("aif_gpu")
            .instance("node-t")
            .max_samples_per_request(6)
            .build()
            .expect("client"),
    )
}

#[test]
fn samples_arrive_with_their_original_timestamps_job_and_instance() {
    let prom = Prometheus::start("").expect("prometheus");
    let now = now_ms();
    let batches: Vec<_> = (0..5)
        .map(|i| batch(now - 5_000 + i * 1000, i as f64 * 10.0))
        .collect();
    let mut s = sink(&prom.remote_write_url());
    // 20 samples in requests of at most 6: four requests, in order.
    let d = s.deliver(&batches).expect("delivered");
    assert_eq!(d.samples, 20);
    assert!(d.refused.is_empty(), "{d:?}");
    let sel = r#"aif_test_value{gpu="2",uuid="SIM-2",job="aif_gpu",instance="node-t"}"#;
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            got = raw(&prom.url(), sel, "1h");
            got.len() >= 5
        }),
        "got {got:?}\n{}",
        prom.log_text()
    );
    let want: Vec<(i64, f64)> = (0..5)
        .map(|i| (now - 5_000 + i * 1000, i as f64 * 10.0 + 2.0))
        .collect();
    assert_eq!(got, want);
    // Sending the same history again (a crash before the ack) is harmless.
    let again = s.deliver(&batches).expect("redelivered");
    assert_eq!(again.samples, 20);
    assert!(again.refused.is_empty(), "{again:?}");
    assert_eq!(raw(&prom.url(), sel, "1h"), want);
}

#[test]
fn a_sample_older_than_the_window_is_refused_and_only_it_is_dropped() {
    // Prometheus 2.42 answers "too old sample" with 500 (prometheus#13335):
    // the message decides, and the rest of the request still lands.
    let prom = Prometheus::start_with_window("", "10m").expect("prometheus");
    let now = now_ms();
    let mut s = sink(&prom.remote_write_url());
    s.deliver(&[batch(now - 1000, 1.0)])
        .expect("current sample");

    let mut client = RemoteWriteBuilder::new(prom.remote_write_url())
        .build()
        .expect("client");
    let old = [batch(now - 2 * 3_600_000, 5.0)];
    let pieces = client.plan(&old);
    let err = client.write(&old, &pieces[0]).expect_err("too old");
    match &err {
        RemoteWriteError::Refused { reason, status, .. } => {
            eprintln!("prometheus refused a 2 h old sample with HTTP {status}: {err}");
            assert!(
                matches!(reason, Refusal::TooOld | Refusal::OutOfBounds),
                "{err}"
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert_eq!(err.class(), FailureClass::Permanent);

    // Old and new together, over several requests: the old batch is
    // isolated by splitting, counted, and everything else arrives.
    let mixed = vec![
        batch(now - 2 * 3_600_000, 7.0),
        batch(now - 800, 2.0),
        batch(now - 600, 3.0),
    ];
    let mut s = RemoteWriteSink::new(
        RemoteWriteBuilder::new(prom.remote_write_url())
            .max_samples_per_request(100)
            .build()
            .expect("client"),
    );
    let d = s.deliver(&mixed).expect("delivered what could be");
    assert_eq!(d.samples, 8, "{d:?}");
    let refused: u64 = d.refused.iter().map(|(_, n)| n).sum();
    assert_eq!(refused, 4, "{d:?}");
    let sel = r#"aif_test_value{gpu="0"}"#;
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            got = raw(&prom.url(), sel, "3h");
            got.len() >= 3
        }),
        "{got:?}"
    );
    assert_eq!(
        got,
        vec![(now - 1000, 1.0), (now - 800, 2.0), (now - 600, 3.0)]
    );
}

#[test]
fn failures_are_classified_retryable_or_configuration() {
    let dead = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let mut client = RemoteWriteBuilder::new(dead)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let b = [batch(now_ms(), 1.0)];
    let pieces = client.plan(&b);
    let e = client.write(&b, &pieces[0]).expect_err("nobody listens");
    assert!(matches!(e, RemoteWriteError::Transport { .. }), "{e}");
    assert_eq!(e.class(), FailureClass::Retryable);

    let prom = Prometheus::start("").expect("prometheus");
    let mut wrong_path = RemoteWriteBuilder::new(format!("{}/api/v1/wirte", prom.url()))
        .build()
        .expect("client");
    let e = wrong_path.write(&b, &pieces[0]).expect_err("404");
    assert!(
        matches!(e, RemoteWriteError::Configuration { status: 404, .. }),
        "{e}"
    );
    assert_eq!(e.class(), FailureClass::Configuration);
}

#[test]
fn victoria_metrics_takes_history_older_than_any_out_of_order_window() {
    let vm = VictoriaMetrics::start().expect("victoria-metrics");
    let now = now_ms();
    // Three hours of outage at one batch a minute, sent oldest first.
    let batches: Vec<_> = (0..180)
        .map(|i| batch(now - 3 * 3_600_000 + i * 60_000, i as f64))
        .collect();
    let mut s = sink(&vm.remote_write_url());
    let d = s.deliver(&batches).expect("delivered");
    assert_eq!(d.samples, 720);
    assert!(d.refused.is_empty(), "{d:?}");
    let sel = r#"aif_test_value{gpu="1",job="aif_gpu",instance="node-t"}"#;
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            got = raw(&vm.url(), sel, "4h");
            got.len() >= 180
        }),
        "{} samples\n{}",
        got.len(),
        vm.log_text()
    );
    let want: Vec<(i64, f64)> = (0..180)
        .map(|i| (now - 3 * 3_600_000 + i * 60_000, i as f64 + 1.0))
        .collect();
    assert_eq!(got, want);
}
