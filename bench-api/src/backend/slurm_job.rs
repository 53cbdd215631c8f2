//! What the two Slurm backends ([`super::slurm`]: commands; [`super::slurm_rest`]:
//! slurmrestd) share, so that they submit the same job and read its fate the
//! same way:
//!
//! - [`job_script`]: the batch script (the exporter beside GPU services, then
//!   the service; the service's exit status is the job's);
//! - [`JobResources`]: what the job asks Slurm for, from the recipe and the
//!   `[slurm]` settings;
//! - [`job_state`]: a Slurm state name plus exit code → our [`JobState`]
//!   (`sacct`'s `3:0` and slurmrestd's numbers both become an [`ExitStatus`]).

use gpu_metrics::shell::{shell_join, shell_quote};

pub use super::exporter::ExporterPlan;
use super::{Ending, JobState, LaunchSpec};

/// How much ahead of the step's launch the tasks of a several-node run are
/// told to start (ms): time for `srun` to start every task.
pub const START_LEAD_MS: u64 = 3000;

/// Exit code of a job whose preflight found a URL host a node cannot resolve
/// (`EX_CONFIG` of sysexits.h).
pub const PREFLIGHT_EXIT: i32 = 78;

/// The host of `url` when it is a name (an IP literal needs no resolver),
/// through the one URL parser ([`gpu_metrics::url::parse_http_url`]). The
/// URLs handed to jobs were checked by it at start-up, so `None` means an
/// address, never a URL skipped for being odd.
pub fn url_name(url: &str) -> Option<String> {
    let host = gpu_metrics::url::parse_http_url(url).ok()?.host;
    host.parse::<std::net::IpAddr>().is_err().then_some(host)
}

/// Shell lines checking that every name among `urls` resolves on this host
/// (`getent hosts`, the node's own resolver); the first that does not ends
/// the script with [`PREFLIGHT_EXIT`] and one line on stderr naming the host
/// and what its URL is for (`what`, e.g. "the Pushgateway URL"). Empty when every host is an IP address.
pub fn preflight(urls: &[(&str, String)]) -> String {
    let mut s = String::new();
    let mut seen: Vec<String> = Vec::new();
    for (what, url) in urls {
        // The URL itself is not repeated: it may carry credentials.
        let Some(host) = url_name(url) else { continue };
        if seen.contains(&host) {
            continue;
        }
        let message = format!(
            ": cannot resolve `{host}`, the host of {what} handed to this job \
             (give the nodes a name for it, or an address they reach: the reverse tunnel of the API)"
        );
        s.push_str(&format!(
            "getent hosts {} >/dev/null 2>&1 || {{ echo \"aif-bench-api preflight on $(hostname)\"{} >&2; exit {PREFLIGHT_EXIT}; }}\n",
            shell_quote(&host),
            shell_quote(&message),
        ));
        seen.push(host);
    }
    s
}

