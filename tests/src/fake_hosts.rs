//! Per-process host names for tests: an `LD_PRELOAD` shim built from C
//! (`tests/fake_hosts/fake_hosts.c`) that answers `getaddrinfo` for the names
//! in [`FAKE_HOSTS_ENV`] and passes every other name through.
//!
//! It lets a test name a server that only one process can resolve (the SSH
//! gateway), while the other (the exporter) cannot: the name is refused
//! there with `EAI_NONAME`, so no DNS query ever leaves the machine.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cc::shared_library;
use crate::process::TestbedError;

/// The C source, relative to the workspace.
pub const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fake_hosts/fake_hosts.c");

/// The variable the shim reads: `name=127.0.0.1[,name2=]`; an empty address
/// makes the name unknown to the process.
pub const FAKE_HOSTS_ENV: &str = "AIF_FAKE_HOSTS";

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The shim's path, built once per test process; put it in `LD_PRELOAD`.
///
/// # Errors
/// [`TestbedError::MissingBinary`] without a C compiler (package `gcc`), or the
/// compiler's failure.
pub fn fake_hosts_lib() -> Result<PathBuf, TestbedError> {
    shared_library(
        &BUILT,
        SOURCE,
        "fake-hosts",
        "libaif-fake-hosts.so",
        &[],
        &["-ldl"],
    )
}
