//! `build-dashboards`: dashboard sources → `dashboards/dist/*.json`.
//!
//! `build-dashboards` writes `dist/`; `build-dashboards --check` only reports
//! (exit 1) the files that differ from what the sources build.

use std::process::ExitCode;

use aif_dashboards::{build, crate_dir};

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = match args.as_slice() {
        [] => false,
        [a] if a == "--check" => true,
        _ => {
            eprintln!("usage: build-dashboards [--check]");
            return ExitCode::from(2);
        }
    };
    let (src, dist) = (crate_dir().join("src"), crate_dir().join("dist"));
    if check {
        match build::stale_dist(&src, &dist) {
            Ok(s) if s.is_empty() => ExitCode::SUCCESS,
            Ok(s) => {
                for line in s {
                    eprintln!("build-dashboards: {line}; run build-dashboards");
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("build-dashboards: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        match build::write_dist(&src, &dist) {
            Ok(files) => {
                for f in files {
                    log::info!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("build-dashboards: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
