//! The node exporter the backends start beside GPU services: its settings
//! (keys `exporter_binary`, `exporter_interval`, `exporter_source`) and their
//! checks, and the plan both backends start it from ([`ExporterPlan`], whose
//! [`ExporterPlan::argv`] is the one command line of the local backend and
//! the Slurm job script).

use std::path::PathBuf;
use std::time::Duration;

use super::settings::SettingsError;

/// The exporter's own lower bound for `--interval`: a shorter one would make
/// every exporter the API starts exit at once.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The node exporter started beside GPU services.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSettings {
    /// Path of `aif-node-exporter` on the compute nodes.
    pub binary: PathBuf,
    /// `--interval` (key `exporter_interval`), as given: `100ms`, `1s`, …
    pub interval: String,
    /// `--source` (`auto`, `nvml`, `simulated`; key `exporter_source`).
    pub source: String,
}

impl ExporterSettings {
    /// Checks the values handed to every exporter on its command line: the
    /// interval is a duration (`100ms`, `1s`, `5m`; the exporter's parser) of
    /// at least 10 ms, the source one of `auto`, `nvml`, `simulated`.
    ///
    /// # Errors
    /// [`SettingsError`] naming `exporter_interval` or `exporter_source`.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let interval = gpu_metrics::units::parse_duration(&self.interval)
            .map_err(|e| SettingsError::new("exporter_interval", e.to_string()))?;
        if interval < MIN_INTERVAL {
            return Err(SettingsError::new(
                "exporter_interval",
                format!("`{}` is below the 10ms minimum", self.interval),
            ));
        }
        if !matches!(self.source.as_str(), "auto" | "nvml" | "simulated") {
            return Err(SettingsError::new(
                "exporter_source",
                format!("`{}` is not one of: auto, nvml, simulated", self.source),
            ));
        }
        Ok(())
    }
}

/// The node exporter to start beside GPU services.
#[derive(Debug, Clone)]
pub struct ExporterPlan {
    /// Exporter binary and interval.
    pub settings: ExporterSettings,
    /// Pushgateway URL (as the job sees it: the reverse tunnel's when held).
    pub pushgateway: String,
    /// Remote-write URL (`--remote-write`), delivered to besides the Pushgateway.
    pub remote_write: Option<String>,
}