/// The job script (`sh`):
///
/// 1. the preflight ([`preflight`]) of every URL handed to the job, on every
///    node of it (through `srun` when it has several);
/// 2. the exporter in the background when the recipe asks for GPUs (on a
///    job of several nodes one per node, through `srun`);
/// 3. the program: on the batch host, or for `tasks` above 1 one copy per
///    node in one `srun` step, each given the same `--start-at` (now plus
///    [`START_LEAD_MS`]); its exit status is the job's.
///
/// Every argument is single-quoted (client values are never parsed by the
/// shell).
pub fn job_script(spec: &LaunchSpec<'_>, exporter: Option<&ExporterPlan>) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# aif-bench-api service {} (recipe {})\n",
        spec.service_id, spec.recipe.name
    ));
    let exporter = exporter.filter(|_| spec.recipe.resources.gpus > 0);
    let nodes = spec.recipe.resources.nodes.max(spec.tasks);
    let mut urls: Vec<(&str, String)> = spec.urls.to_vec();
    if let Some(e) = exporter {
        urls.push(("the Pushgateway URL", e.pushgateway.clone()));
        if let Some(rw) = &e.remote_write {
            urls.push(("the remote-write URL", rw.clone()));
        }
    }
    let checks = preflight(&urls);
    if !checks.is_empty() {
        if nodes > 1 {
            let one_line = checks.lines().collect::<Vec<_>>().join("; ");
            s.push_str(&format!(
                "srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 sh -c {} || exit {PREFLIGHT_EXIT}\n",
                shell_quote(&one_line)
            ));
        } else {
            s.push_str(&checks);
        }
    }
    if let Some(e) = exporter {
        let nodes = spec.recipe.resources.nodes;
        // The instance and the buffer are words the shell expands on the
        // node; every other word arrives quoted.
        let buffer = if nodes > 1 {
            "\"${TMPDIR:-/tmp}/aif-node-exporter-${SLURM_JOB_ID}-$(hostname).sqlite\""
        } else {
            "\"${TMPDIR:-/tmp}/aif-node-exporter-${SLURM_JOB_ID}.sqlite\""
        };
        let command = e
            .argv(
                spec.service_id,
                ShellWord("\"$(hostname)\"".into()),
                ShellWord(buffer.into()),
            )
            .into_iter()
            .map(|w| w.0)
            .collect::<Vec<_>>()
            .join(" ");
        if nodes > 1 {
            // One exporter on every node of the job (a step of one task per
            // node beside the service); each names itself and keeps its own
            // buffer (the nodes may share /tmp). srun forwards the TERM below.
            let inner = format!("exec {command}");
            s.push_str(&format!(
                "srun --overlap --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 --kill-on-bad-exit=0 sh -c {} &\n",
                shell_quote(&inner)
            ));
        } else {
            s.push_str(&format!("{command} &\n"));
        }
        s.push_str("aif_exporter=$!\n");
    }
    if spec.tasks > 1 {
        let n = spec.tasks;
        s.push_str(&format!(
            "aif_start=$(( $(date +%s%N) / 1000000 + {START_LEAD_MS} ))\n\
             srun --nodes={n} --ntasks={n} --ntasks-per-node=1 --kill-on-bad-exit=0 {} --start-at \"$aif_start\"\n",
            shell_join(spec.argv)
        ));
    } else {
        s.push_str(&shell_join(spec.argv));
        s.push('\n');
    }
    s.push_str("aif_rc=$?\n");
    if exporter.is_some() {
        s.push_str("kill -TERM \"$aif_exporter\" 2>/dev/null\nwait \"$aif_exporter\"\n");
    }
    s.push_str("exit \"$aif_rc\"\n");
    s
}

/// One word of the job script's exporter command line: an argument
/// arrives single-quoted (through `From`), a word built here
/// (`"$(hostname)"`) as written.
struct ShellWord(String);

impl From<String> for ShellWord {
    fn from(arg: String) -> ShellWord {
        // The script has always written this flag bare (`--buffer "${TMPDIR…}"`),
        // the same word to the shell; kept so that job scripts stay as they were.
        if arg == "--buffer" {
            ShellWord(arg)
        } else {
            ShellWord(shell_quote(&arg))
        }
    }
}

impl From<std::path::PathBuf> for ShellWord {
    fn from(path: std::path::PathBuf) -> ShellWord {
        ShellWord(shell_quote(&path.to_string_lossy()))
    }
}

/// A job's output file in `log_dir`: `KEY-JOB.EXT`, with `job` Slurm's `%j`
/// in the job description and the job id once it is known (so the backends
/// read the files sbatch's `--output`/`--error` name).
pub fn job_log_path(
    log_dir: &std::path::Path,
    key: &str,
    job: &str,
    ext: &str,
) -> std::path::PathBuf {
    log_dir.join(format!("{key}-{job}.{ext}"))
}

/// What every job of the site asks for besides the recipe's resources (the
/// `[slurm]` settings' `partition` and `account`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobDefaults {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
}

