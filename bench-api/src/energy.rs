//! Energy of a benchmark run: the increase of `aif_gpu_energy_joules_total`
//! on the service's GPUs over the run's window, from Prometheus.
//!
//! One instant query of a range selector returns the raw samples of every
//! matching series around the window (`…{service_id="svc-…"}[Ns]`, matched
//! by `slurm_job_id` when no series carries the `service_id`). Per series the
//! counter is made monotonic (a reset adds the new value, as `increase()`
//! does), interpolated linearly at the window's start and end, and the
//! difference summed over the GPUs. No extrapolation: a window that the
//! samples do not cover, or a gap between samples longer than
//! [`max_gap_s`], makes the energy *unavailable*, with the reason, never 0.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// The counter asked for.
pub const ENERGY_METRIC: &str = "aif_gpu_energy_joules_total";

/// How far around the window samples are fetched (s).
pub const MARGIN_S: f64 = 30.0;

/// After the window end, how long to wait for the first sample past it before
/// declaring the energy unavailable (ms).
pub const SETTLE_MS: i64 = 60_000;

/// Why the energy of a run cannot be known (shown as the result's
/// `energy_unavailable_reason`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unavailable {
    /// The API has no `--prometheus`.
    #[error("no Prometheus configured (--prometheus)")]
    NotConfigured,
    /// The result has no measurement window.
    #[error("the result has no measurement window")]
    NoWindow,
    /// Prometheus could not be asked.
    #[error("Prometheus {url}: {message}")]
    Query {
        /// The query URL.
        url: String,
        /// The transport error, status or body problem.
        message: String,
    },
    /// No series matched.
    #[error("no {ENERGY_METRIC} series with {selector} in Prometheus")]
    NoSeries {
        /// The label selectors tried.
        selector: String,
    },
    /// A series has no samples in the range.
    #[error("{ENERGY_METRIC}{series}: no samples")]
    NoSamples {
        /// The series' labels.
        series: String,
    },
    /// A series begins after the window start.
    #[error(
        "{ENERGY_METRIC}{series}: the counter's first sample is {seconds:.1} s after the window start"
    )]
    StartsLate {
        /// The series' labels.
        series: String,
        /// How late.
        seconds: f64,
    },
    /// A series stops before the window end.
    #[error("{ENERGY_METRIC}{series}: no sample after the window end")]
    EndsEarly {
        /// The series' labels.
        series: String,
    },
    /// A gap between samples inside the window.
    #[error(
        "{ENERGY_METRIC}{series}: a gap of {seconds:.1} s in the counter (at most {max:.1} s accepted)"
    )]
    Gap {
        /// The series' labels.
        series: String,
        /// The gap.
        seconds: f64,
        /// The largest accepted.
        max: f64,
    },
}

/// One series: labels (as JSON text), its `instance` (the node) and its
/// `(seconds, value)` samples.
type SeriesSamples = (String, String, Vec<(f64, f64)>);

/// What the query found.
#[derive(Debug, Clone, PartialEq)]
pub enum Energy {
    /// Joules over the window, and the number of GPUs (series) summed.
    Measured {
        /// Joules.
        joules: f64,
        /// Series summed.
        gpus: usize,
        /// The label that matched (`service_id` or `slurm_job_id`).
        matched_by: String,
        /// Joules per node (the series' `instance` label), by name.
        per_node: std::collections::BTreeMap<String, f64>,
    },
    /// Not yet: Prometheus has no sample past the window end yet.
    NotYet,
    /// Cannot be known, and why.
    Unavailable(Unavailable),
}

/// The largest gap between samples accepted inside the window: three times
/// the median spacing, and at least 5 s.
pub fn max_gap_s(samples: &[(f64, f64)]) -> f64 {
    let mut gaps: Vec<f64> = samples.windows(2).map(|w| w[1].0 - w[0].0).collect();
    if gaps.is_empty() {
        return 5.0;
    }
    gaps.sort_by(f64::total_cmp);
    (3.0 * gaps[gaps.len() / 2]).max(5.0)
}

