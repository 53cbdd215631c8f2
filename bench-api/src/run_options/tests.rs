use serde_json::json;

use super::*;
use crate::model::CreateRun;

fn create(extra: serde_json::Value) -> Result<RunSpec, ApiError> {
    let mut body = json!({"service_id": "svc-x", "duration_seconds": 10});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let req: CreateRun =
        serde_json::from_value(body).map_err(|e| ApiError::bad_field("body", e.to_string()))?;
    req.validate()
}

fn refused(extra: serde_json::Value) -> (String, String) {
    let e = create(extra.clone()).expect_err(&extra.to_string());
    (e.field.clone().unwrap_or_default(), e.error.clone())
}

#[test]
fn datasets_become_the_generators_flags() {
    let spec = create(json!({"workload": "openai_chat", "dataset": {"kind": "random", "input_len": 64, "output_len": 16, "range_ratio": 0.5, "prefix_len": 8}})).unwrap();
    assert_eq!(spec.synthetic_prompt_words, None);
    let mut a = Args::default();
    apply(&spec, &mut a);
    assert_eq!(
        (
            a.dataset.as_deref(),
            a.input_len,
            a.output_len,
            a.range_ratio,
            a.prefix_len
        ),
        (Some("random"), Some(64), Some(16), Some(0.5), Some(8))
    );
    let spec = create(json!({"workload": "openai_completions", "dataset": {"kind": "sharegpt", "path": "/data/sg.json", "output_len": "reference"}})).unwrap();
    let mut a = Args::default();
    apply(&spec, &mut a);
    assert_eq!(
        (a.dataset_path.as_deref(), a.sharegpt_reference_len),
        (Some(std::path::Path::new("/data/sg.json")), true)
    );
    let spec = create(json!({"workload": "openai_completions", "dataset": {"kind": "trace", "path": "/data/t.jsonl"}})).unwrap();
    let mut a = Args {
        concurrency: Some(1),
        ..Args::default()
    };
    apply(&spec, &mut a);
    assert_eq!((a.dataset.as_deref(), a.concurrency), (Some("trace"), None));
}

#[test]
fn dataset_faults_name_the_field() {
    for (extra, field) in [
        (json!({"dataset": {"kind": "random"}}), "dataset"),
        (
            json!({"workload": "openai_chat", "prompts": ["x"], "dataset": {"kind": "random"}}),
            "prompts",
        ),
        (
            json!({"workload": "openai_chat", "max_tokens": 5, "dataset": {"kind": "random"}}),
            "max_tokens",
        ),
        (
            json!({"workload": "openai_chat", "dataset": {"kind": "random", "range_ratio": 1.0}}),
            "dataset.range_ratio",
        ),
        (
            json!({"workload": "openai_chat", "dataset": {"kind": "random", "input_len": 0}}),
            "dataset.input_len",
        ),
        (
            json!({"workload": "openai_chat", "dataset": {"kind": "sharegpt", "path": "rel/sg.json"}}),
            "dataset.path",
        ),
        (
            json!({"workload": "openai_chat", "dataset": {"kind": "sharegpt", "path": "/sg.json", "output_len": 0}}),
            "dataset.output_len",
        ),
        (
            json!({"workload": "openai_chat", "concurrency": 2, "dataset": {"kind": "trace", "path": "/t.jsonl"}}),
            "concurrency",
        ),
        (
            json!({"workload": "openai_chat", "mode": "open_loop", "requests_per_second": 2, "dataset": {"kind": "trace", "path": "/t.jsonl"}}),
            "dataset",
        ),
    ] {
        let (f, msg) = refused(extra.clone());
        assert_eq!(f, field, "{extra}: {msg}");
    }
    // Unknown keys and kinds are refused by the decoder.
    assert!(
        create(json!({"workload": "openai_chat", "dataset": {"kind": "random", "nope": 1}}))
            .is_err()
    );
    assert!(create(json!({"workload": "openai_chat", "dataset": {"kind": "csv"}})).is_err());
    assert!(create(json!({"workload": "openai_chat", "dataset": {"kind": "sharegpt", "path": "/a", "output_len": "longest"}})).is_err());
}

#[test]
fn sweeps_take_the_modes_load_and_need_goodput() {
    let spec = create(json!({"mode": "open_loop", "requests_per_second": 5, "goodput": {"e2el_ms": 100}, "sweep": {"max": 400, "target_percent": 95}})).unwrap();
    let mut a = Args {
        request_rate: Some(5.0),
        duration: Some("10s".into()),
        ..Args::default()
    };
    apply(&spec, &mut a);
    assert_eq!(
        (
            a.sweep.as_deref(),
            a.sweep_min,
            a.sweep_max,
            a.goodput_target,
            a.request_rate,
            a.duration.clone()
        ),
        (Some("rate"), Some(5.0), Some(400.0), Some(95.0), None, None)
    );
    assert_eq!(a.sweep_step_duration.as_deref(), Some("10s"));
    // At most 1 + ceil(log2(400 / 5)) = 8 doublings and 6 halvings to 5 %.
    assert_eq!(spec.sweep.unwrap().max_steps(&spec), 14);
    let spec = create(json!({"concurrency": 2, "goodput": {"e2el_ms": 100}, "sweep": {"max": 64}}))
        .unwrap();
    let mut a = Args {
        concurrency: Some(2),
        ..Args::default()
    };
    apply(&spec, &mut a);
    assert_eq!(
        (a.sweep.as_deref(), a.sweep_min, a.concurrency),
        (Some("concurrency"), Some(2.0), None)
    );
    // A max below the start: the start alone.
    let spec = create(json!({"concurrency": 20, "goodput": {"e2el_ms": 1}, "sweep": {"max": 10}}))
        .unwrap();
    let mut a = Args::default();
    apply(&spec, &mut a);
    assert_eq!((a.sweep_min, a.sweep_max), (Some(20.0), Some(20.0)));
    for (extra, field) in [
        (json!({"sweep": {"max": 10}}), "goodput"),
        (
            json!({"goodput": {"e2el_ms": 1}, "sweep": {"max": 5000}}),
            "sweep.max",
        ),
        (
            json!({"goodput": {"e2el_ms": 1}, "sweep": {"max": 5, "target_percent": 0}}),
            "sweep.target_percent",
        ),
        (
            json!({"goodput": {"e2el_ms": 1}, "sweep": {"max": 5, "tolerance_percent": 101}}),
            "sweep.tolerance_percent",
        ),
        (
            json!({"workload": "openai_chat", "goodput": {"e2el_ms": 1}, "sweep": {"max": 5}, "dataset": {"kind": "trace", "path": "/t"}}),
            "sweep",
        ),
    ] {
        let (f, msg) = refused(extra.clone());
        assert_eq!(f, field, "{extra}: {msg}");
    }
}

#[test]
fn a_tokenizer_path_goes_to_the_generator() {
    let spec =
        create(json!({"workload": "openai_chat", "tokenizer_path": "/models/tok.json"})).unwrap();
    let mut a = Args::default();
    apply(&spec, &mut a);
    assert_eq!(
        a.tokenizer.as_deref(),
        Some(std::path::Path::new("/models/tok.json"))
    );
    assert_eq!(
        refused(json!({"tokenizer_path": "/t.json"})).0,
        "tokenizer_path"
    );
    assert_eq!(
        refused(json!({"workload": "openai_chat", "tokenizer_path": "t.json"})).0,
        "tokenizer_path"
    );
}