/// What a service's job asks Slurm for (the `sbatch` options, or the fields
/// of slurmrestd's job description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResources {
    /// `--job-name` (`aif-<service id>`).
    pub name: String,
    /// `--nodes`.
    pub nodes: u32,
    /// `--cpus-per-task` (one task per node).
    pub cpus_per_task: u32,
    /// `--gres=gpu:N` when above 0.
    pub gpus: u32,
    /// `--mem`, Slurm syntax (`16G`).
    pub memory: Option<String>,
    /// `--time`, Slurm syntax (`1-00:00:00`).
    pub time_limit: Option<String>,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--output` (`%j` is the job id).
    pub stdout: String,
    /// `--error`.
    pub stderr: String,
}

impl JobResources {
    /// The resources of `spec` with the site's `settings`, output in `log_dir`.
    pub fn of(spec: &LaunchSpec<'_>, settings: &JobDefaults, log_dir: &std::path::Path) -> Self {
        let r = &spec.recipe.resources;
        let log = |ext: &str| {
            job_log_path(log_dir, spec.service_id, "%j", ext)
                .to_string_lossy()
                .into_owned()
        };
        JobResources {
            name: format!("aif-{}", spec.service_id),
            nodes: r.nodes,
            cpus_per_task: r.cpus,
            gpus: r.gpus,
            memory: r.memory.clone(),
            time_limit: r.time_limit.clone(),
            partition: settings.partition.clone(),
            account: settings.account.clone(),
            stdout: log("out"),
            stderr: log("err"),
        }
    }

    /// As `sbatch` options.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut args = vec![
            format!("--job-name={}", self.name),
            format!("--nodes={}", self.nodes),
            "--ntasks-per-node=1".into(),
            // A job whose node failed ends NODE_FAIL (reported, with its
            // reason) instead of starting again unseen (JobRequeue=1).
            "--no-requeue".into(),
            format!("--cpus-per-task={}", self.cpus_per_task),
            format!("--output={}", self.stdout),
            format!("--error={}", self.stderr),
        ];
        if self.gpus > 0 {
            args.push(format!("--gres=gpu:{}", self.gpus));
        }
        if let Some(m) = &self.memory {
            args.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time_limit {
            args.push(format!("--time={t}"));
        }
        if let Some(p) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            args.push(format!("--account={a}"));
        }
        args
    }

    /// `--mem` in MiB (slurmrestd's `memory_per_node`): no suffix is MiB, as
    /// for sbatch; `None` when unset or not Slurm memory syntax.
    pub fn memory_mib(&self) -> Option<Result<u64, String>> {
        let m = self.memory.as_deref()?;
        let (digits, factor) = match m.as_bytes().last() {
            Some(b'K') => (&m[..m.len() - 1], 0),
            Some(b'M') => (&m[..m.len() - 1], 1),
            Some(b'G') => (&m[..m.len() - 1], 1024),
            Some(b'T') => (&m[..m.len() - 1], 1024 * 1024),
            _ => (m, 1),
        };
        Some(match digits.parse::<u64>() {
            Ok(n) if factor == 0 => Ok(n.div_ceil(1024)),
            Ok(n) => n.checked_mul(factor).ok_or_else(|| m.to_string()),
            Err(_) => Err(m.to_string()),
        })
    }

    /// `--time` in minutes (slurmrestd's `time_limit`), seconds rounded up,
    /// from Slurm's forms `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
    pub fn time_limit_minutes(&self) -> Option<Result<u32, String>> {
        let t = self.time_limit.as_deref()?;
        Some(slurm_minutes(t).ok_or_else(|| t.to_string()))
    }
}

fn slurm_minutes(t: &str) -> Option<u32> {
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (num(d)?, Some(r)),
        None => (0, None),
    };
    let secs = match rest {
        Some(r) => {
            let p: Vec<&str> = r.split(':').collect();
            match p.as_slice() {
                [h] => num(h)? * 3600,
                [h, m] => num(h)? * 3600 + num(m)? * 60,
                [h, m, s] => num(h)? * 3600 + num(m)? * 60 + num(s)?,
                _ => return None,
            }
        }
        None => {
            let p: Vec<&str> = t.split(':').collect();
            match p.as_slice() {
                [m] => num(m)? * 60,
                [m, s] => num(m)? * 60 + num(s)?,
                [h, m, s] => num(h)? * 3600 + num(m)? * 60 + num(s)?,
                _ => return None,
            }
        }
    };
    u32::try_from((days * 86_400 + secs).div_ceil(60)).ok()
}

