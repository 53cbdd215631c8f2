//! Static checks on the built dashboards (issue 11 §5): panel ids, layout,
//! data sources, PromQL through Prometheus's own parser (`promtool check rules`),
//! metric names against the catalogue, forms, URLs, `console.log`.

use std::collections::BTreeMap;
use std::process::Command;

use aif_dashboards::{build, catalogue, checks, crate_dir, repo_dir};
use aif_testbed::process::require_binary;
use serde_json::Value;

fn built() -> BTreeMap<String, Value> {
    build::build_all(&crate_dir().join("src")).expect("the dashboard sources build")
}

/// A value for each dashboard variable, as a static stand-in for what its query returns.
fn sample_values(dashboard: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for v in checks::variables(dashboard) {
        let name = v["name"].as_str().unwrap_or("").to_string();
        let value = match name.as_str() {
            "datasource" => "aif-prometheus",
            "gpu" => "0",
            _ => "sample-value",
        };
        m.insert(name, value.to_string());
    }
    m
}

fn all_findings(f: impl Fn(&Value) -> Vec<String>) -> Vec<String> {
    built()
        .iter()
        .flat_map(|(name, d)| f(d).into_iter().map(move |x| format!("{name}: {x}")))
        .collect()
}

#[test]
fn panel_ids_are_unique() {
    let f = all_findings(checks::duplicate_panel_ids);
    assert!(f.is_empty(), "{}", f.join("\n"));
}

#[test]
fn panels_do_not_overlap() {
    let f = all_findings(checks::overlapping_panels);
    assert!(f.is_empty(), "{}", f.join("\n"));
}

#[test]
fn every_datasource_is_provisioned() {
    let provisioned = checks::provisioned_datasources(
        &repo_dir().join("deploy/grafana/provisioning/datasources"),
    )
    .expect("read deploy/grafana/provisioning/datasources");
    assert!(
        provisioned.contains(&("prometheus".into(), "aif-prometheus".into())),
        "{provisioned:?}"
    );
    let f = all_findings(|d| checks::unprovisioned_datasources(d, &provisioned));
    assert!(f.is_empty(), "{}", f.join("\n"));
    let mut proxied = 0;
    for (name, d) in built() {
        for uid in checks::proxied_uids(&d) {
            proxied += 1;
            assert!(
                provisioned.iter().any(|(_, u)| *u == uid),
                "{name}: a URL goes through the data-source proxy to `{uid}`, which is not provisioned"
            );
        }
    }
    assert!(proxied > 0, "the forms post through the data-source proxy");
}

#[test]
fn forms_send_custom_payloads_and_ids_are_unique() {
    let f = all_findings(checks::form_problems);
    assert!(f.is_empty(), "{}", f.join("\n"));
    let admin = &built()["administration"];
    assert_eq!(
        checks::forms(admin).len(),
        2,
        "Start service, Start benchmark"
    );
}

#[test]
fn form_code_has_nothing_grafana_would_interpolate() {
    let f = all_findings(checks::interpolated_form_code);
    assert!(f.is_empty(), "{}", f.join("\n"));
    let bad = serde_json::json!({"panels": [{"id": 1, "type": "volkovlabs-form-panel",
        "options": {"update": {"code": "notify(`run ${id}`)"}, "elements": []}}]});
    assert_eq!(checks::interpolated_form_code(&bad).len(), 1);
}

#[test]
fn urls_are_relative() {
    let f = all_findings(checks::absolute_urls);
    assert!(f.is_empty(), "{}", f.join("\n"));
}

#[test]
fn no_console_log_in_shipped_code() {
    let f = all_findings(checks::console_logs);
    assert!(f.is_empty(), "{}", f.join("\n"));
}

/// Runs `promtool check rules` on every expression as a recording rule.
fn promtool_check(exprs: &[(String, String)]) -> (bool, String) {
    let promtool = require_binary("promtool", "prometheus").expect("promtool");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (record, expr) in exprs {
        let quoted = serde_json::to_string(expr).expect("quote");
        yaml.push_str(&format!(
            "      - record: {record}\n        expr: {quoted}\n"
        ));
    }
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, yaml).expect("write rules");
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn substituted_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, d) in built() {
        let values = sample_values(&d);
        for q in checks::prom_queries(&d) {
            let expr = checks::substitute(&q.expr, &values).unwrap_or_else(|missing| {
                panic!("{name}: {}: unknown variables {missing:?}", q.place)
            });
            out.push((
                format!("{name}:{}", q.place),
                format!("{name}:{}", q.record),
                expr,
            ));
        }
    }
    out
}

#[test]
fn every_promql_expression_parses() {
    let queries = substituted_queries();
    assert!(queries.len() > 30, "only {} queries found", queries.len());
    let rules: Vec<(String, String)> = queries
        .iter()
        .map(|(_, r, e)| (r.clone(), e.clone()))
        .collect();
    let (ok, text) = promtool_check(&rules);
    assert!(
        ok,
        "promtool check rules refused a dashboard query:\n{text}"
    );
}

#[test]
fn promtool_check_refuses_a_broken_expression() {
    // The check above can fail: the same path refuses what Prometheus cannot parse.
    let (ok, text) = promtool_check(&[(
        "broken".into(),
        "sum by (gpu (rate(aif_gpu_power_watts[1m]))".into(),
    )]);
    assert!(!ok, "promtool accepted a broken expression: {text}");
}

#[test]
fn every_metric_named_exists() {
    let known = catalogue::known_metrics();
    let mut unknown = Vec::new();
    let mut named = 0;
    for (place, _, expr) in substituted_queries() {
        for m in checks::metric_names(&expr) {
            named += 1;
            if !catalogue::is_known(&known, &m) {
                unknown.push(format!("{place}: `{m}` is in no catalogue"));
            }
        }
    }
    assert!(named > 30, "only {named} metric names found");
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
}

#[test]
fn catalogue_has_the_exporter_self_metrics() {
    let own = catalogue::exporter_self_metrics();
    for m in [
        "aif_exporter_buffer_pending_batches",
        "aif_exporter_buffer_oldest_unsent_age_seconds",
    ] {
        assert!(own.contains(m), "{m} missing from {own:?}");
    }
    let known = catalogue::known_metrics();
    assert!(catalogue::is_known(&known, "aif_gpu_power_watts"));
    assert!(catalogue::is_known(
        &known,
        "aif_benchmark_request_duration_seconds_bucket"
    ));
    assert!(!catalogue::is_known(&known, "aif_gpu_power_watt"));
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = checks::metric_names(
        r#"histogram_quantile(0.9, sum by (le, run_id) (rate(foo_bucket{run_id=~"a|b", x="rate(y)"}[1m]))) / on(instance) group_left(gpu) bar offset 5m + time() - 2e3 * baz:rule"#,
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["bar", "baz:rule", "foo_bucket"]);
    let values = BTreeMap::from([("gpu".to_string(), "0".to_string())]);
    assert_eq!(
        checks::substitute("x{gpu=~\"$gpu\"}[$__rate_interval] ${gpu}", &values),
        Ok("x{gpu=~\"0\"}[1m] 0".to_string())
    );
    assert_eq!(
        checks::substitute("x{a=\"$nope\"}", &values),
        Err(vec!["nope".to_string()])
    );
}
