//! Messages the health check answers.

use actix::Message;

use super::report::HealthReport;

/// The latest health report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HealthReport")]
pub struct GetHealth;

/// Gathers now instead of waiting for the next interval, and answers with the fresh report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HealthReport")]
pub struct CheckNow;
