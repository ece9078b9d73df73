#!/usr/bin/env bash
# LL-HLS at an origin and at an RTMP-pull edge, side by side in one run. loadgen publishes one
# 600 kbit/s stream to an edge-engine origin (CPU 1); an edge-engine edge (--cores 1, CPU 0)
# pulls it over RTMP through a delay relay (every byte held DELAY/2 each way) for each DELAY
# (default 0 and 150 ms round trip). N loadgen LL-HLS viewers (default 200, CPU 1) watch the
# origin, then the edge at each delay, for SECONDS. Reported: p50/p99 part latency
# (publication of a part's first frame to the part received, from the SEI probes; parts
# published in a viewer's first 5 s, the edge's pull starting included, are left out),
# LL-HLS startup (with the edge's cold pull), stalls, errors, and the origin's RTMP plays
# (one pull per edge, whatever the viewers).
#
# Usage: bench/peers/llhls_edge.sh [--viewers N] [--seconds N] [--delays "0 150"]
# Changes nothing outside a temporary directory.
set -euo pipefail

viewers=200 seconds=20 delays="0 150"
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --delays) delays=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-llhls-edge.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

start_published_origin ll

plays() { curl -fs "http://$origin_http/metrics" | awk '/^edge_rtmp_play_requests/ { n += $2 } END { print n + 0 }'; }

watch() { # label http -> a table row
    local json="$work/$1.json"
    taskset -c 1 "$bin/loadgen" --target "http://$2" --viewers "$viewers" --protocol llhls \
        --stream-prefix ll --duration "${seconds}s" --warmup 5s --json "$json" >"$work/$1.log" 2>&1 || true
    python3 - "$json" "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
h, c = j["histograms"], j["counters"]
ms = lambda k, q: h[k].get(q, 0) / 1000 if h[k]["count"] else float("nan")
print("| %s | %.1f | %.1f | %.0f | %d | %d | %d |" % (sys.argv[2], ms("part_latency", "p50_us"),
      ms("part_latency", "p99_us"), ms("llhls_startup", "p50_us"), c.get("parts", 0),
      c.get("stalls", 0), sum(j["errors"].values())))
PY
}

echo "LL-HLS at an origin and an RTMP-pull edge — $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD): $viewers viewers, ${seconds} s, 600k stream"
echo "| where | part latency p50 ms | p99 ms | startup p50 ms | parts | stalls | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
watch origin "$origin_http"
for d in $delays; do
    start_relay "$origin_rtmp" "$d" "$work/relay-$d.log"
    before=$(plays)
    ENGINE_NAME="edge-$d" ENGINE_CPUS=0 start_engine --origin "rtmp://$RELAY/live"
    edge_pid=$ENGINE_PID
    watch "edge, ${d} ms" "$ENGINE_HTTP"
    echo "(origin RTMP plays for the edge at ${d} ms: $(($(plays) - before)))"
    kill "$edge_pid" "$RELAY_PID" 2>/dev/null || true
done
