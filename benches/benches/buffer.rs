//! The write-ahead buffer (DESIGN.md §5) with realistic 8-GPU batches
//! (232 samples each: 27 fields and 2 throttle reasons per GPU):
//!
//! - `buffer_append_8gpu/{normal,full}`: one append (one transaction) per
//!   iteration, per durability (target ≥ 5 000/s with `normal`);
//! - `buffer_drain_3600/{oldest_500_and_ack,newest_and_ack}`: draining a
//!   3 600-batch backlog (one hour at 1 Hz) the remote-write way (oldest first
//!   in chunks of 500, ack each chunk) and the Pushgateway way (newest, ack
//!   through it);
//! - bytes per sample on disk for that backlog, printed to stderr once
//!   (target ≤ 32).
//!
//! `cargo bench -p aif-benches --bench buffer -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput};
use gpu_metrics::buffer::{Buffer, BufferConfig, Durability};
use gpu_metrics::source::{GpuSource, SimulatedSource};
use gpu_metrics::{Batch, Labels, NameScheme, Namer};

const BACKLOG: usize = 3600;

fn batches(n: usize) -> Vec<Batch> {
    let mut source = SimulatedSource::new(8, 7).expect("source");
    let mut namer = Namer::new(
        NameScheme::Native,
        Labels::from_pairs([("slurm_job_id", "1234")]),
        "node001",
    );
    (0..n)
        .map(|i| {
            let ts = 1_700_000_000_000 + 1000 * i as i64;
            namer.batch(ts, &source.sample(ts).expect("sample"))
        })
        .collect()
}

fn config(path: &Path, durability: Durability) -> BufferConfig {
    let mut cfg = BufferConfig::new(path, ["sink"]);
    cfg.durability = durability;
    cfg
}

fn append(c: &mut Criterion) {
    let batches = batches(BACKLOG);
    let mut group = c.benchmark_group("buffer_append_8gpu");
    group.throughput(Throughput::Elements(1));
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut buf = Buffer::open(config(&dir.path().join("b.db"), durability)).expect("open");
        let mut i = 0;
        group.bench_function(durability.as_str(), |b| {
            b.iter(|| {
                i += 1;
                black_box(buf.append(&batches[i % batches.len()]).expect("append"))
            })
        });
    }
    group.finish();
}

fn drain(c: &mut Criterion) {
    let batches = batches(BACKLOG);
    let samples: usize = batches.iter().map(Batch::len).sum();
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("template.db");
    {
        let mut buf = Buffer::open(config(&template, Durability::Normal)).expect("open");
        for b in &batches {
            buf.append(b).expect("append");
        }
    }
    // Closed: the WAL is checkpointed into the main file and removed.
    let bytes = std::fs::metadata(&template).expect("size").len();
    eprintln!(
        "buffer on disk: {BACKLOG} batches, {samples} samples, {bytes} bytes, {:.2} bytes/sample",
        bytes as f64 / samples as f64
    );
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        let path = dir.path().join(format!("drain-{n}.db"));
        std::fs::copy(&template, &path).expect("copy");
        let buf = Buffer::open(config(&path, Durability::Normal)).expect("open");
        let reader = buf.reader("sink").expect("reader");
        (buf, reader, path)
    };
    let mut group = c.benchmark_group("buffer_drain_3600");
    group.throughput(Throughput::Elements(BACKLOG as u64));
    group.sample_size(20);
    group.bench_function("oldest_500_and_ack", |b| {
        b.iter_batched(
            &mut fresh,
            |(buf, mut reader, path)| {
                let mut taken = 0;
                loop {
                    let chunk = reader.oldest(500).expect("oldest");
                    let Some((last, _)) = chunk.last() else { break };
                    taken += reader.ack_through(*last).expect("ack");
                    black_box(&chunk);
                }
                assert_eq!(taken, BACKLOG as u64);
                (buf, reader, path)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("newest_and_ack", |b| {
        b.iter_batched(
            &mut fresh,
            |(buf, mut reader, path)| {
                let (id, batch) = reader.newest().expect("newest").expect("one");
                black_box(&batch);
                assert_eq!(reader.ack_through(id).expect("ack"), BACKLOG as u64);
                (buf, reader, path)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`; this is the same.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    append(&mut c);
    drain(&mut c);
    c.final_summary();
}
