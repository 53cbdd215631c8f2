//! A private OpenSSH server (`openssh-server`) on 127.0.0.1 (or, with
//! [`SshdOptions::netns`], on a host's address inside a network namespace of
//! [`crate::netns`]), and client keys for it (`openssh-client`'s `ssh-keygen`).
//!
//! The server runs as `/usr/sbin/sshd -D -e -f $T/sshd_config` with its own
//! host keys, `AuthorizedKeysFile $T/authorized_keys`, no PAM and no
//! passwords; the user to log in as is the current user. Its log (at
//! `LogLevel VERBOSE`) is the server's stderr, readable with
//! [`Sshd::log_text`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::{command_in, free_port_in, in_netns, ip_binary};
use crate::process::{ServerProcess, TestbedError, free_port, port_open, require_binary};

/// Key algorithm for [`generate_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ed25519.
    Ed25519,
    /// RSA, 3072 bits.
    Rsa,
}

impl KeyKind {
    fn keygen_type(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Rsa => "rsa",
        }
    }
}

/// Private key file format for [`generate_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` (ssh-keygen's default).
    OpenSsh,
    /// `-----BEGIN RSA PRIVATE KEY-----` and friends (`ssh-keygen -m PEM`).
    Pem,
}

/// A key pair made by [`generate_key`].
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file (`private` + `.pub`).
    pub public: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA… comment`), trimmed.
    pub public_line: String,
}

impl KeyPair {
    /// The `type base64` part of the public key, without the comment.
    pub fn public_key(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Generates a key pair at `path` with `ssh-keygen` (`-N passphrase`, empty
/// for none).
///
/// # Errors
/// Missing `ssh-keygen` (package `openssh-client`), or ssh-keygen failing.
pub fn generate_key(
    path: &Path,
    kind: KeyKind,
    format: KeyFormat,
    passphrase: Option<&str>,
) -> Result<KeyPair, TestbedError> {
    let keygen = require_binary("ssh-keygen", "openssh-client")?;
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let mut cmd = Command::new(keygen);
    cmd.arg("-q")
        .arg("-t")
        .arg(kind.keygen_type())
        .arg("-N")
        .arg(passphrase.unwrap_or(""))
        .arg("-C")
        .arg("aif-testbed")
        .arg("-f")
        .arg(path);
    if kind == KeyKind::Rsa {
        cmd.arg("-b").arg("3072");
    }
    if format == KeyFormat::Pem {
        cmd.arg("-m").arg("PEM");
    }
    run(cmd, "ssh-keygen")?;
    let public = PathBuf::from(format!("{}.pub", path.display()));
    let public_line = std::fs::read_to_string(&public)?.trim().to_string();
    Ok(KeyPair {
        private: path.to_path_buf(),
        public,
        public_line,
    })
}

/// Rewrites a known_hosts file with every host name hashed (`ssh-keygen -H
/// -f`), removing the `.old` backup ssh-keygen leaves.
///
/// # Errors
/// Missing `ssh-keygen`, or it failing.
pub fn hash_known_hosts(path: &Path) -> Result<(), TestbedError> {
    let keygen = require_binary("ssh-keygen", "openssh-client")?;
    let mut cmd = Command::new(keygen);
    cmd.arg("-H").arg("-f").arg(path);
    run(cmd, "ssh-keygen -H")?;
    let _ = std::fs::remove_file(format!("{}.old", path.display()));
    Ok(())
}

/// The SHA256 fingerprint of a public key file as `ssh-keygen -lf` prints it
/// (`SHA256:…`).
///
/// # Errors
/// Missing `ssh-keygen`, or it failing.
pub fn fingerprint(public_key_file: &Path) -> Result<String, TestbedError> {
    let keygen = require_binary("ssh-keygen", "openssh-client")?;
    let mut cmd = Command::new(keygen);
    cmd.arg("-l")
        .arg("-E")
        .arg("sha256")
        .arg("-f")
        .arg(public_key_file);
    let out = run(cmd, "ssh-keygen -l")?;
    out.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .map(str::to_string)
        .ok_or_else(|| {
            TestbedError::Io(std::io::Error::other(format!(
                "ssh-keygen -l printed {out:?}"
            )))
        })
}

