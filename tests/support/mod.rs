//! Shared helpers for the integration tests: a loopback OTLP receiver ([`collector`]), Prometheus
//! scraping ([`prom`]), bounded waits ([`wait`]) and the skip-or-fail decision for a missing
//! prerequisite ([`prereq`]).
//!
//! Each test file compiles this module on its own (`mod support;`) and uses a different part of
//! it, hence the module-wide `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod collector;
pub mod prereq;
pub mod prom;
pub mod wait;

pub use collector::{Behavior, PointValue, Received, ReceivedPoint, ReceivedSpan, Signal, TestCollector, Transport};
