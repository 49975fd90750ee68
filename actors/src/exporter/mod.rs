//! exporter
pub mod config;