/// How a job's process ended, as Slurm reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit code (and no signal).
    Code(i32),
    /// Terminated by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// `sacct`'s `ExitCode` field: `3:0` → code 3; `0:15` → signal 15.
    pub fn from_sacct(s: &str) -> Option<ExitStatus> {
        let (code, signal) = s.trim().split_once(':')?;
        Self::from_parts(code.parse().ok()?, signal.parse().ok()?)
    }

    /// An exit code and a signal number (0: none), as sacct prints them and
    /// slurmrestd v0.0.40+ sends them.
    pub fn from_parts(code: i32, signal: i32) -> Option<ExitStatus> {
        Some(if signal != 0 {
            ExitStatus::Signal(signal)
        } else {
            ExitStatus::Code(code)
        })
    }

    /// A raw wait(2) status, as slurmrestd v0.0.38 sends `exit_code`
    /// (`768` → code 3, `15` → signal 15).
    pub fn from_wait_status(status: i64) -> Option<ExitStatus> {
        let status = i32::try_from(status).ok()?;
        let signal = status & 0x7f;
        Self::from_parts((status >> 8) & 0xff, signal)
    }
}

/// The state of a job from Slurm's state name (`RUNNING`, `CANCELLED by 0`,
/// `FAILED`, …; squeue/sacct print it, slurmrestd sends it) and, for an ended
/// job, its exit status; `None` for a state name we do not know.
///
/// Both Slurm backends map through this one function.
pub fn job_state(state: &str, exit: Option<ExitStatus>, host: Option<String>) -> Option<JobState> {
    let base = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+');
    Some(match base {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => {
            JobState::Queued
        }
        "CONFIGURING" | "RUNNING" | "COMPLETING" | "RESIZING" | "SIGNALING" | "STAGE_OUT"
        | "STOPPED" | "SUSPENDED" => JobState::Active { host },
        "COMPLETED" | "FAILED" => JobState::Ended(match exit {
            Some(ExitStatus::Code(c)) => Ending::Exited(c),
            Some(ExitStatus::Signal(s)) => Ending::Signalled(s),
            None if base == "COMPLETED" => Ending::Exited(0),
            None => Ending::Exited(1),
        }),
        "CANCELLED" => JobState::Ended(Ending::Cancelled),
        "TIMEOUT" | "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "OUT_OF_MEMORY"
        | "SPECIAL_EXIT" | "LAUNCH_FAILED" => {
            let why = match base {
                "TIMEOUT" => "its time limit was reached",
                "NODE_FAIL" => {
                    "a node of the job stopped responding to slurmctld (SlurmdTimeout) and was set DOWN"
                }
                "PREEMPTED" => "a higher-priority job preempted it",
                "BOOT_FAIL" => "a node of the job failed to boot",
                "DEADLINE" => "its deadline passed",
                "OUT_OF_MEMORY" => "it ran out of memory",
                "LAUNCH_FAILED" => "Slurm could not launch it",
                _ => "it ended in a special state",
            };
            JobState::Ended(Ending::SchedulerFailure(format!(
                "Slurm job state {base}: {why}"
            )))
        }
        _ => return None,
    })
}

