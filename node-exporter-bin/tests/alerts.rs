//! `deploy/prometheus/alerts.yml`: the real `promtool` checks it and runs its
//! unit tests (`alerts_test.yml`); every rule has a severity, a summary and a
//! description, and a case where it fires and one where it does not; every
//! metric name and label value it uses is one the code emits (the exporter's
//! names from the binary itself, run once in each naming scheme and once
//! pushing to a real Pushgateway; the API's checked against its source).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aif_testbed::{Pushgateway, free_port, require_binary, wait_until};
use support::{EXE, Exporter};

/// Metrics only the exporter's failure paths record (a counter appears on its
/// first increment), so a healthy run does not show them: each must be
/// recorded by name in the file given.
const EVENT_ONLY: &[(&str, &str)] = &[
    (
        "aif_exporter_dropped_batches_total",
        "gpu-metrics-lib/src/agent.rs",
    ),
    (
        "aif_exporter_dropped_batches_total",
        "gpu-metrics-lib/src/delivery.rs",
    ),
    (
        "aif_exporter_dropped_samples_total",
        "gpu-metrics-lib/src/delivery.rs",
    ),
];

/// The API's metrics the rules use, and the file that renders each (the
/// tunnel's only with `--reverse-tunnel`, which needs an SSH login node).
const API_METRICS: &[(&str, &str)] = &[
    ("aif_api_reverse_tunnel_up", "bench-api/src/tunnel.rs"),
    ("aif_api_reverse_tunnel_held", "bench-api/src/tunnel.rs"),
    ("aif_api_launch_failures_total", "bench-api/src/metrics.rs"),
    ("aif_benchmark_runs", "bench-api/src/metrics.rs"),
];

/// Series Prometheus makes itself for every scrape target.
const PROMETHEUS_METRICS: &[&str] = &["up"];

