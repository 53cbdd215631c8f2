//! Shared C libraries the tests build at run time (the fake NVML): one
//! compiler invocation per library and test process.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::process::{TestbedError, require_binary};

/// Builds `source` into `$TMP/aif-<tag>-<pid>/<file_name>` with `cc -shared`,
/// `defines` before the source and `libs` after it.
fn build(
    source: &str,
    tag: &str,
    file_name: &str,
    defines: &[&str],
    libs: &[&str],
) -> Result<PathBuf, String> {
    let cc = require_binary("cc", "gcc").map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("aif-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join(file_name);
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror"])
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(source)
        .args(libs)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cc failed to build {source}: {status}"));
    }
    Ok(out)
}

/// The library in `cell`, built on first use (see [`build`]).
///
/// # Errors
/// [`TestbedError::MissingBinary`] without a C compiler (package `gcc`), or the
/// compiler's failure.
pub(crate) fn shared_library(
    cell: &OnceLock<Result<PathBuf, String>>,
    source: &str,
    tag: &str,
    file_name: &str,
    defines: &[&str],
    libs: &[&str],
) -> Result<PathBuf, TestbedError> {
    cell.get_or_init(|| build(source, tag, file_name, defines, libs))
        .clone()
        .map_err(|e| {
            if e.contains("not installed") {
                TestbedError::MissingBinary {
                    binary: "cc".into(),
                    package: "gcc".into(),
                }
            } else {
                TestbedError::Io(std::io::Error::other(e))
            }
        })
}
