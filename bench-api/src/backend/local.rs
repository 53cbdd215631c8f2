//! The local backend: services are child processes of the API.
//!
//! Each service runs under a small supervisor (this binary, re-executed as
//! `aif-bench-api __supervise EXIT_FILE -- ARGV…`) that leads its own process
//! group (`process_group(0)`), starts the service in that group with stdout and
//! stderr in `LOG_DIR/<id>/stdout.log` and `stderr.log`, waits for it and writes
//! how it ended to `LOG_DIR/<id>/exit`. The exit file is what lets an API that
//! was down while a service ended show it ended, with its exit code. Cancel
//! sends SIGTERM to the process group, then SIGKILL after the grace period.
//!
//! A process id is only trusted while it is still the supervisor we started:
//! at spawn the backend records the supervisor's start time (field 22 of
//! `/proc/PID/stat`) in `LOG_DIR/<id>/identity`; before it reports a group
//! as this service's or signals it, the group leader must have that start
//! time and lead that group. After a restart an unrelated process that reused
//! the id is neither reported as the service nor signalled.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    Backend, BackendError, Ending, JobState, LaunchSpec, Launched, Runnability, recipe_program,
};
use crate::recipes::Recipe;

/// The hidden first argument that turns the binary into a supervisor.
pub const SUPERVISE_ARG: &str = "__supervise";

#[derive(Debug, Default)]
struct Children {
    running: HashMap<i32, Child>,
    reaped: HashMap<i32, ExitStatus>,
}

/// Child processes in their own process groups.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    log_dir: PathBuf,
    supervisor: PathBuf,
    kill_grace: Duration,
    children: Arc<Mutex<Children>>,
    exporter: Option<super::slurm::ExporterPlan>,
}

/// `exit N`, `signal N` or `error MESSAGE`, as the supervisor writes it.
pub fn parse_exit_file(text: &str) -> Option<Ending> {
    let text = text.trim();
    if let Some(n) = text.strip_prefix("exit ") {
        return n.parse().ok().map(Ending::Exited);
    }
    if let Some(n) = text.strip_prefix("signal ") {
        return n.parse().ok().map(Ending::Signalled);
    }
    text.strip_prefix("error ")
        .map(|m| Ending::SchedulerFailure(m.to_string()))
}

