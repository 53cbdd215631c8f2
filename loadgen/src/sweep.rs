//! SLO capacity search (`--sweep rate|concurrency`): the largest load whose
//! goodput meets the target.
//!
//! A *step* is one short run of the plan (its warm-up, then
//! `--sweep-step-duration` measured) at one load: a request rate (open loop)
//! or a number of clients (closed loop). A step *passes* when at least
//! `--goodput-target` percent of its requests (failed and unfinished ones
//! included) met every `--goodput` SLO, and the server was not saturated.
//!
//! The search ([`search`], pure: it only sees step outcomes):
//! 1. **Growth**: from `--sweep-min`, doubling up to `--sweep-max`, until a
//!    step fails. A first step that fails ends the search with no knee
//!    (`below_min`); a last one that passes ends it at the maximum (`max`).
//! 2. **Bisection** between the last passing and the first failing load,
//!    until they are within `--sweep-tolerance` percent of each other (for
//!    concurrency also: until they are adjacent integers).
//!
//! *Saturation* fails a step whatever its goodput, and ends the growth early:
//! - rate: fewer than [`SATURATED_SHARE`] of the requests the schedule
//!   offered in the window completed (the schedule is replayed from the
//!   step's seed, so a Poisson draw's own variance is no saturation), or the median wait for a free client grew in each of the
//!   last [`QUEUE_GROWTH_STEPS`] growth steps (and is over 1 ms);
//! - concurrency: doubling the clients raised the achieved rate by less than
//!   [`PLATEAU_GAIN`] (the server is at its throughput ceiling).
//!
//! The *knee* is the largest passing load. The result is the knee step's
//! full result (every key of a plain run) with a `sweep` object: `by`,
//! `target_percent`, `tolerance_percent`, `slo`, `steps` (each step's load
//! and figures, in the order run), `knee` (`null` without one) and
//! `ended_by` (`converged`, `max`, `below_min` or `signal`).

use serde_json::{Map, Value, json};
use std::sync::atomic::AtomicBool;

use crate::engine::{self, EndedBy};
use crate::plan::{Load, Plan, SweepBy, SweepPlan};
use crate::stats::Recorder;

/// Below this share of the offered rate, an open-loop step is saturated.
pub const SATURATED_SHARE: f64 = 0.9;

/// Growth steps over which a rising median wait means a growing queue.
pub const QUEUE_GROWTH_STEPS: usize = 3;

/// A doubling of clients that raises the achieved rate by less than this
/// factor means a throughput ceiling.
pub const PLATEAU_GAIN: f64 = 1.1;

/// What one step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Completed requests per second from the start of the measured window
    /// to the end of the drain.
    pub achieved_rate: f64,
    /// Completed requests over those the schedule offered in the measured
    /// window (open loop; `None` for closed loop).
    pub completed_share: Option<f64>,
    /// Percent of the step's requests that met every SLO.
    pub good_percent: f64,
    /// Median wait for a free client, ms (`None` when nothing waited).
    pub median_wait_ms: Option<f64>,
}

/// One step of the search: its load, what it measured, the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The load (rate or clients).
    pub load: f64,
    /// The measurement.
    pub outcome: StepOutcome,
    /// Why the server counts as saturated (`None`: it is not).
    pub saturated: Option<&'static str>,
    /// Goodput met the target and the server was not saturated.
    pub passed: bool,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepEnd {
    /// The bisection reached the tolerance.
    Converged,
    /// `--sweep-max` passed.
    Max,
    /// `--sweep-min` failed: no load meets the target.
    BelowMin,
    /// A signal stopped it.
    Signal,
}

impl SweepEnd {
    /// The name in the result (`sweep.ended_by`).
    pub fn name(self) -> &'static str {
        match self {
            SweepEnd::Converged => "converged",
            SweepEnd::Max => "max",
            SweepEnd::BelowMin => "below_min",
            SweepEnd::Signal => "signal",
        }
    }
}

/// The search's course: every step in order, the knee, the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Steps, in the order they ran.
    pub steps: Vec<Step>,
    /// Index in `steps` of the knee (the largest passing load).
    pub knee: Option<usize>,
    /// How it ended.
    pub ended_by: SweepEnd,
}

