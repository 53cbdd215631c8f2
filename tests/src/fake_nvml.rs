//! The fake `libnvidia-ml.so.1` of DESIGN.md §9, built from C at test time.
//!
//! `tests/fake_nvml/fake_nvml.c` exports the NVML symbols the NVML source uses,
//! with fixed values for two GPUs, and leaves `nvmlDeviceGetTotalEnergyConsumption`
//! and `nvmlDeviceGetDecoderUtilization` out on purpose. GPU 1 is lost from its
//! second utilisation read on. [`fake_nvml_mig_in`] gives the variant built with
//! `-DFAKE_MIG`, where GPU 0 is in MIG mode (see the C file's header).
//!
//! The library keeps per-process state (the call counter), so every caller gets
//! its own copy at its own path: the dynamic loader then loads each copy
//! separately (the library has no SONAME), and parallel tests do not interfere.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cc::shared_library;
use crate::process::TestbedError;

/// The C source, relative to the workspace.
pub const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fake_nvml/fake_nvml.c");

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static BUILT_MIG: OnceLock<Result<PathBuf, String>> = OnceLock::new();

fn copy_into(built: Result<PathBuf, TestbedError>, dir: &Path) -> Result<PathBuf, TestbedError> {
    let path = dir.join("libnvidia-ml.so.1");
    std::fs::copy(built?, &path)?;
    Ok(path)
}

/// A private copy of the fake library in `dir`, ready for
/// `NvmlSource::builder().lib_path(..)` or `aif-node-exporter --nvml-lib`.
///
/// # Errors
/// [`TestbedError::MissingBinary`] without a C compiler (package `gcc`), or the
/// compiler's failure.
pub fn fake_nvml_in(dir: &Path) -> Result<PathBuf, TestbedError> {
    let built = shared_library(&BUILT, SOURCE, "fake-nvml", "libnvidia-ml.so.1", &[], &[]);
    copy_into(built, dir)
}

/// Like [`fake_nvml_in`], with GPU 0 in MIG mode: two MIG devices, GPU
/// instance ids 3 (`1g.10gb`) and 5 (`3g.40gb`).
///
/// # Errors
/// As [`fake_nvml_in`].
pub fn fake_nvml_mig_in(dir: &Path) -> Result<PathBuf, TestbedError> {
    let built = shared_library(
        &BUILT_MIG,
        SOURCE,
        "fake-nvml-mig",
        "libnvidia-ml.so.1",
        &["-DFAKE_MIG"],
        &[],
    );
    copy_into(built, dir)
}
