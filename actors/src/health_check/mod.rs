//! The health check: gathers every pipeline actor's status on an interval and answers
//! `/health`, `/health/live` and `/health/ready` from the latest gathering.

mod actor;
pub mod config;
pub mod messages;
pub mod report;

#[cfg(test)]
mod tests;

pub use actor::{HealthCheck, ProbeError, ReadinessProbe};
pub use messages::{AddProbe, CheckNow, GetHealth};
pub use report::{ComponentHealth, HealthReport, HealthStatus, SignalHealth};