/// Runs the search of `plan`, calling `run_step(load)` for each step;
/// `run_step` returns `None` when a signal stopped the step.
pub fn search(plan: &SweepPlan, mut run_step: impl FnMut(f64) -> Option<StepOutcome>) -> Search {
    let mut s = Search {
        steps: Vec::new(),
        knee: None,
        ended_by: SweepEnd::Converged,
    };
    let integer = plan.by == SweepBy::Concurrency;
    let mut step = |s: &mut Search, load: f64, growth: bool| -> Option<bool> {
        let outcome = run_step(load)?;
        let saturated = saturation(plan.by, load, &outcome, &s.steps, growth);
        let passed = saturated.is_none() && outcome.good_percent >= plan.target_percent;
        log::info!(
            "sweep step {}: {} {load} -> {:.2} req/s achieved, {:.2} % good (target {} %){}: {}",
            s.steps.len() + 1,
            plan.by.name(),
            outcome.achieved_rate,
            outcome.good_percent,
            plan.target_percent,
            saturated
                .map(|w| format!(", saturated: {w}"))
                .unwrap_or_default(),
            if passed { "pass" } else { "fail" }
        );
        s.steps.push(Step {
            load,
            outcome,
            saturated,
            passed,
        });
        if passed && s.knee.is_none_or(|k| s.steps[k].load < load) {
            s.knee = Some(s.steps.len() - 1);
        }
        Some(passed)
    };
    // Growth.
    let mut load = plan.min;
    let mut lo = None;
    let hi = loop {
        match step(&mut s, load, true) {
            None => {
                s.ended_by = SweepEnd::Signal;
                return s;
            }
            Some(false) => break load,
            Some(true) if load >= plan.max => {
                s.ended_by = SweepEnd::Max;
                return s;
            }
            Some(true) => {
                lo = Some(load);
                load = (load * 2.0).min(plan.max);
            }
        }
    };
    let Some(mut lo) = lo else {
        s.ended_by = SweepEnd::BelowMin;
        return s;
    };
    // Bisection.
    let mut hi = hi;
    while (hi - lo) / lo > plan.tolerance_percent / 100.0 {
        let mut mid = (lo + hi) / 2.0;
        if integer {
            mid = mid.floor();
            if mid <= lo {
                break;
            }
        }
        match step(&mut s, mid, false) {
            None => {
                s.ended_by = SweepEnd::Signal;
                return s;
            }
            Some(true) => lo = mid,
            Some(false) => hi = mid,
        }
    }
    s
}

/// Why a step at `load` counts as saturated, given the steps before it
/// (`growth`: it is a growth step, whose predecessors had lower loads).
fn saturation(
    by: SweepBy,
    load: f64,
    o: &StepOutcome,
    before: &[Step],
    growth: bool,
) -> Option<&'static str> {
    match by {
        SweepBy::Rate => {
            if o.completed_share.is_some_and(|c| c < SATURATED_SHARE) {
                return Some("fewer than 90 % of the offered requests completed");
            }
            if !growth || before.len() < QUEUE_GROWTH_STEPS {
                return None;
            }
            let mut waits: Vec<f64> = before[before.len() - QUEUE_GROWTH_STEPS..]
                .iter()
                .map(|s| s.outcome.median_wait_ms.unwrap_or(0.0))
                .collect();
            waits.push(o.median_wait_ms.unwrap_or(0.0));
            let growing = waits.windows(2).all(|w| w[1] > w[0]);
            (growing && waits[QUEUE_GROWTH_STEPS] > 1.0)
                .then_some("the wait for a free client grew step after step")
        }
        SweepBy::Concurrency => {
            let prev = before.last().filter(|p| growth && p.passed)?;
            (load > prev.load && o.achieved_rate < PLATEAU_GAIN * prev.outcome.achieved_rate)
                .then_some("more clients did not raise the achieved rate")
        }
    }
}

/// Requests the schedule of `plan` (open loop) has due in its measured
/// window: the engine's own draw, replayed from the same seed.
fn offered(plan: &Plan) -> Option<u64> {
    if !matches!(plan.load, Load::Open { .. }) {
        return None;
    }
    let mut s = engine::schedule(plan);
    let (from, to) = (plan.warmup.as_secs_f64(), plan.duration.as_secs_f64());
    let mut n = 0;
    loop {
        let due = s.next_due();
        // `due` is never NaN; infinite once a schedule is over.
        if due.is_nan() || due >= to {
            return Some(n);
        }
        n += u64::from(due >= from);
    }
}

/// One step's measurement from its result JSON (`offered`: see [`offered`]).
fn outcome_of(result: &Map<String, Value>, offered: Option<u64>) -> StepOutcome {
    let recorder = result
        .get("recorder")
        .and_then(|r| Recorder::from_json(r).ok());
    let incomplete = result
        .get("incomplete")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (good, all, wait) = match &recorder {
        Some(r) => (
            r.good,
            r.completed + r.failed() + incomplete,
            (r.wait.count() > 0).then(|| {
                r.wait
                    .hist
                    .median_equivalent(r.wait.hist.value_at_quantile(0.5)) as f64
                    / 1000.0
            }),
        ),
        None => (0, 0, None),
    };
    // Completions over the window and the drain: requests the server
    // queued finish in the drain, so `request_throughput` (over the window
    // alone) would hide a queue.
    let ms = |k: &str| result.get(k).and_then(Value::as_i64).unwrap_or(0);
    let span_s = (ms("window_end_ms") - ms("window_start_ms")) as f64 / 1000.0;
    let completed = recorder.as_ref().map_or(0, |r| r.completed);
    StepOutcome {
        achieved_rate: if span_s > 0.0 {
            completed as f64 / span_s
        } else {
            0.0
        },
        good_percent: if all == 0 {
            0.0
        } else {
            100.0 * good as f64 / all as f64
        },
        median_wait_ms: wait,
        completed_share: offered.map(|n| {
            if n == 0 {
                1.0
            } else {
                completed as f64 / n as f64
            }
        }),
    }
}

