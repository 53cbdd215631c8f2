//! slurmrestd (Debian `slurmrestd`) in front of a [`SlurmCluster`] started
//! with [`SlurmOptions::jwt`](crate::slurm::SlurmOptions).
//!
//! - runs as the unprivileged user `slurm` (slurmrestd refuses root), through
//!   `setpriv`, with `SLURM_JWT=daemon` (without it 22.05 loads only munge and
//!   refuses every token: "Rejecting thread config token") and
//!   `-a rest_auth/jwt`;
//! - plugins `openapi/v0.0.37,openapi/v0.0.38` (the `dbv*` ones need
//!   slurmdbd, which the testbed has not);
//! - listens on `127.0.0.1:PORT` or a Unix socket in its directory; ready when
//!   it answers HTTP.
//!
//! Jobs submitted through it run as the token's user; slurmrestd refuses
//! tokens for root, so tests use [`SlurmRestd::JOB_USER`]. With
//! [`RestdAuth::Local`] (`rest_auth/local`, Unix socket) they run as
//! slurmrestd's own user, [`SlurmRestd::LOCAL_USER`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{ServerProcess, TestbedError, free_port, require_binary};
use crate::slurm::{SlurmCluster, user_ids};

/// Where slurmrestd listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestdListen {
    /// `127.0.0.1:<free port>`.
    Tcp,
    /// `unix:<dir>/slurmrestd.socket`.
    Unix,
}

/// How slurmrestd authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestdAuth {
    /// `rest_auth/jwt`: `X-SLURM-USER-NAME` + `X-SLURM-USER-TOKEN`.
    Jwt,
    /// `rest_auth/local`: the Unix socket's peer (root is accepted and acts
    /// as slurmrestd's own user, `slurm`); needs [`RestdListen::Unix`].
    Local,
}

/// A running slurmrestd.
#[derive(Debug)]
pub struct SlurmRestd {
    process: ServerProcess,
    addr: Option<SocketAddr>,
    socket: PathBuf,
}

fn http_answer(s: &mut dyn ReadWrite) -> bool {
    let req = b"GET /openapi HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut buf = [0u8; 12];
    s.write_all(req).is_ok() && s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

/// Any HTTP answer on `addr`, or on `socket` without one.
fn answers(addr: Option<SocketAddr>, socket: &Path) -> bool {
    let timeout = Some(Duration::from_secs(2));
    match addr {
        Some(a) => std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500))
            .is_ok_and(|mut s| s.set_read_timeout(timeout).is_ok() && http_answer(&mut s)),
        None => std::os::unix::net::UnixStream::connect(socket)
            .is_ok_and(|mut s| s.set_read_timeout(timeout).is_ok() && http_answer(&mut s)),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl SlurmRestd {
    /// The user jobs run as with [`RestdAuth::Local`] (slurmrestd's own).
    pub const LOCAL_USER: &'static str = "slurm";

    /// The user jobs are submitted as (slurmrestd refuses tokens for root).
    pub const JOB_USER: &'static str = "nobody";

    /// Starts slurmrestd for `cluster` and waits until it answers.
    ///
    /// # Errors
    /// A missing binary (`slurmrestd`, `util-linux`), no user `slurm`
    /// (package `slurm-client`), or not answering within 15 s (with its log).
    pub fn start(cluster: &SlurmCluster, listen: RestdListen) -> Result<SlurmRestd, TestbedError> {
        Self::start_with(cluster, listen, RestdAuth::Jwt)
    }

    /// As [`SlurmRestd::start`], with `auth`.
    ///
    /// # Errors
    /// As [`SlurmRestd::start`]; `Local` over TCP is refused.
    pub fn start_with(
        cluster: &SlurmCluster,
        listen: RestdListen,
        auth: RestdAuth,
    ) -> Result<SlurmRestd, TestbedError> {
        if auth == RestdAuth::Local && listen == RestdListen::Tcp {
            return Err(TestbedError::Io(std::io::Error::other(
                "rest_auth/local needs a Unix socket",
            )));
        }
        let slurmrestd = require_binary("slurmrestd", "slurmrestd")?;
        let setpriv = require_binary("setpriv", "util-linux")?;
        let (uid, gid) = user_ids("slurm").ok_or_else(|| TestbedError::MissingBinary {
            binary: "user slurm".into(),
            package: "slurm-client".into(),
        })?;
        let dir = tempfile::Builder::new()
            .prefix("aif-slurmrestd-")
            .tempdir()?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        let socket = dir.path().join("slurmrestd.socket");
        let addr = match listen {
            RestdListen::Tcp => Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            RestdListen::Unix => None,
        };
        let mut cmd = Command::new(setpriv);
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(slurmrestd)
            .arg("-a")
            .arg(match auth {
                RestdAuth::Jwt => "rest_auth/jwt",
                RestdAuth::Local => "rest_auth/local",
            })
            .args(["-s", "openapi/v0.0.37,openapi/v0.0.38"])
            .arg(match addr {
                Some(a) => a.to_string(),
                None => format!("unix:{}", socket.display()),
            })
            .env("SLURM_CONF", cluster.conf_path());
        if auth == RestdAuth::Jwt {
            // With it set, rest_auth/local answers "Authentication does not
            // apply to request" to everything.
            cmd.env("SLURM_JWT", "daemon");
        }
        let mut process = ServerProcess::spawn("slurmrestd", cmd, dir)?;
        process.wait_ready(Duration::from_secs(15), || answers(addr, &socket))?;
        log::info!(
            "testbed: slurmrestd ready on {}",
            addr.map_or_else(|| format!("unix:{}", socket.display()), |a| a.to_string())
        );
        Ok(SlurmRestd {
            process,
            addr,
            socket,
        })
    }

    /// `http://127.0.0.1:PORT`, or `unix:/…/slurmrestd.socket`.
    pub fn url(&self) -> String {
        match self.addr {
            Some(a) => format!("http://{a}"),
            None => format!("unix:{}", self.socket.display()),
        }
    }

    /// The TCP port (`None` on a Unix socket).
    pub fn port(&self) -> Option<u16> {
        self.addr.map(|a| a.port())
    }

    /// Its log.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }
}
