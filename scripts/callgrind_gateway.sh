#!/usr/bin/env bash
# Instructions per `tools/call calculator` through /metamcp/default/mcp, telemetry on vs off,
# counted by callgrind: the release binary under `valgrind --tool=callgrind`, one keep-alive
# client, a loopback gRPC OTLP receiver in the on runs; per call = the slope between an N1-call
# and an N2-call run. The driver is benches/gateway_instructions.rs (its header says how and why);
# this script builds the binary and the bench, runs it, and optionally annotates the profiles.
# Not a CI test: one run takes a few minutes (valgrind slows the binary ~50x).
#
#   scripts/callgrind_gateway.sh [--calls 300,1500] [--repeat 1] [--modes on,off] [--pace-ms 0]
#                                [--profile] [--diff] [--no-run]
#
#   --profile  also print `callgrind_annotate --inclusive=yes`, top 40, of the on and off N2 runs
#   --diff     also print per-function instructions per call (slope N1 -> N2 of each function,
#              inclusive and exclusive) for on and off, sorted by on - off: where telemetry's
#              added instructions go
#   --no-run   only annotate the callgrind files of the last run
#   --pace-ms  pause after each answer in ms (default 0, back to back; see the bench header)
#
# Callgrind files stay in <target dir>/callgrind/{on,off}-N.out; annotate them with
#   callgrind_annotate --inclusive=yes target/callgrind/on-1500.out | head -60
#
# Last figures (2-core AMD EPYC VM, valgrind 3.19, main @ 1269ddc, --repeat 2, back to back):
# telemetry on 220 464 instructions per call (spread 0.03 %), off 186 031 (0.09 %), on/off x1.185;
# 3.02 spans exported per call. More in BENCHMARKS.md, "Instructions per calculator call".
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

calls=300,1500
repeat=1
modes=on,off
pace=0
profile=0
diff=0
top=${DIFF_TOP:-60}
run=1
while [ $# -gt 0 ]; do
    case "$1" in
        --calls) calls=$2; shift 2 ;;
        --calls=*) calls=${1#*=}; shift ;;
        --repeat) repeat=$2; shift 2 ;;
        --repeat=*) repeat=${1#*=}; shift ;;
        --modes) modes=$2; shift 2 ;;
        --modes=*) modes=${1#*=}; shift ;;
        --pace-ms) pace=$2; shift 2 ;;
        --pace-ms=*) pace=${1#*=}; shift ;;
        --profile) profile=1; shift ;;
        --diff) diff=1; shift ;;
        --no-run) run=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: apt-get install valgrind)" >&2; exit 1; }
done

target_dir=${CARGO_TARGET_DIR:-target}
if [ "$run" = 1 ]; then
    cargo build --release --quiet --bin metamcp-telemetry
    BENCH_CALLS=$calls BENCH_REPEAT=$repeat BENCH_MODES=$modes BENCH_PACE_MS=$pace \
        METAMCP_GATEWAY_BIN="$target_dir/release/metamcp-telemetry" BENCH_CALLGRIND_DIR="$target_dir/callgrind" \
        cargo bench --quiet --bench gateway_instructions
fi

n1=${calls%,*}
n2=${calls#*,}
suffix=
[ "$repeat" -gt 1 ] && suffix=-r$repeat
out() { echo "$target_dir/callgrind/$1-$2$suffix.out"; }

annotated=$(mktemp -d)
trap 'rm -rf "$annotated"' EXIT
# callgrind_annotate of one run, kept for the profile and the diff: $1 mode, $2 calls, $3 yes|no.
annotate() {
    local file="$annotated/$1-$2-$3"
    [ -f "$file" ] || callgrind_annotate --auto=no --threshold=100 --inclusive="$3" "$(out "$1" "$2")" >"$file" 2>/dev/null
    cat "$file"
}

if [ "$profile" = 1 ]; then
    for mode in ${modes//,/ }; do
        echo
        echo "=== $mode, $n2 calls: callgrind_annotate --inclusive=yes (top 40) ==="
        annotate "$mode" "$n2" yes | grep -E '^ *[0-9,]+ ' | head -40 || true
    done
fi

# `  1,234 (0.5%)  file:function [object]` -> `function<TAB>1234`. A function appears once per
# source file its inlined code came from: exclusive counts add up over those lines, inclusive
# counts repeat, so take the largest.
flatten() { # $1 = yes|no (inclusive)
    awk -v inclusive="$1" '
    match($0, /^ *[0-9,]+ \([ 0-9.]+%\)  /) {
        count = substr($0, 1, RLENGTH); sub(/\(.*/, "", count); gsub(/[ ,]/, "", count)
        name = substr($0, RLENGTH + 1); sub(/ \[[^]]*\]$/, "", name)
        colon = index(name, ":"); if (colon > 0 && index(name, "::") != colon) name = substr(name, colon + 1)
        if (inclusive == "yes") { if (count + 0 > value[name] + 0) value[name] = count }
        else value[name] += count
    }
    END { for (n in value) printf "%s\t%d\n", n, value[n] }'
}
# Per-function slope of one mode: (I(N2) - I(N1)) / (N2 - N1).
slopes() { # $1 = mode, $2 = yes|no (inclusive)
    join -t $'\t' -a 1 -a 2 -e 0 -o 0,1.2,2.2 \
        <(annotate "$1" "$n1" "$2" | flatten "$2" | sort -t $'\t' -k1,1) \
        <(annotate "$1" "$n2" "$2" | flatten "$2" | sort -t $'\t' -k1,1) |
        awk -F'\t' -v d=$((n2 - n1)) '{ printf "%s\t%.1f\n", $1, ($3 - $2) / d }'
}
if [ "$diff" = 1 ]; then
    for inclusive in yes no; do
        label=exclusive; [ "$inclusive" = yes ] && label=inclusive
        echo
        echo "=== $label instructions per call by function (slope $n1 -> $n2 calls): on, off, on - off; top $top by on - off ==="
        join -t $'\t' -a 1 -a 2 -e 0 -o 0,1.2,2.2 <(slopes on "$inclusive" | sort -t $'\t' -k1,1) \
            <(slopes off "$inclusive" | sort -t $'\t' -k1,1) |
            awk -F'\t' '{ printf "%10.0f %10.0f %10.0f  %s\n", $2, $3, $2 - $3, $1 }' | sort -k3,3 -g -r | head -"$top" || true
    done
fi
