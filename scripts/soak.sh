#!/usr/bin/env bash
# Soak of the gateway (not run in CI): 10 minutes of load with the OTLP receiver down for the
# middle 5, against the release binary with its SQLite spool. Prints spans served vs delivered,
# peak RSS against the configured ceiling, and throughput while the receiver is down as a ratio
# of throughput while healthy. Flags go to the harness, e.g. `scripts/soak.sh --minutes 2`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec comparison/run.sh soak "$@"
