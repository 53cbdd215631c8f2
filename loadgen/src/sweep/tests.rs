use super::*;
use std::time::Duration;

fn plan(by: SweepBy, min: f64, max: f64) -> SweepPlan {
    SweepPlan {
        by,
        min,
        max,
        step_duration: Duration::from_secs(1),
        target_percent: 99.0,
        tolerance_percent: 5.0,
    }
}

/// A server that serves up to `capacity` req/s with every request good, and
/// beyond it queues (achieved = capacity, goodput collapsing).
fn server(capacity: f64) -> impl FnMut(f64) -> Option<StepOutcome> {
    move |load| {
        Some(if load <= capacity {
            StepOutcome {
                achieved_rate: load,
                good_percent: 100.0,
                median_wait_ms: None,
                completed_share: None,
            }
        } else {
            StepOutcome {
                achieved_rate: capacity,
                good_percent: 100.0 * capacity / load / 2.0,
                median_wait_ms: Some(50.0),
                completed_share: Some(capacity / load),
            }
        })
    }
}

#[test]
fn rate_search_lands_within_tolerance_below_the_capacity() {
    for capacity in [3.0, 40.0, 77.5, 999.0] {
        let s = search(&plan(SweepBy::Rate, 1.0, 10_000.0), server(capacity));
        let knee = s.steps[s.knee.expect("a knee")].load;
        assert_eq!(s.ended_by, SweepEnd::Converged, "{s:?}");
        assert!(
            knee <= capacity && knee >= capacity / 1.05,
            "{capacity}: {s:?}"
        );
        // Growth doubles: 1, 2, 4, … until the first failure.
        assert_eq!(s.steps[1].load, 2.0);
        assert!(s.steps.iter().all(|st| st.passed == (st.load <= capacity)));
    }
}

#[test]
fn search_ends_at_max_when_every_step_passes() {
    let s = search(&plan(SweepBy::Rate, 1.0, 10.0), server(100.0));
    let loads: Vec<f64> = s.steps.iter().map(|st| st.load).collect();
    assert_eq!(loads, vec![1.0, 2.0, 4.0, 8.0, 10.0]);
    assert_eq!((s.ended_by, s.knee), (SweepEnd::Max, Some(4)));
}

#[test]
fn search_without_a_passing_load_has_no_knee() {
    let s = search(&plan(SweepBy::Rate, 5.0, 100.0), server(2.0));
    assert_eq!(
        (s.steps.len(), s.knee, s.ended_by),
        (1, None, SweepEnd::BelowMin)
    );
}

#[test]
fn a_signal_ends_the_search_with_the_steps_so_far() {
    let mut n = 0;
    let s = search(&plan(SweepBy::Rate, 1.0, 100.0), |load| {
        n += 1;
        (n < 3).then(|| server(50.0)(load)).flatten()
    });
    assert_eq!(
        (s.steps.len(), s.ended_by, s.knee),
        (2, SweepEnd::Signal, Some(1))
    );
}

#[test]
fn rate_steps_that_fall_behind_the_offered_rate_are_saturated() {
    // Every request good, but the server completes only 20 req/s: goodput
    // alone would pass every step.
    let s = search(&plan(SweepBy::Rate, 4.0, 1000.0), |load: f64| {
        Some(StepOutcome {
            achieved_rate: load.min(20.0),
            good_percent: 100.0,
            median_wait_ms: None,
            completed_share: Some((20.0 / load).min(1.0)),
        })
    });
    let knee = s.steps[s.knee.unwrap()].load;
    assert!(
        (20.0 / 1.05..=20.0 / SATURATED_SHARE).contains(&knee),
        "{s:?}"
    );
    assert!(s.steps.iter().any(|st| st.saturated.is_some()));
}

#[test]
fn a_wait_growing_step_after_step_ends_the_growth() {
    let s = search(&plan(SweepBy::Rate, 1.0, 1000.0), |load: f64| {
        Some(StepOutcome {
            achieved_rate: load,
            good_percent: 100.0,
            median_wait_ms: Some(load),
            completed_share: Some(1.0),
        })
    });
    // 1, 2, 4 grow the wait; 8 makes it the third growth in a row.
    assert_eq!(s.steps[3].load, 8.0);
    assert_eq!(
        s.steps[3].saturated,
        Some("the wait for a free client grew step after step")
    );
    assert!(s.steps[..3].iter().all(|st| st.passed));
}

#[test]
fn concurrency_search_stays_on_integers_and_stops_at_the_plateau() {
    // Each client adds 10 req/s up to 6 clients, then the rate stays; good
    // requests collapse beyond 6 clients.
    let s = search(&plan(SweepBy::Concurrency, 1.0, 64.0), |n: f64| {
        Some(StepOutcome {
            achieved_rate: 10.0 * n.min(6.0),
            good_percent: if n <= 6.0 { 100.0 } else { 50.0 },
            median_wait_ms: None,
            completed_share: None,
        })
    });
    assert!(s.steps.iter().all(|st| st.load.fract() == 0.0), "{s:?}");
    assert_eq!(s.steps[s.knee.unwrap()].load, 6.0, "{s:?}");
    // The plateau alone fails a step: 16 clients complete no more than 8.
    let s = search(&plan(SweepBy::Concurrency, 1.0, 64.0), |n: f64| {
        Some(StepOutcome {
            achieved_rate: 10.0 * n.min(6.0),
            good_percent: 100.0,
            median_wait_ms: None,
            completed_share: None,
        })
    });
    assert_eq!(
        s.steps
            .iter()
            .find(|st| st.load == 16.0)
            .and_then(|st| st.saturated),
        Some("more clients did not raise the achieved rate")
    );
}

#[test]
fn the_steps_table_shows_every_step_and_the_knee() {
    let mut result = Map::new();
    result.insert(
        "sweep".into(),
        json!({"by": "rate", "target_percent": 99.0, "knee": 32.0, "ended_by": "converged",
               "steps": [
                   {"load": 32.0, "achieved_rate": 31.9, "good_percent": 100.0, "median_e2el_ms": 25.1, "p99_e2el_ms": 26.0, "saturated": null, "passed": true},
                   {"load": 64.0, "achieved_rate": 40.0, "good_percent": 10.0, "median_e2el_ms": 400.0, "p99_e2el_ms": 900.0, "saturated": "fewer than 90 % of the offered requests completed", "passed": false}
               ]}),
    );
    let t = steps_table(&result);
    assert!(
        t.contains("knee: rate 32 (target 99 % good; ended by converged)"),
        "{t}"
    );
    assert!(
        t.contains("fail (fewer than 90 % of the offered requests completed)"),
        "{t}"
    );
    assert_eq!(t.lines().count(), 5, "{t}");
}