/// `(process group, start time in clock ticks since boot)` of a live process.
fn proc_identity(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`: comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, pgrp field 5, starttime field 22.
    let state = *fields.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn signal_group(pgid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) on a process group this backend created.
    let r = unsafe { libc::kill(-pgid, signal) };
    if r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `program` as `Command` would (a path, or the first executable file
/// of that name on `PATH`).
fn locate_program(program: &str) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = Path::new(program);
        return executable_file(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable_file(p))
}

/// Why `program` cannot be started (it was not found).
fn program_missing(program: &str) -> String {
    if program.contains('/') {
        format!("program `{program}` not found (no executable file there)")
    } else {
        format!("program `{program}` not found on PATH")
    }
}

impl LocalBackend {
    /// Services log under `log_dir`; `supervisor` is this binary; cancels wait
    /// `kill_grace` between SIGTERM and SIGKILL.
    ///
    /// # Errors
    /// When `log_dir` cannot be created.
    pub fn new(
        log_dir: &Path,
        supervisor: PathBuf,
        kill_grace: Duration,
    ) -> Result<LocalBackend, BackendError> {
        std::fs::create_dir_all(log_dir).map_err(|source| BackendError::Io {
            what: format!("create log directory {}", log_dir.display()),
            source,
        })?;
        let log_dir = log_dir
            .canonicalize()
            .unwrap_or_else(|_| log_dir.to_path_buf());
        Ok(LocalBackend {
            log_dir,
            supervisor,
            kill_grace,
            children: Arc::new(Mutex::new(Children::default())),
            exporter: None,
        })
    }

    /// Starts `plan`'s node exporter beside every service whose recipe asks
    /// for GPUs, in the service's process group (stopped with it), labelled
    /// `service_id`, as the Slurm backend does.
    pub fn with_exporter(mut self, plan: super::slurm::ExporterPlan) -> LocalBackend {
        self.exporter = Some(plan);
        self
    }

    fn start_exporter(&self, spec: &LaunchSpec<'_>, pgid: i32, dir: &Path) {
        let Some(e) = self
            .exporter
            .as_ref()
            .filter(|_| spec.recipe.resources.gpus > 0)
        else {
            return;
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let log = match File::create(dir.join("exporter.log")) {
            Ok(f) => f,
            Err(err) => {
                log::error!(
                    "local: service {}: cannot create exporter.log: {err}",
                    spec.service_id
                );
                return;
            }
        };
        let argv: Vec<OsString> = e.argv(
            spec.service_id,
            host.into(),
            dir.join("exporter.sqlite").into(),
        );
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_or(Stdio::null(), Stdio::from))
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(pgid);
        }
        match cmd.spawn() {
            Ok(child) => {
                log::info!(
                    "local: started {} beside service {} (pid {}, process group {pgid})",
                    e.settings.binary.display(),
                    spec.service_id,
                    child.id()
                );
                self.children
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .running
                    .insert(child.id() as i32, child);
            }
            Err(err) => log::error!(
                "local: service {}: cannot start the exporter {}: {err}",
                spec.service_id,
                e.settings.binary.display()
            ),
        }
    }

    /// An ended service may leave processes in its group (the exporter
    /// beside it): they go with it.
    fn ended(&self, pgid: i32, ending: Ending) -> JobState {
        if group_alive(pgid) {
            let _ = signal_group(pgid, libc::SIGTERM);
        }
        JobState::Ended(ending)
    }

    fn dir(&self, service_id: &str) -> PathBuf {
        self.log_dir.join(service_id)
    }

    fn exit_file(&self, service_id: &str) -> PathBuf {
        self.dir(service_id).join("exit")
    }

    fn identity_file(&self, service_id: &str) -> PathBuf {
        self.dir(service_id).join("identity")
    }

    /// Whether process group `pgid` is still the one launched for
    /// `service_id`: its leader lives, leads it, and started when recorded.
    fn is_ours(&self, service_id: &str, pgid: i32) -> bool {
        let Ok(text) = std::fs::read_to_string(self.identity_file(service_id)) else {
            return false;
        };
        let mut parts = text.split_whitespace();
        let recorded = (
            parts.next().and_then(|p| p.parse::<i32>().ok()),
            parts.next().and_then(|p| p.parse::<u64>().ok()),
        );
        let (Some(pid), Some(start)) = recorded else {
            return false;
        };
        pid == pgid && proc_identity(pgid) == Some((pgid, start))
    }

    fn read_exit(&self, service_id: &str) -> Option<Ending> {
        std::fs::read_to_string(self.exit_file(service_id))
            .ok()
            .and_then(|t| parse_exit_file(&t))
    }

    fn reap(children: &Mutex<Children>) {
        let mut c = children.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = Vec::new();
        for (pid, child) in c.running.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                done.push((*pid, status));
            }
        }
        for (pid, status) in done {
            c.running.remove(&pid);
            c.reaped.insert(pid, status);
        }
    }

    fn state(&self, service_id: &str, backend_ref: &str) -> Result<JobState, BackendError> {
        let pgid: i32 = backend_ref
            .parse()
            .ok()
            .filter(|p| *p > 1)
            .ok_or_else(|| BackendError::BadRef(backend_ref.to_string()))?;
        if let Some(ending) = self.read_exit(service_id) {
            return Ok(self.ended(pgid, ending));
        }
        Self::reap(&self.children);
        let (ours, reaped) = {
            let c = self.children.lock().unwrap_or_else(|e| e.into_inner());
            (c.running.contains_key(&pgid), c.reaped.get(&pgid).copied())
        };
        if ours {
            return Ok(JobState::Active {
                host: Some("127.0.0.1".into()),
            });
        }
        if let Some(status) = reaped {
            // The supervisor ended; it writes the exit file before it exits.
            if let Some(ending) = self.read_exit(service_id) {
                return Ok(JobState::Ended(ending));
            }
            use std::os::unix::process::ExitStatusExt;
            return Ok(JobState::Ended(match (status.code(), status.signal()) {
                (Some(c), _) => Ending::Exited(c),
                (None, Some(s)) => Ending::Signalled(s),
                _ => Ending::SchedulerFailure("supervisor vanished".into()),
            }));
        }
        // Not a child of this process (the API restarted): the group counts
        // only if its leader is still the supervisor we started.
        if self.is_ours(service_id, pgid) {
            return Ok(JobState::Active {
                host: Some("127.0.0.1".into()),
            });
        }
        Ok(match self.read_exit(service_id) {
            Some(ending) => JobState::Ended(ending),
            None => JobState::Missing,
        })
    }
}

impl Backend for LocalBackend {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn runnable(&self, recipe: &Recipe) -> Runnability {
        match recipe_program(recipe) {
            Ok(program) => match locate_program(program) {
                Some(path) => {
                    Runnability::yes(format!("program `{program}` is {}", path.display()))
                }
                None => Runnability::no(program_missing(program)),
            },
            Err(param) => Runnability::unknown(format!(
                "not checked: the program is the parameter `{param}` (looked up when the service starts)"
            )),
        }
    }

    fn launch(&self, spec: &LaunchSpec<'_>) -> Result<Launched, BackendError> {
        let io = |what: String| move |source| BackendError::Io { what, source };
        let program = &spec.argv[0];
        if locate_program(program).is_none() {
            return Err(BackendError::Io {
                what: format!("start {}", spec.recipe.name),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, program_missing(program)),
            });
        }
        let dir = self.dir(spec.service_id);
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let _ = std::fs::remove_file(self.exit_file(spec.service_id));
        let out = File::create(dir.join("stdout.log"))
            .map_err(io(format!("create {}/stdout.log", dir.display())))?;
        let err = File::create(dir.join("stderr.log"))
            .map_err(io(format!("create {}/stderr.log", dir.display())))?;
        let mut cmd = Command::new(&self.supervisor);
        cmd.arg(SUPERVISE_ARG)
            .arg(self.exit_file(spec.service_id))
            .arg("--")
            .args(spec.argv)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(io(format!(
            "spawn supervisor {}",
            self.supervisor.display()
        )))?;
        let pid = child.id() as i32;
        // The child is not reaped while we hold it: its /proc entry is there.
        match proc_identity(pid) {
            Some((_, start)) => {
                if let Err(e) = std::fs::write(
                    self.identity_file(spec.service_id),
                    format!("{pid} {start}\n"),
                ) {
                    log::error!(
                        "local: cannot record identity of service {} (it will not be signalled after a restart): {e}",
                        spec.service_id
                    );
                }
            }
            None => log::error!(
                "local: cannot read /proc/{pid}/stat of service {}",
                spec.service_id
            ),
        }
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .insert(pid, child);
        self.start_exporter(spec, pid, &dir);
        log::info!(
            "local: started service {} ({}) as process group {pid}, logs in {}",
            spec.service_id,
            spec.recipe.name,
            dir.display()
        );
        Ok(Launched {
            backend_ref: pid.to_string(),
            host: Some("127.0.0.1".into()),
        })
    }

    fn states(&self, jobs: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>> {
        jobs.iter()
            .map(|(id, r)| ((*id).to_string(), self.state(id, r)))
            .collect()
    }

    fn cancel(&self, service_id: &str, backend_ref: &str) -> Result<(), BackendError> {
        let pgid: i32 = backend_ref
            .parse()
            .ok()
            .filter(|p| *p > 1)
            .ok_or_else(|| BackendError::BadRef(backend_ref.to_string()))?;
        if !self.is_ours(service_id, pgid) {
            // Ended, or the id now belongs to another process: nothing to stop.
            log::info!(
                "local: service {service_id}: process group {pgid} is gone or not ours; not signalling it"
            );
            return Ok(());
        }
        signal_group(pgid, libc::SIGTERM).map_err(|source| BackendError::Io {
            what: format!("SIGTERM process group {pgid}"),
            source,
        })?;
        log::info!("local: sent SIGTERM to service {service_id} (process group {pgid})");
        let children = Arc::clone(&self.children);
        let backend = self.clone();
        let grace = self.kill_grace;
        let service_id = service_id.to_string();
        std::thread::spawn(move || {
            let deadline = Instant::now() + grace;
            loop {
                Self::reap(&children);
                if !group_alive(pgid) {
                    return;
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !backend.is_ours(&service_id, pgid) {
                // The supervisor ended (its service may linger in the group,
                // but the id is no longer proof of who that is).
                return;
            }
            log::warn!(
                "local: service {service_id} outlived SIGTERM by {grace:?}; sending SIGKILL to process group {pgid}"
            );
            let _ = signal_group(pgid, libc::SIGKILL);
            for _ in 0..100 {
                Self::reap(&children);
                if !group_alive(pgid) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(())
    }

    fn housekeeping(&self) {
        Self::reap(&self.children);
    }

    fn job_file(&self, key: &str, name: &str) -> PathBuf {
        self.dir(key).join(name)
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

fn write_exit_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        eprintln!("aif-bench-api supervisor: cannot write {}", path.display());
    }
}

/// The supervisor's main: `EXIT_FILE -- PROGRAM ARGS…` (what follows
/// [`SUPERVISE_ARG`]). Returns the process exit code.
///
/// It outlives SIGTERM/SIGINT/SIGHUP (a no-op handler, which `exec` resets to
/// the default in the service) so it can record how the service ended.
pub fn supervise(args: &[OsString]) -> i32 {
    let (exit_file, argv) = match args {
        [exit_file, dashdash, program, rest @ ..] if dashdash == "--" => {
            (PathBuf::from(exit_file), (program, rest))
        }
        _ => {
            eprintln!("usage: aif-bench-api {SUPERVISE_ARG} EXIT_FILE -- PROGRAM [ARGS...]");
            return 2;
        }
    };
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs an async-signal-safe no-op handler.
        unsafe {
            libc::signal(sig, ignore_signal as *const () as libc::sighandler_t);
        }
    }
    let mut child = match Command::new(argv.0).args(argv.1).spawn() {
        Ok(c) => c,
        Err(e) => {
            write_exit_file(
                &exit_file,
                &format!("error cannot start {}: {e}\n", argv.0.to_string_lossy()),
            );
            return 127;
        }
    };
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                write_exit_file(&exit_file, &format!("error wait: {e}\n"));
                return 1;
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => {
            write_exit_file(&exit_file, &format!("exit {code}\n"));
            code
        }
        (None, Some(sig)) => {
            write_exit_file(&exit_file, &format!("signal {sig}\n"));
            128 + sig
        }
        _ => {
            write_exit_file(&exit_file, "error unknown wait status\n");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_file_forms() {
        assert_eq!(parse_exit_file("exit 3\n"), Some(Ending::Exited(3)));
        assert_eq!(parse_exit_file("signal 15"), Some(Ending::Signalled(15)));
        assert!(matches!(
            parse_exit_file("error x"),
            Some(Ending::SchedulerFailure(_))
        ));
        assert_eq!(parse_exit_file("garbage"), None);
    }

    fn recipe(argv0: &str) -> Recipe {
        let text = format!(
            "name = \"r\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"{argv0}\", \"{{x}}\"]\n[parameters.x]\ntype = \"string\"\ndefault = \"a\"\n"
        );
        Recipe::parse(Path::new("r.toml"), &text).unwrap()
    }

    #[test]
    fn runnable_says_whether_the_program_is_there() {
        use crate::backend::Runnable;
        let dir = tempfile::tempdir().unwrap();
        let backend =
            LocalBackend::new(dir.path(), PathBuf::from("/nonexistent"), Duration::ZERO).unwrap();
        let yes = backend.runnable(&recipe("sh"));
        assert_eq!(yes.state, Runnable::Yes, "{yes:?}");
        assert!(
            yes.reason.contains("`sh`") && yes.reason.contains("/sh"),
            "{yes:?}"
        );
        for missing in ["no-such-program-xyz", "/nonexistent/prog"] {
            let no = backend.runnable(&recipe(missing));
            assert_eq!(no.state, Runnable::No, "{no:?}");
            assert!(
                no.reason.contains(&format!("`{missing}` not found")),
                "{no:?}"
            );
        }
        // A file that is not executable is not a program.
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let no = backend.runnable(&recipe(plain.to_str().unwrap()));
        assert_eq!(no.state, Runnable::No, "{no:?}");
        let unknown = backend.runnable(&recipe("{x}"));
        assert_eq!(unknown.state, Runnable::Unknown, "{unknown:?}");
        assert!(unknown.reason.contains("parameter `x`"), "{unknown:?}");
    }

    #[test]
    fn a_reused_process_id_is_not_taken_for_the_service() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let dir = tempfile::tempdir().unwrap();
        let backend =
            LocalBackend::new(dir.path(), PathBuf::from("/nonexistent"), Duration::ZERO).unwrap();
        // An unrelated process leading its own group, as after a restart
        // when the recorded id was reused.
        let mut stranger = Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = stranger.id() as i32;
        let (_, start) = proc_identity(pgid).expect("stat of a live child");
        std::fs::create_dir_all(dir.path().join("svc-1")).unwrap();
        for recorded in [None, Some(format!("{pgid} {}\n", start + 1))] {
            if let Some(r) = &recorded {
                std::fs::write(dir.path().join("svc-1/identity"), r).unwrap();
            }
            let r = pgid.to_string();
            assert_eq!(
                backend.state("svc-1", &r).unwrap(),
                JobState::Missing,
                "{recorded:?}"
            );
            backend.cancel("svc-1", &r).unwrap();
        }
        // The recorded identity matches: it is the service.
        std::fs::write(
            dir.path().join("svc-1/identity"),
            format!("{pgid} {start}\n"),
        )
        .unwrap();
        assert!(matches!(
            backend.state("svc-1", &pgid.to_string()).unwrap(),
            JobState::Active { .. }
        ));
        // Nothing signalled it before: it dies of our SIGKILL, not a SIGTERM.
        stranger.kill().unwrap();
        assert_eq!(stranger.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
