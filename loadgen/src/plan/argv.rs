//! [`Args::to_argv`]: the command line that parses back into the same
//! [`Args`]. It is the contract between the API, which builds each run's
//! `aif-loadgen` command from an `Args` value, and this binary: a flag added
//! to [`Args`] is added here, and the round-trip test (which names every
//! field) does not compile until it is.

use std::path::Path;

use super::Args;

impl Args {
    /// The flags that [`clap::Parser::try_parse_from`] turns back into `self`
    /// (without the program name): each given value as `--flag=VALUE`, each
    /// set switch as `--flag`, repeatable flags once per value, in the order
    /// of the fields. Values are passed as separate argv items, never through
    /// a shell, so they need no quoting.
    pub fn to_argv(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                // One item, `--flag=VALUE`: a value may begin with a dash.
                out.push(format!("--{flag}={v}"));
            }
        };
        let s = |v: &Option<String>| v.clone();
        let p = |v: &Option<std::path::PathBuf>| v.as_deref().map(path);
        opt("url", s(&self.url));
        opt("concurrency", self.concurrency.map(|v| v.to_string()));
        opt("request-rate", self.request_rate.map(|v| v.to_string()));
        opt("arrivals", s(&self.arrivals));
        opt("burstiness", self.burstiness.map(|v| v.to_string()));
        opt(
            "max-concurrency",
            self.max_concurrency.map(|v| v.to_string()),
        );
        opt("duration", s(&self.duration));
        opt("warmup", s(&self.warmup));
        opt("timeout", s(&self.timeout));
        opt("drain-timeout", s(&self.drain_timeout));
        opt("workload", s(&self.workload));
        opt("method", s(&self.method));
        opt("path", s(&self.path));
        opt("body", s(&self.body));
        opt("body-file", p(&self.body_file));
        for h in &self.headers {
            opt("header", Some(h.clone()));
        }
        for pr in &self.prompts {
            opt("prompt", Some(pr.clone()));
        }
        opt("prompt-file", p(&self.prompt_file));
        opt(
            "synthetic-prompt-words",
            self.synthetic_prompt_words.map(|v| v.to_string()),
        );
        opt("dataset", s(&self.dataset));
        opt("dataset-path", p(&self.dataset_path));
        opt(
            "sharegpt-output-len",
            self.sharegpt_output_len.map(|v| v.to_string()),
        );
        opt("input-len", self.input_len.map(|v| v.to_string()));
        opt("output-len", self.output_len.map(|v| v.to_string()));
        opt("range-ratio", self.range_ratio.map(|v| v.to_string()));
        opt("prefix-len", self.prefix_len.map(|v| v.to_string()));
        opt("model", s(&self.model));
        opt("max-tokens", self.max_tokens.map(|v| v.to_string()));
        opt("temperature", self.temperature.map(|v| v.to_string()));
        opt("tokenizer", p(&self.tokenizer));
        for g in &self.goodput {
            opt("goodput", Some(g.clone()));
        }
        opt("result-file", p(&self.result_file));
        opt("progress-file", p(&self.progress_file));
        opt("progress-every", s(&self.progress_every));
        opt("run-id", s(&self.run_id));
        opt("service-id", s(&self.service_id));
        opt("seed", self.seed.map(|v| v.to_string()));
        opt("parts", self.parts.map(|v| v.to_string()));
        opt("part-index", self.part_index.map(|v| v.to_string()));
        opt("start-at", self.start_at.map(|v| v.to_string()));
        opt("pushgateway", s(&self.pushgateway));
        opt("push-interval", s(&self.push_interval));
        opt("buffer", p(&self.buffer));
        opt("sweep", s(&self.sweep));
        opt("sweep-min", self.sweep_min.map(|v| v.to_string()));
        opt("sweep-max", self.sweep_max.map(|v| v.to_string()));
        opt("sweep-step-duration", s(&self.sweep_step_duration));
        opt("goodput-target", self.goodput_target.map(|v| v.to_string()));
        opt(
            "sweep-tolerance",
            self.sweep_tolerance.map(|v| v.to_string()),
        );
        opt("engine", s(&self.engine));
        let ssh = &self.ssh;
        opt("ssh-host", s(&ssh.ssh_host));
        opt("ssh-port", ssh.ssh_port.map(|v| v.to_string()));
        opt("ssh-user", s(&ssh.ssh_user));
        opt("ssh-identity", p(&ssh.ssh_identity));
        opt("ssh-known-hosts", p(&ssh.ssh_known_hosts));
        if self.no_usage {
            out.push("--no-usage".into());
        }
        if self.keep_group {
            out.push("--keep-group".into());
        }
        if self.sharegpt_reference_len {
            out.push("--sharegpt-reference-len".into());
        }
        if let Some(b) = ssh.ssh_accept_new {
            // `require_equals`: the value is part of the item.
            out.push(format!("--ssh-accept-new={b}"));
        }
        out
    }
}

