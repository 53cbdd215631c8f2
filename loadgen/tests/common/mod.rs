//! Support of the load generator's integration tests (each test file uses a
//! part of it).
#![allow(dead_code, unused_macros)]

pub mod servers;

/// Runs each scenario once per engine: `threads::NAME` and `events::NAME`.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod threads {
            $(#[test]
            fn $name() {
                super::$name("threads")
            })*
        }
        mod events {
            $(#[test]
            fn $name() {
                super::$name("events")
            })*
        }
    };
}
