//! Sources → dashboard JSON (classic format, `schemaVersion` 41/42).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::DashboardError;

/// The schema versions file provisioning takes as classic JSON.
pub const SCHEMA_VERSIONS: [u64; 2] = [41, 42];

/// The prefix of a string that names a sibling file to inline.
pub const FILE_PREFIX: &str = "file:";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DashboardError + '_ {
    move |source| DashboardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json(path: &Path) -> Result<Value, DashboardError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| DashboardError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DashboardError> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()).map_err(io(dir)))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

/// Replaces every `"file:NAME"` string under `v` by the text of `dir/NAME`
/// (`"file:A+B"`: the texts of `A` and `B`, joined; form code cannot import,
/// so a helper shared by two snippets is joined in front of each).
fn inline_files(v: &mut Value, dir: &Path, panel: &Path) -> Result<(), DashboardError> {
    match v {
        Value::String(s) if s.starts_with(FILE_PREFIX) => {
            let mut text = String::new();
            for name in s[FILE_PREFIX.len()..].split('+') {
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    return Err(DashboardError::Invalid {
                        path: panel.to_path_buf(),
                        field: s.clone(),
                        reason: "a file reference names files beside the panel, without a path"
                            .into(),
                    });
                }
                let path = dir.join(name);
                text.push_str(&fs::read_to_string(&path).map_err(io(&path))?);
            }
            *s = text;
        }
        Value::Array(a) => {
            for x in a {
                inline_files(x, dir, panel)?;
            }
        }
        Value::Object(o) => {
            for x in o.values_mut() {
                inline_files(x, dir, panel)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Builds one dashboard from its source directory.
///
/// # Errors
/// Unreadable or invalid JSON, a `schemaVersion` other than 41/42, a missing
/// `uid`, a `panels` key in `dashboard.json`, a panel file not named `NN_<name>.json`,
/// a `file:` reference to a missing file.
pub fn build_one(dir: &Path) -> Result<Value, DashboardError> {
    let path = dir.join("dashboard.json");
    let mut dash = read_json(&path)?;
    let invalid = |field: &str, reason: &str| DashboardError::Invalid {
        path: path.clone(),
        field: field.into(),
        reason: reason.into(),
    };
    let obj = dash
        .as_object_mut()
        .ok_or_else(|| invalid("(root)", "must be an object"))?;
    match obj.get("schemaVersion").and_then(Value::as_u64) {
        Some(v) if SCHEMA_VERSIONS.contains(&v) => {}
        _ => return Err(invalid("schemaVersion", "must be 41 or 42 (classic JSON)")),
    }
    if !obj.get("uid").is_some_and(Value::is_string) {
        return Err(invalid("uid", "a fixed string uid is required"));
    }
    if obj.contains_key("panels") {
        return Err(invalid("panels", "panels live in panels/NN_<name>.json"));
    }
    let panels_dir = dir.join("panels");
    let mut panels = Vec::new();
    for p in sorted_entries(&panels_dir)? {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !name.ends_with(".json") {
            continue;
        }
        let b = name.as_bytes();
        if !(b.len() > 8 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b'_') {
            return Err(DashboardError::Invalid {
                path: p.clone(),
                field: "(file name)".into(),
                reason: "panel files are named NN_<name>.json".into(),
            });
        }
        let mut panel = read_json(&p)?;
        inline_files(&mut panel, &panels_dir, &p)?;
        panels.push(panel);
    }
    obj.insert("panels".into(), Value::Array(panels));
    Ok(dash)
}

/// Builds every dashboard under `src` (one directory each), keyed by directory name.
///
/// # Errors
/// As [`build_one`], for the first dashboard that fails.
pub fn build_all(src: &Path) -> Result<BTreeMap<String, Value>, DashboardError> {
    let mut out = BTreeMap::new();
    for d in sorted_entries(src)? {
        if d.join("dashboard.json").is_file() {
            let name = d
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            out.insert(name, build_one(&d)?);
        }
    }
    Ok(out)
}

/// The text written to `dist/<name>.json`: pretty JSON, keys sorted, final newline.
pub fn render(dashboard: &Value) -> String {
    let mut s = serde_json::to_string_pretty(dashboard).unwrap_or_default();
    s.push('\n');
    s
}

/// Builds `src` into `dist`, removing `dist/*.json` no source produces.
///
/// # Errors
/// As [`build_all`], or a file that cannot be written.
pub fn write_dist(src: &Path, dist: &Path) -> Result<Vec<PathBuf>, DashboardError> {
    let built = build_all(src)?;
    fs::create_dir_all(dist).map_err(io(dist))?;
    for old in sorted_entries(dist)? {
        let stem = old.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if old.extension().is_some_and(|e| e == "json") && !built.contains_key(stem) {
            fs::remove_file(&old).map_err(io(&old))?;
        }
    }
    let mut written = Vec::new();
    for (name, dash) in &built {
        let path = dist.join(format!("{name}.json"));
        fs::write(&path, render(dash)).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The `dist/` files that differ from what `src` builds (missing, stale, extra).
///
/// # Errors
/// As [`build_all`].
pub fn stale_dist(src: &Path, dist: &Path) -> Result<Vec<String>, DashboardError> {
    let built = build_all(src)?;
    let mut stale = Vec::new();
    for (name, dash) in &built {
        let path = dist.join(format!("{name}.json"));
        match fs::read_to_string(&path) {
            Ok(t) if t == render(dash) => {}
            Ok(_) => stale.push(format!("{name}.json differs from its sources")),
            Err(_) => stale.push(format!("{name}.json is missing")),
        }
    }
    if let Ok(entries) = sorted_entries(dist) {
        for p in entries {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if p.extension().is_some_and(|e| e == "json") && !built.contains_key(stem) {
                stale.push(format!("{stem}.json has no source"));
            }
        }
    }
    Ok(stale)
}
