#!/usr/bin/env bash
# Saturation of the built-in calculator through the MCP endpoint, telemetry on vs off.
#
# Starts the release binary twice per round (telemetry on, then off; rounds alternate so drift
# hits both alike), opens an MCP session with curl, and drives `tools/call calculator` with wrk
# at saturation. Prints requests/s and p50/p99 latency per run, then the medians and the on/off
# ratio. Not part of CI: numbers need a quiet machine.
#
#   scripts/bench_gateway.sh [rounds=3] [seconds=10] [connections=32]
#
# Needs wrk (Debian: apt-get install wrk; installed here when missing and apt-get exists).
#
# Last run (2-core AMD EPYC VM, wrk on the same cores, no collector listening, 3 rounds x 10 s,
# 32 connections; commit 7fee909, with other builds loading the machine to a load average of
# 7-9, so a third of the quiet machine's throughput): telemetry on median 17 024 req/s, p50
# 1 638 us, p99 27 108 us; off 21 402 req/s, p50 1 226 us, p99 18 361 us; ratio 0.795. On a quiet
# machine before issue 14: on 48 583 req/s, off 63 913 req/s, ratio 0.760. The telemetry-on
# runs export to OTLP_ENDPOINT when it is set (default: none listening, so spans go to the spool).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
seconds=${2:-10}
connections=${3:-32}

if ! command -v wrk >/dev/null; then
    if command -v apt-get >/dev/null; then
        apt-get install -y wrk >/dev/null
    else
        echo "wrk is needed (https://github.com/wg/wrk)" >&2
        exit 1
    fi
fi

cargo build --release --quiet --bin metamcp-telemetry
binary="${CARGO_TARGET_DIR:-target}/release/metamcp-telemetry"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cat >"$work/call.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calculator","arguments":{"expression":"(2 + 3) * 4 - sqrt(16) / 2 ^ 2"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = os.getenv("MCP_SESSION")
done = function(summary, latency, requests)
    io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
        summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

port=18400
run_one() { # $1 = on|off
    local enabled=true
    [ "$1" = off ] && enabled=false
    port=$((port + 1))
    rm -f "$work/db.sqlite"*
    TELEMETRY_ENABLED=$enabled DATABASE_URL="sqlite://$work/db.sqlite" RUST_LOG=warn \
        METAMCP_SPAN_BUFFER__QUEUE_CAPACITY=65536 \
        "$binary" --bind "127.0.0.1:$port" --metrics-port 0 >"$work/service.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local session
    session=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$port/metamcp/default/mcp" \
        -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
        -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"wrk","version":"1"}}}' \
        | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id" {print $2}')
    MCP_SESSION=$session wrk -t2 -c"$connections" -d"${seconds}s" -s "$work/call.lua" \
        "http://127.0.0.1:$port/metamcp/default/mcp" | grep RESULT | sed "s/^RESULT/$1/"
    kill -TERM "$pid"
    wait "$pid" || true
}

results="$work/results"
for round in $(seq 1 "$rounds"); do
    echo "round $round" >&2
    run_one on | tee -a "$results"
    run_one off | tee -a "$results"
done

awk '
function median(arr, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
{
    split($2, r, "="); split($3, a, "="); split($4, b, "=")
    if ($1 == "on") { on_rps[++n_on] = r[2]; on_p50[n_on] = a[2]; on_p99[n_on] = b[2] }
    else { off_rps[++n_off] = r[2]; off_p50[n_off] = a[2]; off_p99[n_off] = b[2] }
}
END {
    mon = median(on_rps, n_on); moff = median(off_rps, n_off)
    printf "telemetry on : median %.0f req/s, p50 %d us, p99 %d us\n", mon, median(on_p50, n_on), median(on_p99, n_on)
    printf "telemetry off: median %.0f req/s, p50 %d us, p99 %d us\n", moff, median(off_p50, n_off), median(off_p99, n_off)
    printf "ratio on/off : %.3f (goal >= 0.90)\n", mon / moff
}' "$results"
