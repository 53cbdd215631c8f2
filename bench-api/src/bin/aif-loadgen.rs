//! `aif-loadgen`: the load generator (see `aif_bench_api::loadgen`).

fn main() {
    std::process::exit(aif_bench_api::loadgen::main(std::env::args_os()));
}
