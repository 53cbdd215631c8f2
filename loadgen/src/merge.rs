//! One result from the results of the N parts of a run split with `--parts`
//! (one `aif-loadgen` per node): [`merge_parts`].
//!
//! Every figure comes from the merged [`Recorder`] (each part's `recorder`
//! key decoded and [`Recorder::merge`]d): counts and sums add up, percentiles
//! are read off the merged histograms (never averaged across parts), and
//! throughputs divide by the union of the parts' measurement windows.

use serde_json::{Map, Value, json};

use crate::stats::{Recorder, RecorderDecodeError, Slo};

/// Why the parts' results could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No result was given.
    #[error("no part results to merge")]
    NoParts,
    /// A part's result lacks a key, or it holds the wrong type.
    #[error("part result #{position} (in the given order): key `{key}` must be {expected}")]
    BadKey {
        /// Its position in the slice given.
        position: usize,
        /// The key (`part.index` for a nested one).
        key: &'static str,
        /// What it must hold.
        expected: &'static str,
    },
    /// A part's `part.count` is not the number of results given.
    #[error("part {index} is one of {count} parts, but {given} results were given")]
    Count {
        /// Its `part.index`.
        index: u64,
        /// Its `part.count`.
        count: u64,
        /// Results given.
        given: usize,
    },
    /// A part index is not below the number of parts.
    #[error("part index {index} is not below the number of parts {given}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// Results given.
        given: usize,
    },
    /// Two results have the same part index.
    #[error("part index {index} occurs twice")]
    DuplicateIndex {
        /// The index.
        index: u64,
    },
    /// The parts belong to different runs.
    #[error("part {index} has run_id `{found}`, part 0 `{expected}`")]
    RunId {
        /// The part index.
        index: u64,
        /// Part 0's run id.
        expected: String,
        /// This part's.
        found: String,
    },
    /// A part's result has no `recorder` (written by an older `aif-loadgen`).
    #[error("part {index} has no `recorder` key (an aif-loadgen too old to merge)")]
    MissingRecorder {
        /// The part index.
        index: u64,
    },
    /// A part's `recorder` cannot be decoded.
    #[error("part {index}: {source}")]
    Recorder {
        /// The part index.
        index: u64,
        /// Why.
        source: RecorderDecodeError,
    },
}

/// One part, checked.
struct Part<'a> {
    index: u64,
    m: &'a Map<String, Value>,
    recorder: Recorder,
    /// Measurement window: from `window_start_ms`, `duration` seconds.
    window_start_ms: i64,
    measured_end_ms: i64,
    window_end_ms: i64,
    /// Its `part.count`.
    count: u64,
}

fn bad(position: usize, key: &'static str, expected: &'static str) -> MergeError {
    MergeError::BadKey {
        position,
        key,
        expected,
    }
}

fn get_i64(m: &Map<String, Value>, position: usize, key: &'static str) -> Result<i64, MergeError> {
    m.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| bad(position, key, "an integer"))
}

fn check(position: usize, m: &Map<String, Value>) -> Result<Part<'_>, MergeError> {
    let part = m.get("part").and_then(Value::as_object).ok_or_else(|| {
        bad(
            position,
            "part",
            "an object {index, count, host, start_late_ms}",
        )
    })?;
    let index = part
        .get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(position, "part.index", "an unsigned integer"))?;
    let count = part
        .get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(position, "part.count", "an unsigned integer"))?;
    let recorder = match m.get("recorder") {
        None | Some(Value::Null) => return Err(MergeError::MissingRecorder { index }),
        Some(v) => {
            Recorder::from_json(v).map_err(|source| MergeError::Recorder { index, source })?
        }
    };
    let window_start_ms = get_i64(m, position, "window_start_ms")?;
    let window_end_ms = get_i64(m, position, "window_end_ms")?;
    let duration_s = m
        .get("duration")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad(position, "duration", "a number (seconds)"))?;
    Ok(Part {
        index,
        m,
        recorder,
        window_start_ms,
        measured_end_ms: window_start_ms + (duration_s * 1000.0).round() as i64,
        window_end_ms,
        count,
    })
}

/// The goodput objectives a result was measured with (`goodput_slo_ms`).
fn slo_of(m: &Map<String, Value>) -> Slo {
    let ms = |k: &str| {
        m.get("goodput_slo_ms")
            .and_then(|g| g.get(k))
            .and_then(Value::as_f64)
    };
    Slo {
        ttft_ms: ms("ttft"),
        tpot_ms: ms("tpot"),
        e2el_ms: ms("e2el"),
    }
}

