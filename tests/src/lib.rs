//! # aif-testbed: the real servers the tests use (DESIGN.md §9)
//!
//! Every server runs from Debian's packages, on `127.0.0.1` (or inside the
//! test's own network namespaces, [`netns`]), on a free port, in
//! a temporary directory, and is stopped by PID when its handle is dropped. A
//! missing binary **fails** the test with the Debian package to install; nothing
//! is skipped silently. When a test fails (the thread is panicking at drop), the
//! server's directory and log are kept and their path printed.
//!
//! ```no_run
//! let pgw = aif_testbed::Pushgateway::start().expect("pushgateway");
//! let text = pgw.metrics_text().expect("GET /metrics");
//! ```

mod cc;
pub mod conn_probe;
pub mod fake_nvml;
pub mod llama;
pub mod netns;
pub mod process;
pub mod prometheus;
pub mod pushgateway;
pub mod slurm;
pub mod slurm_netns;
pub mod slurmrestd;
pub mod sshd;
pub mod text;
pub mod victoria;

pub use fake_nvml::{fake_nvml_in, fake_nvml_mig_in};
pub use llama::LlamaServer;
pub use netns::Topology;
pub use process::{
    ServerProcess, TestbedError, free_port, http_get, port_open, require_binary, wait_until,
};
pub use prometheus::{
    Prometheus, PromtoolReport, instant_vector, promtool_check_metrics, query_api, raw_samples,
    raw_series, url_encode,
};
pub use pushgateway::Pushgateway;
pub use slurm::{SlurmCluster, SlurmOptions};
pub use slurm_netns::{NetnsSlurm, NetnsSlurmOptions};
pub use slurmrestd::{RestdAuth, RestdListen, SlurmRestd};
pub use sshd::{KeyFormat, KeyKind, KeyPair, Sshd, SshdOptions};
pub use text::{metric_value, metric_values};
pub use victoria::VictoriaMetrics;
