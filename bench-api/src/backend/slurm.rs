//! The Slurm backend: a service is a batch job.
//!
//! - start: `sbatch --parsable … --wrap=SCRIPT`; the script is generated, every
//!   argument of the recipe's argv single-quoted (client values can never be
//!   parsed by the shell). With `--wrap` the script travels as one argument, so
//!   the same call works locally and over SSH (no file to copy).
//! - state: one `squeue -h -t all -j ID,… -o %i|%T|%N` for all jobs; jobs that
//!   ended (or aged out of squeue) are looked up with `sacct -c` (jobcomp
//!   filetxt) for their exit code.
//! - cancel: `scancel ID`.
//!
//! A recipe that asks for GPUs gets `aif-node-exporter` started beside the
//! service in the same job, with `--label service_id=<id> --pushgateway URL
//! --delete-on-exit` (`slurm_job_id` comes from the job's environment).

use std::collections::HashMap;
use std::path::PathBuf;

use super::runner::{CommandOutput, CommandRunner};
pub use super::slurm_job::ExporterPlan;
use super::slurm_job::{ExitStatus, JobResources, first_host, job_script, job_state};
use super::slurm_settings::SlurmSettings;
use super::{Backend, BackendError, JobState, LaunchSpec, Launched};

/// Slurm jobs through a [`CommandRunner`].
pub struct SlurmBackend {
    runner: Box<dyn CommandRunner>,
    settings: SlurmSettings,
    log_dir: PathBuf,
    exporter: Option<ExporterPlan>,
    env: Vec<String>,
}

impl std::fmt::Debug for SlurmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmBackend")
            .field("runner", &self.runner.describe())
            .field("log_dir", &self.log_dir)
            .finish_non_exhaustive()
    }
}

fn sbatch_job_id(out: &str) -> Option<String> {
    let line = out.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let id = line.split(';').next()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'_')).then(|| id.to_string())
}

impl SlurmBackend {
    /// A backend running Slurm commands through `runner`, job output in
    /// `log_dir` (on the cluster), with `exporter` beside GPU services.
    pub fn new(
        runner: Box<dyn CommandRunner>,
        settings: SlurmSettings,
        log_dir: PathBuf,
        exporter: Option<ExporterPlan>,
    ) -> SlurmBackend {
        let env = if settings.env.is_empty() {
            Vec::new()
        } else {
            std::iter::once("env".to_string())
                .chain(settings.env.iter().map(|(k, v)| format!("{k}={v}")))
                .collect()
        };
        SlurmBackend {
            runner,
            settings,
            log_dir,
            exporter,
            env,
        }
    }

    fn command(&self, args: &[&str]) -> Vec<String> {
        self.env
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    }

    fn run(&self, args: Vec<String>) -> Result<CommandOutput, BackendError> {
        log::debug!("slurm: {} $ {}", self.runner.describe(), args.join(" "));
        Ok(self.runner.run(&args)?)
    }

    /// The job script (`sh`), the same for both Slurm backends
    /// ([`job_script`]).
    pub fn script(&self, spec: &LaunchSpec<'_>) -> String {
        job_script(spec, self.exporter.as_ref())
    }

    /// The `sbatch` argv for `spec`.
    pub fn sbatch_args(&self, spec: &LaunchSpec<'_>) -> Vec<String> {
        let mut args = vec!["sbatch".to_string(), "--parsable".into()];
        args.extend(
            JobResources::of(spec, &self.settings.job_defaults(), &self.log_dir).sbatch_options(),
        );
        args.extend(self.settings.extra_args.iter().cloned());
        args.push(format!("--wrap={}", self.script(spec)));
        self.env.iter().cloned().chain(args).collect()
    }

    fn sacct(&self, ids: &[&str]) -> HashMap<String, JobState> {
        let list = ids.join(",");
        let mut out = HashMap::new();
        let Ok(res) = self.run(self.command(&[
            "sacct",
            "-c",
            "-n",
            "-P",
            "-j",
            &list,
            "-o",
            "JobID,State,ExitCode",
        ])) else {
            return out;
        };
        if !res.success() {
            log::warn!(
                "slurm: sacct -c -j {list} failed ({}): {}",
                res.status,
                res.stderr.trim()
            );
            return out;
        }
        for line in res.stdout.lines() {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() < 3 {
                continue;
            }
            let Some(state) = job_state(f[1], ExitStatus::from_sacct(f[2]), None) else {
                continue;
            };
            out.insert(f[0].to_string(), state);
        }
        out
    }
}

