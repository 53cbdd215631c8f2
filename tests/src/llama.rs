//! A real inference engine: llama.cpp's HTTP server from the PyPI package
//! `llama-cpp-python[server]`, serving a tiny random-weight llama model that
//! `tests/llama/write_tiny_gguf.py` writes with the `gguf` package (no model
//! hub is reachable). `scripts/test.sh` installs both into
//! `target/llama-venv` (the build of llama.cpp takes a few minutes, once).
//!
//! The server speaks the OpenAI API (`/v1/completions`, `/v1/chat/completions`,
//! streamed or not) on 127.0.0.1 as llama.cpp does: one SSE event per token,
//! `stream_options.include_usage` ignored, a non-streamed answer with `usage`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{ServerProcess, TestbedError, free_port, http_get};

/// The venv `scripts/test.sh` creates: `target/llama-venv` of the workspace
/// (or of `$CARGO_TARGET_DIR`).
pub fn venv() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("llama-venv")
}

/// The venv's Python, or [`TestbedError::MissingBinary`] naming what
/// `scripts/test.sh` installs there.
///
/// # Errors
/// As above.
pub fn python() -> Result<PathBuf, TestbedError> {
    let python = venv().join("bin/python");
    if python.is_file() {
        Ok(python)
    } else {
        Err(TestbedError::MissingBinary {
            binary: python.display().to_string(),
            package: "llama-cpp-python[server] and gguf from PyPI in target/llama-venv \
                      (scripts/test.sh installs them)"
                .into(),
        })
    }
}

/// Writes the tiny model to `dir/tiny.gguf` (`tests/llama/write_tiny_gguf.py`,
/// seeded: the same bytes every time) and returns its path.
///
/// # Errors
/// The venv missing ([`python`]), or the script failing.
pub fn write_model(dir: &Path) -> Result<PathBuf, TestbedError> {
    let python = python()?;
    let model = dir.join("tiny.gguf");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("llama/write_tiny_gguf.py");
    let out = Command::new(&python).arg(&script).arg(&model).output()?;
    if !out.status.success() {
        return Err(TestbedError::Setup {
            command: format!(
                "{} {} {}",
                python.display(),
                script.display(),
                model.display()
            ),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(model)
}

/// A running llama.cpp server on 127.0.0.1 with the tiny model loaded.
#[derive(Debug)]
pub struct LlamaServer {
    server: ServerProcess,
    addr: SocketAddr,
    model: PathBuf,
}

impl LlamaServer {
    /// The model name the server answers to (`model` of requests).
    pub const MODEL: &'static str = "tiny";

    /// Writes the tiny model and starts the server on a free port; waits
    /// (up to 120 s: the model loads in well under a second, Python's imports
    /// take the rest) for `/v1/models`.
    ///
    /// # Errors
    /// [`TestbedError::MissingBinary`] naming `scripts/test.sh` when the venv
    /// is not there; a failed model write; not ready in time.
    pub fn start() -> Result<Self, TestbedError> {
        let python = python()?;
        let dir = tempfile::Builder::new().prefix("aif-llama-").tempdir()?;
        let model = write_model(dir.path())?;
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "llama_cpp.server", "--model"])
            .arg(&model)
            .args([
                "--model_alias",
                Self::MODEL,
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .args(["--n_ctx", "1024", "--n_threads", "1", "--seed", "18"])
            // Its default interrupts a stream when the next request arrives:
            // concurrent requests would each be cut short.
            .args(["--interrupt_requests", "False"]);
        let mut server = ServerProcess::spawn("llama-server", cmd, dir)?;
        let url = format!("http://{addr}/v1/models");
        server.wait_ready(Duration::from_secs(120), || {
            matches!(http_get(&url), Ok((200, _)))
        })?;
        Ok(LlamaServer {
            server,
            addr,
            model,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The model file it serves.
    pub fn model_path(&self) -> &std::path::Path {
        &self.model
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail(4000)
    }
}
