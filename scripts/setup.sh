#!/usr/bin/env bash
# Installs the system tools some tests use, and only those that are missing:
#
#   promtool  (Debian package `prometheus`)  validates docker/prometheus/ (rules, their unit tests,
#                                            the scrape config) and lints the service's /metrics
#   prometheus (same package)                a Prometheus server the exemplar test starts itself
#                                            (private port and storage directory)
#   chromium  (Debian package `chromium`)    a headless browser for the dashboard tests
#   initdb, pg_ctl (Debian package `postgresql`, under /usr/lib/postgresql/*/bin)
#                                            a private PostgreSQL server for tests/faults/pg_faults.rs
#                                            (the package's own cluster is not started)
#   python3 with venv (Debian packages `python3`, `python3-venv`), then the virtual environment
#             .venv at the repository root with the official Python MCP SDK (`mcp`) and its
#             dependencies, pinned in tests/peers/python/requirements.txt (from PyPI): the MCP
#             peers under tests/peers/python run on it
#
# Idempotent and non-interactive: a second run installs nothing. Uses apt-get only (Debian/Ubuntu);
# elsewhere it says what to install and exits 1. Runs apt-get through sudo when not root. The
# virtual environment is rebuilt when the requirements file changes or `mcp` is gone from it.
#
# The `prometheus` package would start a Prometheus server on :9090 as part of its installation.
# The tests need the binaries only (a test starts its own server on a private port), so this
# script keeps the package's server from starting (a temporary policy-rc.d that denies service
# starts), disables it, and stops one that started anyway. Recommended packages (node exporter,
# ...) are not installed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

# Packages by the command that tells whether they are present.
declare -A wanted=([promtool]=prometheus [prometheus]=prometheus [chromium]=chromium)

missing=()
for command in "${!wanted[@]}"; do
    if ! command -v "$command" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" ${wanted[$command]} "* ]]; then
        missing+=("${wanted[$command]}")
    fi
done

# The PostgreSQL server binaries are not on PATH on Debian: look where the package puts them.
postgres_server_installed() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then
            return 0
        fi
    done
    return 1
}
if ! postgres_server_installed; then
    missing+=(postgresql)
fi

# A Python new enough for the MCP SDK (3.10+), able to create virtual environments with pip.
python_with_venv() {
    python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}
if ! python_with_venv; then
    missing+=(python3 python3-venv)
fi

# The virtual environment of the Python MCP peers: created, or brought up to the pinned
# requirements. A stamp holds the checksum of the requirements it was built from.
python_venv() {
    local venv="$root/.venv"
    local requirements="$root/tests/peers/python/requirements.txt"
    local stamp="$venv/.requirements.sha256"
    local wanted
    wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
    # The stamp is written only after a complete install; finding the package (without importing
    # it, which takes seconds) tells the environment was not emptied since.
    if [ -x "$venv/bin/python3" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] \
        && "$venv/bin/python3" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("mcp") is None)' \
            >/dev/null 2>&1; then
        echo "setup: .venv holds the pinned Python MCP SDK; nothing to do"
        return 0
    fi
    echo "setup: creating .venv with the Python MCP SDK (tests/peers/python/requirements.txt)"
    rm -f "$stamp"
    # --clear: a venv left by another interpreter or a broken install starts afresh.
    python3 -m venv --clear "$venv"
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
    if ! "$venv/bin/python3" -c 'import mcp' >/dev/null 2>&1; then
        echo "setup: .venv cannot import mcp after installing $requirements" >&2
        exit 1
    fi
    echo "$wanted" >"$stamp"
    echo "setup: .venv ready ($("$venv/bin/python3" -m pip show mcp 2>/dev/null | grep '^Version:' | sed 's/Version: /mcp /'))"
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: promtool, prometheus, chromium, the PostgreSQL server binaries and python3 with venv are installed"
    python_venv
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]}; install them with your package manager (no apt-get here)" >&2
    exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup: missing ${missing[*]}; run this script as root (no sudo here)" >&2
        exit 1
    fi
    as_root=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive

# Refresh the package lists only if a package has no install candidate yet.
for package in "${missing[@]}"; do
    policy_text=$(apt-cache policy "$package" 2>/dev/null || true)
    if [[ "$policy_text" != *"Candidate:"* || "$policy_text" == *"Candidate: (none)"* ]]; then
        echo "setup: apt-get update (no candidate for $package)"
        "${as_root[@]}" apt-get update -qq
        break
    fi
done

# Deny service starts during the installation, unless the machine already has a policy of its own
# (container images often do; it is left alone).
policy=/usr/sbin/policy-rc.d
own_policy=false
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Temporary: no service starts while scripts/setup.sh installs packages.\nexit 101\n' \
        | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    own_policy=true
fi
cleanup() {
    if [ "$own_policy" = true ]; then
        "${as_root[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

echo "setup: apt-get install ${missing[*]}"
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Prometheus server that came with promtool must not run: disable it at boot and stop it if a
# start slipped through (for instance under systemd, which ignores policy-rc.d).
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        "${as_root[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/prometheus ]; then
        "${as_root[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    if [ -e /etc/init.d/prometheus ]; then
        "${as_root[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
    # A server started by the package runs as the `prometheus` user from /usr/bin/prometheus.
    for pid in $(pgrep -u prometheus -x prometheus 2>/dev/null || true); do
        echo "setup: stopping the Prometheus server the package started (pid $pid)"
        "${as_root[@]}" kill "$pid" || true
    done
fi

for command in "${!wanted[@]}"; do
    if ! command -v "$command" >/dev/null 2>&1; then
        echo "setup: $command is still missing after installing ${wanted[$command]}" >&2
        exit 1
    fi
done
if ! postgres_server_installed; then
    echo "setup: initdb and pg_ctl are still missing after installing postgresql" >&2
    exit 1
fi
if ! python_with_venv; then
    echo "setup: python3 (3.10+) with venv is still missing after installing python3-venv" >&2
    exit 1
fi
python_venv
echo "setup: done ($(promtool --version 2>&1 | head -n 1))"
