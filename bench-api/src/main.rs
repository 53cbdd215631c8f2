//! `aif-bench-api`: the blocking HTTP API behind the Grafana buttons (DESIGN.md §8).
//!
//! Not built yet: this binary only states so and exits non-zero.

fn main() {
    env_logger::init();
    log::error!("aif-bench-api is not implemented yet (see DESIGN.md §8)");
    std::process::exit(2);
}
