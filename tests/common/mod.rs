//! This package's service binary for the process runner of `metamcp-test-support`: only an
//! integration test of this package sees the executable's path.

/// The `metamcp-telemetry` binary, with the repository's `config/`.
pub struct Gateway;

impl support::service::Binary for Gateway {
    const PATH: &'static str = env!("CARGO_BIN_EXE_metamcp-telemetry");
    const CONFIG_DIR: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
}

/// A running `metamcp-telemetry` process.
pub type Service = support::service::Service<Gateway>;