/// Where label values other than `job` must appear as string literals.
const LABEL_VALUE_SOURCES: &[&str] = &[
    "gpu-metrics-lib/src",
    "bench-api/src",
    "node-exporter-bin/src",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn promtool(args: &[&str]) -> (bool, String) {
    let bin = require_binary("promtool", "prometheus").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(&bin)
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("$ promtool {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

/// One alerting rule of alerts.yml.
#[derive(Debug)]
struct Rule {
    name: String,
    expr: String,
    /// The rule's lines, `- alert:` included.
    lines: Vec<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The rules of a rules file written as alerts.yml is: `- alert: NAME` opens a
/// rule, `expr:` is inline or a block scalar (`|`, `>-`, …).
fn parse_rules(text: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            rules.push(Rule {
                name: name.trim().to_string(),
                expr: String::new(),
                lines: vec![line.to_string()],
            });
        } else if t.starts_with("- name:") || t.starts_with("- record:") {
            // A new group (or a recording rule) ends the alert.
            rules.push(Rule {
                name: String::new(),
                expr: String::new(),
                lines: Vec::new(),
            });
        } else if let Some(r) = rules.last_mut() {
            r.lines.push(line.to_string());
        }
    }
    rules.retain(|r| !r.name.is_empty());
    for r in &mut rules {
        let Some(at) = r
            .lines
            .iter()
            .position(|l| l.trim_start().starts_with("expr:"))
        else {
            continue;
        };
        let head = &r.lines[at];
        let value = head.trim_start()["expr:".len()..].trim();
        r.expr = if value.starts_with('|') || value.starts_with('>') {
            r.lines[at + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(head))
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            value.to_string()
        };
    }
    rules
}

/// `(alertname, fires)` for every `alert_rule_test` item of a promtool test
/// file: `fires` is false for `exp_alerts: []`.
fn parse_cases(text: &str) -> Vec<(String, bool)> {
    let mut cases = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ");
        if line.trim_start().starts_with("- eval_time:") {
            current = None;
        }
        if let Some(name) = t.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let Some(rest) = t.strip_prefix("exp_alerts:") {
            let name = current.take().unwrap_or_else(|| {
                panic!("alerts_test.yml:{}: exp_alerts before alertname", n + 1)
            });
            cases.push((name, rest.trim() != "[]"));
        }
    }
    cases
}

/// A PromQL label matcher: label, operator, value.
type Matcher = (String, String, String);

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "atan2",
];
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names and label matchers of a PromQL expression: identifiers
/// that are not functions, keywords or label names.
fn scan_promql(expr: &str) -> (BTreeSet<String>, Vec<Matcher>) {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut matchers = Vec::new();
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_ws = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let read_string = |mut i: usize| -> (String, usize) {
        let quote = chars[i];
        let mut s = String::new();
        i += 1;
        while i < chars.len() && chars[i] != quote {
            if chars[i] == '\\' && i + 1 < chars.len() {
                i += 1;
            }
            s.push(chars[i]);
            i += 1;
        }
        (s, i + 1)
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = read_string(i).1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= chars.len() || chars[i] == '}' {
                    i += 1;
                    break;
                }
                if chars[i] == ',' {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let label: String = chars[start..i].iter().collect();
                i = skip_ws(i);
                let start = i;
                while i < chars.len() && matches!(chars[i], '=' | '!' | '~') {
                    i += 1;
                }
                let op: String = chars[start..i].iter().collect();
                i = skip_ws(i);
                assert!(
                    i < chars.len() && matches!(chars[i], '"' | '\'' | '`'),
                    "cannot read the matcher of {label} in: {expr}"
                );
                let (value, next) = read_string(i);
                i = next;
                matchers.push((label, op, value));
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = skip_ws(i);
            let call = after < chars.len() && chars[after] == '(';
            if LABEL_LISTS.contains(&word.as_str()) && call {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    (names, matchers)
}

/// The metric names of a text exposition.
fn exposition_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

fn once(args: &[&str]) -> String {
    let out = Command::new(EXE)
        .args(["--source", "simulated", "--gpus", "2", "--once"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SLURM_JOB_ID")
        .output()
        .expect("spawn aif-node-exporter");
    assert!(
        out.status.success(),
        "aif-node-exporter --once {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn alerts() -> Vec<Rule> {
    let rules = parse_rules(&read("deploy/prometheus/alerts.yml"));
    assert!(!rules.is_empty(), "no `- alert:` in alerts.yml");
    for r in &rules {
        assert!(!r.expr.is_empty(), "{}: no expr", r.name);
    }
    rules
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let rules = alerts();
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(
        ok,
        "promtool check rules deploy/prometheus/alerts.yml:\n{out}"
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "promtool found another number of rules than the {} `- alert:` lines:\n{out}",
        rules.len()
    );
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(
        ok,
        "promtool test rules deploy/prometheus/alerts_test.yml:\n{out}"
    );
}

#[test]
fn every_rule_has_a_severity_a_runbook_and_a_firing_and_a_quiet_case() {
    let rules = alerts();
    let mut seen = BTreeSet::new();
    for r in &rules {
        assert!(seen.insert(r.name.as_str()), "{} defined twice", r.name);
        let has = |prefix: &str| r.lines.iter().any(|l| l.trim_start().starts_with(prefix));
        let severity = r
            .lines
            .iter()
            .find_map(|l| l.trim_start().strip_prefix("severity:"))
            .map(|s| s.trim().trim_matches('"'))
            .unwrap_or_else(|| panic!("{}: no severity label", r.name));
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{}: severity {severity:?} is not critical, warning or info",
            r.name
        );
        for key in ["annotations:", "summary:", "description:"] {
            assert!(has(key), "{}: no {key}", r.name);
        }
    }
    let cases = parse_cases(&read("deploy/prometheus/alerts_test.yml"));
    let mut by_rule: BTreeMap<&str, (usize, usize)> =
        rules.iter().map(|r| (r.name.as_str(), (0, 0))).collect();
    for (name, fires) in &cases {
        let counts = by_rule
            .get_mut(name.as_str())
            .unwrap_or_else(|| panic!("alerts_test.yml tests {name}, which alerts.yml lacks"));
        if *fires {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    for (name, (fires, quiet)) in &by_rule {
        println!("{name}: {fires} firing, {quiet} quiet");
        assert!(*fires > 0, "{name} has no case where it fires");
        assert!(*quiet > 0, "{name} has no case where it does not fire");
    }
}

#[test]
fn every_metric_and_label_value_in_the_rules_is_one_the_code_emits() {
    // Where each name comes from, for the report and the assertion.
    let mut emitted: BTreeMap<String, String> = BTreeMap::new();
    for (scheme, args) in [
        ("native", &[][..]),
        ("dcgm", &["--metric-names", "dcgm"][..]),
    ] {
        for name in exposition_names(&once(args)) {
            emitted
                .entry(name)
                .or_insert_with(|| format!("aif-node-exporter --once ({scheme})"));
        }
    }

    // The self-metrics, from a running exporter pushing to a real Pushgateway
    // and failing to reach a remote-write receiver (both sinks' series).
    let pgw = Pushgateway::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::Builder::new()
        .prefix("aif-alerts-")
        .tempdir()
        .expect("tempdir");
    let buffer = dir.path().join("buf.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let nowhere = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    let exp = Exporter::start(
        dir.path(),
        &[
            "--source",
            "simulated",
            "--gpus",
            "1",
            "--interval",
            "100ms",
            "--buffer",
            buffer.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--pushgateway",
            &pgw.url(),
            "--remote-write",
            &nowhere,
            "--instance",
            "node-a",
        ],
    );
    let wanted = [
        "aif_exporter_buffer_pending_batches{sink=\"remote_write\"}",
        "aif_exporter_buffer_oldest_unsent_age_seconds{sink=\"remote_write\"}",
        "aif_exporter_pushes_total{sink=\"remote_write\"",
        "aif_exporter_tick_lateness_seconds",
        "aif_exporter_evicted_batches_total",
    ];
    let (mut scraped, mut pushed) = (String::new(), String::new());
    let ready = wait_until(Duration::from_secs(30), || {
        scraped = exp.scrape();
        pushed = pgw.metrics_text().unwrap_or_default();
        wanted.iter().all(|w| scraped.contains(w))
            && pushed.contains("push_time_seconds{")
            && pushed.contains("aif_exporter_tick_lateness_seconds{")
    });
    assert!(
        ready,
        "the exporter's self-metrics did not appear within 30 s:\n--- /metrics\n{scraped}\n--- Pushgateway\n{pushed}\n--- log\n{}",
        exp.log_text()
    );
    // What Prometheus gets from the Pushgateway: the push group's job and
    // instance on the self-metrics and on push_time_seconds.
    for name in ["push_time_seconds", "aif_exporter_tick_lateness_seconds"] {
        assert!(
            aif_testbed::metric_value(&pushed, name, &[("job", "aif_gpu"), ("instance", "node-a")])
                .is_some(),
            "{name} with job=\"aif_gpu\", instance=\"node-a\" not on the Pushgateway:\n{pushed}"
        );
    }
    for name in exposition_names(&scraped) {
        emitted
            .entry(name)
            .or_insert_with(|| "aif-node-exporter /metrics".into());
    }
    for name in exposition_names(&pushed) {
        emitted
            .entry(name)
            .or_insert_with(|| "the Pushgateway's /metrics".into());
    }
    for (name, file) in EVENT_ONLY {
        assert!(
            read(file).contains(&format!("counter!(\"{name}\"")),
            "{file} no longer records {name}"
        );
        emitted
            .entry((*name).into())
            .or_insert_with(|| format!("{file} (on failure only)"));
    }
    for (name, file) in API_METRICS {
        assert!(
            read(file).contains(&format!("\"{name}\"")),
            "{file} no longer renders {name}"
        );
        emitted.insert((*name).into(), (*file).into());
    }
    for name in PROMETHEUS_METRICS {
        emitted.insert((*name).into(), "Prometheus, per target".into());
    }

    let jobs: BTreeSet<String> = read("deploy/prometheus/prometheus.yml")
        .lines()
        .filter_map(|l| {
            l.trim_start_matches([' ', '#', '-'])
                .strip_prefix("job_name:")
                .map(|j| j.trim().trim_matches(['\'', '"']).to_string())
        })
        .chain(["aif_gpu".to_string()]) // the exporter's --job default, seen above
        .collect();
    let mut sources = String::new();
    for dir in LABEL_VALUE_SOURCES {
        collect_rs(&repo().join(dir), &mut sources);
    }

    let mut used = BTreeMap::new();
    let mut problems = Vec::new();
    for r in alerts() {
        let (names, matchers) = scan_promql(&r.expr);
        assert!(!names.is_empty(), "{}: no metric in {}", r.name, r.expr);
        for n in names {
            match emitted.get(&n) {
                Some(from) => {
                    used.insert(n, from.clone());
                }
                None => problems.push(format!("{}: metric {n} is emitted by nothing", r.name)),
            }
        }
        for (label, op, value) in matchers {
            if op.starts_with('!') || value.is_empty() {
                continue;
            }
            let values: Vec<&str> = if op == "=~" {
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for v in values {
                let known = if label == "job" {
                    jobs.contains(v)
                } else {
                    sources.contains(&format!("\"{v}\""))
                };
                if !known {
                    problems.push(format!(
                        "{}: {label}=\"{v}\" is a value nothing emits",
                        r.name
                    ));
                }
            }
        }
    }
    for (name, from) in &used {
        println!("{name}: {from}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Appends the text of every `.rs` file under `dir`.
fn collect_rs(dir: &Path, out: &mut String) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

#[test]
fn the_promql_scanner_finds_names_and_matchers_only() {
    let (names, matchers) = scan_promql(
        "sum by (job) (rate(a_total{x=\"1\",y=~'p|q'}[5m] offset 1h)) > ignoring(y) b\n\
         and on(instance) time() - c > 0.25 unless d offset 10m",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_total", "b", "c", "d"]
    );
    assert_eq!(
        matchers,
        [
            ("x".into(), "=".into(), "1".into()),
            ("y".into(), "=~".into(), "p|q".into())
        ]
    );
}
