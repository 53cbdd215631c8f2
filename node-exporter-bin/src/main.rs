//! `aif-node-exporter`: the GPU node agent (DESIGN.md §3). A thin binary: parse
//! flags, validate the configuration (exit 2 on any error, nothing started),
//! then hand over to the library.

mod cli;
mod config;
mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use gpu_metrics::source::{GpuSource, NvmlSource, SimulatedSource, SourceError};
use gpu_metrics::{Exposition, Namer, naming::attribution_labels};

use crate::cli::Cli;
use crate::config::{Config, SourceChoice, hostname};
use crate::run::run;

/// Exit code for a configuration error.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure (source cannot be opened, I/O).
const EXIT_RUNTIME: u8 = 1;

fn open_source(config: &Config) -> Result<Box<dyn GpuSource>, SourceError> {
    match config.source {
        SourceChoice::Simulated => {
            log::warn!(
                "source=simulated gpus={} seed={}: these are NOT real GPUs (model \"Simulated GPU\")",
                config.gpus,
                config.seed
            );
            Ok(Box::new(SimulatedSource::new(config.gpus, config.seed)?))
        }
        SourceChoice::Auto | SourceChoice::Nvml => {
            let mut b = NvmlSource::builder().processes(config.processes);
            if let Some(p) = &config.nvml_lib {
                b = b.lib_path(p);
            }
            Ok(Box::new(b.build()?))
        }
    }
}

/// One malloc arena for the whole process. glibc gives every thread that
/// allocates an arena of its own (up to 8 per core); the agent's threads
/// (sampler, one per sink, tunnel pumps, `/metrics`) each allocate a little
/// per tick, so separate arenas only add resident pages (measured: about
/// 0.1 MiB of the exporter's 8) and buy nothing at one tick a second.
fn single_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator settings; it is called
    // before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    single_malloc_arena();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let config = match Config::resolve(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aif-node-exporter: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut source = match open_source(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("aif-node-exporter: cannot open the GPU source: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let mut namer = Namer::new(
        config.scheme,
        attribution_labels(&config.labels),
        hostname(),
    )
    .with_host_label(config.dcgm_host_label);
    if config.once {
        let now = gpu_metrics::now_ms();
        let readings = match source.sample(now) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("aif-node-exporter: sampling failed: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let text = Exposition::new().render(&namer.batch(now, &readings));
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::from(EXIT_RUNTIME);
        }
        return ExitCode::SUCCESS;
    }
    match run(config, source, namer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("aif-node-exporter: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
