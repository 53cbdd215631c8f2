//! Model-based property test: random sequences of operations against an
//! in-memory model (a queue of batches and one cursor per sink).

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::buffer::{BufferError, MIN_MAX_BYTES};

const SINKS: [&str; 3] = ["remote_write", "pushgateway", "spare"];

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch of `samples` samples derived from `seed`.
    Append {
        samples: usize,
        seed: u64,
    },
    /// Append `count` large batches: drives the buffer over its cap.
    Fill {
        count: usize,
        seed: u64,
    },
    Oldest {
        sink: usize,
        max: usize,
    },
    Newest {
        sink: usize,
    },
    /// Ack through `cursor + offset` (may be beyond the head).
    Ack {
        sink: usize,
        offset: i64,
    },
    /// Newest, then ack through it (the Pushgateway's step).
    PushNewest {
        sink: usize,
    },
    /// Drop everything and reopen with the sinks in `mask`.
    Reopen {
        mask: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..40, any::<u64>()).prop_map(|(samples, seed)| Op::Append { samples, seed }),
        5 => (1500usize..3500, any::<u64>()).prop_map(|(samples, seed)| Op::Append { samples, seed }),
        1 => (4usize..16, any::<u64>()).prop_map(|(count, seed)| Op::Fill { count, seed }),
        2 => (0usize..3, 0usize..6).prop_map(|(sink, max)| Op::Oldest { sink, max }),
        1 => (0usize..3).prop_map(|sink| Op::Newest { sink }),
        3 => (0usize..3, -2i64..10).prop_map(|(sink, offset)| Op::Ack { sink, offset }),
        1 => (0usize..3).prop_map(|sink| Op::PushNewest { sink }),
        1 => (0u8..8).prop_map(|mask| Op::Reopen { mask }),
    ]
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A batch of `n` samples over a pool of series, with values of every form
/// the encoding knows (small ints, ints, decimals, raw bits, NaN, -0.0).
fn make_batch(pool: &[Arc<Series>], ts: i64, n: usize, seed: u64) -> Batch {
    let mut st = seed;
    let mut b = Batch::new(ts);
    for _ in 0..n {
        let r = splitmix(&mut st);
        let series = Arc::clone(&pool[(r % pool.len() as u64) as usize]);
        let v = match (r >> 32) % 7 {
            0 => ((r >> 40) % 2) as f64,
            1 => ((r >> 20) as i64 - (1 << 43)) as f64,
            2 => ((r >> 40) % 100_000) as f64 / 1000.0,
            3 => -0.0,
            4 => f64::NAN,
            _ => f64::from_bits(splitmix(&mut st)),
        };
        b.push(series, v);
    }
    b
}

fn pool() -> Vec<Arc<Series>> {
    let mut v = Vec::new();
    for name in ["m_a", "m_b", "m_c", "m_d"] {
        for gpu in 0..6 {
            v.push(series(name, gpu));
        }
    }
    v.push(Arc::new(Series::new(
        "c_total",
        MetricKind::Counter,
        Labels::new(),
    )));
    v
}

struct Model {
    stored: VecDeque<(i64, Batch)>,
    cursors: BTreeMap<String, i64>,
    head: i64,
    evicted_cap: u64,
    next_ts: i64,
}

impl Model {
    fn delete_taken(&mut self) {
        if let Some(min) = self.cursors.values().min().copied() {
            while self.stored.front().is_some_and(|(id, _)| *id <= min) {
                self.stored.pop_front();
            }
        }
    }

    fn pending(&self, sink: &str) -> Vec<&(i64, Batch)> {
        let c = self.cursors[sink];
        self.stored.iter().filter(|(id, _)| *id > c).collect()
    }
}

struct System {
    cfg: BufferConfig,
    buf: Option<Buffer>,
    readers: BTreeMap<String, SinkReader>,
}

impl System {
    fn buf(&mut self) -> &mut Buffer {
        self.buf.as_mut().expect("open")
    }

    fn reader(&mut self, sink: &str) -> &mut SinkReader {
        if !self.readers.contains_key(sink) {
            let r = self
                .buf
                .as_ref()
                .expect("open")
                .reader(sink)
                .expect("reader");
            self.readers.insert(sink.to_string(), r);
        }
        self.readers.get_mut(sink).expect("inserted")
    }
}

fn check_batches(got: &[(BatchId, Batch)], want: &[&(i64, Batch)]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for ((gid, gb), (wid, wb)) in got.iter().zip(want) {
        prop_assert_eq!(gid.0, *wid);
        prop_assert!(same_batch(gb, wb), "batch {} differs", wid);
    }
    Ok(())
}

fn check_stats(sys: &mut System, model: &Model) -> Result<(), TestCaseError> {
    let s = sys.buf().stats().expect("stats");
    prop_assert_eq!(s.batches, model.stored.len() as u64);
    prop_assert_eq!(
        s.first_id.map(|i| i.0),
        model.stored.front().map(|(id, _)| *id)
    );
    prop_assert_eq!(
        s.last_id.map(|i| i.0),
        model.stored.back().map(|(id, _)| *id)
    );
    prop_assert_eq!(s.evicted.cap, model.evicted_cap);
    prop_assert_eq!(s.evicted.disk_full, 0);
    prop_assert_eq!(s.sinks.len(), model.cursors.len());
    for ss in &s.sinks {
        prop_assert_eq!(ss.acked_through.0, model.cursors[&ss.sink]);
        let p = model.pending(&ss.sink);
        prop_assert_eq!(ss.pending.batches, p.len() as u64);
        prop_assert_eq!(
            ss.pending.oldest_id.map(|i| i.0),
            p.first().map(|(id, _)| *id)
        );
        prop_assert_eq!(
            ss.pending.oldest_timestamp_ms,
            p.first().map(|(_, b)| b.timestamp_ms)
        );
    }
    prop_assert!(s.file_bytes <= s.max_bytes + crate::buffer::CAP_SLACK_BYTES);
    Ok(())
}