fn run(mut cmd: Command, what: &str) -> Result<String, TestbedError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(TestbedError::Io(std::io::Error::other(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The name of the current user (who the server lets in).
pub fn current_user() -> String {
    // SAFETY: getpwuid returns static storage or null; copied out at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "root".to_string())
}

/// Options for [`Sshd::start_with`].
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Host key types, in the order sshd offers them (default: ed25519 only).
    pub host_keys: Vec<KeyKind>,
    /// Extra `sshd_config` lines.
    pub extra_config: Vec<String>,
    /// Extra environment of the sshd process (kept across restarts), which
    /// every session it opens inherits.
    pub env: Vec<(String, String)>,
    /// The network namespace to run in (e.g. [`crate::Topology::netns`]`("login")`;
    /// default `None`: the test's own). Readiness is then probed from inside it.
    pub netns: Option<String>,
    /// The `ListenAddress` (default 127.0.0.1; inside a namespace, one of the
    /// host's addresses there, e.g. [`crate::Topology::login_monitor_side`]).
    pub listen: IpAddr,
    /// Runs sshd (and so every session: the commands it executes) in a UTS
    /// namespace of its own with this host name, e.g. `login` (default
    /// `None`: the machine's), as the host it stands for has. On the
    /// namespace topology `srun` from a session needs it (it binds to the
    /// address of `gethostname()`, see [`crate::NetnsSlurm`]); `sbatch`,
    /// `squeue` and `scancel` were seen to work without.
    pub hostname: Option<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            host_keys: vec![KeyKind::Ed25519],
            extra_config: Vec::new(),
            env: Vec::new(),
            netns: None,
            listen: IpAddr::from([127, 0, 0, 1]),
            hostname: None,
        }
    }
}

/// A running private sshd on 127.0.0.1 (or inside a network namespace).
#[derive(Debug)]
pub struct Sshd {
    server: ServerProcess,
    binary: PathBuf,
    addr: SocketAddr,
    config: PathBuf,
    host_keys: Vec<KeyPair>,
    env: Vec<(String, String)>,
    netns: Option<String>,
    hostname: Option<String>,
}

impl Sshd {
    /// Starts one with an ed25519 host key on a free port and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// Missing `openssh-server` or `openssh-client`, or not ready within 15 s.
    pub fn start() -> Result<Self, TestbedError> {
        Self::start_with(SshdOptions::default())
    }

