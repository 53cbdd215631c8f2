//! Support of the load generator's integration tests (each test file uses a
//! part of it).
#![allow(dead_code)]

pub mod servers;
