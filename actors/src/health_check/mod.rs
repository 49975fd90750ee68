//! The health check: gathers every pipeline actor's status on an interval and answers
//! `/health`, `/health/live` and `/health/ready` from the latest gathering.

mod actor;
pub mod components;
pub mod config;
pub mod messages;
pub mod report;

#[cfg(test)]
mod tests;

pub use actor::{HealthCheck, ProbeError, ReadinessProbe};
pub use components::{Component, ComponentSource};
pub use messages::{AddComponents, AddProbe, CheckNow, GetHealth};
pub use report::{ComponentHealth, HealthReport, HealthStatus, SignalHealth};
