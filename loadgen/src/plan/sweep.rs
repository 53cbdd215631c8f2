//! `--sweep` and its flags: what an SLO capacity search varies, between
//! which loads, and how long and how finely (the search itself is
//! [`crate::sweep`]).

use std::time::Duration;

use super::{Args, MAX_CLIENTS, PlanError, duration, invalid};

/// What a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepBy {
    /// `--request-rate` (open loop).
    Rate,
    /// `--concurrency` (closed loop).
    Concurrency,
}

impl SweepBy {
    /// `rate` or `concurrency`.
    pub fn name(self) -> &'static str {
        match self {
            SweepBy::Rate => "rate",
            SweepBy::Concurrency => "concurrency",
        }
    }
}

/// A validated `--sweep` (see [`crate::sweep`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPlan {
    /// What is varied.
    pub by: SweepBy,
    /// Lowest load (an integer for concurrency).
    pub min: f64,
    /// Highest load.
    pub max: f64,
    /// Measured time of each step (the plan's warm-up precedes it).
    pub step_duration: Duration,
    /// Good share a step needs, percent.
    pub target_percent: f64,
    /// Bisection tolerance, percent.
    pub tolerance_percent: f64,
}

/// `--sweep` and its flags, checked (`None` without `--sweep`, whose flags
/// are then refused).
pub(super) fn sweep_plan(a: &Args) -> Result<Option<SweepPlan>, PlanError> {
    let Some(by) = a.sweep.as_deref() else {
        for (given, flag) in [
            (a.sweep_min.is_some(), "sweep-min"),
            (a.sweep_max.is_some(), "sweep-max"),
            (a.sweep_step_duration.is_some(), "sweep-step-duration"),
            (a.goodput_target.is_some(), "goodput-target"),
            (a.sweep_tolerance.is_some(), "sweep-tolerance"),
        ] {
            if given {
                return Err(PlanError::Misplaced {
                    flag,
                    only: "goes with --sweep",
                });
            }
        }
        return Ok(None);
    };
    let by = match by {
        "rate" => SweepBy::Rate,
        "concurrency" => SweepBy::Concurrency,
        other => {
            return Err(invalid(
                "sweep",
                format!("`{other}` is not one of: rate, concurrency"),
            ));
        }
    };
    let only = match by {
        SweepBy::Rate => "is set by --sweep rate (each step's rate): leave it out",
        SweepBy::Concurrency => "is set by --sweep concurrency (each step's clients): leave it out",
    };
    for (given, flag) in [
        (a.request_rate.is_some(), "request-rate"),
        (a.concurrency.is_some(), "concurrency"),
    ] {
        if given {
            return Err(PlanError::Misplaced { flag, only });
        }
    }
    for (given, flag, only) in [
        (
            a.duration.is_some(),
            "duration",
            "does not go with --sweep (each step runs --sweep-step-duration)",
        ),
        (
            a.parts.is_some_and(|n| n > 1),
            "parts",
            "does not go with --sweep (a sweep is one process)",
        ),
        (
            a.start_at.is_some(),
            "start-at",
            "does not go with --sweep (a sweep is one process)",
        ),
        (
            a.pushgateway.is_some(),
            "pushgateway",
            "does not go with --sweep (steps have no live metrics)",
        ),
        (
            a.dataset.as_deref() == Some("trace"),
            "dataset",
            "trace does not go with --sweep (a trace sets its own load)",
        ),
    ] {
        if given {
            return Err(PlanError::Misplaced { flag, only });
        }
    }
    if a.goodput.is_empty() {
        return Err(invalid(
            "goodput",
            "--sweep needs at least one SLO (ttft:MS, tpot:MS, e2el:MS)",
        ));
    }
    let limit = match by {
        SweepBy::Rate => 1e6,
        SweepBy::Concurrency => MAX_CLIENTS as f64,
    };
    let load = |flag: &'static str, v: f64| {
        let integer = by == SweepBy::Rate || v.fract() == 0.0;
        if v.is_finite() && v > 0.0 && v <= limit && integer {
            Ok(v)
        } else if by == SweepBy::Concurrency {
            Err(invalid(
                flag,
                format!("{v} is not an integer in 1..={limit}"),
            ))
        } else {
            Err(invalid(flag, format!("{v} is not in (0, {limit}]")))
        }
    };
    let min = load("sweep-min", a.sweep_min.unwrap_or(1.0))?;
    let max = load(
        "sweep-max",
        a.sweep_max.ok_or(PlanError::Missing("sweep-max"))?,
    )?;
    if max < min {
        return Err(invalid(
            "sweep-max",
            format!("{max} is below --sweep-min {min}"),
        ));
    }
    let step_duration = duration(
        "sweep-step-duration",
        a.sweep_step_duration.as_deref(),
        Duration::from_secs(10),
    )?;
    if step_duration < Duration::from_millis(100) || step_duration > Duration::from_secs(86_400) {
        return Err(invalid(
            "sweep-step-duration",
            "must be at least 100ms and at most a day",
        ));
    }
    let target_percent = a.goodput_target.unwrap_or(99.0);
    if !(target_percent.is_finite() && target_percent > 0.0 && target_percent <= 100.0) {
        return Err(invalid(
            "goodput-target",
            format!("{target_percent} is not in (0, 100]"),
        ));
    }
    let tolerance_percent = a.sweep_tolerance.unwrap_or(5.0);
    if !(tolerance_percent.is_finite() && tolerance_percent > 0.0 && tolerance_percent <= 100.0) {
        return Err(invalid(
            "sweep-tolerance",
            format!("{tolerance_percent} is not in (0, 100]"),
        ));
    }
    Ok(Some(SweepPlan {
        by,
        min,
        max,
        step_duration,
        target_percent,
        tolerance_percent,
    }))
}
