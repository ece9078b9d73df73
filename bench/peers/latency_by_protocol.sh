#!/usr/bin/env bash
# Latency from publication by protocol, in one table: an origin, an RTMP-pull edge and an
# HLS-origin edge, each edge 0 and 150 ms (default) of round trip from the origin through the
# delay relay. loadgen publishes one 600 kbit/s stream (2 s GOP) to an edge-engine origin
# (CPU 1); each edge is an edge-engine (--cores 1, CPU 0). N loadgen viewers (default 200,
# CPU 1), a quarter each of RTMP, HTTP-FLV, HLS-TS and LL-HLS, watch for SECONDS after a 5 s
# warm-up. Reported, p50 / p99 ms from the SEI probes: RTMP and HTTP-FLV `frame_latency`
# (each frame), HLS `segment_latency` (a segment's first frame to the segment received),
# LL-HLS `part_latency` (a part's first frame to its bytes received); stalls and errors.
# An HLS-origin edge's RTMP and FLV viewers are fed from its HLS pull (segments), so theirs
# follow the segments.
#
# Usage: bench/peers/latency_by_protocol.sh [--viewers N] [--seconds N] [--delays "0 150"]
# Changes nothing outside a temporary directory.
set -euo pipefail

viewers=200 seconds=20 delays="0 150"
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --delays) delays=$2; shift 2 ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-latency.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

start_published_origin lat

watch() { # label rtmp-addr http-addr -> a table row
    local json="$work/${1// /-}.json"
    taskset -c 1 "$bin/loadgen" --target "rtmp://$2" --target "http://$3" --viewers "$viewers" \
        --protocol rtmp=1,flv=1,hls=1,llhls=1 --stream-prefix lat --duration "${seconds}s" \
        --warmup 5s --json "$json" >"$work/${1// /-}.log" 2>&1 || true
    python3 - "$json" "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
h, c = j["histograms"], j["counters"]
def pair(k):
    if not h.get(k, {}).get("count"):
        return "-"
    return "%.1f / %.1f" % (h[k]["p50_us"] / 1000, h[k]["p99_us"] / 1000)
print("| %s | %s | %s | %s | %d | %d |" % (sys.argv[2], pair("frame_latency"), pair("segment_latency"),
      pair("part_latency"), c.get("stalls", 0), sum(j["errors"].values())))
PY
}

echo "Latency by protocol — $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD): $viewers viewers (a quarter each), ${seconds} s, 600k stream"
echo "| where | RTMP + FLV frame p50 / p99 ms | HLS-TS segment p50 / p99 ms | LL-HLS part p50 / p99 ms | stalls | errors |"
echo "| --- | --- | --- | --- | ---: | ---: |"
watch origin "$origin_rtmp" "$origin_http"
for d in $delays; do
    start_relay "$origin_rtmp" "$d" "$work/rtmp-relay-$d.log"
    ENGINE_NAME="rtmp-edge-$d" ENGINE_CPUS=0 start_engine --origin "rtmp://$RELAY/live"
    edge_pid=$ENGINE_PID
    watch "RTMP-pull edge, ${d} ms" "$ENGINE_RTMP" "$ENGINE_HTTP"
    kill "$edge_pid" "$RELAY_PID" 2>/dev/null || true
    start_relay "$origin_http" "$d" "$work/http-relay-$d.log"
    ENGINE_NAME="hls-edge-$d" ENGINE_CPUS=0 start_engine --origin "http://$RELAY/live"
    edge_pid=$ENGINE_PID
    watch "HLS-origin edge, ${d} ms" "$ENGINE_RTMP" "$ENGINE_HTTP"
    kill "$edge_pid" "$RELAY_PID" 2>/dev/null || true
done