/// Appends one batch; eviction is the system's choice, but it must take a
/// prefix, never the new batch, and count each one.
fn append(
    sys: &mut System,
    model: &mut Model,
    pool: &[Arc<Series>],
    samples: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let batch = make_batch(pool, model.next_ts, samples, seed);
    model.next_ts += 1000;
    let id = sys.buf().append(&batch).expect("append never fails");
    model.head += 1;
    prop_assert_eq!(id.0, model.head);
    model.stored.push_back((id.0, batch));
    let s = sys.buf().stats().expect("stats");
    let first = s.first_id.expect("the new batch is stored").0;
    while model.stored.front().is_some_and(|(i, _)| *i < first) {
        model.stored.pop_front();
        model.evicted_cap += 1;
    }
    prop_assert!(s.file_bytes <= s.max_bytes + crate::buffer::CAP_SLACK_BYTES);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &SINKS[..2]);
    cfg.max_bytes = MIN_MAX_BYTES;
    let pool = pool();
    let mut model = Model {
        stored: VecDeque::new(),
        cursors: SINKS[..2].iter().map(|s| (s.to_string(), 0)).collect(),
        head: 0,
        evicted_cap: 0,
        next_ts: 1_700_000_000_000,
    };
    let mut sys = System {
        buf: Some(open(&cfg)),
        cfg,
        readers: BTreeMap::new(),
    };
    for op in ops {
        let configured: Vec<String> = model.cursors.keys().cloned().collect();
        let sink_of = |i: usize| -> Option<String> {
            (!configured.is_empty()).then(|| configured[i % configured.len()].clone())
        };
        match op {
            Op::Append { samples, seed } => append(&mut sys, &mut model, &pool, samples, seed)?,
            Op::Fill { count, seed } => {
                for i in 0..count {
                    append(&mut sys, &mut model, &pool, 3000, seed ^ i as u64)?;
                }
            }
            Op::Oldest { sink, max } => {
                let Some(sink) = sink_of(sink) else { continue };
                let got = sys.reader(&sink).oldest(max).expect("oldest");
                let want: Vec<_> = model.pending(&sink).into_iter().take(max).collect();
                check_batches(&got, &want)?;
            }
            Op::Newest { sink } => {
                let Some(sink) = sink_of(sink) else { continue };
                let got: Vec<_> = sys
                    .reader(&sink)
                    .newest()
                    .expect("newest")
                    .into_iter()
                    .collect();
                let want: Vec<_> = model.pending(&sink).last().copied().into_iter().collect();
                check_batches(&got, &want)?;
            }
            Op::Ack { sink, offset } => {
                let Some(sink) = sink_of(sink) else { continue };
                let cursor = model.cursors[&sink];
                let target = (cursor + offset).max(0);
                let got = sys.reader(&sink).ack_through(BatchId(target));
                if target > model.head {
                    let refused = matches!(got, Err(BufferError::AckBeyondHead { .. }));
                    prop_assert!(refused, "ack beyond head: {:?}", got);
                } else {
                    let want = model
                        .stored
                        .iter()
                        .filter(|(id, _)| *id > cursor && *id <= target)
                        .count() as u64;
                    prop_assert_eq!(got.expect("ack"), want);
                    model.cursors.insert(sink, cursor.max(target));
                    model.delete_taken();
                }
            }
            Op::PushNewest { sink } => {
                let Some(sink) = sink_of(sink) else { continue };
                let want: Vec<_> = model.pending(&sink).last().copied().into_iter().collect();
                let got: Vec<_> = sys
                    .reader(&sink)
                    .newest()
                    .expect("newest")
                    .into_iter()
                    .collect();
                check_batches(&got, &want)?;
                if let Some((id, _)) = got.first() {
                    let covered = sys.reader(&sink).ack_through(*id).expect("ack");
                    prop_assert_eq!(covered, model.pending(&sink).len() as u64);
                    model.cursors.insert(sink, id.0);
                    model.delete_taken();
                }
            }
            Op::Reopen { mask } => {
                sys.readers.clear();
                sys.buf = None;
                let sinks: Vec<String> = SINKS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, s)| s.to_string())
                    .collect();
                sys.cfg.sinks = sinks.clone();
                sys.buf = Some(open(&sys.cfg));
                model.cursors.retain(|s, _| sinks.contains(s));
                let start = model.stored.front().map_or(model.head, |(id, _)| id - 1);
                for s in sinks {
                    model.cursors.entry(s).or_insert(start);
                }
                model.delete_taken();
            }
        }
        check_stats(&mut sys, &model)?;
    }
    sys.readers.clear();
    let path = sys.cfg.path.clone();
    sys.buf = None;
    prop_assert_eq!(integrity_check(&path), "ok");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn buffer_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