/// The first host of a Slurm node list (`node[01-04,07]` → `node01`).
pub fn first_host(nodelist: &str) -> Option<String> {
    let nodelist = nodelist.trim();
    if nodelist.is_empty() || nodelist == "(null)" {
        return None;
    }
    match nodelist.find('[') {
        None => nodelist.split(',').next().map(str::to_string),
        Some(i) if i > 0 && !nodelist[..i].contains(',') => {
            let prefix = &nodelist[..i];
            let first = nodelist[i + 1..].split([',', '-', ']']).next()?;
            Some(format!("{prefix}{first}"))
        }
        Some(_) => nodelist.split(',').next().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_and_states() {
        assert_eq!(ExitStatus::from_sacct("3:0"), Some(ExitStatus::Code(3)));
        assert_eq!(ExitStatus::from_sacct("0:15"), Some(ExitStatus::Signal(15)));
        assert_eq!(ExitStatus::from_wait_status(768), Some(ExitStatus::Code(3)));
        assert_eq!(
            ExitStatus::from_wait_status(15),
            Some(ExitStatus::Signal(15))
        );
        assert_eq!(first_host("node[01-04,07]").as_deref(), Some("node01"));
        assert_eq!(first_host("localhost").as_deref(), Some("localhost"));
        assert_eq!(first_host("a1,a2").as_deref(), Some("a1"));
        assert_eq!(first_host(""), None);
        assert_eq!(
            job_state("CANCELLED by 0", None, None),
            Some(JobState::Ended(Ending::Cancelled))
        );
        assert_eq!(
            job_state("RUNNING", None, Some("n1".into())),
            Some(JobState::Active {
                host: Some("n1".into())
            })
        );
        assert_eq!(
            job_state("FAILED", Some(ExitStatus::Code(3)), None),
            Some(JobState::Ended(Ending::Exited(3)))
        );
        assert_eq!(job_state("WHATEVER", None, None), None);
    }

    /// A job of two nodes starts one exporter per node through `srun` (each
    /// naming itself after its host, with a buffer of its own); one node
    /// keeps the exporter in the batch script itself.
    #[test]
    fn exporter_on_every_node_of_a_multi_node_job() {
        use crate::backend::exporter::ExporterSettings;
        use crate::recipes::Recipe;
        let recipe = |nodes: u32| {
            let text = format!(
                "name = \"g\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"true\"]\n\
                 [resources]\nnodes = {nodes}\ngpus = 1\n"
            );
            Recipe::parse(std::path::Path::new("g.toml"), &text).unwrap()
        };
        let plan = ExporterPlan {
            settings: ExporterSettings {
                binary: "/bin/echo".into(),
                interval: "1s".into(),
                source: "simulated".into(),
            },
            pushgateway: "http://login:19091".into(),
            remote_write: None,
        };
        let argv = vec!["true".to_string()];
        let two = recipe(2);
        let spec = LaunchSpec {
            service_id: "svc-1",
            recipe: &two,
            argv: &argv,
            port: None,
            tasks: 1,
            urls: &[],
        };
        let script = job_script(&spec, Some(&plan));
        assert!(
            script.contains("srun --overlap --nodes=2 --ntasks=2 --ntasks-per-node=1 "),
            "{script}"
        );
        // Its srun line, run in the foreground with an `srun` that runs its
        // command once, here.
        let line = script
            .lines()
            .find(|l| l.starts_with("srun --overlap "))
            .and_then(|l| l.strip_suffix(" &"))
            .unwrap_or_else(|| panic!("no srun line: {script}"));
        let fake_srun = "srun() { while [ \"${1#--}\" != \"$1\" ]; do shift; done; \"$@\"; }\n";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{fake_srun}{line}\n"))
            .env("SLURM_JOB_ID", "7")
            .env_remove("TMPDIR")
            .output()
            .unwrap();
        let host = String::from_utf8_lossy(
            &std::process::Command::new("hostname")
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains(&format!("--instance {host} --label service_id=svc-1"))
                && printed.contains(&format!("--buffer /tmp/aif-node-exporter-7-{host}.sqlite")),
            "{printed}\n{script}"
        );
        let one = recipe(1);
        let spec = LaunchSpec {
            recipe: &one,
            ..spec
        };
        let script = job_script(&spec, Some(&plan));
        assert!(!script.contains("srun"), "{script}");
        assert!(
            script.contains(
                "--buffer \"${TMPDIR:-/tmp}/aif-node-exporter-${SLURM_JOB_ID}.sqlite\" &"
            ),
            "{script}"
        );
    }

    #[test]
    fn memory_and_time_conversions() {
        let mut r = JobResources {
            name: "n".into(),
            nodes: 1,
            cpus_per_task: 1,
            gpus: 0,
            memory: Some("16G".into()),
            time_limit: Some("1-02:03:04".into()),
            partition: None,
            account: None,
            stdout: "o".into(),
            stderr: "e".into(),
        };
        assert_eq!(r.memory_mib(), Some(Ok(16 * 1024)));
        assert_eq!(r.time_limit_minutes(), Some(Ok(24 * 60 + 2 * 60 + 4)));
        for (t, m) in [
            ("90", 90),
            ("10:30", 11),
            ("2:00:00", 120),
            ("2-3", 51 * 60),
        ] {
            r.time_limit = Some(t.into());
            assert_eq!(r.time_limit_minutes(), Some(Ok(m)), "{t}");
        }
        r.time_limit = Some("1:2:3:4".into());
        assert_eq!(r.time_limit_minutes(), Some(Err("1:2:3:4".into())));
        for (mem, mib) in [("512", 512), ("2048K", 2), ("3M", 3), ("1T", 1024 * 1024)] {
            r.memory = Some(mem.into());
            assert_eq!(r.memory_mib(), Some(Ok(mib)), "{mem}");
        }
    }

    #[test]
    fn preflight_refuses_a_name_this_host_cannot_resolve_and_skips_addresses() {
        let urls = [
            ("the Pushgateway URL", "http://198.19.0.1:9091".to_string()),
            (
                "the remote-write URL",
                "http://[::1]:9090/api/v1/write".to_string(),
            ),
            (
                "the endpoint URL of the service",
                "http://localhost:8000".to_string(),
            ),
        ];
        for (url, name) in [
            ("http://[::1]:9090/x", None),
            ("http://10.0.0.1", None),
            ("http://login01:19091/-/ready", Some("login01")),
            ("https://pgw.example.org?x=1", Some("pgw.example.org")),
            ("http://n1:8000/v1/$(id)", Some("n1")),
        ] {
            assert_eq!(url_name(url).as_deref(), name, "{url}");
        }
        let checks = preflight(&urls);
        assert_eq!(checks.matches("getent hosts").count(), 1, "{checks}");
        let run = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .expect("sh")
        };
        let out = run(&format!("{checks}echo reached"));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "reached\n");
        // A name nobody resolves (RFC 6761's .invalid), with a hostile value
        // in the URL's path and a secret in its query: nothing but the check
        // runs, and the URL is not repeated.
        let urls = [(
            "the Pushgateway URL",
            "http://pgw.example.invalid:9091/$(touch%20x)?token=secret".to_string(),
        )];
        let out = run(&format!("{}echo reached", preflight(&urls)));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(PREFLIGHT_EXIT), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(
            err.starts_with("aif-bench-api preflight on ")
                && err.contains(
                    ": cannot resolve `pgw.example.invalid`, the host of the Pushgateway URL handed to this job"
                ),
            "{err}"
        );
        assert!(
            !err.contains("secret"),
            "no credentials in the job's log: {err}"
        );
    }

    #[test]
    fn a_run_of_several_tasks_is_one_srun_step_with_a_shared_start() {
        let recipe = crate::recipes::Recipe::parse(
            std::path::Path::new("l.toml"),
            "name = \"l\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"true\"]\n[resources]\nnodes = 2\n",
        )
        .unwrap();
        let argv = vec!["/opt/aif-loadgen".to_string(), "--parts".into(), "2".into()];
        let urls = [(
            "the endpoint URL of the service",
            "http://node1:8000".to_string(),
        )];
        let spec = LaunchSpec {
            service_id: "run-1",
            recipe: &recipe,
            argv: &argv,
            port: None,
            tasks: 2,
            urls: &urls,
        };
        let script = job_script(&spec, None);
        let lines: Vec<&str> = script.lines().collect();
        assert!(
            lines[1].starts_with("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 sh -c ")
                && lines[1].ends_with(&format!("|| exit {PREFLIGHT_EXIT}")),
            "the preflight runs on every node first: {script}"
        );
        assert_eq!(
            lines[2],
            format!("aif_start=$(( $(date +%s%N) / 1000000 + {START_LEAD_MS} ))")
        );
        assert_eq!(
            lines[3],
            "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=0 '/opt/aif-loadgen' '--parts' '2' --start-at \"$aif_start\""
        );
    }
}