/// The increase of the counter series `series` over `[start_s, end_s]`;
/// `Ok(None)` while no sample at or after `end_s` exists.
///
/// # Errors
/// Why it cannot be known (window not covered, a gap).
pub fn increase(
    series: &str,
    samples: &[(f64, f64)],
    start_s: f64,
    end_s: f64,
) -> Result<Option<f64>, Unavailable> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err(Unavailable::NoSamples {
            series: series.to_string(),
        });
    };
    if first.0 > start_s {
        return Err(Unavailable::StartsLate {
            series: series.to_string(),
            seconds: first.0 - start_s,
        });
    }
    if last.0 < end_s {
        return Ok(None);
    }
    let max_gap = max_gap_s(samples);
    let mut adjusted = Vec::with_capacity(samples.len());
    let mut offset = 0.0;
    for (i, &(t, v)) in samples.iter().enumerate() {
        if i > 0 {
            let (pt, pv) = samples[i - 1];
            if v < pv {
                offset += pv;
            }
            if t > start_s && pt < end_s && t - pt > max_gap {
                return Err(Unavailable::Gap {
                    series: series.to_string(),
                    seconds: t - pt,
                    max: max_gap,
                });
            }
        }
        adjusted.push((t, v + offset));
    }
    let at = |x: f64| -> f64 {
        let i = adjusted.partition_point(|s| s.0 < x);
        match (i.checked_sub(1).map(|j| adjusted[j]), adjusted.get(i)) {
            (_, Some(&(t, v))) if t == x => v,
            (Some((t0, v0)), Some(&(t1, v1))) => v0 + (v1 - v0) * (x - t0) / (t1 - t0),
            (Some((_, v)), None) | (None, Some(&(_, v))) => v,
            (None, None) => 0.0,
        }
    };
    Ok(Some(at(end_s) - at(start_s)))
}

/// Asks Prometheus for the energy of the series matched by `label="value"` over
/// `[start_ms, end_ms]`.
///
/// # Errors
/// [`Unavailable::Query`].
fn query_series(
    agent: &ureq::Agent,
    base: &str,
    label: &str,
    value: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<SeriesSamples>, Unavailable> {
    let range_s = ((end_ms - start_ms) as f64 / 1000.0 + 2.0 * MARGIN_S).ceil() as u64;
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    let query = format!("{ENERGY_METRIC}{{{label}=\"{escaped}\"}}[{range_s}s]");
    let time = format!("{:.3}", end_ms as f64 / 1000.0 + MARGIN_S);
    let url = format!("{base}/api/v1/query");
    let fail = |message: String| Unavailable::Query {
        url: url.clone(),
        message,
    };
    let mut resp = agent
        .get(&url)
        .query("query", &query)
        .query("time", &time)
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| fail(e.to_string()))?;
    let body: Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("answer is not JSON ({e})")))?;
    if status != 200 || body["status"] != "success" {
        return Err(fail(format!(
            "answered {status}: {}",
            body["error"].as_str().unwrap_or("")
        )));
    }
    let mut out = Vec::new();
    for series in body["data"]["result"].as_array().into_iter().flatten() {
        let name = series["metric"].to_string();
        let instance = series["metric"]["instance"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let samples: Vec<(f64, f64)> = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let t = p.get(0)?.as_f64()?;
                let v: f64 = p.get(1)?.as_str()?.parse().ok()?;
                v.is_finite().then_some((t, v))
            })
            .collect();
        out.push((name, instance, samples));
    }
    Ok(out)
}

/// The energy over `[start_ms, end_ms]` of the GPUs labelled
/// `service_id=service_id` (or, failing that, `slurm_job_id=job`).
pub fn measure(
    prometheus: &str,
    timeout: Duration,
    service_id: &str,
    slurm_job: Option<&str>,
    (start_ms, end_ms): (i64, i64),
    now_ms: i64,
) -> Energy {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut keys = vec![("service_id", service_id)];
    if let Some(j) = slurm_job {
        keys.push(("slurm_job_id", j));
    }
    for (label, value) in keys {
        let series = match query_series(&agent, prometheus, label, value, start_ms, end_ms) {
            Ok(s) => s,
            Err(e) => return Energy::Unavailable(e),
        };
        if series.is_empty() {
            continue;
        }
        let (start_s, end_s) = (start_ms as f64 / 1000.0, end_ms as f64 / 1000.0);
        let mut joules = 0.0;
        let mut per_node = std::collections::BTreeMap::new();
        for (name, instance, samples) in &series {
            match increase(name, samples, start_s, end_s) {
                Ok(Some(j)) => {
                    joules += j;
                    *per_node.entry(instance.clone()).or_insert(0.0) += j;
                }
                Ok(None) if now_ms < end_ms + SETTLE_MS => return Energy::NotYet,
                Ok(None) => {
                    return Energy::Unavailable(Unavailable::EndsEarly {
                        series: name.clone(),
                    });
                }
                Err(why) => return Energy::Unavailable(why),
            }
        }
        return Energy::Measured {
            joules,
            gpus: series.len(),
            matched_by: label.to_string(),
            per_node,
        };
    }
    if now_ms < end_ms + SETTLE_MS / 4 {
        return Energy::NotYet;
    }
    Energy::Unavailable(Unavailable::NoSeries {
        selector: format!(
            "service_id=\"{service_id}\"{}",
            slurm_job
                .map(|j| format!(" or slurm_job_id=\"{j}\""))
                .unwrap_or_default()
        ),
    })
}

