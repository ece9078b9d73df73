#!/usr/bin/env bash
# LL-HLS relayed by an HLS-origin edge, by viewer count. loadgen publishes one 600 kbit/s
# stream to an edge-engine origin (CPU 1); an edge-engine edge (--cores 1, CPU 0) relays its
# LL-HLS over HTTP through a delay relay (every byte held DELAY/2 each way; request lines
# logged) for each DELAY (default 0 and 150 ms round trip). For each COUNT of loadgen LL-HLS
# viewers at the edge (default 1, 100, 1000; CPU 1), for SECONDS: the origin's requests per
# part (playlist requests, part requests, over the distinct parts fetched in the run), the
# viewers' part latency (publication of a part's first frame to its bytes, after a 5 s
# warm-up), startup, stalls and errors. Goal: one playlist request and one part request per
# part at the origin, whatever the count.
#
# Usage: bench/peers/llhls_relay.sh [--counts "1 100 1000"] [--seconds N] [--delays "0 150"]
# Changes nothing outside a temporary directory.
set -euo pipefail

counts="1 100 1000" seconds=20 delays="0 150"
while (($#)); do
    case "$1" in
        --counts) counts=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --delays) delays=$2; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-llhls-relay.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

start_published_origin ll

echo "LL-HLS relayed by an HLS-origin edge — $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD): ${seconds} s per run, 600k stream"
echo "| origin round trip | viewers | parts fetched | origin playlist requests per part | origin requests per part | part latency p50 / p99 ms | startup p50 ms | parts served | stalls | errors |"
echo "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
for d in $delays; do
    log="$work/relay-$d.log"
    start_relay "$origin_http" "$d" "$log"
    ENGINE_NAME="edge-$d" ENGINE_CPUS=0 start_engine --origin "http://$RELAY/live"
    edge_pid=$ENGINE_PID edge_http=$ENGINE_HTTP
    for n in $counts; do
        from=$(wc -l <"$log")
        json="$work/edge-$d-$n.json"
        taskset -c 1 "$bin/loadgen" --target "http://$edge_http" --viewers "$n" --protocol llhls \
            --stream-prefix ll --duration "${seconds}s" --warmup 5s --json "$json" \
            >"$work/edge-$d-$n.log" 2>&1 || true
        tail -n +"$((from + 1))" "$log" | grep '^GET ' >"$work/gets-$d-$n" || true
        python3 - "$json" "$work/gets-$d-$n" "$d" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
h, c = j["histograms"], j["counters"]
ms = lambda k, q: h[k].get(q, 0) / 1000 if h[k]["count"] else float("nan")
paths = [l.split()[3] for l in open(sys.argv[2]) if len(l.split()) > 3]
parts = [p.split("?")[0] for p in paths if "/part-" in p]
playlists = sum(1 for p in paths if "llhls.m3u8" in p)
distinct = len(set(parts)) or 1
print("| %s ms | %s | %d | %.2f | %.2f | %.1f / %.1f | %.0f | %d | %d | %d |" % (
    sys.argv[3], sys.argv[4], len(set(parts)), playlists / distinct, len(parts) / distinct,
    ms("part_latency", "p50_us"), ms("part_latency", "p99_us"), ms("llhls_startup", "p50_us"),
    c.get("parts", 0), c.get("stalls", 0), sum(j["errors"].values())))
PY
    done
    kill "$edge_pid" "$RELAY_PID" 2>/dev/null || true
done
