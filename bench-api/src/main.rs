//! `aif-bench-api`: the blocking HTTP API behind the Grafana buttons (DESIGN.md §8).
//!
//! Exit codes: 0 after a clean stop, 1 when the server cannot start (port in
//! use, database unreadable), 2 for a configuration error (flags, TOML file,
//! token file, recipes), naming the key.

use std::ffi::OsString;

use aif_bench_api::backend::local::{SUPERVISE_ARG, supervise};
use aif_bench_api::{Cli, Config, Server, StartError};
use clap::Parser;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == SUPERVISE_ARG) {
        std::process::exit(supervise(&args[2..]));
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    std::panic::set_hook(Box::new(|info| {
        log::error!("panic: {info}");
    }));
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            eprintln!("aif-bench-api: {e}");
            std::process::exit(2);
        }
    };
    match Server::start(config) {
        Ok(server) => server.wait(),
        Err(e) => {
            log::error!("{e}");
            eprintln!("aif-bench-api: {e}");
            std::process::exit(if matches!(e, StartError::Recipes(_)) {
                2
            } else {
                1
            });
        }
    }
}
