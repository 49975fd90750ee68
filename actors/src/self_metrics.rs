//! self_metrics
