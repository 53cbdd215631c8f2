//! `build-dashboards`: dashboard sources → `dashboards/dist/*.json`.
//!
//! Not built yet: this binary only states so and exits non-zero.

fn main() {
    eprintln!("build-dashboards is not implemented yet");
    std::process::exit(2);
}
