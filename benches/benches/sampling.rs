//! One sampling tick + render for 8 simulated GPUs (target ≤ 100 µs), and the
//! same tick rendered through `metrics-exporter-prometheus`'s recorder as the
//! peer, in the same run.
//!
//! `cargo bench -p aif-benches --bench sampling`

use criterion::Criterion;
use gpu_metrics::source::{GpuSource, SimulatedSource};
use gpu_metrics::{Exposition, Labels, NameScheme, Namer};
use std::hint::black_box;

fn tick(c: &mut Criterion) {
    for (label, scheme) in [("native", NameScheme::Native), ("dcgm", NameScheme::Dcgm)] {
        let mut source = SimulatedSource::new(8, 1).expect("source");
        let mut namer = Namer::new(
            scheme,
            Labels::from_pairs([("slurm_job_id", "1234")]),
            "node001",
        );
        let mut exposition = Exposition::new();
        let mut now = 1_700_000_000_000i64;
        c.bench_function(&format!("tick_sample_and_render_8gpu_{label}"), |b| {
            b.iter(|| {
                now += 1000;
                let readings = source.sample(now).expect("sample");
                let batch = namer.batch(now, &readings);
                black_box(exposition.render(&batch))
            })
        });
    }
    let mut source = SimulatedSource::new(8, 1).expect("source");
    let mut namer = Namer::new(
        NameScheme::Native,
        Labels::from_pairs([("slurm_job_id", "1234")]),
        "node001",
    );
    let mut peer = aif_benches::RecorderExposition::default();
    let mut now = 1_700_000_000_000i64;
    c.bench_function(
        "peer_tick_sample_and_render_8gpu_native_metrics_exporter_prometheus",
        |b| {
            b.iter(|| {
                now += 1000;
                let readings = source.sample(now).expect("sample");
                let batch = namer.batch(now, &readings);
                black_box(peer.render(&batch))
            })
        },
    );
    c.bench_function("tick_sample_only_8gpu_native", |b| {
        b.iter(|| {
            now += 1000;
            let readings = source.sample(now).expect("sample");
            black_box(namer.batch(now, &readings))
        })
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    tick(&mut c);
    c.final_summary();
}