    /// Starts one with `options`.
    ///
    /// # Errors
    /// As [`Sshd::start`].
    pub fn start_with(options: SshdOptions) -> Result<Self, TestbedError> {
        let binary = require_binary("/usr/sbin/sshd", "openssh-server")?;
        require_binary("ssh-keygen", "openssh-client")?;
        if options.netns.is_some() {
            ip_binary()?;
        }
        // The privilege separation directory sshd insists on.
        if !Path::new("/run/sshd").exists() {
            if let Err(e) = std::fs::create_dir_all("/run/sshd") {
                log::warn!("testbed: cannot create /run/sshd: {e}");
            }
        }
        let dir = tempfile::Builder::new().prefix("aif-sshd-").tempdir()?;
        let mut host_keys = Vec::new();
        let mut config = String::new();
        let port = match &options.netns {
            Some(ns) => free_port_in(ns, options.listen)?,
            None => free_port(),
        };
        let addr = SocketAddr::new(options.listen, port);
        for kind in &options.host_keys {
            let path = dir
                .path()
                .join(format!("ssh_host_{}_key", kind.keygen_type()));
            let key = generate_key(&path, *kind, KeyFormat::OpenSsh, None)?;
            config.push_str(&format!("HostKey {}\n", key.private.display()));
            host_keys.push(key);
        }
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, "")?;
        config.push_str(&format!(
            "ListenAddress {listen}\n\
             Port {port}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile {pid}\n\
             UsePAM no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             StrictModes no\n\
             AllowTcpForwarding yes\n\
             UseDNS no\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n\
             MaxStartups 50\n\
             LoginGraceTime 30\n",
            listen = options.listen,
            authorized = authorized.display(),
            pid = dir.path().join("sshd.pid").display(),
        ));
        // sshd takes a keyword's first value: the default only when the
        // extra lines do not set it (e.g. `GatewayPorts clientspecified`).
        let sets = |key: &str| {
            options.extra_config.iter().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case(key))
            })
        };
        if !sets("GatewayPorts") {
            config.push_str("GatewayPorts no\n");
        }
        for line in &options.extra_config {
            config.push_str(line);
            config.push('\n');
        }
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config)?;
        let cmd = Self::command(
            &binary,
            &config_path,
            &options.env,
            options.netns.as_deref(),
            options.hostname.as_deref(),
        );
        let server = ServerProcess::spawn("sshd", cmd, dir)?;
        let mut sshd = Sshd {
            server,
            binary,
            addr,
            config: config_path,
            host_keys,
            env: options.env,
            netns: options.netns,
            hostname: options.hostname,
        };
        sshd.wait_ready()?;
        Ok(sshd)
    }

    fn command(
        binary: &Path,
        config: &Path,
        env: &[(String, String)],
        netns: Option<&str>,
        hostname: Option<&str>,
    ) -> Command {
        let mut cmd = command_in(netns, binary);
        cmd.arg("-D").arg("-e").arg("-f").arg(config);
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(h) = hostname {
            crate::slurm_netns::with_hostname(&mut cmd, h);
        }
        cmd
    }

    fn wait_ready(&mut self) -> Result<(), TestbedError> {
        let addr = self.addr;
        let netns = self.netns.clone();
        self.server.wait_ready(Duration::from_secs(15), || {
            in_netns(netns.as_deref(), || port_open(addr)).unwrap_or(false)
        })
    }

    /// The network namespace it runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The listen address (127.0.0.1:PORT unless configured otherwise).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The user to log in as (the current user).
    pub fn user(&self) -> String {
        current_user()
    }

    /// The server's private directory (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// The server's host keys, in the order configured.
    pub fn host_keys(&self) -> &[KeyPair] {
        &self.host_keys
    }

    /// `[ADDR]:PORT type base64` lines (ADDR 127.0.0.1 unless configured
    /// otherwise) for every host key: what known_hosts holds for this server.
    pub fn known_hosts_lines(&self) -> String {
        self.host_keys
            .iter()
            .map(|k| format!("[{}]:{} {}\n", self.addr.ip(), self.port(), k.public_key()))
            .collect()
    }

    /// Writes [`Sshd::known_hosts_lines`] to `path` (replacing it).
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_known_hosts(&self, path: &Path) -> Result<(), TestbedError> {
        std::fs::write(path, self.known_hosts_lines())?;
        Ok(())
    }

    /// Makes a client key pair in the server's directory and authorizes it.
    ///
    /// # Errors
    /// As [`generate_key`], or writing authorized_keys.
    pub fn client_key(
        &self,
        name: &str,
        kind: KeyKind,
        format: KeyFormat,
        passphrase: Option<&str>,
    ) -> Result<KeyPair, TestbedError> {
        let key = generate_key(&self.dir().join(name), kind, format, passphrase)?;
        self.authorize(&key)?;
        Ok(key)
    }

    /// Appends `key`'s public line to authorized_keys.
    ///
    /// # Errors
    /// I/O errors.
    pub fn authorize(&self, key: &KeyPair) -> Result<(), TestbedError> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir().join("authorized_keys"))?;
        writeln!(f, "{}", key.public_line)?;
        Ok(())
    }

    /// The PIDs of the server and of every process under it (the per-connection
    /// sshd processes, which sshd starts in sessions of their own).
    pub fn process_tree(&self) -> Vec<u32> {
        let Some(root) = self.server.pid() else {
            return Vec::new();
        };
        let mut parents: Vec<(u32, u32)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Ok(stat) = std::fs::read_to_string(e.path().join("stat"))
                    && let Some(after) = stat.rsplit_once(')').map(|(_, a)| a)
                    && let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok())
                {
                    parents.push((pid, ppid));
                }
            }
        }
        let mut tree = vec![root];
        let mut i = 0;
        while i < tree.len() {
            let p = tree[i];
            tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        tree
    }

    /// Kills the server **and every connection's sshd** with SIGKILL (what a
    /// crashed or rebooted gateway looks like to clients), and waits. The
    /// commands the sessions were running get SIGTERM, so that a login
    /// shell's startup files are not cut mid-way (a SIGKILLed `pyenv rehash`
    /// in root's `.bashrc` leaves its lock behind, and every later login
    /// then waits a minute for it).
    pub fn kill(&mut self) {
        let tree = self.process_tree();
        for pid in tree.iter().skip(1) {
            let sshd = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sshd");
            let signal = if sshd { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: kill(2) on PIDs found under our own server process.
            unsafe {
                libc::kill(*pid as libc::pid_t, signal);
            }
        }
        self.server.kill();
    }

    /// Stops the server and every connection's process.
    pub fn stop(&mut self) {
        let tree = self.process_tree();
        for pid in tree.iter().skip(1) {
            // SAFETY: as in `kill`.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGTERM);
            }
        }
        self.server.stop();
    }

    /// Starts it again (after [`Sshd::kill`] or [`Sshd::stop`]) on the same
    /// port, with the same keys, and waits until it accepts connections.
    ///
    /// # Errors
    /// Spawning fails, or not ready within 15 s.
    pub fn restart(&mut self) -> Result<(), TestbedError> {
        self.stop();
        let cmd = Self::command(
            &self.binary,
            &self.config,
            &self.env,
            self.netns.as_deref(),
            self.hostname.as_deref(),
        );
        self.server.respawn(cmd)?;
        self.wait_ready()
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    /// How many log lines contain `needle` (e.g. `"Connection from"`,
    /// `"Failed publickey"`, `"Invalid user"`).
    pub fn count_log_lines(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The connection processes live in sessions of their own: end them
        // too, then ServerProcess stops the server itself.
        let tree = self.process_tree();
        for pid in tree.iter().skip(1) {
            // SAFETY: as in `kill`.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}
