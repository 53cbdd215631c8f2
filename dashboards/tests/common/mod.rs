//! Shared by the dashboards' end-to-end tests.

use std::path::PathBuf;

use aif_dashboards::repo_dir;

/// A workspace binary from `AIF_BIN_DIR` (default `$CARGO_TARGET_DIR/debug`
/// or `target/debug`); a missing one fails naming the cargo package to build.
pub fn binary(name: &str, package: &str) -> PathBuf {
    let dir = std::env::var_os("AIF_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("debug")))
        .unwrap_or_else(|| repo_dir().join("target/debug"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p {package}` (scripts/test.sh builds every binary first)",
        bin.display()
    );
    bin
}
