//! Tests of [`super`]: parsing, refusals naming the flag, random lengths.

use clap::Parser;

use super::*;
use crate::arrivals::Arrivals;
use crate::plan::Load;

fn args(extra: &[&str]) -> Args {
    let base = [
        "aif-loadgen",
        "--url",
        "http://127.0.0.1:9",
        "--workload",
        "completions",
    ];
    Args::try_parse_from(base.iter().chain(extra)).expect("parse")
}

fn refusal(extra: &[&str]) -> String {
    match from_args(&args(extra), Part::default(), 1) {
        Err(e) => e.to_string(),
        Ok(d) => panic!("{extra:?} accepted: {d:?}"),
    }
}

const SHAREGPT: &str = r#"[
    {"id": "a", "conversations": [{"from": "human", "value": "hello there"},
                                  {"from": "gpt", "value": "one two three"}]},
    {"id": "b", "conversations": [{"from": "human", "value": "alone"}]},
    {"id": "c", "conversations": [{"from": "system", "value": "be brief"},
                                  {"from": "human", "value": "why"},
                                  {"from": "gpt", "value": "because"},
                                  {"from": "human", "value": "later turn"}]},
    {"id": "d", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "last"}]}
]"#;

#[test]
fn sharegpt_takes_first_human_turns_and_reference_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sg.json");
    std::fs::write(&f, SHAREGPT).unwrap();
    let r = read_sharegpt(&f, ShareGptMaxTokens::Reference).unwrap();
    let got: Vec<_> = r
        .iter()
        .map(|r| (r.prompt.as_str(), r.max_tokens))
        .collect();
    assert_eq!(got, [("hello there", Some(3)), ("why", Some(1))]);
    let r = read_sharegpt(&f, ShareGptMaxTokens::Fixed(7)).unwrap();
    assert!(r.iter().all(|r| r.max_tokens == Some(7)));
    let r = read_sharegpt(&f, ShareGptMaxTokens::Default).unwrap();
    assert!(r.iter().all(|r| r.max_tokens.is_none()));
    // Through the flags: --max-tokens stays the default's.
    let d = from_args(
        &args(&[
            "--dataset",
            "sharegpt",
            "--dataset-path",
            f.to_str().unwrap(),
            "--sharegpt-output-len",
            "9",
        ]),
        Part::default(),
        1,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (d.kind, d.requests.len(), d.requests[0].max_tokens),
        (DatasetKind::ShareGpt, 2, Some(9))
    );
}

