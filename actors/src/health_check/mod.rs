//! health_check
pub mod config;
