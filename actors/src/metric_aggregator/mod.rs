//! metric_aggregator
pub mod config;
