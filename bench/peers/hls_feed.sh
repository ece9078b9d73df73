#!/usr/bin/env bash
# RTMP viewers of an HLS-only origin (the HLS feed), against the same viewers of an RTMP
# pull, side by side in one run. One stream published by loadgen (600k, with SEI probes) to
# an edge-engine origin (--cores 1, CPU 1). Edges, one at a time, each edge-engine --cores 1
# on CPU 0 in front of that origin:
#   rtmp-pull  --origin rtmp://ORIGIN/live  (RTMP in, RTMP out)
#   hls-feed   --origin http://ORIGIN/live  (HLS in, demuxed, RTMP out)
# For each, N loadgen viewers (default 500, CPU 1) watch the edge for SECONDS (the first 4 s
# of each viewer left out of the latency histogram), half RTMP and half HLS. Reported: live
# latency (a probe's age when its frame arrives, RTMP; when its segment finished downloading,
# HLS), errors and gaps, and the edge's CPU per viewer-second. Runs are repeated RUNS times.
#
# Usage: bench/peers/hls_feed.sh [--viewers N] [--seconds N] [--runs N]
# Changes nothing outside a temporary directory, removed on exit.
set -euo pipefail

viewers=500 seconds=20 runs=3
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-hls-feed.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

ENGINE_NAME=origin ENGINE_CPUS=1 start_engine
origin_rtmp=$ENGINE_RTMP origin_http=$ENGINE_HTTP
taskset -c 1 "$bin/loadgen" --publish --viewers 0 --bitrate 600k --target "rtmp://$origin_rtmp" \
    --stream-prefix feed --duration 3600s >/dev/null 2>&1 &
pids+=("$!")
# The origin's first segments.
sleep 6

printf '| run | edge | RTMP latency p50 / p99 (ms) | HLS latency p50 / p99 (ms) | errors | gaps | stalls | edge CPU per viewer-second (µs) |\n'
printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for run in $(seq "$runs"); do
    for edge in rtmp-pull hls-feed; do
        case $edge in
            rtmp-pull) origin="rtmp://$origin_rtmp/live" ;;
            hls-feed) origin="http://$origin_http/live" ;;
        esac
        ENGINE_NAME="$edge-$run" start_engine --origin "$origin"
        before=$(cpu_seconds_of "$ENGINE_PID")
        taskset -c 1 "$bin/loadgen" --viewers "$viewers" --protocol rtmp=0.5,hls=0.5 \
            --target "rtmp://$ENGINE_RTMP" --target "http://$ENGINE_HTTP" --stream-prefix feed \
            --duration "${seconds}s" --warmup 4s --json "$work/$edge-$run.json" --max-error-rate 1 \
            >/dev/null 2>&1 || true
        after=$(cpu_seconds_of "$ENGINE_PID")
        kill -INT "$ENGINE_PID"
        wait "$ENGINE_PID" 2>/dev/null || true
        python3 - "$work/$edge-$run.json" "$run" "$edge" "$before" "$after" "$viewers" "$seconds" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
run, edge, before, after, viewers, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
h = j["histograms"]
ms = lambda name, p: f'{h[name][p] / 1000:.0f}' if h[name].get("count") else "-"
c = j["counters"]
cpu = (after - before) * 1e6 / (viewers * seconds)
print(f'| {run} | {edge} | {ms("frame_latency", "p50_us")} / {ms("frame_latency", "p99_us")} | '
      f'{ms("segment_latency", "p50_us")} / {ms("segment_latency", "p99_us")} | {sum(j["errors"].values())} | '
      f'{c.get("gaps", 0) + c.get("segment_gaps", 0)} | {c.get("stalls", 0)} | {cpu:.0f} |')
PY
    done
done
