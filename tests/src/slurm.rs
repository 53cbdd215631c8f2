//! A real single-node Slurm cluster (`slurmctld`, `slurmd`, `slurm-client`,
//! `munge`), on 127.0.0.1, in a temporary directory (DESIGN.md §9).
//!
//! - `munged` runs as user `munge` (through `setpriv`) with its socket, key,
//!   pid, log and seed files under `$T/mr` (mode 755, owned by munge).
//! - `slurm.conf` uses that socket (`AuthInfo=socket=…`), listens on loopback
//!   only (`CommunicationParameters=NoInAddrAny,NoCtldInAddrAny`), free ports,
//!   `jobcomp/filetxt` (so `sacct -c` answers exit codes), and two fake GPUs
//!   (`Gres=gpu:2`). slurmd 22.05 refuses plain files as GRES devices ("is not
//!   a valid character or block device"), so `$T/gpu0` and `$T/gpu1` are
//!   character devices made with `mknod` (1:3, like `/dev/null`); where mknod is
//!   not permitted, `/dev/null` and `/dev/zero` stand in.
//! - `slurmctld -D` and `slurmd -D -N localhost` run with `SLURM_CONF`
//!   exported; ready when `sinfo -h -o %T` says `idle`.
//!
//! - With [`SlurmOptions::jwt`], `AuthAltTypes=auth/jwt` and a fresh
//!   `jwt_hs256.key` (for slurmrestd: [`crate::SlurmRestd`]); tokens come from
//!   [`SlurmCluster::token`] (`scontrol token`).
//!
//! Client commands need [`SlurmCluster::env`] (`SLURM_CONF`). Every daemon is
//! stopped by PID when the handle drops; the directory is kept (and printed)
//! when the test failed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{
    TestbedError, free_port, keep_if_panicking, require_binary, spawn_logged, terminate, wait_until,
};

/// How [`SlurmCluster::start_with`] sets the cluster up.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlurmOptions {
    /// Accept JWTs besides munge (`AuthAltTypes=auth/jwt`), as slurmrestd's
    /// `rest_auth/jwt` needs (Debian package `slurm-wlm-jwt-plugin`).
    pub jwt: bool,
}

/// Where Debian's Slurm plugins are.
fn plugin_present(name: &str) -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/slurm-wlm",
        "/usr/lib/aarch64-linux-gnu/slurm-wlm",
        "/usr/lib/slurm-wlm",
        "/usr/lib/slurm",
        "/usr/lib64/slurm",
    ]
    .iter()
    .any(|d| Path::new(d).join(name).is_file())
}

/// A running single-node Slurm cluster.
#[derive(Debug)]
pub struct SlurmCluster {
    dir: Option<tempfile::TempDir>,
    conf: PathBuf,
    daemons: Vec<(String, Child, PathBuf)>,
    sinfo: PathBuf,
}

fn chown_munge(path: &Path, uid: u32, gid: u32) -> Result<(), TestbedError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    Ok(())
}

/// The uid and gid of `user`, when it exists.
pub(crate) fn user_ids(user: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; the two
    // ids are copied out at once.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

pub(crate) fn mknod_char(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: mknod(2) with a valid C string; makedev(1, 3) is /dev/null's number.
    unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) == 0 }
}

/// munged's files for a cluster in directory `t`: `t/mr` (mode 755, owned
/// by `munge`) holds its socket, pid, log and seed files; `t/munge.key` is a
/// fresh key (`mungekey -c`, mode 600, owned by `munge`). Shared by
/// [`SlurmCluster`] and [`crate::NetnsSlurm`] (whose namespaces reach the
/// socket as a file).
#[derive(Debug, Clone)]
pub(crate) struct Munge {
    pub(crate) mr: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) sock: PathBuf,
    uid: u32,
    gid: u32,
}

