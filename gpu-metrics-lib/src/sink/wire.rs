//! The remote-write request's protobuf bytes, written directly: the per-tick
//! hot path of the history sink.
//!
//! [`super::prompb`] holds the messages and [`super::RemoteWriteClient::encode`]
//! builds them; that is the reference. Building them allocates two strings per
//! label per series per request, which at one request a second was the
//! largest part of a remote write's CPU. Here each series' `labels` fields are
//! encoded once and kept (keyed by the `Arc<Series>` the batches share, which
//! the cache holds so the address cannot be reused), and every request only
//! appends samples. The output decodes to the same `WriteRequest` as the
//! reference (tested), field for field. A request is a list of [`Piece`]s
//! (slices of batches), as [`super::RemoteWriteClient::plan`] cuts them.

use std::collections::HashMap;

use crate::fasthash::FastMap;
use std::sync::Arc;

use crate::sample::{Batch, Series};

/// A slice of one batch's samples: what a request is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the batch in the slice given to
    /// [`super::RemoteWriteClient::plan`].
    pub batch: usize,
    /// First sample.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
}

impl Piece {
    /// Samples in the piece.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Series whose encoded labels are kept; past this the cache starts over
/// (series churn, e.g. per-process series).
const CACHE_LIMIT: usize = 65_536;

/// Encodes requests; keeps each series' encoded labels between requests.
/// Equal series behind different `Arc`s (batches read back from the buffer
/// and batches from memory) share one interned label encoding, so a request
/// never holds the same series twice.
#[derive(Debug, Default)]
pub(crate) struct WireEncoder {
    /// `Arc<Series>` address → (the `Arc`, kept alive; its interned id).
    by_ptr: FastMap<usize, (Arc<Series>, usize)>,
    /// Encoded labels → interned id.
    interned: HashMap<Vec<u8>, usize>,
    /// Interned id → encoded labels.
    encoded: Vec<Vec<u8>>,
    /// This request: interned id → slot.
    slot_of: FastMap<usize, usize>,
    /// This request's series (interned id, samples); reused between requests.
    slots: Vec<(usize, Vec<(i64, f64)>)>,
    used: usize,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// A length-delimited field (wire type 2) holding `bytes`.
fn len_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `TimeSeries.labels` of `series` plus `extra` (those the series lacks),
/// `__name__` among them, sorted by name.
fn encode_labels(series: &Series, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(series.labels.len() + 1 + extra.len());
    pairs.push(("__name__", series.name.as_str()));
    pairs.extend(series.labels.iter());
    for (k, v) in extra {
        if series.labels.get(k).is_none() {
            pairs.push((k, v));
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut label = Vec::new();
    for (k, v) in pairs {
        label.clear();
        len_field(&mut label, 0x0a, k.as_bytes());
        len_field(&mut label, 0x12, v.as_bytes());
        len_field(&mut out, 0x0a, &label);
    }
    out
}

impl WireEncoder {
    /// Appends the `WriteRequest` for `pieces` of `batches` to `out`: one
    /// time series per distinct series, in first-seen order, samples in
    /// timestamp order; `extra` labels (`instance`, `job`) on every series
    /// that lacks them.
    pub(crate) fn encode(
        &mut self,
        batches: &[Arc<Batch>],
        pieces: &[Piece],
        extra: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) {
        if self.by_ptr.len() > CACHE_LIMIT {
            self.by_ptr.clear();
            self.interned.clear();
            self.encoded.clear();
        }
        self.slot_of.clear();
        self.used = 0;
        for p in pieces {
            let b = &batches[p.batch];
            for s in &b.samples[p.start..p.end] {
                let ptr = Arc::as_ptr(&s.series) as usize;
                let key = match self.by_ptr.get(&ptr) {
                    Some((_, id)) => *id,
                    None => {
                        let bytes = encode_labels(&s.series, extra);
                        let next = self.encoded.len();
                        let id = *self.interned.entry(bytes.clone()).or_insert(next);
                        if id == next {
                            self.encoded.push(bytes);
                        }
                        self.by_ptr.insert(ptr, (Arc::clone(&s.series), id));
                        id
                    }
                };
                let slot = match self.slot_of.get(&key) {
                    Some(i) => *i,
                    None => {
                        if self.used == self.slots.len() {
                            self.slots.push((key, Vec::new()));
                        }
                        let i = self.used;
                        self.slots[i].0 = key;
                        self.slots[i].1.clear();
                        self.used += 1;
                        self.slot_of.insert(key, i);
                        i
                    }
                };
                self.slots[slot].1.push((b.timestamp_ms, s.value));
            }
        }
        for (key, samples) in &self.slots[..self.used] {
            let labels = &self.encoded[*key];
            // Each sample: value (fixed64, tag 1) and timestamp (varint, tag 2).
            let sample_len = |ts: i64| 1 + 8 + 1 + varint_len(ts as u64);
            let body: usize = labels.len()
                + samples
                    .iter()
                    .map(|(ts, _)| {
                        let n = sample_len(*ts);
                        1 + varint_len(n as u64) + n
                    })
                    .sum::<usize>();
            out.push(0x0a);
            varint(out, body as u64);
            out.extend_from_slice(labels);
            for (ts, value) in samples {
                out.push(0x12);
                varint(out, sample_len(*ts) as u64);
                out.push(0x09);
                out.extend_from_slice(&value.to_le_bytes());
                out.push(0x10);
                varint(out, *ts as u64);
            }
        }
    }
}
