//! Dashboards as code (DESIGN.md §10).
//!
//! Sources live in `dashboards/src/<dashboard>/`: `dashboard.json` (everything but
//! the panels) and `panels/NN_<name>.json`, one panel a file, in file-name order.
//! A string value `"file:NAME.js"` anywhere in a panel is replaced by the text of
//! `panels/NAME.js`, so the JavaScript of a form (`getPayload`, `getOptions`,
//! `update.code`, `showIf`) lives in its own file where Node can test it.
//! [`build::build_all`] assembles them; `build-dashboards` writes
//! `dashboards/dist/<dashboard>.json`; [`checks`] holds the static checks the
//! tests run on the result; [`catalogue`] lists every metric a query may name.

pub mod build;
pub mod catalogue;
pub mod checks;

use std::path::PathBuf;

/// Why the dashboards could not be built or checked.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A source file is not valid JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A source is well-formed JSON but not what the build expects.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The crate's directory (where `src/` and `dist/` are).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's root (parent of the crate's directory).
pub fn repo_dir() -> PathBuf {
    crate_dir()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(crate_dir)
}
