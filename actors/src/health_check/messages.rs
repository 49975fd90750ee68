//! Messages the health check answers.

use actix::Message;

use super::report::HealthReport;

/// The latest health report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HealthReport")]
pub struct GetHealth;

/// Adds a readiness probe (a database opened after the pipeline started, say) to every later
/// gathering.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct AddProbe(pub std::sync::Arc<dyn crate::health_check::ReadinessProbe>);

impl std::fmt::Debug for AddProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AddProbe").field(&self.0.name()).finish()
    }
}

/// Gathers now instead of waiting for the next interval, and answers with the fresh report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HealthReport")]
pub struct CheckNow;

/// Adds a source of components (an application's upstream servers, say) to every later gathering.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct AddComponents(pub std::sync::Arc<dyn crate::health_check::ComponentSource>);

impl std::fmt::Debug for AddComponents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AddComponents").finish_non_exhaustive()
    }
}
