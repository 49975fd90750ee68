//! Faults: an exporter facing a failing, throttling or absent collector, the durable spool across
//! crashes and restarts, and a PostgreSQL server that goes away. One test binary for the theme;
//! each former test file is a module and keeps its tests' names.

#[path = "../common/mod.rs"]
mod common;

mod exporter_faults;
mod pg_faults;
mod spool_faults;
