//! The metamcp-telemetry service binary.

fn main() {
    let _loaded = match metamcp_telemetry::settings::from_process() {
        Ok(loaded) => loaded,
        Err(err) => err.exit(),
    };
}
