//! Tests of the write-ahead buffer: a model-based property test, crash (kill -9)
//! recovery, corruption handling, the size cap and sink semantics.

mod cap;
mod corrupt;
mod crash;
mod model;
mod plans;
mod sinks;

use std::path::Path;
use std::sync::{Arc, Mutex, Once};

use super::{BatchId, Buffer, BufferConfig, Durability, SinkReader};
use crate::naming::{NameScheme, Namer};
use crate::sample::{Batch, Labels, MetricKind, Series};
use crate::source::{GpuSource, SimulatedSource};

/// Realistic batches: 8 simulated GPUs, native names, one per second.
pub(super) fn realistic_batches(n: usize, seed: u64, start_ms: i64) -> Vec<Batch> {
    let mut source = SimulatedSource::new(8, seed).expect("8 simulated GPUs");
    let mut namer = Namer::new(
        NameScheme::Native,
        Labels::from_pairs([("run_id", "r1")]),
        "node1",
    );
    (0..n)
        .map(|i| {
            let ts = start_ms + 1000 * i as i64;
            let readings = source.sample(ts).expect("simulated sample");
            namer.batch(ts, &readings)
        })
        .collect()
}

/// A buffer configuration in `dir` with the given sinks, `normal` durability.
pub(super) fn config(dir: &Path, sinks: &[&str]) -> BufferConfig {
    BufferConfig {
        path: dir.join("buf.db"),
        max_bytes: super::DEFAULT_MAX_BYTES,
        durability: Durability::Normal,
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
    }
}

/// Equal series (by value) and bit-identical values, same timestamp.
pub(super) fn same_batch(a: &Batch, b: &Batch) -> bool {
    a.timestamp_ms == b.timestamp_ms
        && a.samples.len() == b.samples.len()
        && a.samples
            .iter()
            .zip(&b.samples)
            .all(|(x, y)| *x.series == *y.series && x.value.to_bits() == y.value.to_bits())
}

#[track_caller]
pub(super) fn assert_same_batch(got: &Batch, want: &Batch) {
    assert!(
        same_batch(got, want),
        "batch differs:\n got {:?}\nwant {:?}",
        summary(got),
        summary(want)
    );
}

fn summary(b: &Batch) -> (i64, usize, Vec<(String, u64)>) {
    (
        b.timestamp_ms,
        b.samples.len(),
        b.samples
            .iter()
            .take(4)
            .map(|s| (s.series.to_string(), s.value.to_bits()))
            .collect(),
    )
}

/// Every stored batch for `sink`, oldest first.
pub(super) fn read_all(reader: &mut SinkReader) -> Vec<(BatchId, Batch)> {
    reader.oldest(usize::MAX).expect("read all")
}

/// `PRAGMA integrity_check` of the file through a fresh connection.
pub(super) fn integrity_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open for integrity_check");
    let lines: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .expect("integrity_check");
    lines.join("; ")
}

/// A series for hand-made batches.
pub(super) fn series(name: &str, gpu: u32) -> Arc<Series> {
    Arc::new(Series::new(
        name,
        MetricKind::Gauge,
        Labels::from_pairs([("gpu", gpu.to_string())]),
    ))
}

/// The file set's bytes.
pub(super) fn file_set(path: &Path) -> u64 {
    super::schema::file_set_bytes(path).expect("measure")
}

/// Opens a buffer, panicking with the error.
pub(super) fn open(config: &BufferConfig) -> Buffer {
    Buffer::open(config.clone()).unwrap_or_else(|e| panic!("open {}: {e}", config.path.display()))
}

// ---- log capture ------------------------------------------------------------

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut r) = RECORDS.lock() {
            r.push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per process).
pub(super) fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if log::set_logger(&Capture).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
}

/// Logged lines at `level` that contain every needle.
pub(super) fn logged(level: log::Level, needles: &[&str]) -> Vec<String> {
    RECORDS
        .lock()
        .map(|r| {
            r.iter()
                .filter(|(l, m)| *l == level && needles.iter().all(|n| m.contains(n)))
                .map(|(_, m)| m.clone())
                .collect()
        })
        .unwrap_or_default()
}
