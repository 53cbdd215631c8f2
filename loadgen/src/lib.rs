//! # `aif-loadgen`: the load generator of benchmark runs (DESIGN.md §8)
//!
//! Synchronous, no async runtime: non-blocking sockets in one event loop per
//! core ([`evloop`], the default), or with `--engine threads` one thread and
//! ureq agent per client. Usable alone, like
//! `vllm bench serve`, and started by the API for benchmark runs.
//!
//! The roles, one file each:
//! - [`plan`]: the command line, validated into a [`plan::Plan`] (exit 2
//!   naming the flag, before any request is sent).
//! - [`prompts`]: inline, JSONL or synthetic prompts.
//! - [`workload`]: one request: build, send, time it;
//!   its ureq agents use the library's lean transport (`gpu_metrics::transport`).
//! - [`stream`]: an SSE answer read as it arrives: TTFT, ITL per token,
//!   output tokens and their source (usage, usage deltas, events, or the
//!   tokenizer).
//! - [`tokenizer`]: `--tokenizer FILE`, a Hugging Face `tokenizer.json`
//!   that counts prompt and output tokens instead of the server.
//! - [`dataset`]: ShareGPT, random (vLLM's definition) and trace workloads.
//! - [`arrivals`]: open-loop due times (constant, Poisson, gamma).
//! - [`engine`]: the client threads, closed and open loop, the end and the
//!   drain, progress.
//! - [`evloop`]: `--engine events`: the same semantics on non-blocking
//!   keep-alive connections ([`mio`]), one event loop thread per core.
//! - [`sweep`]: the SLO capacity search (`--sweep`): steps through the
//!   engine, growth then bisection, saturation.
//! - [`stats`]: HDR histograms, the result JSON (vLLM's key names), the
//!   summary table.
//! - [`live`]: live metrics through the library's buffer and Pushgateway sink.
//! - [`merge`]: one result from the results of the parts of a run split over
//!   several processes (`--parts`, one per node).
//!
//! Exit codes: 0 when the run ran (whatever its requests answered; also when a
//! signal cut it short: the partial result is written), 1 when the result
//! file cannot be written or live metrics cannot start, 2 for bad input.

pub mod arrivals;
pub mod dataset;
pub mod engine;
pub mod evloop;
pub mod live;
pub mod merge;
pub mod plan;
pub mod prompts;
pub mod stats;
pub mod stream;
pub mod sweep;
pub mod tokenizer;
pub mod workload;

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;

/// The binary's `main`: parses `args`, runs, reports. Returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match plan::Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let plan = match args.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aif-loadgen: {e}");
            return 2;
        }
    };
    let stopped = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stopped)) {
            eprintln!("aif-loadgen: cannot install the handler of signal {sig}: {e}");
            return 1;
        }
    }
    if let Some(f) = &plan.result_file
        && let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        eprintln!(
            "aif-loadgen: --result-file: directory {} does not exist",
            dir.display()
        );
        return 2;
    }
    log::info!(
        "run {} against {} for {:?} (warm-up {:?}), {:?}, workload {}",
        plan.run_id,
        plan.workload.url,
        plan.duration,
        plan.warmup,
        plan.load,
        plan.workload.api.name()
    );
    if plan.part.count > 1 {
        log::info!(
            "part {} of {} (seed {}){}",
            plan.part.index,
            plan.part.count,
            plan.seed,
            plan.start_at_ms
                .map(|t| format!(", starting at {t} ms since the epoch"))
                .unwrap_or_default()
        );
    }
    let live = match &plan.live {
        Some(l) => match live::Live::start(l, &plan) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("aif-loadgen: live metrics: {e}");
                return 1;
            }
        },
        None => None,
    };
    let result_file = plan.result_file.clone();
    let (result, ended_by) = if plan.sweep.is_some() {
        sweep::run(&plan, &stopped)
    } else {
        engine::run(plan, &stopped, |s| {
            if let Some(l) = &live {
                l.attach(s);
            }
        })
    };
    let value = serde_json::Value::Object(result.clone());
    let mut code = 0;
    if let Some(f) = &result_file {
        match engine::write_json(f, &value) {
            Ok(()) => log::info!("result written to {}", f.display()),
            Err(e) => {
                eprintln!(
                    "aif-loadgen: cannot write --result-file {}: {e}",
                    f.display()
                );
                code = 1;
            }
        }
    }
    print!("{}", sweep::steps_table(&result));
    print!("{}", engine::summary(&result));
    if let Some(l) = live {
        // A signal asks for a quick exit: the final push gets a bounded moment.
        let limit = match ended_by {
            engine::EndedBy::Signal => Duration::from_millis(500),
            engine::EndedBy::Duration => Duration::from_secs(15),
        };
        l.shutdown(limit);
    }
    log::info!("run ended by {}", ended_by.name());
    code
}