impl Backend for SlurmBackend {
    fn kind(&self) -> &'static str {
        "slurm"
    }

    fn launch(&self, spec: &LaunchSpec<'_>) -> Result<Launched, BackendError> {
        let dir = self.log_dir.to_string_lossy().into_owned();
        let mk = self.run(self.command(&["mkdir", "-p", &dir]))?;
        if !mk.success() {
            log::warn!("slurm: mkdir -p {dir} failed: {}", mk.stderr.trim());
        }
        let out = self.run(self.sbatch_args(spec))?;
        if !out.success() {
            return Err(BackendError::BadOutput {
                command: "sbatch".into(),
                output: format!("exit {}: {}", out.status, out.stderr.trim()),
            });
        }
        let id = sbatch_job_id(&out.stdout).ok_or_else(|| BackendError::BadOutput {
            command: "sbatch --parsable".into(),
            output: out.stdout.clone(),
        })?;
        log::info!(
            "slurm: submitted service {} ({}) as job {id} via {}",
            spec.service_id,
            spec.recipe.name,
            self.runner.describe()
        );
        Ok(Launched {
            backend_ref: id,
            host: None,
        })
    }

    fn states(&self, jobs: &[(&str, &str)]) -> HashMap<String, Result<JobState, BackendError>> {
        let mut out = HashMap::new();
        if jobs.is_empty() {
            return out;
        }
        for (sid, r) in jobs {
            if sbatch_job_id(r).as_deref() != Some(*r) {
                out.insert(
                    (*sid).to_string(),
                    Err(BackendError::BadRef((*r).to_string())),
                );
            }
        }
        let ids: Vec<&str> = jobs
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| sbatch_job_id(r).as_deref() == Some(*r))
            .collect();
        if ids.is_empty() {
            return out;
        }
        let list = ids.join(",");
        let mut seen: HashMap<String, (String, Option<String>)> = HashMap::new();
        match self.run(self.command(&["squeue", "-h", "-t", "all", "-j", &list, "-o", "%i|%T|%N"]))
        {
            Ok(res) if res.success() => {
                for line in res.stdout.lines() {
                    let f: Vec<&str> = line.trim().split('|').collect();
                    if f.len() >= 3 {
                        seen.insert(f[0].to_string(), (f[1].to_string(), first_host(f[2])));
                    }
                }
            }
            Ok(res) => log::debug!(
                "slurm: squeue -j {list}: exit {}: {}",
                res.status,
                res.stderr.trim()
            ),
            Err(e) => {
                for (sid, _) in jobs {
                    out.entry((*sid).to_string()).or_insert_with(|| {
                        Err(BackendError::BadOutput {
                            command: "squeue".into(),
                            output: e.to_string(),
                        })
                    });
                }
                return out;
            }
        }
        // Ended or unknown to squeue: ask the job completion log for the exit code.
        let need_sacct: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| match seen.get(*id) {
                None => true,
                Some((state, _)) => {
                    matches!(
                        job_state(state, None, None),
                        Some(JobState::Ended(_)) | None
                    )
                }
            })
            .collect();
        let completed = if need_sacct.is_empty() {
            HashMap::new()
        } else {
            self.sacct(&need_sacct)
        };
        for (sid, r) in jobs {
            if out.contains_key(*sid) {
                continue;
            }
            let state = match (seen.get(*r), completed.get(*r)) {
                (_, Some(done)) => done.clone(),
                (Some((state, host)), None) => {
                    job_state(state, None, host.clone()).unwrap_or(JobState::Missing)
                }
                (None, None) => JobState::Missing,
            };
            out.insert((*sid).to_string(), Ok(state));
        }
        out
    }

    fn cancel(&self, service_id: &str, backend_ref: &str) -> Result<(), BackendError> {
        if sbatch_job_id(backend_ref).as_deref() != Some(backend_ref) {
            return Err(BackendError::BadRef(backend_ref.to_string()));
        }
        let out = self.run(self.command(&["scancel", backend_ref]))?;
        if !out.success()
            && !out.stderr.contains("Invalid job id")
            && !out.stderr.contains("already completed")
        {
            return Err(BackendError::BadOutput {
                command: "scancel".into(),
                output: format!("exit {}: {}", out.status, out.stderr.trim()),
            });
        }
        log::info!("slurm: scancel job {backend_ref} (service {service_id})");
        Ok(())
    }

    fn job_file(&self, key: &str, name: &str) -> PathBuf {
        self.log_dir.join(format!("{key}.{name}"))
    }

    fn probe_http(
        &self,
        host: &str,
        port: u16,
        path: &str,
        timeout: std::time::Duration,
    ) -> Option<bool> {
        let answer = self.runner.http_status(host, port, path, timeout)?;
        Some(match answer {
            Ok(Some(code)) => (200..300).contains(&code),
            Ok(None) => {
                log::debug!("slurm: health check {host}:{port}{path}: not an HTTP answer");
                false
            }
            Err(e) => {
                log::debug!(
                    "slurm: health check {host}:{port}{path} via {}: {e}",
                    self.runner.describe()
                );
                false
            }
        })
    }

    fn stderr_file(&self, key: &str, backend_ref: &str) -> PathBuf {
        super::slurm_job::job_log_path(&self.log_dir, key, backend_ref, "err")
    }

    fn read_job_file(&self, path: &std::path::Path) -> Result<Option<String>, BackendError> {
        let p = path.to_string_lossy().into_owned();
        let out = self.run(self.command(&["cat", "--", &p]))?;
        if out.success() {
            Ok(Some(out.stdout))
        } else if out.stderr.contains("No such file") {
            Ok(None)
        } else {
            Err(BackendError::BadOutput {
                command: format!("cat {p}"),
                output: format!("exit {}: {}", out.status, out.stderr.trim()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::exporter::ExporterSettings;
    use crate::recipes::Recipe;
    use gpu_metrics::shell::shell_quote;
    use std::path::Path;

    #[test]
    fn runnable_is_unknown_not_a_guess() {
        let text = "name = \"r\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"no-such-program-xyz\"]\n";
        let recipe = Recipe::parse(Path::new("r.toml"), text).unwrap();
        let b = SlurmBackend::new(
            Box::new(NoRunner),
            SlurmSettings::default(),
            PathBuf::from("/logs"),
            None,
        );
        let r = b.runnable(&recipe);
        assert_eq!(r.state, crate::backend::Runnable::Unknown, "{r:?}");
        assert!(
            r.reason.contains("`no-such-program-xyz`") && r.reason.contains("slurm backend"),
            "{r:?}"
        );
    }

    #[test]
    fn parsing() {
        assert_eq!(sbatch_job_id("123\n").as_deref(), Some("123"));
        assert_eq!(sbatch_job_id("123;cluster\n").as_deref(), Some("123"));
        assert_eq!(sbatch_job_id("sbatch: error"), None);
    }

    struct NoRunner;
    impl CommandRunner for NoRunner {
        fn run(&self, _: &[String]) -> Result<CommandOutput, super::super::runner::RunnerError> {
            Err(super::super::runner::RunnerError::Empty)
        }
        fn describe(&self) -> String {
            "none".into()
        }
    }

    #[test]
    fn script_quotes_every_argument_and_adds_the_exporter_for_gpus() {
        let text = r#"
name = "g"
description = "d"
category = "c"
argv = ["prog", "{s}"]
[resources]
gpus = 1
[parameters.s]
type = "string"
"#;
        let recipe = Recipe::parse(Path::new("g.toml"), text).unwrap();
        let backend = SlurmBackend::new(
            Box::new(NoRunner),
            SlurmSettings::default(),
            PathBuf::from("/logs"),
            Some(ExporterPlan {
                settings: ExporterSettings {
                    binary: PathBuf::from("/opt/aif-node-exporter"),
                    interval: "1s".into(),
                    source: "auto".into(),
                },
                pushgateway: "http://pgw:9091".into(),
                remote_write: Some("http://prom:9090/api/v1/write".into()),
            }),
        );
        let argv = vec!["prog".to_string(), "it's $(id) `x` \"y\"".to_string()];
        let spec = LaunchSpec {
            service_id: "svc-1",
            recipe: &recipe,
            argv: &argv,
            port: None,
            tasks: 1,
            urls: &[],
        };
        let script = backend.script(&spec);
        assert!(script.contains("'it'\\''s $(id) `x` \"y\"'"), "{script}");
        assert!(
            script.contains("'--label' 'service_id=svc-1' '--delete-on-exit'"),
            "{script}"
        );
        assert!(
            script.contains("'--pushgateway' 'http://pgw:9091'"),
            "{script}"
        );
        assert!(
            script.contains("'--remote-write' 'http://prom:9090/api/v1/write'"),
            "{script}"
        );
        // The shell gives the program exactly the argv back.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf '%s\\n' {}",
                argv.iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}\n{}\n", argv[0], argv[1])
        );
        let args = backend.sbatch_args(&spec);
        assert!(args.contains(&"--gres=gpu:1".to_string()));
        assert!(args.last().unwrap().starts_with("--wrap="));
    }

    /// Hostile parameter values (whatever validation lets through: no control
    /// characters, no leading `-`) reach the service as verbatim arguments
    /// through both shells they cross: the login shell over SSH (the whole
    /// `sbatch` command line) and the job's `sh` (the `--wrap` script).
    #[test]
    fn hostile_values_arrive_verbatim_and_nothing_is_executed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let m = marker.display().to_string();
        let hostile = [
            format!("$(touch {m})"),
            format!("`touch {m}`"),
            format!("x; touch {m}"),
            format!("x' ; touch {m}; echo '"),
            format!("x\" ; touch {m}; echo \""),
            format!("a|touch {m}&&touch {m}||touch {m}"),
            format!("> {m}"),
            "$HOME ${PATH} $((1+1)) * ? [a] ~ ! \\ \\' #".to_string(),
            "ünïcödé   spaces".to_string(),
        ];
        let mut text = String::from(
            "name = \"h\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"printf\", \"%s\\\\n\"",
        );
        for i in 0..hostile.len() {
            text.push_str(&format!(", \"{{p{i}}}\""));
        }
        text.push_str("]\n");
        for i in 0..hostile.len() {
            text.push_str(&format!("[parameters.p{i}]\ntype = \"string\"\n"));
        }
        let recipe = Recipe::parse(Path::new("h.toml"), &text).unwrap();
        let given: std::collections::BTreeMap<String, serde_json::Value> = hostile
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("p{i}"), serde_json::json!(v)))
            .collect();
        // The API's own validation accepts them all.
        let resolved = recipe.resolve(&given).unwrap();
        let backend = SlurmBackend::new(
            Box::new(NoRunner),
            SlurmSettings::default(),
            PathBuf::from("/logs"),
            None,
        );
        let spec = LaunchSpec {
            service_id: "svc-1",
            recipe: &recipe,
            argv: &resolved.argv,
            port: None,
            tasks: 1,
            urls: &[],
        };
        let script = backend.script(&spec);
        let want: String = hostile.iter().map(|v| format!("{v}\n")).collect();
        // As sbatch runs `--wrap` (`sh` reads the script), and as the login
        // shell runs the quoted command line over SSH before that.
        let direct = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let over_ssh = std::process::Command::new("sh")
            .arg("-c")
            .arg(gpu_metrics::shell::shell_join(&[
                "sh".to_string(),
                "-c".to_string(),
                script.clone(),
            ]))
            .output()
            .unwrap();
        for out in [direct, over_ssh] {
            assert!(out.status.success(), "{out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{script}");
        }
        assert!(!marker.exists(), "a hostile value was executed: {script}");
        // A newline (which would end a quoted word's line) never gets here.
        let mut nl: std::collections::BTreeMap<String, serde_json::Value> = given.clone();
        nl.insert("p0".into(), serde_json::json!("a\ntouch x"));
        let e = recipe.resolve(&nl).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (400, Some("params.p0")));
    }
}
