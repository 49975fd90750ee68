#!/usr/bin/env bash
# Side-by-side comparison: bare actix-web app vs metamcp-telemetry vs the OpenTelemetry
# ecosystem stack. Installs wrk when it is missing (Debian/Ubuntu), builds the harness in release
# and runs one subcommand (default: all). See comparison/README.md.
#
#   comparison/run.sh [all|load|inproc|saturation|outage|soak] [flags…]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
    if command -v apt-get >/dev/null; then
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "wrk is needed (https://github.com/wg/wrk)" >&2
        exit 1
    fi
fi

if [ $# -eq 0 ]; then
    set -- all
fi
# The root workspace's target directory: the dependencies both workspaces share are built once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The soak runs the real gateway binary: build it first.
if [ "$1" = soak ]; then
    cargo build --release --quiet --bin metamcp-telemetry
fi
exec cargo run --release --quiet --manifest-path comparison/Cargo.toml -- "$@"