impl Munge {
    /// Creates `t/mr` and the key.
    ///
    /// # Errors
    /// A missing `mungekey` (package `munge`), no `munge` user, or I/O.
    pub(crate) fn prepare(t: &Path) -> Result<Munge, TestbedError> {
        use std::os::unix::fs::PermissionsExt;
        let mungekey = require_binary("mungekey", "munge")?;
        let (uid, gid) = user_ids("munge").ok_or_else(|| TestbedError::MissingBinary {
            binary: "user munge".into(),
            package: "munge".into(),
        })?;
        let mr = t.join("mr");
        std::fs::create_dir_all(&mr)?;
        std::fs::set_permissions(&mr, std::fs::Permissions::from_mode(0o755))?;
        chown_munge(&mr, uid, gid)?;
        let key = t.join("munge.key");
        let out = Command::new(&mungekey)
            .arg("-c")
            .arg("-k")
            .arg(&key)
            .output()?;
        if !out.status.success() {
            return Err(TestbedError::Io(std::io::Error::other(format!(
                "mungekey -c failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))));
        }
        chown_munge(&key, uid, gid)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let sock = mr.join("munge.sock");
        Ok(Munge {
            mr,
            key,
            sock,
            uid,
            gid,
        })
    }

    /// `munged -F` as user `munge` (through `setpriv`) with these files.
    ///
    /// # Errors
    /// A missing `munged` (package `munge`) or `setpriv` (`util-linux`).
    pub(crate) fn command(&self) -> Result<Command, TestbedError> {
        let munged = require_binary("munged", "munge")?;
        let setpriv = require_binary("setpriv", "util-linux")?;
        let mut cmd = Command::new(&setpriv);
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(&munged)
            .arg("-F")
            .arg(format!("--socket={}", self.sock.display()))
            .arg(format!("--key-file={}", self.key.display()))
            .arg(format!(
                "--pid-file={}",
                self.mr.join("munged.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                self.mr.join("munged.log").display()
            ))
            .arg(format!(
                "--seed-file={}",
                self.mr.join("munged.seed").display()
            ));
        Ok(cmd)
    }
}

impl SlurmCluster {
    /// Starts munged, slurmctld and slurmd and waits until the node is idle.
    ///
    /// # Errors
    /// A missing binary (naming the Debian package: `munge`, `slurmctld`,
    /// `slurmd`, `slurm-client`, `util-linux`), no `munge` user, or not ready
    /// within 30 s (with the end of the daemons' logs).
    pub fn start() -> Result<SlurmCluster, TestbedError> {
        Self::start_with(SlurmOptions::default())
    }

    /// As [`SlurmCluster::start`], with `options`.
    ///
    /// # Errors
    /// As [`SlurmCluster::start`]; with `jwt`, a missing `auth_jwt.so`
    /// (package `slurm-wlm-jwt-plugin`).
    pub fn start_with(options: SlurmOptions) -> Result<SlurmCluster, TestbedError> {
        if options.jwt && !plugin_present("auth_jwt.so") {
            return Err(TestbedError::MissingBinary {
                binary: "auth_jwt.so (Slurm plugin)".into(),
                package: "slurm-wlm-jwt-plugin".into(),
            });
        }
        require_binary("munged", "munge")?;
        require_binary("mungekey", "munge")?;
        let slurmctld = require_binary("slurmctld", "slurmctld")?;
        let slurmd = require_binary("slurmd", "slurmd")?;
        let sinfo = require_binary("sinfo", "slurm-client")?;
        require_binary("sbatch", "slurm-client")?;
        require_binary("setpriv", "util-linux")?;
        if user_ids("munge").is_none() {
            return Err(TestbedError::MissingBinary {
                binary: "user munge".into(),
                package: "munge".into(),
            });
        }

        let dir = tempfile::Builder::new().prefix("aif-slurm-").tempdir()?;
        let t = dir.path().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755))?;
        for d in ["state", "spool", "log"] {
            std::fs::create_dir_all(t.join(d))?;
        }
        let munge = Munge::prepare(&t)?;

        let gres = if mknod_char(&t.join("gpu0")) && mknod_char(&t.join("gpu1")) {
            format!(
                "NodeName=localhost Name=gpu File={}/gpu[0-1]\n",
                t.display()
            )
        } else {
            "NodeName=localhost Name=gpu File=/dev/null\nNodeName=localhost Name=gpu File=/dev/zero\n".to_string()
        };
        std::fs::write(t.join("gres.conf"), gres)?;

        let sock = munge.sock.clone();
        let conf = t.join("slurm.conf");
        let jwt = if options.jwt {
            let key = t.join("jwt_hs256.key");
            let mut bytes = [0u8; 32];
            File::open("/dev/urandom")?.read_exact(&mut bytes)?;
            std::fs::write(&key, bytes)?;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            format!(
                "AuthAltTypes=auth/jwt\nAuthAltParameters=jwt_key={}\n",
                key.display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &conf,
            format!(
                "ClusterName=aif\n\
                 SlurmctldHost=localhost(127.0.0.1)\n\
                 SlurmctldPort={ctld_port}\n\
                 SlurmdPort={slurmd_port}\n\
                 AuthType=auth/munge\n\
                 CredType=cred/munge\n\
                 AuthInfo=socket={sock}\n\
                 {jwt}\
                 CommunicationParameters=NoInAddrAny,NoCtldInAddrAny\n\
                 SlurmUser=root\n\
                 SlurmdUser=root\n\
                 StateSaveLocation={t}/state\n\
                 SlurmdSpoolDir={t}/spool\n\
                 SlurmctldPidFile={t}/slurmctld.pid\n\
                 SlurmdPidFile={t}/slurmd.pid\n\
                 SlurmctldLogFile={t}/log/slurmctld.log\n\
                 SlurmdLogFile={t}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\n\
                 MpiDefault=none\n\
                 JobCompType=jobcomp/filetxt\n\
                 JobCompLoc={t}/jobcomp.txt\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 MailProg=/bin/true\n\
                 ReturnToService=2\n\
                 SchedulerType=sched/backfill\n\
                 SelectType=select/cons_tres\n\
                 KillWait=5\n\
                 GresTypes=gpu\n\
                 NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2048 Gres=gpu:2 State=UNKNOWN\n\
                 PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
                ctld_port = free_port(),
                slurmd_port = free_port(),
                sock = sock.display(),
                jwt = jwt,
                t = t.display(),
            ),
        )?;

        let mut cluster = SlurmCluster {
            dir: Some(dir),
            conf: conf.clone(),
            daemons: Vec::new(),
            sinfo,
        };
        cluster.spawn("munged", munge.command()?)?;
        let sock_ready = wait_until(Duration::from_secs(10), || sock.exists());
        if !sock_ready {
            return Err(cluster.not_ready("munged", Duration::from_secs(10)));
        }
        let mut cmd = Command::new(&slurmctld);
        cmd.arg("-D").arg("-f").arg(&conf).env("SLURM_CONF", &conf);
        cluster.spawn("slurmctld", cmd)?;
        let mut cmd = Command::new(&slurmd);
        cmd.arg("-D")
            .arg("-N")
            .arg("localhost")
            .arg("-f")
            .arg(&conf)
            .env("SLURM_CONF", &conf);
        cluster.spawn("slurmd", cmd)?;
        let timeout = Duration::from_secs(30);
        let sinfo = cluster.sinfo.clone();
        let idle = wait_until(timeout, || {
            Command::new(&sinfo)
                .args(["-h", "-o", "%T"])
                .env("SLURM_CONF", &conf)
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        if !idle {
            return Err(cluster.not_ready("slurm node", timeout));
        }
        log::info!(
            "testbed: slurm cluster ready, SLURM_CONF={}",
            conf.display()
        );
        Ok(cluster)
    }

    fn spawn(&mut self, what: &str, cmd: Command) -> Result<(), TestbedError> {
        let log = self.dir().join(format!("{what}.out"));
        let child = spawn_logged(what, cmd, File::create(&log)?)?;
        self.daemons.push((what.to_string(), child, log));
        Ok(())
    }

    fn not_ready(&mut self, what: &str, waited: Duration) -> TestbedError {
        let mut tail = String::new();
        let t = self.dir().to_path_buf();
        let logs: Vec<PathBuf> = self
            .daemons
            .iter()
            .map(|d| d.2.clone())
            .chain([t.join("log/slurmctld.log"), t.join("log/slurmd.log")])
            .collect();
        for p in logs {
            let mut s = String::new();
            if File::open(&p)
                .and_then(|mut f| f.read_to_string(&mut s))
                .is_ok()
            {
                let start = s.len().saturating_sub(1500);
                let start = (start..s.len())
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap_or(s.len());
                tail.push_str(&format!("--- {} ---\n{}\n", p.display(), &s[start..]));
            }
        }
        TestbedError::NotReady {
            what: what.to_string(),
            waited,
            log_tail: tail,
        }
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// `slurm.conf`.
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The job completion log (`jobcomp/filetxt`).
    pub fn jobcomp_path(&self) -> PathBuf {
        self.dir().join("jobcomp.txt")
    }

    /// Environment for client commands (`sbatch`, `squeue`, `sacct`, `scancel`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SLURM_CONF".to_string(), self.conf.display().to_string())]
    }

    /// A JWT for `user` valid `lifespan_s` seconds (`scontrol token`; the
    /// cluster needs [`SlurmOptions::jwt`]).
    ///
    /// # Errors
    /// When `scontrol` is missing or fails.
    pub fn token(&self, user: &str, lifespan_s: u32) -> Result<String, TestbedError> {
        let scontrol = require_binary("scontrol", "slurm-client")?;
        let out = Command::new(scontrol)
            .arg("token")
            .arg(format!("username={user}"))
            .arg(format!("lifespan={lifespan_s}"))
            .env("SLURM_CONF", &self.conf)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().strip_prefix("SLURM_JWT=") {
            Some(t) if out.status.success() && !t.is_empty() => Ok(t.to_string()),
            _ => Err(TestbedError::Io(std::io::Error::other(format!(
                "scontrol token username={user} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))),
        }
    }

    /// The daemons' logs (their stdout/stderr plus Slurm's own log files).
    pub fn log_text(&self) -> String {
        let mut all = String::new();
        let t = self.dir();
        for p in self
            .daemons
            .iter()
            .map(|d| d.2.clone())
            .chain([t.join("log/slurmctld.log"), t.join("log/slurmd.log")])
        {
            if let Ok(s) = std::fs::read_to_string(&p) {
                all.push_str(&format!("--- {} ---\n{s}", p.display()));
            }
        }
        all
    }

    /// Cancels every job, then stops every daemon (SIGTERM, SIGKILL after
    /// 5 s), newest first.
    pub fn stop(&mut self) {
        if !self.daemons.is_empty()
            && let Ok(scancel) = require_binary("scancel", "slurm-client")
        {
            let squeue = self.sinfo.with_file_name("squeue");
            let conf = self.conf.clone();
            // Every user's jobs (slurmrestd's run as an unprivileged user).
            let ids: Vec<String> = Command::new(&squeue)
                .args(["-h", "-o", "%i"])
                .env("SLURM_CONF", &conf)
                .stderr(Stdio::null())
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = Command::new(scancel)
                    .arg("--full")
                    .args(&ids)
                    .env("SLURM_CONF", &self.conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            wait_until(Duration::from_secs(10), || {
                Command::new(&squeue)
                    .args(["-h", "-o", "%i"])
                    .env("SLURM_CONF", &conf)
                    .stderr(Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
            });
        }
        while let Some((what, child, _)) = self.daemons.pop() {
            terminate(&what, child);
        }
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        self.stop();
        if let Some(kept) = keep_if_panicking(&mut self.dir) {
            eprintln!(
                "testbed: slurm cluster of a failed test: kept {}",
                kept.display()
            );
        }
    }
}