/// Sum of a numeric key over the parts: `null` when any part has `null` (or
/// lacks it), an integer when every value is one.
fn sum_key(parts: &[Part<'_>], key: &str) -> Value {
    let values: Option<Vec<&Value>> = parts
        .iter()
        .map(|p| p.m.get(key).filter(|v| v.is_number()))
        .collect();
    let Some(values) = values else {
        return Value::Null;
    };
    if let Some(ints) = values
        .iter()
        .map(|v| v.as_u64())
        .collect::<Option<Vec<u64>>>()
    {
        return json!(ints.iter().sum::<u64>());
    }
    let sum: f64 = values.iter().filter_map(|v| v.as_f64()).sum();
    // The parts' rates are the total / N: undo the division's rounding.
    json!((sum * 1e6).round() / 1e6)
}

/// Merges the results of the N parts of one run (in any order) into one
/// result with the keys of a single process's result:
///
/// - every figure (`completed`, `failed`, `errors_by_kind`, throughputs,
///   means, percentiles, `request_goodput`, token totals, `warmup_requests`)
///   from the parts' merged [`Recorder`]s, over the union of their
///   measurement windows (from the earliest `window_start_ms` to the latest
///   `window_start_ms` + `duration`): percentiles are never averaged;
/// - `request_rate`, `max_concurrency`, `clients` and `incomplete` summed
///   (`null` stays `null`); `window_start_ms` the earliest, `window_end_ms`
///   the latest (with `started_at`, `date` and `ended_at` of those parts);
///   `ended_by` part 0's unless some part was ended by a signal;
/// - every other key (run_id, service_id, url, workload, mode, model_id,
///   seed, …) from part 0;
/// - added: `load_nodes` (N) and `nodes`, one object per part by index
///   (`index`, `host`, `completed`, `failed`, `request_throughput`,
///   `window_start_ms`, `window_end_ms`, `start_late_ms`);
/// - dropped: the parts' `recorder` and `part`.
///
/// # Errors
/// [`MergeError`]: no parts, a part without `part`, `recorder` or window
/// keys, indices that are not exactly 0..N-1, a `part.count` other than N,
/// run ids that differ, or an undecodable recorder.
pub fn merge_parts(parts: &[Map<String, Value>]) -> Result<Map<String, Value>, MergeError> {
    if parts.is_empty() {
        return Err(MergeError::NoParts);
    }
    let given = parts.len();
    let mut checked: Vec<Option<Part<'_>>> = (0..given).map(|_| None).collect();
    for (position, m) in parts.iter().enumerate() {
        let p = check(position, m)?;
        if p.count != given as u64 {
            return Err(MergeError::Count {
                index: p.index,
                count: p.count,
                given,
            });
        }
        let slot = usize::try_from(p.index)
            .ok()
            .and_then(|i| checked.get_mut(i))
            .ok_or(MergeError::IndexOutOfRange {
                index: p.index,
                given,
            })?;
        if slot.is_some() {
            return Err(MergeError::DuplicateIndex { index: p.index });
        }
        *slot = Some(p);
    }
    // N results, N distinct indices below N: every slot is filled.
    let parts: Vec<Part<'_>> = checked.into_iter().flatten().collect();
    let first = &parts[0];
    let run_id = |p: &Part<'_>| {
        p.m.get("run_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let expected = run_id(first);
    for p in &parts[1..] {
        let found = run_id(p);
        if found != expected {
            return Err(MergeError::RunId {
                index: p.index,
                expected,
                found,
            });
        }
    }

    let openai = first
        .m
        .get("workload")
        .and_then(Value::as_str)
        .is_some_and(|w| w != "http");
    let slo = slo_of(first.m);
    let mut merged = Recorder::default();
    for p in &parts {
        merged.merge(&p.recorder);
    }
    let earliest = parts
        .iter()
        .min_by_key(|p| p.window_start_ms)
        .unwrap_or(first);
    let latest = parts
        .iter()
        .max_by_key(|p| p.window_end_ms)
        .unwrap_or(first);
    let measured_end = parts
        .iter()
        .map(|p| p.measured_end_ms)
        .max()
        .unwrap_or(first.measured_end_ms);
    let window_s = (measured_end - earliest.window_start_ms).max(0) as f64 / 1000.0;

    let mut out = first.m.clone();
    out.remove("recorder");
    out.remove("part");
    // Part 0's own figures go (some keys exist only for some figures, such as
    // `input_tokens_note`); the merged ones replace them.
    let first_window = (first.measured_end_ms - first.window_start_ms).max(0) as f64 / 1000.0;
    for k in first.recorder.figures(first_window, openai, &slo).keys() {
        out.remove(k);
    }
    out.extend(merged.figures(window_s, openai, &slo));
    // A replayed trace's lateness, over every part's requests.
    if out.contains_key("mean_lateness_ms") {
        crate::engine::lateness(&merged.wait, &mut out);
    }
    out.insert("warmup_requests".into(), json!(merged.warmup_requests));
    for key in ["request_rate", "max_concurrency", "clients", "incomplete"] {
        if out.contains_key(key) {
            out.insert(key.into(), sum_key(&parts, key));
        }
    }
    out.insert("window_start_ms".into(), json!(earliest.window_start_ms));
    out.insert("window_end_ms".into(), json!(latest.window_end_ms));
    for (key, from) in [
        ("started_at", earliest),
        ("date", earliest),
        ("ended_at", latest),
    ] {
        if let Some(v) = from.m.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if parts
        .iter()
        .any(|p| p.m.get("ended_by").and_then(Value::as_str) == Some("signal"))
    {
        out.insert("ended_by".into(), json!("signal"));
    }
    out.insert("load_nodes".into(), json!(given));
    let nodes: Vec<Value> = parts
        .iter()
        .map(|p| {
            let part = p.m.get("part");
            let key = |k: &str| p.m.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "index": p.index,
                "host": part.and_then(|x| x.get("host")).cloned().unwrap_or(Value::Null),
                "completed": key("completed"),
                "failed": key("failed"),
                "request_throughput": key("request_throughput"),
                "window_start_ms": p.window_start_ms,
                "window_end_ms": p.window_end_ms,
                "start_late_ms": part.and_then(|x| x.get("start_late_ms")).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    out.insert("nodes".into(), Value::Array(nodes));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::workload::{ErrorKind, Outcome};

    fn ok(e2el_us: u64) -> Outcome {
        Outcome {
            status: Some(200),
            e2el: Duration::from_micros(e2el_us),
            ..Outcome::default()
        }
    }

    /// A part's result as `engine::result` writes it (the keys the merge reads).
    fn part(
        index: usize,
        count: usize,
        r: &Recorder,
        start_ms: i64,
        duration_s: f64,
    ) -> Map<String, Value> {
        let slo = Slo::default();
        let mut m = Map::new();
        m.insert("run_id".into(), json!("run-x"));
        m.insert("service_id".into(), json!("svc"));
        m.insert("workload".into(), json!("http"));
        m.insert("mode".into(), json!("closed_loop"));
        m.insert("url".into(), json!("http://127.0.0.1:1/"));
        m.insert("request_rate".into(), Value::Null);
        m.insert("max_concurrency".into(), json!(2));
        m.insert("clients".into(), json!(2));
        m.insert("incomplete".into(), json!(0));
        m.insert("seed".into(), json!(7 + index));
        m.insert("window_start_ms".into(), json!(start_ms));
        m.insert(
            "window_end_ms".into(),
            json!(start_ms + (duration_s * 1000.0) as i64 + 5),
        );
        m.insert("ended_by".into(), json!("duration"));
        m.insert("warmup_requests".into(), json!(r.warmup_requests));
        m.extend(r.figures(duration_s, false, &slo));
        m.insert(
            "part".into(),
            json!({"index": index, "count": count, "host": format!("node{index}"), "start_late_ms": 0}),
        );
        m.insert("recorder".into(), r.to_json());
        m
    }

    #[test]
    fn merged_percentiles_are_those_of_all_samples() {
        let slo = Slo::default();
        let (mut a, mut b, mut all) = (
            Recorder::default(),
            Recorder::default(),
            Recorder::default(),
        );
        // Two differently shaped halves: averaging their percentiles would be wrong.
        for i in 0..1000u64 {
            let fast = ok(1_000 + i * 7);
            a.record(&fast, None, &slo);
            all.record(&fast, None, &slo);
        }
        for i in 0..300u64 {
            let slow = ok(50_000 + i * 311);
            b.record(&slow, None, &slo);
            all.record(&slow, None, &slo);
        }
        let failed = Outcome {
            error: Some(ErrorKind::Timeout),
            ..Outcome::default()
        };
        b.record(&failed, None, &slo);
        all.record(&failed, None, &slo);
        a.warmup_requests = 3;
        b.warmup_requests = 4;
        all.warmup_requests = 7;
        // Part 1 started 0.5 s later: the union of windows is 10.5 s.
        let parts = [
            part(1, 2, &b, 1_000_500, 10.0),
            part(0, 2, &a, 1_000_000, 10.0),
        ];
        let m = merge_parts(&parts).unwrap();
        let want = all.figures(10.5, false, &slo);
        for k in [
            "median_e2el_ms",
            "p99_e2el_ms",
            "p90_e2el_ms",
            "mean_e2el_ms",
            "max_e2el_ms",
            "completed",
            "failed",
            "request_throughput",
            "duration",
        ] {
            assert_eq!(m[k], want[k], "{k}");
        }
        assert_eq!(m["completed"], 1300);
        assert_eq!(m["errors_by_kind"]["timeout"], 1);
        assert_eq!(m["warmup_requests"], 7);
        assert_eq!(m["max_concurrency"], 4);
        assert_eq!(m["clients"], 4);
        assert_eq!(m["request_rate"], Value::Null);
        assert_eq!(m["seed"], 7);
        assert_eq!(m["window_start_ms"], 1_000_000);
        assert_eq!(m["window_end_ms"], 1_010_505);
        assert_eq!(m["load_nodes"], 2);
        assert_eq!(m["nodes"][0]["index"], 0);
        assert_eq!(m["nodes"][1]["host"], "node1");
        assert_eq!(m["nodes"][1]["completed"], 300);
        assert_eq!(m["nodes"][0]["request_throughput"], 100.0);
        assert!(!m.contains_key("recorder") && !m.contains_key("part"));
        // An average of the parts' medians would be far off.
        let avg = (parts[0]["median_e2el_ms"].as_f64().unwrap()
            + parts[1]["median_e2el_ms"].as_f64().unwrap())
            / 2.0;
        assert!((m["median_e2el_ms"].as_f64().unwrap() - avg).abs() > 10.0);

        // One part merges into itself, figure for figure.
        let one = part(0, 1, &a, 5, 10.0);
        let m = merge_parts(std::slice::from_ref(&one)).unwrap();
        for (k, v) in &one {
            if k != "recorder" && k != "part" {
                assert_eq!(&m[k], v, "{k}");
            }
        }
    }

    #[test]
    fn mismatches_are_refused_by_cause() {
        let r = Recorder::default();
        let good = || [part(0, 2, &r, 0, 1.0), part(1, 2, &r, 0, 1.0)];
        assert!(merge_parts(&good()).is_ok());
        assert!(matches!(merge_parts(&[]), Err(MergeError::NoParts)));

        let mut p = good();
        p[1]["run_id"] = json!("run-y");
        let e = merge_parts(&p).unwrap_err();
        assert!(
            matches!(&e, MergeError::RunId { index: 1, expected, found } if expected == "run-x" && found == "run-y"),
            "{e}"
        );

        let p = [part(0, 2, &r, 0, 1.0), part(0, 2, &r, 0, 1.0)];
        assert!(matches!(
            merge_parts(&p),
            Err(MergeError::DuplicateIndex { index: 0 })
        ));
        let p = [part(0, 2, &r, 0, 1.0), part(2, 2, &r, 0, 1.0)];
        assert!(matches!(
            merge_parts(&p),
            Err(MergeError::IndexOutOfRange { index: 2, given: 2 })
        ));
        let p = [part(0, 3, &r, 0, 1.0), part(1, 3, &r, 0, 1.0)];
        assert!(matches!(
            merge_parts(&p),
            Err(MergeError::Count {
                count: 3,
                given: 2,
                ..
            })
        ));

        let mut p = good();
        p[1].remove("recorder");
        assert!(matches!(
            merge_parts(&p),
            Err(MergeError::MissingRecorder { index: 1 })
        ));
        let mut p = good();
        p[0]["recorder"] = json!({"version": 1});
        let e = merge_parts(&p).unwrap_err();
        assert!(matches!(e, MergeError::Recorder { index: 0, .. }), "{e}");
        let mut p = good();
        p[1].remove("part");
        let e = merge_parts(&p).unwrap_err();
        assert!(
            matches!(
                e,
                MergeError::BadKey {
                    position: 1,
                    key: "part",
                    ..
                }
            ),
            "{e}"
        );
        let mut p = good();
        p[0].remove("window_start_ms");
        let e = merge_parts(&p).unwrap_err();
        assert!(e.to_string().contains("window_start_ms"), "{e}");

        let mut p = good();
        p[1]["ended_by"] = json!("signal");
        assert_eq!(merge_parts(&p).unwrap()["ended_by"], "signal");
    }
}
