use super::*;

fn build(args: &[&str]) -> Result<Plan, String> {
    let a = Args::try_parse_from(std::iter::once("aif-loadgen").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    a.build().map_err(|e| e.to_string())
}

#[test]
fn engine_defaults_to_events_and_takes_threads() {
    let base = [
        "--url",
        "http://127.0.0.1:1",
        "--duration",
        "1s",
        "--concurrency",
        "1",
    ];
    assert_eq!(build(&base).unwrap().engine, EngineKind::Events);
    let mut v = base.to_vec();
    v.extend_from_slice(&["--engine", "events"]);
    assert_eq!(build(&v).unwrap().engine, EngineKind::Events);
    v.truncate(base.len());
    v.extend_from_slice(&["--engine", "threads"]);
    assert_eq!(build(&v).unwrap().engine, EngineKind::Threads);
}

#[test]
fn bad_input_names_the_flag() {
    let base = ["--url", "http://127.0.0.1:1", "--duration", "1s"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        build(&v)
    };
    for (extra, needle) in [
        (&["--request-rate", "0"][..], "--request-rate"),
        (&["--concurrency", "0"], "--concurrency"),
        (&[], "--concurrency"),
        (
            &["--concurrency", "1", "--request-rate", "5"],
            "--concurrency",
        ),
        (
            &["--request-rate", "5", "--arrivals", "gamma"],
            "--burstiness",
        ),
        (&["--request-rate", "5", "--arrivals", "zipf"], "--arrivals"),
        (
            &["--concurrency", "1", "--max-concurrency", "3"],
            "--max-concurrency",
        ),
        (&["--concurrency", "1", "--warmup", "2s"], "--warmup"),
        (&["--concurrency", "1", "--model", "m"], "--model"),
        (&["--concurrency", "1", "--workload", "chat"], "--prompt"),
        (&["--concurrency", "1", "--goodput", "ttft:5"], "--goodput"),
        (&["--concurrency", "1", "--goodput", "e2el:x"], "--goodput"),
        (
            &["--concurrency", "1", "--header", "bad header"],
            "--header",
        ),
        (&["--concurrency", "1", "--ssh-host", "gw"], "--ssh-host"),
        (&["--concurrency", "1", "--bogus"], "--bogus"),
        (&["--concurrency", "1", "--engine", "fibers"], "--engine"),
    ] {
        let e = with(extra).unwrap_err();
        assert!(e.contains(needle), "{extra:?}: {e}");
    }
    for url in ["127.0.0.1:8000", "https://x", "http://"] {
        let e = build(&["--url", url, "--duration", "1s", "--concurrency", "1"]).unwrap_err();
        assert!(e.contains("--url"), "{url}: {e}");
    }
    let e = build(&[
        "--url",
        "http://127.0.0.1:1",
        "--duration",
        "5",
        "--concurrency",
        "1",
    ])
    .unwrap_err();
    assert!(e.contains("--duration"), "{e}");
}

fn build_env(args: &[&str], procid: Option<&str>) -> Result<Plan, String> {
    let a = Args::try_parse_from(std::iter::once("aif-loadgen").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    a.build_with(procid).map_err(|e| e.to_string())
}

#[test]
fn parts_share_the_load() {
    let base = [
        "--url",
        "http://127.0.0.1:1",
        "--duration",
        "1s",
        "--seed",
        "40",
    ];
    let with = |extra: &[&str], procid: Option<&str>| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        build_env(&v, procid)
    };
    // 10 clients over 3 parts: 4 + 3 + 3.
    let shares: Vec<usize> = (0..3)
        .map(|i| {
            let p = with(
                &["--concurrency", "10", "--parts", "3"],
                Some(&i.to_string()),
            )
            .unwrap();
            assert_eq!(p.part, Part { index: i, count: 3 });
            assert_eq!(p.seed, 40 + i as u64);
            match p.load {
                Load::Closed { concurrency } => concurrency,
                Load::Open { .. } => unreachable!(),
            }
        })
        .collect();
    assert_eq!(shares, [4, 3, 3]);
    let p = with(
        &[
            "--request-rate",
            "90",
            "--max-concurrency",
            "5",
            "--parts",
            "2",
            "--part-index",
            "1",
            "--result-file",
            "/tmp/r-%t.json",
            "--progress-file",
            "/tmp/p-%t.json",
        ],
        Some("0"),
    )
    .unwrap();
    assert_eq!(p.part.index, 1, "--part-index wins over $SLURM_PROCID");
    assert!(
        matches!(p.load, Load::Open { rate, max_concurrency: Some(2), .. } if rate == 45.0),
        "{:?}",
        p.load
    );
    assert_eq!(p.result_file.unwrap(), PathBuf::from("/tmp/r-1.json"));
    assert_eq!(p.progress_file.unwrap(), PathBuf::from("/tmp/p-1.json"));
    // Not split: as before, and $SLURM_PROCID is not read.
    let p = with(&["--concurrency", "3"], Some("x")).unwrap();
    assert_eq!((p.part, p.seed, p.start_at_ms), (Part::default(), 40, None));
    // Inline prompts: the parts start their picks at different places.
    let chat = |i: &str| {
        with(
            &[
                "--concurrency",
                "2",
                "--parts",
                "2",
                "--part-index",
                i,
                "--workload",
                "chat",
                "--prompt",
                "a",
                "--prompt",
                "b",
            ],
            None,
        )
        .unwrap()
        .workload
        .bodies
    };
    assert_ne!(chat("0")[0], chat("1")[0]);

    let now = gpu_metrics::now_ms();
    let soon = (now + 2000).to_string();
    let p = with(&["--concurrency", "1", "--start-at", &soon], None).unwrap();
    assert_eq!(p.start_at_ms, Some(now + 2000));

    for (extra, procid, needles) in [
        (
            &["--concurrency", "1", "--parts", "2", "--part-index", "0"][..],
            None,
            &["--concurrency 1 cannot be shared by --parts 2"][..],
        ),
        (
            &[
                "--request-rate",
                "5",
                "--max-concurrency",
                "2",
                "--parts",
                "3",
            ],
            Some("0"),
            &["--max-concurrency 2 cannot be shared by --parts 3"],
        ),
        (
            &["--concurrency", "2", "--parts", "2"],
            None,
            &["--part-index", "SLURM_PROCID"],
        ),
        (
            &["--concurrency", "2", "--parts", "2"],
            Some("one"),
            &["--part-index", "SLURM_PROCID", "`one`"],
        ),
        (
            &["--concurrency", "2", "--parts", "2"],
            Some("2"),
            &["--part-index", "SLURM_PROCID"],
        ),
        (
            &["--concurrency", "2", "--parts", "2", "--part-index", "2"],
            None,
            &["--part-index", "--parts 2"],
        ),
        (&["--concurrency", "2", "--parts", "0"], None, &["--parts"]),
        (
            &["--concurrency", "2", "--parts", "257"],
            None,
            &["--parts"],
        ),
        (
            &[
                "--concurrency",
                "2",
                "--parts",
                "2",
                "--part-index",
                "0",
                "--result-file",
                "/tmp/r.json",
            ],
            None,
            &["--result-file", "%t"],
        ),
        (
            &["--concurrency", "1", "--start-at", "1700000000"],
            None,
            &["--start-at", "seconds"],
        ),
        (
            &["--concurrency", "1", "--start-at", "99999999999999"],
            None,
            &["--start-at"],
        ),
    ] {
        let e = with(extra, procid).unwrap_err();
        for n in needles {
            assert!(e.contains(n), "{extra:?}: {e}");
        }
    }
}

#[test]
fn a_good_plan() {
    let p = build(&[
        "--url",
        "http://127.0.0.1:8000/",
        "--duration",
        "10s",
        "--warmup",
        "1s",
        "--request-rate",
        "50",
        "--arrivals",
        "gamma",
        "--burstiness",
        "0.5",
        "--max-concurrency",
        "8",
        "--workload",
        "chat",
        "--prompt",
        "a",
        "--prompt",
        "b",
        "--model",
        "m",
        "--max-tokens",
        "16",
        "--goodput",
        "ttft:200",
        "e2el:1000",
    ])
    .unwrap();
    assert_eq!(p.workload.url, "http://127.0.0.1:8000/v1/chat/completions");
    assert_eq!(p.workload.bodies.len(), 2);
    assert_eq!(
        p.load,
        Load::Open {
            rate: 50.0,
            arrivals: Arrivals::Gamma(0.5),
            max_concurrency: Some(8)
        }
    );
    assert_eq!(
        (p.slo.ttft_ms, p.slo.e2el_ms, p.slo.tpot_ms),
        (Some(200.0), Some(1000.0), None)
    );
    assert!(p.run_id.starts_with("run-"));
    assert_eq!(
        split_http_url("http://h:9091/p/").unwrap(),
        ("h".into(), 9091, "/p".into())
    );
}

#[test]
fn the_tokenizer_is_loaded_and_counts_each_prompt_once() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "--url",
        "http://127.0.0.1:1",
        "--duration",
        "1s",
        "--concurrency",
        "2",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        build(&v)
    };
    let missing = dir.path().join("missing.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"model\": 3}").unwrap();
    for f in [&missing, &bad] {
        let f = f.to_str().unwrap();
        let e = with(&[
            "--workload",
            "completions",
            "--prompt",
            "a",
            "--tokenizer",
            f,
        ])
        .unwrap_err();
        assert!(e.starts_with("--tokenizer: ") && e.contains(f), "{e}");
    }
    let good = dir.path().join("tokenizer.json");
    let json = crate::tokenizer::tests::word_level_json(&["a", "b"], serde_json::Value::Null);
    std::fs::write(&good, json).unwrap();
    let good = good.to_str().unwrap();
    let e = with(&["--tokenizer", good]).unwrap_err();
    assert!(
        e.contains("--tokenizer goes with --workload completions|chat"),
        "{e}"
    );
    let p = with(&[
        "--workload",
        "chat",
        "--prompt",
        "a b c",
        "--prompt",
        "b, a!",
        "--tokenizer",
        good,
    ])
    .unwrap();
    assert!(p.tokenizer.is_some() && p.workload.tokenizer.is_some());
    assert_eq!(p.workload.input_tokens, vec![3, 4]);
    // A part's bodies start elsewhere; their counts follow them.
    let p = with(&[
        "--workload",
        "completions",
        "--prompt",
        "a b c",
        "--prompt",
        "b, a!",
        "--parts",
        "2",
        "--part-index",
        "1",
        "--tokenizer",
        good,
    ])
    .unwrap();
    assert_eq!(p.workload.input_tokens, vec![4, 3]);
    let body: serde_json::Value = serde_json::from_slice(&p.workload.bodies[0]).unwrap();
    assert_eq!(body["prompt"], "b, a!");
    let p = with(&["--workload", "completions", "--prompt", "a"]).unwrap();
    assert!(p.tokenizer.is_none() && p.workload.input_tokens.is_empty());
}