/// A path as an argv item (lossy only for names that are not UTF-8, which the
/// API never builds).
fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;
    use gpu_metrics::ssh::SshArgs;
    use proptest::prelude::*;

    use super::*;

    /// Text a flag value may hold: anything printable, including a leading
    /// dash, spaces, quotes and `=`, but not empty.
    fn text() -> impl Strategy<Value = String> {
        "[ -~]{1,12}"
    }

    fn o<T: std::fmt::Debug + Clone>(
        s: impl Strategy<Value = T>,
    ) -> impl Strategy<Value = Option<T>> {
        proptest::option::of(s)
    }

    fn finite() -> impl Strategy<Value = f64> {
        prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL
    }

    fn file() -> impl Strategy<Value = PathBuf> {
        "[a-zA-Z0-9_./%-]{1,16}".prop_map(PathBuf::from)
    }

    prop_compose! {
        fn ssh_args()(
            ssh_host in o(text()),
            ssh_port in o(any::<u16>()),
            ssh_user in o(text()),
            ssh_identity in o(file()),
            ssh_known_hosts in o(file()),
            ssh_accept_new in o(any::<bool>()),
        ) -> SshArgs {
            SshArgs { ssh_host, ssh_port, ssh_user, ssh_identity, ssh_known_hosts, ssh_accept_new }
        }
    }

    prop_compose! {
        fn strings_a()(
            url in o(text()), arrivals in o(text()), duration in o(text()),
            warmup in o(text()), timeout in o(text()), drain_timeout in o(text()),
            workload in o(text()), method in o(text()), path in o(text()),
            body in o(text()),
        ) -> [Option<String>; 10] {
            [url, arrivals, duration, warmup, timeout, drain_timeout, workload, method, path, body]
        }
    }

    prop_compose! {
        fn strings_b()(
            model in o(text()), progress_every in o(text()), run_id in o(text()),
            service_id in o(text()), pushgateway in o(text()), push_interval in o(text()),
            engine in o(text()),
        ) -> [Option<String>; 7] {
            [model, progress_every, run_id, service_id, pushgateway, push_interval, engine]
        }
    }

    prop_compose! {
        fn numbers()(
            concurrency in o(any::<usize>()), request_rate in o(finite()),
            burstiness in o(finite()), max_concurrency in o(any::<usize>()),
            synthetic_prompt_words in o(any::<usize>()), max_tokens in o(any::<u32>()),
            temperature in o(finite()), seed in o(any::<u64>()), parts in o(any::<usize>()),
            part_index in o(any::<usize>()), start_at in o(any::<i64>()),
        ) -> (Option<usize>, Option<f64>, Option<f64>, Option<usize>, Option<usize>, Option<u32>,
              Option<f64>, Option<u64>, Option<usize>, Option<usize>, Option<i64>) {
            (concurrency, request_rate, burstiness, max_concurrency, synthetic_prompt_words,
             max_tokens, temperature, seed, parts, part_index, start_at)
        }
    }

    /// The `--dataset` flags.
    #[derive(Debug, Clone)]
    struct DatasetFlags {
        dataset: Option<String>,
        dataset_path: Option<PathBuf>,
        sharegpt_output_len: Option<u32>,
        sharegpt_reference_len: bool,
        input_len: Option<usize>,
        output_len: Option<u32>,
        range_ratio: Option<f64>,
        prefix_len: Option<usize>,
    }

    prop_compose! {
        fn dataset_flags()(
            dataset in o(text()), dataset_path in o(file()),
            sharegpt_output_len in o(any::<u32>()), sharegpt_reference_len in any::<bool>(),
            input_len in o(any::<usize>()), output_len in o(any::<u32>()),
            range_ratio in o(finite()), prefix_len in o(any::<usize>()),
        ) -> DatasetFlags {
            DatasetFlags {
                dataset, dataset_path, sharegpt_output_len, sharegpt_reference_len,
                input_len, output_len, range_ratio, prefix_len,
            }
        }
    }

    /// The `--sweep` flags.
    #[derive(Debug, Clone)]
    struct SweepFlags {
        sweep: Option<String>,
        sweep_min: Option<f64>,
        sweep_max: Option<f64>,
        sweep_step_duration: Option<String>,
        goodput_target: Option<f64>,
        sweep_tolerance: Option<f64>,
    }

    prop_compose! {
        fn sweep_flags()(
            sweep in o(text()), sweep_min in o(finite()), sweep_max in o(finite()),
            sweep_step_duration in o(text()), goodput_target in o(finite()),
            sweep_tolerance in o(finite()),
        ) -> SweepFlags {
            SweepFlags {
                sweep, sweep_min, sweep_max, sweep_step_duration, goodput_target, sweep_tolerance,
            }
        }
    }

    prop_compose! {
        fn args()(
            a in strings_a(), b in strings_b(), n in numbers(), ssh in ssh_args(),
            files in proptest::array::uniform6(o(file())),
            headers in prop::collection::vec(text(), 0..3),
            prompts in prop::collection::vec(text(), 0..3),
            goodput in prop::collection::vec(text(), 0..3),
            no_usage in any::<bool>(), keep_group in any::<bool>(),
            d in dataset_flags(),
            w in sweep_flags(),
        ) -> Args {
            let [url, arrivals, duration, warmup, timeout, drain_timeout, workload, method, path, body] = a;
            let [model, progress_every, run_id, service_id, pushgateway, push_interval, engine] = b;
            let (concurrency, request_rate, burstiness, max_concurrency, synthetic_prompt_words,
                 max_tokens, temperature, seed, parts, part_index, start_at) = n;
            let [body_file, prompt_file, result_file, progress_file, buffer, tokenizer] = files;
            let DatasetFlags {
                dataset, dataset_path, sharegpt_output_len, sharegpt_reference_len,
                input_len, output_len, range_ratio, prefix_len,
            } = d;
            let SweepFlags {
                sweep, sweep_min, sweep_max, sweep_step_duration, goodput_target, sweep_tolerance,
            } = w;
            // Every field named: a new flag does not compile here until it
            // is generated (and so until `to_argv` must carry it).
            Args {
                url, concurrency, request_rate, arrivals, burstiness, max_concurrency,
                duration, warmup, timeout, drain_timeout, workload, method, path, body,
                body_file, headers, prompts, prompt_file, synthetic_prompt_words, model,
                max_tokens, temperature, no_usage, tokenizer, goodput, result_file, progress_file,
                progress_every, run_id, service_id, seed, parts, part_index, start_at,
                pushgateway, push_interval, keep_group, buffer, ssh,
                dataset, dataset_path, sharegpt_output_len, sharegpt_reference_len,
                input_len, output_len, range_ratio, prefix_len,
                sweep, sweep_min, sweep_max, sweep_step_duration, goodput_target, sweep_tolerance,
                engine,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn to_argv_parses_back_into_the_same_args(a in args()) {
            let argv = a.to_argv();
            let back = Args::try_parse_from(std::iter::once("aif-loadgen".to_string()).chain(argv.clone()))
                .map_err(|e| TestCaseError::fail(format!("{argv:?}: {e}")))?;
            prop_assert_eq!(back, a, "argv {:?}", argv);
        }
    }

    #[test]
    fn to_argv_of_the_default_is_empty() {
        assert!(Args::default().to_argv().is_empty());
    }
}