/// `plan` at one step's load.
fn step_plan(plan: &Plan, by: SweepBy, load: f64) -> Plan {
    let mut p = plan.clone();
    p.load = match (by, p.load) {
        (
            SweepBy::Rate,
            Load::Open {
                arrivals,
                max_concurrency,
                ..
            },
        ) => Load::Open {
            rate: load,
            arrivals,
            max_concurrency,
        },
        _ => Load::Closed {
            concurrency: load as usize,
        },
    };
    p
}

/// Runs the sweep of `plan` (which has one), step by step through the
/// engine; returns the result JSON and how the run ended
/// ([`EndedBy::Signal`] when a signal cut the search short).
pub fn run(plan: &Plan, stopped: &AtomicBool) -> (Map<String, Value>, EndedBy) {
    let Some(sweep) = plan.sweep else {
        return engine::run(plan.clone(), stopped, |_| {});
    };
    let mut results: Vec<Map<String, Value>> = Vec::new();
    let search = search(&sweep, |load| {
        let mut p = step_plan(plan, sweep.by, load);
        p.progress_extra = Some(json!({
            "sweep_step": results.len() + 1,
            "sweep_by": sweep.by.name(),
            "sweep_load": load,
        }));
        // The drain (`--drain-timeout`) lets a saturated step's queue empty
        // before the next step, which would otherwise wait behind it.
        let offered = offered(&p);
        let (result, ended_by) = engine::run(p, stopped, |_| {});
        if ended_by == EndedBy::Signal {
            return None;
        }
        let o = outcome_of(&result, offered);
        results.push(result);
        Some(o)
    });
    let ended_by = if search.ended_by == SweepEnd::Signal {
        EndedBy::Signal
    } else {
        EndedBy::Duration
    };
    // The knee's result, else the last step's (with `knee: null`).
    let mut result = search
        .knee
        .or(results.len().checked_sub(1))
        .and_then(|i| results.get(i).cloned())
        .unwrap_or_default();
    let steps: Vec<Value> = search
        .steps
        .iter()
        .zip(&results)
        .map(|(s, r)| {
            let mut m = Map::new();
            m.insert("load".into(), json!(s.load));
            m.insert(
                "achieved_rate".into(),
                json!(round3(s.outcome.achieved_rate)),
            );
            m.insert("good_percent".into(), json!(round3(s.outcome.good_percent)));
            for k in [
                "completed",
                "failed",
                "request_goodput",
                "median_ttft_ms",
                "median_tpot_ms",
                "median_e2el_ms",
                "p99_e2el_ms",
                "median_queue_wait_ms",
            ] {
                if let Some(v) = r.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            m.insert("saturated".into(), json!(s.saturated));
            m.insert("passed".into(), json!(s.passed));
            Value::Object(m)
        })
        .collect();
    result.insert("ended_by".into(), json!(ended_by.name()));
    result.insert(
        "sweep".into(),
        json!({
            "by": sweep.by.name(),
            "min": sweep.min,
            "max": sweep.max,
            "step_duration_seconds": sweep.step_duration.as_secs_f64(),
            "target_percent": sweep.target_percent,
            "tolerance_percent": sweep.tolerance_percent,
            "slo": {"ttft": plan.slo.ttft_ms, "tpot": plan.slo.tpot_ms, "e2el": plan.slo.e2el_ms},
            "steps": steps,
            "knee": search.knee.map(|k| search.steps[k].load),
            "ended_by": search.ended_by.name(),
        }),
    );
    (result, ended_by)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The steps as a table (stdout, before the knee's summary).
pub fn steps_table(result: &Map<String, Value>) -> String {
    use std::fmt::Write as _;
    let Some(sweep) = result.get("sweep") else {
        return String::new();
    };
    let by = sweep["by"].as_str().unwrap_or("load");
    let mut out = format!("{:=^78}\n", " SLO capacity search ");
    let _ = writeln!(
        out,
        "{:>5} {:>12} {:>12} {:>9} {:>12} {:>12}  verdict",
        "step", by, "achieved/s", "good %", "median e2el", "p99 e2el"
    );
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    for (i, s) in sweep["steps"].as_array().into_iter().flatten().enumerate() {
        let verdict = match (s["passed"].as_bool(), s["saturated"].as_str()) {
            (Some(true), _) => "pass".to_string(),
            (_, Some(why)) => format!("fail ({why})"),
            _ => "fail".to_string(),
        };
        let _ = writeln!(
            out,
            "{:>5} {:>12} {:>12} {:>9} {:>12} {:>12}  {verdict}",
            i + 1,
            f(&s["load"]),
            f(&s["achieved_rate"]),
            f(&s["good_percent"]),
            f(&s["median_e2el_ms"]),
            f(&s["p99_e2el_ms"]),
        );
    }
    let _ = writeln!(
        out,
        "knee: {} {} (target {} % good; ended by {})",
        by,
        sweep["knee"]
            .as_f64()
            .map_or("none".to_string(), |k| format!("{k}")),
        sweep["target_percent"].as_f64().unwrap_or(0.0),
        sweep["ended_by"].as_str().unwrap_or("-")
    );
    out
}

#[cfg(test)]
mod tests;
