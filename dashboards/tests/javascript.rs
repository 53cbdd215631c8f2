//! The forms' JavaScript under Node's built-in test runner (`node --test`),
//! on the built dashboards (`dashboards/tests/js/*.test.mjs`).

use std::process::Command;

use aif_dashboards::crate_dir;
use aif_testbed::process::require_binary;

#[test]
fn form_javascript_passes_node_tests() {
    let node = require_binary("node", "nodejs").expect("Node.js runs the form tests");
    let dir = crate_dir().join("tests/js");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read tests/js")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());
    let out = Command::new(node)
        .arg("--test")
        .args(&files)
        .output()
        .expect("run node --test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "node --test failed:\n{text}");
    let count = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    assert!(
        count("pass").is_some_and(|n| n >= 15),
        "too few tests passed:\n{text}"
    );
    assert_eq!(count("fail"), Some(0), "{text}");
}
