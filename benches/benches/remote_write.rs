//! Remote-write catch-up into the testbed's real Prometheus (DESIGN.md §6).
//!
//! - `remote_write_drain_3600`: a one-hour backlog at 1 Hz of 8 simulated
//!   GPUs (3 600 batches, 489 600 samples) read from the buffer oldest first,
//!   about 2 000 samples a request, delivered through the remote-write sink
//!   to Prometheus (`--web.enable-remote-write-receiver`, out-of-order window
//!   2 h), acked every 128 batches, as the delivery loop does. The throughput
//!   line is samples per second (target ≥ 100 000/s on this machine).
//!
//! `cargo bench -p aif-benches --bench remote_write`

use std::sync::Arc;
use std::time::{Duration, Instant};

use aif_testbed::Prometheus;
use criterion::{Criterion, Throughput};
use gpu_metrics::buffer::{BatchId, Buffer, BufferConfig};
use gpu_metrics::sink::{RemoteWriteBuilder, RemoteWriteSink, Sink};
use gpu_metrics::source::{GpuSource, SimulatedSource};
use gpu_metrics::{Labels, NameScheme, Namer, now_ms};

const BACKLOG: i64 = 3600;

/// A buffer holding one hour of 8 GPUs ending now, labelled `run_id=round`.
fn backlog(dir: &std::path::Path, round: u64) -> (Buffer, usize) {
    let path = dir.join(format!("b{round}.db"));
    let mut buf = Buffer::open(BufferConfig::new(&path, ["remote_write"])).expect("open");
    let mut source = SimulatedSource::new(8, 7).expect("source");
    let mut namer = Namer::new(
        NameScheme::Native,
        Labels::from_pairs([("run_id", format!("bench-{round}"))]),
        "node001",
    );
    let end = now_ms();
    let mut samples = 0;
    for i in 0..BACKLOG {
        let ts = end - (BACKLOG - i) * 1000;
        let batch = namer.batch(ts, &source.sample(ts).expect("sample"));
        samples += batch.len();
        buf.append(&batch).expect("append");
    }
    (buf, samples)
}

fn drain(c: &mut Criterion) {
    let prom = Prometheus::start_with_window("", "2h").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, samples) = backlog(dir.path(), 0);
    let mut group = c.benchmark_group("remote_write_drain_3600");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(40));
    group.throughput(Throughput::Elements(samples as u64));
    let mut round = 0;
    group.bench_function("prometheus_2.42", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let (buf, _) = backlog(dir.path(), round);
                let mut reader = buf.reader("remote_write").expect("reader");
                let mut sink = RemoteWriteSink::new(
                    RemoteWriteBuilder::new(prom.remote_write_url())
                        .build()
                        .expect("client"),
                );
                let t0 = Instant::now();
                let mut position = BatchId(0);
                let mut acked = BatchId(0);
                let mut sent = 0;
                loop {
                    // 2 000 samples / 136 per batch.
                    let rows = reader.read_after(position, 14).expect("read");
                    let Some((last, _)) = rows.last() else { break };
                    position = *last;
                    let batches: Vec<_> = rows.into_iter().map(|(_, b)| Arc::new(b)).collect();
                    let d = sink.deliver(&batches).expect("deliver");
                    assert!(d.refused.is_empty(), "refused: {d:?}");
                    sent += d.samples;
                    if position.get() - acked.get() >= 128 {
                        reader.ack_through(position).expect("ack");
                        acked = position;
                    }
                }
                reader.ack_through(position).expect("ack");
                total += t0.elapsed();
                assert_eq!(sent as usize, samples);
            }
            total
        })
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`; this is the same.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    drain(&mut c);
    c.final_summary();
}
