//! The library stays lean: with default features, the normal dependency tree of
//! `metamcp-telemetry` holds no database driver, no MCP SDK, no command-line parser and no
//! allocator — those belong to the gateway, which is checked to have them, so a `cargo tree`
//! that printed nothing could not pass.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Crates an application that only adds the library must not compile.
const NOT_IN_THE_LIBRARY: &[&str] = &["diesel", "libsqlite3-sys", "pq-sys", "rmcp", "clap", "mimalloc"];

/// The package names in the normal (non-dev, non-build) dependency tree of `package`, default
/// features, this workspace's lock file.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    normal_dependencies_with(package, &[])
}

/// The same with `features` of `package` enabled (`cargo tree -F`).
fn normal_dependencies_with(package: &str, features: &[&str]) -> BTreeSet<String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["tree", "--offline", "--locked", "-p", package, "-e", "normal", "--prefix", "none"];
    args.extend(["--format", "{p}"]);
    let features = features.join(",");
    if !features.is_empty() {
        args.extend(["-F", features.as_str()]);
    }
    let output = Command::new(env!("CARGO")).current_dir(workspace).args(&args).output().expect("cargo runs");
    assert!(output.status.success(), "cargo tree -p {package} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_library_compiles_no_database_mcp_cli_or_allocator_crate() {
    let library = normal_dependencies("metamcp-telemetry");
    assert!(library.contains("opentelemetry"), "the tree of metamcp-telemetry was not read: {library:?}");
    let found: Vec<&&str> = NOT_IN_THE_LIBRARY.iter().filter(|name| library.contains(**name)).collect();
    assert!(found.is_empty(), "metamcp-telemetry's default dependency tree contains {found:?}");
}

#[test]
fn the_gateway_is_where_those_crates_are() {
    let gateway = normal_dependencies("metamcp-gateway");
    for name in NOT_IN_THE_LIBRARY {
        assert!(gateway.contains(*name), "metamcp-gateway no longer depends on {name}; update this test's list");
    }
    assert!(gateway.contains("metamcp-telemetry"), "the gateway builds on the library");
}

/// The durable spool is there for who asks for it: each feature brings diesel and its own
/// driver, and only that one.
#[test]
fn the_spool_features_bring_diesel_and_their_driver() {
    let sqlite = normal_dependencies_with("metamcp-telemetry", &["spool-sqlite"]);
    assert!(sqlite.contains("diesel") && sqlite.contains("libsqlite3-sys"), "{sqlite:?}");
    assert!(!sqlite.contains("pq-sys"), "spool-sqlite alone compiles no libpq");
    let postgres = normal_dependencies_with("metamcp-telemetry", &["spool-postgres"]);
    assert!(postgres.contains("diesel") && postgres.contains("pq-sys"), "{postgres:?}");
    assert!(!postgres.contains("libsqlite3-sys"), "spool-postgres alone compiles no SQLite");
    for with_spool in [&sqlite, &postgres] {
        for name in ["rmcp", "clap", "mimalloc"] {
            assert!(!with_spool.contains(name), "a spool feature brings {name}");
        }
    }
}
