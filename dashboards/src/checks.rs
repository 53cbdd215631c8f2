//! Static checks on built dashboards (issue 11 §5). Each returns what is wrong,
//! one line a finding, naming the dashboard and panel; empty means it passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// Grafana's built-in interval variables and the values the checks give them.
pub const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "5m"),
    ("__range_s", "300"),
];

/// Every panel of a dashboard, rows' collapsed panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

fn label(p: &Value) -> String {
    format!(
        "panel {} \"{}\"",
        p["id"],
        p["title"].as_str().unwrap_or("")
    )
}

/// Panel ids that occur more than once, or panels without a numeric id.
pub fn duplicate_panel_ids(dashboard: &Value) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in panels(dashboard) {
        match p["id"].as_u64() {
            Some(id) if !seen.insert(id) => {
                out.push(format!("{}: id {id} is used twice", label(p)))
            }
            Some(_) => {}
            None => out.push(format!("{}: no numeric id", label(p))),
        }
    }
    out
}

/// Top-level panels whose `gridPos` rectangles overlap (or that have none).
pub fn overlapping_panels(dashboard: &Value) -> Vec<String> {
    let mut rects = Vec::new();
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        let g = &p["gridPos"];
        match (
            g["x"].as_u64(),
            g["y"].as_u64(),
            g["w"].as_u64(),
            g["h"].as_u64(),
        ) {
            (Some(x), Some(y), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {
                rects.push((p, x, y, w, h))
            }
            _ => out.push(format!(
                "{}: gridPos missing or outside the 24 columns",
                label(p)
            )),
        }
    }
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            if a.1 < b.1 + b.3 && b.1 < a.1 + a.3 && a.2 < b.2 + b.4 && b.2 < a.2 + a.4 {
                out.push(format!("{} overlaps {}", label(a.0), label(b.0)));
            }
        }
    }
    out
}

fn walk<'a>(v: &'a Value, path: &str, f: &mut impl FnMut(&str, &'a Value)) {
    f(path, v);
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}[{i}]"), f);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                walk(x, &format!("{path}.{k}"), f);
            }
        }
        _ => {}
    }
}

/// Every `datasource` reference `(type, uid)` in the dashboard.
pub fn datasource_refs(dashboard: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    walk(dashboard, "", &mut |_, v| {
        if let Some(ds) = v.get("datasource").and_then(Value::as_object) {
            let t = ds.get("type").and_then(Value::as_str).unwrap_or("");
            let u = ds.get("uid").and_then(Value::as_str).unwrap_or("");
            out.insert((t.to_string(), u.to_string()));
        }
    });
    out
}

/// `(type, uid)` of every data source in a Grafana provisioning directory
/// (`datasources/*.yml`; a small reader for the flat list those files hold).
///
/// # Errors
/// The directory or a file cannot be read.
pub fn provisioned_datasources(dir: &Path) -> std::io::Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let (mut t, mut u) = (None::<String>, None::<String>);
        let mut flush = |t: &mut Option<String>, u: &mut Option<String>| {
            if let (Some(a), Some(b)) = (t.take(), u.take()) {
                out.insert((a, b));
            }
        };
        for line in text.lines() {
            let l = line.trim();
            if l.starts_with("- ") && (l.contains("name:") || l == "-") {
                flush(&mut t, &mut u);
            }
            let l = l.trim_start_matches("- ");
            let value = |k: &str| {
                l.strip_prefix(k)
                    .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
            };
            if let Some(v) = value("type:") {
                t = Some(v);
            } else if let Some(v) = value("uid:") {
                u = Some(v);
            }
        }
        flush(&mut t, &mut u);
    }
    Ok(out)
}

/// Data-source references that nothing provisioned satisfies. A reference to
/// `${name}` must be a `datasource` variable whose type is provisioned.
pub fn unprovisioned_datasources(
    dashboard: &Value,
    provisioned: &BTreeSet<(String, String)>,
) -> Vec<String> {
    let ds_vars: BTreeMap<String, String> = variables(dashboard)
        .into_iter()
        .filter(|v| v["type"] == "datasource")
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_string(),
                v["query"].as_str()?.to_string(),
            ))
        })
        .collect();
    let mut out = Vec::new();
    for (t, u) in datasource_refs(dashboard) {
        if let Some(var) = u.strip_prefix("${").and_then(|s| s.strip_suffix('}')) {
            match ds_vars.get(var) {
                Some(vt) if vt == &t && provisioned.iter().any(|(pt, _)| pt == vt) => {}
                _ => out.push(format!(
                    "data source {t} `{u}`: no datasource variable `{var}` of type {t} with one provisioned"
                )),
            }
        } else if !provisioned.contains(&(t.clone(), u.clone())) {
            out.push(format!("data source {t} uid `{u}` is not provisioned"));
        }
    }
    out
}

