//! `aif-loadgen`: the load generator (see the `aif_loadgen` library).

fn main() {
    std::process::exit(aif_loadgen::main(std::env::args_os()));
}
