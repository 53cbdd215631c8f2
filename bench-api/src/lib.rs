//! # aif-bench-api
//!
//! The blocking HTTP API behind the Grafana buttons (DESIGN.md §8): service
//! recipes, services started locally or on Slurm, benchmark runs, Prometheus
//! metrics and service discovery, an OpenAPI description. JSON in and out,
//! strict about input: anything it does not understand is a `400` naming the
//! field, never a silent default.
//!
//! The pieces:
//! - [`config`]: flags and TOML (flags win; bad keys exit 2), put together
//!   from the backends' own settings.
//! - [`server`]: HTTP on `vendor/tiny_http`'s reactor with a fixed worker
//!   pool; [`routes`] is the one route table both the router and [`openapi`]
//!   use; [`start`]: why starting failed.
//! - [`validate`]: strict JSON and query parsing, the error shape.
//! - [`limits`]: the one table of request limits (validators and [`openapi`]).
//! - [`cors`], [`auth`]: configured origins only; bearer token on mutating routes.
//! - [`state`]: SQLite; [`recipes`]: TOML argv templates; [`backend`]: local
//!   processes or Slurm (here or over SSH); [`app`]: the `App` built from
//!   the config, its handlers (services, runs) and the monitor.
//! - [`benchmark`], [`energy`]: runs as jobs, their results and energy;
//!   [`model`]: the API's types.
//! - [`metrics`]: `GET /metrics`.
//! - [`tunnel`]: the reverse tunnel on the Slurm login node (`--reverse-tunnel`).
//! - the load generator is its own crate, `aif_loadgen` (`loadgen/`): runs build
//!   its command line with `aif_loadgen::plan::Args::to_argv`.

#![recursion_limit = "256"]

pub mod app;
pub mod auth;
pub mod backend;
pub mod benchmark;
pub mod config;
pub mod cors;
pub mod energy;
pub mod limits;

pub mod metrics;
pub mod model;
pub mod openapi;
pub mod recipes;
pub mod routes;
pub mod run_options;
pub mod server;
pub mod start;
pub mod state;
pub mod tunnel;
pub mod validate;

pub use config::{Cli, Config, ConfigError};
pub use server::{Server, StartError};
