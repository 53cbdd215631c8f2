//! # aif-bench-api
//!
//! The blocking HTTP API behind the Grafana buttons (DESIGN.md §8): service
//! recipes, services started locally or on Slurm, benchmark runs, Prometheus
//! metrics and service discovery, an OpenAPI description. JSON in and out,
//! strict about input: anything it does not understand is a `400` naming the
//! field, never a silent default.
//!
//! The pieces:
//! - [`config`]: flags and TOML (flags win; bad keys exit 2).
//! - [`server`]: `tiny_http` with a fixed worker pool; [`routes`] is the one
//!   route table both the router and [`openapi`] use.
//! - [`validate`]: strict JSON and query parsing, the error shape.
//! - [`cors`], [`auth`]: configured origins only; bearer token on mutating routes.
//! - [`state`]: SQLite; [`recipes`]: TOML argv templates; [`backend`]: local
//!   processes or Slurm (here or over SSH); [`app`]: handlers and the monitor.
//! - [`metrics`]: `GET /metrics`.
//! - [`tunnel`]: the reverse tunnel on the Slurm login node (`--reverse-tunnel`).
//! - [`loadgen`]: the load generator `aif-loadgen` runs (its own binary).

#![recursion_limit = "256"]

pub mod app;
pub mod auth;
pub mod backend;
pub mod benchmark;
pub mod config;
pub mod cors;
pub mod energy;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod recipes;
pub mod routes;
pub mod server;
pub mod state;
pub mod tunnel;
pub mod validate;

pub use config::{Cli, Config, ConfigError};
pub use server::{Server, StartError};