/// The dashboard's template variables.
pub fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// One PromQL expression of a dashboard, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromQuery {
    /// `panel 3 "title" A` or `variable gpu`.
    pub place: String,
    /// A name usable as a recording rule's name (`panel_3_A`).
    pub record: String,
    /// The expression as written (with dashboard variables).
    pub expr: String,
    /// For a `label_values(selector, label)` variable, the label; `None` for panel queries.
    pub label: Option<String>,
}

/// Splits `label_values(selector, label)` (Grafana's Prometheus variable query).
pub fn parse_label_values(q: &str) -> Option<(String, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (sel, label) = inner.rsplit_once(',')?;
    Some((sel.trim().to_string(), label.trim().to_string()))
}

/// Every PromQL expression: Prometheus panel targets and `label_values` variables.
pub fn prom_queries(dashboard: &Value) -> Vec<PromQuery> {
    let mut out = Vec::new();
    for v in variables(dashboard) {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        let name = v["name"].as_str().unwrap_or("");
        let (expr, label) = match parse_label_values(q) {
            Some((s, l)) => (s, Some(l)),
            None => (q.to_string(), None),
        };
        out.push(PromQuery {
            place: format!("variable {name}"),
            record: format!("variable_{name}"),
            expr,
            label,
        });
    }
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds_type = t["datasource"]["type"]
                .as_str()
                .or(p["datasource"]["type"].as_str())
                .unwrap_or("");
            if ds_type != "prometheus" {
                continue;
            }
            let r = t["refId"].as_str().unwrap_or("?");
            out.push(PromQuery {
                place: format!("{} target {r}", label(p)),
                record: format!("panel_{}_{r}", p["id"]),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
                label: None,
            });
        }
    }
    out
}

/// Replaces `$name`, `${name}` and `[[name]]` by `values[name]`, Grafana's
/// built-in interval variables by [`BUILTIN_VARIABLES`]; returns the names it
/// could not resolve as `Err`.
///
/// # Errors
/// The variables the expression uses that `values` does not hold.
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> Result<String, Vec<String>> {
    let lookup = |n: &str| -> Option<String> {
        values.get(n).cloned().or_else(|| {
            BUILTIN_VARIABLES
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_string())
        })
    };
    let b = expr.as_bytes();
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let (name, end) = if b.get(i + 1) == Some(&b'{') {
                let close = expr[i..].find('}').map(|c| i + c).unwrap_or(b.len());
                (&expr[i + 2..close.min(b.len())], close + 1)
            } else {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                (&expr[i + 1..j], j)
            };
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => missing.push(name.to_string()),
            }
            i = end.min(b.len());
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// Keywords followed by a parenthesised label list.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other words of PromQL that are not metric names.
const KEYWORDS: &[&str] = &[
    "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2",
];

