//! SSH sessions (DESIGN.md §7): connect, verify the host key against
//! `known_hosts`, log in with a key file, run commands.
//!
//! Built on `ssh2` (libssh2). Host keys are checked by this crate's own
//! [`known_hosts`] reader (plain, `[host]:port`, wildcard and hashed
//! `|1|salt|hash` entries): an unknown host is refused with its fingerprint
//! printed as `ssh` prints it, unless [`SshConfig::accept_new`] is set (then
//! the key is appended); a changed key is always refused.
//!
//! ```no_run
//! use gpu_metrics::ssh::{SshConfig, SshSession};
//!
//! # fn main() -> Result<(), gpu_metrics::ssh::SshError> {
//! let config = SshConfig::builder("login1.cluster", "svc-aif", "/etc/aif/id_ed25519")
//!     .port(22)
//!     .build()?;
//! let session = SshSession::connect(&config)?;
//! let out = session.exec(&["squeue".into(), "--me".into(), "--noheader".into()])?;
//! assert_eq!(out.status, 0);
//! # Ok(())
//! # }
//! ```
//!
//! Tunnels built on the same sessions are in [`crate::tunnel`].
//!
//! The files, by concern: `config.rs` (settings and builder), `error.rs`
//! ([`SshError`], libssh2 codes), `connect.rs` (TCP, handshake, host-key
//! check, login), `exec.rs` ([`SshSession::exec`]), `poll.rs` (`poll(2)`
//! helpers for non-blocking sessions, shared with the tunnel pump),
//! [`known_hosts`]. Shell quoting is [`crate::shell`] (no SSH needed).
//! All of it is behind the `ssh` feature (default on).

mod args;
mod config;
mod connect;
mod error;
mod exec;
pub mod known_hosts;
mod poll;

pub use crate::shell::{shell_join, shell_quote};
pub use args::{CurrentUser, CurrentUserError, SshArgs, SshArgsError, SshFlag, current_user};
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_PORT, Passphrase, SshConfig,
    SshConfigBuilder, default_known_hosts,
};
pub use error::SshError;
pub use exec::{ExecOutput, SshSession};
pub use known_hosts::{
    HostKeyStatus, KnownHosts, fingerprint_sha256, key_type_label, key_type_of_blob, lookup_name,
};

pub(crate) use connect::{Connection, duration_ms};
pub(crate) use error::{is_channel_error, is_eagain};
pub(crate) use poll::poll;