/// The result keys for `energy` (a run's `completed`, `total_output_tokens` and
/// window are read from `result`).
pub fn result_fields(energy: &Energy, result: &Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    match energy {
        Energy::Measured {
            joules,
            gpus,
            matched_by,
            per_node,
        } => {
            let round = |x: f64| (x * 1e6).round() / 1e6;
            m.insert("energy_status".into(), json!("measured"));
            m.insert("energy_joules".into(), json!(round(*joules)));
            let nodes: Map<String, Value> = per_node
                .iter()
                .map(|(node, j)| (node.clone(), json!(round(*j))))
                .collect();
            m.insert("energy_joules_per_node".into(), Value::Object(nodes));
            m.insert("energy_gpus".into(), json!(gpus));
            m.insert("energy_matched_by".into(), json!(matched_by));
            let window_s = match (
                result["window_start_ms"].as_i64(),
                result["window_end_ms"].as_i64(),
            ) {
                (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1000.0),
                _ => None,
            };
            if let Some(w) = window_s {
                m.insert("mean_power_watts".into(), json!(round(joules / w)));
            }
            match result.get("completed").and_then(Value::as_u64) {
                Some(n) if n > 0 => {
                    m.insert("joules_per_request".into(), json!(round(joules / n as f64)));
                }
                _ => {
                    m.insert("joules_per_request".into(), Value::Null);
                }
            }
            if let Some(tokens) = result.get("total_output_tokens").and_then(Value::as_u64) {
                if tokens > 0 && *joules > 0.0 {
                    m.insert(
                        "joules_per_output_token".into(),
                        json!(round(joules / tokens as f64)),
                    );
                    m.insert(
                        "output_tokens_per_joule".into(),
                        json!(round(tokens as f64 / joules)),
                    );
                } else {
                    m.insert("joules_per_output_token".into(), Value::Null);
                    m.insert("output_tokens_per_joule".into(), Value::Null);
                }
            }
        }
        Energy::NotYet => {
            m.insert("energy_status".into(), json!("pending"));
        }
        Energy::Unavailable(why) => {
            m.insert("energy_status".into(), json!("unavailable"));
            m.insert("energy_unavailable_reason".into(), json!(why.to_string()));
            m.insert("energy_joules".into(), Value::Null);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(from: f64, to: f64, step: f64, watts: f64) -> Vec<(f64, f64)> {
        let mut v = Vec::new();
        let mut t = from;
        while t <= to + 1e-9 {
            v.push((t, 1000.0 + watts * (t - from)));
            t += step;
        }
        v
    }

    #[test]
    fn interpolates_at_the_window_edges() {
        let s = ramp(0.0, 20.0, 1.0, 300.0);
        let e = increase("{}", &s, 2.5, 12.25).unwrap().unwrap();
        assert!((e - 300.0 * 9.75).abs() < 1e-6, "{e}");
        assert_eq!(
            increase("{}", &s, 2.5, 25.0).unwrap(),
            None,
            "end not covered yet"
        );
        assert!(matches!(
            increase("{}", &s, -1.0, 5.0),
            Err(Unavailable::StartsLate { .. })
        ));
    }

    #[test]
    fn resets_count_and_gaps_refuse() {
        let mut s = ramp(0.0, 10.0, 1.0, 100.0);
        // The exporter restarted at t=11: the counter starts again from 50.
        s.extend(
            ramp(11.0, 20.0, 1.0, 100.0)
                .into_iter()
                .map(|(t, v)| (t, v - 1000.0 + 50.0)),
        );
        let e = increase("{}", &s, 0.0, 20.0).unwrap().unwrap();
        // 0..10: 1000 J; the reset sample counts whole (50 J); 11..20: 900 J.
        assert!((e - 1950.0).abs() < 1e-6, "{e}");
        let mut gap = ramp(0.0, 5.0, 1.0, 100.0);
        gap.extend(ramp(30.0, 40.0, 1.0, 100.0));
        let e = increase("{}", &gap, 1.0, 35.0).unwrap_err();
        assert!(e.to_string().contains("gap of 25.0 s"), "{e}");
    }

    #[test]
    fn fields_never_say_zero_for_unknown() {
        let r: Map<String, Value> = serde_json::from_value(json!({
            "completed": 10, "total_output_tokens": 200, "window_start_ms": 0, "window_end_ms": 10_000
        }))
        .unwrap();
        let m = result_fields(
            &Energy::Measured {
                joules: 1000.0,
                gpus: 2,
                matched_by: "service_id".into(),
                per_node: [("node1".to_string(), 600.0), ("node2".to_string(), 400.0)].into(),
            },
            &r,
        );
        assert_eq!(
            m["energy_joules_per_node"],
            json!({"node1": 600.0, "node2": 400.0})
        );
        assert_eq!(
            (
                m["joules_per_request"].clone(),
                m["mean_power_watts"].clone()
            ),
            (json!(100.0), json!(100.0))
        );
        assert_eq!(m["joules_per_output_token"], 5.0);
        assert_eq!(m["output_tokens_per_joule"], 0.2);
        let m = result_fields(&Energy::Unavailable(Unavailable::NotConfigured), &r);
        assert_eq!(m["energy_status"], "unavailable");
        assert!(m["energy_joules"].is_null());
    }
}