/// The metric names an expression selects (after [`substitute`]): identifiers
/// that are not functions, aggregations, keywords, label names or durations.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut depth_braces = 0;
    let mut after_grouping = false;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            let q = c;
            i += 1;
            while i < b.len() && b[i] != q {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == b'{' {
            depth_braces += 1;
        } else if c == b'}' {
            depth_braces -= 1;
        } else if c == b'[' {
            // range or subquery duration
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
        } else if c == b'(' && after_grouping {
            // label list of by/without/on/ignoring/group_*
            while i < b.len() && b[i] != b')' {
                i += 1;
            }
            after_grouping = false;
        } else if (c.is_ascii_alphabetic() || c == b'_' || c == b':') && depth_braces == 0 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let rest = expr[i..].trim_start();
            let next_word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A function call, or an aggregation written `sum by (…) (…)`.
            let call = rest.starts_with('(') || next_word == "by" || next_word == "without";
            let prev_digit = start > 0 && b[start - 1].is_ascii_digit();
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                after_grouping = true;
            } else if !call && !prev_digit && !KEYWORDS.contains(&lower.as_str()) {
                out.insert(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Business Forms panels (`volkovlabs-form-panel`).
pub fn forms(dashboard: &Value) -> Vec<&Value> {
    panels(dashboard)
        .into_iter()
        .filter(|p| p["type"] == "volkovlabs-form-panel")
        .collect()
}

/// Forms whose `getPayload` is ignored (`payloadMode` not `custom`) or whose
/// element ids repeat.
pub fn form_problems(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in forms(dashboard) {
        let update = &p["options"]["update"];
        let has_payload = update["getPayload"]
            .as_str()
            .is_some_and(|s| !s.trim().is_empty());
        if has_payload && update["payloadMode"] != "custom" {
            out.push(format!(
                "{}: has a getPayload but payloadMode is {} (the plugin then ignores getPayload)",
                label(p),
                update["payloadMode"]
            ));
        }
        let mut ids = BTreeSet::new();
        for e in p["options"]["elements"].as_array().into_iter().flatten() {
            let id = e["id"].as_str().unwrap_or("");
            if id.is_empty() || !ids.insert(id.to_string()) {
                out.push(format!("{}: element id `{id}` empty or repeated", label(p)));
            }
        }
    }
    out
}

/// `url` values that are absolute (a host the browser would have to resolve)
/// instead of relative to Grafana or to a provisioned data source's base URL.
pub fn absolute_urls(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(dashboard, "", &mut |path, v| {
        if path.ends_with(".url") {
            if let Some(s) = v.as_str() {
                if !s.starts_with('/') || s.starts_with("//") {
                    out.push(format!("{path}: `{s}` is not a relative URL"));
                }
            }
        }
        if let Some(s) = v.as_str() {
            if s.contains("http://") || s.contains("https://") {
                out.push(format!("{path}: names an absolute URL"));
            }
        }
    });
    out
}

/// Strings that still contain `console.log` (debugging left in shipped code).
pub fn console_logs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(dashboard, "", &mut |path, v| {
        if v.as_str().is_some_and(|s| s.contains("console.log")) {
            out.push(format!("{path}: contains console.log"));
        }
    });
    out
}

/// The prefix of a URL through Grafana's data-source proxy.
pub const PROXY_PREFIX: &str = "/api/datasources/proxy/uid/";

/// The data-source uids that URLs reach through Grafana's data-source proxy
/// (`/api/datasources/proxy/uid/<uid>/…`, in `url` values and form code).
pub fn proxied_uids(dashboard: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(dashboard, "", &mut |_, v| {
        if let Some(s) = v.as_str() {
            for (i, _) in s.match_indices(PROXY_PREFIX) {
                let rest = &s[i + PROXY_PREFIX.len()..];
                let uid: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                out.insert(uid);
            }
        }
    });
    out
}

/// Where a form keeps code: `(path, code)` of `update.getPayload`,
/// `update.code`, `initial.code`, `elementValueChanged` and each element's
/// `getOptions`, `showIf`, `disableIf`.
pub fn form_code(panel: &Value) -> Vec<(String, &str)> {
    let o = &panel["options"];
    let mut out = Vec::new();
    for (path, v) in [
        ("update.getPayload", &o["update"]["getPayload"]),
        ("update.code", &o["update"]["code"]),
        ("initial.code", &o["initial"]["code"]),
        ("elementValueChanged", &o["elementValueChanged"]),
    ] {
        if let Some(s) = v.as_str().filter(|s| !s.trim().is_empty()) {
            out.push((path.to_string(), s));
        }
    }
    for e in o["elements"].as_array().into_iter().flatten() {
        for key in ["getOptions", "showIf", "disableIf"] {
            if let Some(s) = e[key].as_str().filter(|s| !s.trim().is_empty()) {
                out.push((format!("elements[{}].{key}", e["id"]), s));
            }
        }
    }
    out
}

/// Form code that Grafana would rewrite: the plugin passes every snippet
/// through `replaceVariables` before compiling it, so `$name`, `${…}` and
/// `[[name]]` (a JavaScript template literal, too) may be replaced by a
/// dashboard variable's value.
pub fn interpolated_form_code(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in forms(dashboard) {
        for (path, code) in form_code(p) {
            let b = code.as_bytes();
            let dollar = b.windows(2).any(|w| {
                w[0] == b'$' && (w[1] == b'{' || w[1] == b'_' || w[1].is_ascii_alphanumeric())
            });
            if dollar || code.contains("[[") {
                out.push(format!(
                    "{}: {path} contains text Grafana interpolates ($name, ${{…}} or [[name]])",
                    label(p)
                ));
            }
        }
    }
    out
}
