//! # aif-testbed: the real servers the tests use (DESIGN.md §9)
//!
//! Every server runs from Debian's packages, on `127.0.0.1`, on a free port, in
//! a temporary directory, and is stopped by PID when its handle is dropped. A
//! missing binary **fails** the test with the Debian package to install; nothing
//! is skipped silently. When a test fails (the thread is panicking at drop), the
//! server's directory and log are kept and their path printed.
//!
//! ```no_run
//! let pgw = aif_testbed::Pushgateway::start().expect("pushgateway");
//! let text = pgw.metrics_text().expect("GET /metrics");
//! ```

pub mod process;
pub mod prometheus;
pub mod pushgateway;

pub use process::{ServerProcess, TestbedError, free_port, http_get, port_open, require_binary, wait_until};
pub use prometheus::{Prometheus, PromtoolReport, promtool_check_metrics};
pub use pushgateway::Pushgateway;

/// Path of a binary built by this workspace (`target/<profile>/NAME`), for
/// end-to-end tests that spawn the project's own programs.
///
/// # Panics
/// When the binary has not been built: run `cargo build --workspace` first
/// (`cargo test --workspace` builds every binary before the tests run).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/test-binary → target/<profile>
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}