impl ExporterPlan {
    /// The exporter's command line (its binary first) beside the service
    /// `service_id`: job `aif-service`, labelled `service_id`, its series
    /// deleted on exit, naming itself `instance` and buffering in `buffer`.
    ///
    /// Every word but those two is built with `From` (from a `String`, the
    /// binary from its `PathBuf`): an `OsString` for a [`std::process::Command`];
    /// a shell word quoted on conversion for a script, where `instance` and
    /// `buffer` may be words the shell expands (`"$(hostname)"`).
    pub fn argv<T: From<String> + From<PathBuf>>(
        &self,
        service_id: &str,
        instance: T,
        buffer: T,
    ) -> Vec<T> {
        let mut argv: Vec<T> = vec![self.settings.binary.clone().into()];
        let word = |s: &str| T::from(s.to_string());
        argv.extend([
            word("--pushgateway"),
            word(&self.pushgateway),
            word("--job"),
            word("aif-service"),
            word("--instance"),
            instance,
            word("--label"),
            T::from(format!("service_id={service_id}")),
            word("--delete-on-exit"),
            word("--interval"),
            word(&self.settings.interval),
            word("--source"),
            word(&self.settings.source),
        ]);
        if let Some(rw) = &self.remote_write {
            argv.extend([word("--remote-write"), word(rw)]);
        }
        argv.extend([word("--buffer"), buffer]);
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(interval: &str, source: &str) -> ExporterSettings {
        ExporterSettings {
            binary: PathBuf::from("aif-node-exporter"),
            interval: interval.into(),
            source: source.into(),
        }
    }

    #[test]
    fn interval_and_source_are_checked() {
        for good in ["1s", "10ms", "200ms", "1.5s", "5m"] {
            assert_eq!(with(good, "auto").validate(), Ok(()), "{good}");
        }
        for bad in ["0s", "abc", "", "5", "1ms", "-1s"] {
            let e = with(bad, "auto").validate().unwrap_err();
            assert_eq!(e.key, "exporter_interval", "{bad}: {e}");
        }
        let e = with("1s", "gpu").validate().unwrap_err();
        assert_eq!(e.key, "exporter_source");
    }

    /// The job script's exporter line is the one written by hand before
    /// [`ExporterPlan::argv`] (rebuilt here the old way), byte for byte.
    #[test]
    fn the_job_script_line_is_unchanged() {
        use gpu_metrics::shell::{shell_join, shell_quote};
        let recipe = |nodes: u32| {
            let text = format!(
                "name = \"g\"\ndescription = \"d\"\ncategory = \"c\"\nargv = [\"true\"]\n\
                 [resources]\nnodes = {nodes}\ngpus = 1\n"
            );
            crate::recipes::Recipe::parse(std::path::Path::new("g.toml"), &text).unwrap()
        };
        let argv = vec!["true".to_string()];
        for remote_write in [
            None,
            Some("http://prom:9090/api/v1/write?x='y'".to_string()),
        ] {
            let e = ExporterPlan {
                settings: ExporterSettings {
                    binary: "/opt/aif node/aif-node-exporter".into(),
                    interval: "250ms".into(),
                    source: "auto".into(),
                },
                pushgateway: "http://login:19091".into(),
                remote_write,
            };
            for nodes in [1, 3] {
                let r = recipe(nodes);
                let spec = super::super::LaunchSpec {
                    service_id: "svc-'1'",
                    recipe: &r,
                    argv: &argv,
                    port: None,
                    tasks: 1,
                    urls: &[],
                };
                let args = [
                    e.settings.binary.to_string_lossy().into_owned(),
                    "--pushgateway".into(),
                    e.pushgateway.clone(),
                    "--job".into(),
                    "aif-service".into(),
                    "--instance".into(),
                ];
                let mut rest = vec![
                    "--label".to_string(),
                    format!("service_id={}", spec.service_id),
                    "--delete-on-exit".into(),
                    "--interval".into(),
                    e.settings.interval.clone(),
                    "--source".into(),
                    e.settings.source.clone(),
                ];
                if let Some(rw) = &e.remote_write {
                    rest.extend(["--remote-write".to_string(), rw.clone()]);
                }
                let want = if nodes > 1 {
                    let inner = format!(
                        "exec {} \"$(hostname)\" {} --buffer \"${{TMPDIR:-/tmp}}/aif-node-exporter-${{SLURM_JOB_ID}}-$(hostname).sqlite\"",
                        shell_join(&args),
                        shell_join(&rest)
                    );
                    format!(
                        "srun --overlap --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 --kill-on-bad-exit=0 sh -c {} &\n",
                        shell_quote(&inner)
                    )
                } else {
                    format!(
                        "{} \"$(hostname)\" {} --buffer \"${{TMPDIR:-/tmp}}/aif-node-exporter-${{SLURM_JOB_ID}}.sqlite\" &\n",
                        shell_join(&args),
                        shell_join(&rest)
                    )
                };
                let script = super::super::slurm_job::job_script(&spec, Some(&e));
                assert!(
                    script.contains(&format!("\n{want}aif_exporter=$!\n")),
                    "{want}\n{script}"
                );
            }
        }
    }

    #[test]
    fn argv_names_the_service_and_puts_the_buffer_last() {
        let mut plan = ExporterPlan {
            settings: with("1s", "simulated"),
            pushgateway: "http://pgw:9091".into(),
            remote_write: None,
        };
        let argv: Vec<String> = plan
            .argv::<std::ffi::OsString>("svc-1", "n1".into(), "/tmp/b.sqlite".into())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            argv.join(" "),
            "aif-node-exporter --pushgateway http://pgw:9091 --job aif-service --instance n1 \
             --label service_id=svc-1 --delete-on-exit --interval 1s --source simulated \
             --buffer /tmp/b.sqlite"
        );
        plan.remote_write = Some("http://prom:9090/api/v1/write".into());
        let argv = plan.argv::<std::ffi::OsString>("s", "i".into(), "b".into());
        let tail: Vec<_> = argv[argv.len() - 4..].iter().collect();
        assert_eq!(
            tail,
            [
                "--remote-write",
                "http://prom:9090/api/v1/write",
                "--buffer",
                "b"
            ]
        );
    }
}
