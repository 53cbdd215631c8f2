//! `aif-node-exporter` (placeholder until the CLI lands).
fn main() {}