#[test]
fn a_malformed_sharegpt_file_names_the_flag_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    let path = f.to_str().unwrap();
    let cases = [
        (
            r#"[{"conversations": []}, {"conversations": [{"from": "human"}]}]"#,
            "entry 1",
        ),
        (r#"[{"conversations": []}, 3]"#, "entry 1"),
        (r#"{"conversations": []}"#, "not ShareGPT JSON"),
        (r#"[{"conversations": []}] trailing"#, "not ShareGPT JSON"),
        ("[]", "no conversation"),
    ];
    for (text, want) in cases {
        std::fs::write(&f, text).unwrap();
        let e = refusal(&["--dataset", "sharegpt", "--dataset-path", path]);
        assert!(
            e.starts_with("--dataset-path:") && e.contains(path) && e.contains(want),
            "{text}: {e}"
        );
    }
    let e = refusal(&[
        "--dataset",
        "sharegpt",
        "--dataset-path",
        "/nonexistent/sg.json",
    ]);
    assert!(
        e.contains("--dataset-path") && e.contains("/nonexistent/sg.json"),
        "{e}"
    );
}

#[test]
fn random_lengths_stay_in_the_ranges_and_repeat_per_seed() {
    let spec = RandomSpec {
        input_len: 100,
        output_len: 20,
        range_ratio: 0.25,
        prefix_len: 5,
    };
    assert_eq!(length_range(100, 0.25), (75, 125));
    assert_eq!(length_range(10, 0.33), (6, 14));
    assert_eq!(length_range(1, 0.9), (1, 2));
    let a = spec.requests(7);
    assert_eq!(a.len(), RANDOM_POOL);
    let prefix: Vec<&str> = a[0].prompt.split(' ').take(5).collect();
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    for r in &a {
        let words: Vec<&str> = r.prompt.split(' ').collect();
        assert_eq!(words[..5], prefix[..], "the prefix is shared");
        ins.push(words.len() - 5);
        outs.push(r.max_tokens.unwrap());
    }
    assert!(ins.iter().all(|n| (75..=125).contains(n)));
    assert!(outs.iter().all(|n| (15..=25).contains(n)));
    // Uniform: both ends are drawn.
    assert!(ins.contains(&75) && ins.contains(&125) && outs.contains(&15) && outs.contains(&25));
    assert_eq!(a, spec.requests(7));
    assert_ne!(a, spec.requests(8));
    let fixed = RandomSpec {
        range_ratio: 0.0,
        prefix_len: 0,
        ..spec
    }
    .requests(1);
    assert!(
        fixed
            .iter()
            .all(|r| r.prompt.split(' ').count() == 100 && r.max_tokens == Some(20))
    );
    let long = RandomSpec {
        input_len: MAX_WORDS,
        ..spec
    };
    assert!(long.pool_size() < RANDOM_POOL && long.pool_size() >= 1);
}

#[test]
fn trace_lines_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.jsonl");
    std::fs::write(
        &f,
        "{\"timestamp\": 1000, \"input_length\": 3, \"output_length\": 2, \"hash_ids\": [1, 2]}\n\n\
         {\"timestamp\": 1250, \"input_length\": 5, \"output_length\": 1}\n",
    )
    .unwrap();
    let lines = read_trace(&f).unwrap();
    let (req, due) = trace_requests(&lines, 1000, 3);
    assert_eq!(due, [0.0, 0.25]);
    assert_eq!(req[1].prompt.split(' ').count(), 5);
    assert_eq!((req[0].max_tokens, req[1].max_tokens), (Some(2), Some(1)));
    let path = f.to_str().unwrap();
    for (text, want) in [
        (
            "{\"timestamp\": 5, \"input_length\": 3, \"output_length\": 2}\nnot json\n",
            "line 2",
        ),
        ("{\"timestamp\": 5, \"input_length\": 3}\n", "line 1"),
        (
            "{\"timestamp\": 5, \"input_length\": 3, \"output_length\": 2}\n{\"timestamp\": 4, \"input_length\": 3, \"output_length\": 2}\n",
            "line 2: timestamp 4 is before",
        ),
        (
            "{\"timestamp\": 5, \"input_length\": 0, \"output_length\": 2}\n",
            "line 1: input_length 0",
        ),
        ("\n", "no requests"),
    ] {
        std::fs::write(&f, text).unwrap();
        let e = refusal(&["--dataset", "trace", "--dataset-path", path]);
        assert!(
            e.starts_with("--dataset-path:") && e.contains(path) && e.contains(want),
            "{text}: {e}"
        );
    }
}

#[test]
fn misplaced_and_missing_flags_are_named() {
    for (extra, want) in [
        (&["--dataset", "zipf"][..], "--dataset: `zipf`"),
        (&["--dataset", "sharegpt"], "--dataset-path is required"),
        (&["--dataset", "trace"], "--dataset-path is required"),
        (
            &["--dataset", "random", "--dataset-path", "x"],
            "--dataset-path goes with",
        ),
        (&["--dataset-path", "x"], "--dataset-path goes with"),
        (
            &["--input-len", "5"],
            "--input-len goes with --dataset random",
        ),
        (
            &["--sharegpt-reference-len"],
            "--sharegpt-reference-len goes with --dataset sharegpt",
        ),
        (
            &["--dataset", "random", "--sharegpt-output-len", "3"],
            "--sharegpt-output-len goes with",
        ),
        (
            &[
                "--dataset",
                "trace",
                "--dataset-path",
                "x",
                "--prefix-len",
                "3",
            ],
            "--prefix-len goes with --dataset random",
        ),
        (
            &["--dataset", "random", "--prompt", "hi"],
            "--prompt replaces --dataset",
        ),
        (
            &["--dataset", "random", "--synthetic-prompt-words", "3"],
            "--synthetic-prompt-words replaces",
        ),
        (
            &["--dataset", "random", "--max-tokens", "3"],
            "--max-tokens does not go with",
        ),
        (
            &["--dataset", "random", "--range-ratio", "1"],
            "--range-ratio: 1 is not in [0, 1)",
        ),
        (
            &["--dataset", "random", "--range-ratio=-0.1"],
            "--range-ratio",
        ),
        (
            &["--dataset", "random", "--input-len", "0"],
            "--input-len: 0",
        ),
        (
            &["--dataset", "random", "--output-len", "0"],
            "--output-len",
        ),
        (
            &[
                "--dataset",
                "sharegpt",
                "--dataset-path",
                "x",
                "--sharegpt-output-len",
                "3",
                "--sharegpt-reference-len",
            ],
            "--sharegpt-reference-len replaces",
        ),
        (
            &[
                "--dataset",
                "sharegpt",
                "--dataset-path",
                "x",
                "--sharegpt-reference-len",
                "--max-tokens",
                "3",
            ],
            "--max-tokens does not go with",
        ),
    ] {
        let e = refusal(extra);
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    let http = Args::try_parse_from(["aif-loadgen", "--dataset", "random"]).unwrap();
    let e = from_args(&http, Part::default(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--dataset goes with --workload completions|chat"),
        "{e}"
    );
}

#[test]
fn a_trace_plan_replays_its_times_and_splits_over_parts() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.jsonl");
    let text: String = (0..5)
        .map(|i| {
            format!(
                "{{\"timestamp\": {}, \"input_length\": 4, \"output_length\": 3}}\n",
                500 + i * 300
            )
        })
        .collect();
    std::fs::write(&f, text).unwrap();
    let path = f.to_str().unwrap();
    let trace = ["--dataset", "trace", "--dataset-path", path];
    let p = args(&trace).build().unwrap();
    assert_eq!(p.trace_due_s.as_deref().unwrap(), [0.0, 0.3, 0.6, 0.9, 1.2]);
    assert_eq!(p.duration, std::time::Duration::from_millis(1201));
    assert_eq!(p.dataset, Some(DatasetKind::Trace));
    assert!(matches!(
        p.load,
        Load::Open {
            arrivals: Arrivals::Trace,
            max_concurrency: None,
            ..
        }
    ));
    let p = args(&[&trace[..], &["--duration", "1s", "--max-concurrency", "2"]].concat())
        .build()
        .unwrap();
    assert_eq!(p.duration, std::time::Duration::from_secs(1));
    assert!(matches!(
        p.load,
        Load::Open {
            max_concurrency: Some(2),
            ..
        }
    ));
    let p = args(&[&trace[..], &["--parts", "2", "--part-index", "1"]].concat())
        .build()
        .unwrap();
    assert_eq!(p.trace_due_s.as_deref().unwrap(), [0.3, 0.9]);
    assert_eq!(p.workload.bodies.len(), 2);
    for flag in [
        ["--request-rate", "5"],
        ["--concurrency", "2"],
        ["--arrivals", "constant"],
    ] {
        let e = args(&[&trace[..], &flag[..]].concat())
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{} does not go with --dataset trace", flag[0])),
            "{e}"
        );
    }
    let e = args(&["--dataset", "random", "--concurrency", "1"])
        .build()
        .unwrap_err()
        .to_string();
    assert_eq!(e, "--duration is required");
}

#[test]
fn random_bodies_carry_their_max_tokens() {
    let p = args(&[
        "--dataset",
        "random",
        "--concurrency",
        "1",
        "--duration",
        "1s",
        "--input-len",
        "8",
        "--output-len",
        "4",
        "--range-ratio",
        "0.5",
        "--seed",
        "2",
    ])
    .build()
    .unwrap();
    assert_eq!(
        (p.prompt_count, p.dataset),
        (RANDOM_POOL, Some(DatasetKind::Random))
    );
    for b in &p.workload.bodies {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        let n = v["max_tokens"].as_u64().unwrap();
        let words = v["prompt"].as_str().unwrap().split(' ').count();
        assert!((2..=6).contains(&n) && (4..=12).contains(&words), "{v}");
    }
}
