//! span_buffer
pub mod config;
