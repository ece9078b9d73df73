#!/usr/bin/env bash
# WebRTC (WHEP) measured with loadgen's WHEP viewers (a str0m client each):
#  1. latency from publication by protocol at the origin, in one table: WebRTC and HTTP-FLV
#     `frame_latency` (each frame's SEI probe), LL-HLS `part_latency`, HLS `segment_latency`,
#     one run per protocol of N viewers (default 40) for SECONDS after a 5 s warm-up;
#  2. WebRTC viewers on one engine core: the engine (--cores 1, CPU 0) against loadgen (CPU 1)
#     for each count in COUNTS (default "250 500 1000 2000"): the engine's CPU over the run
#     (joins and DTLS handshakes included), frame latency, frames missing, viewers with media.
# One 600 kbit/s stream (loadgen's 600k rendition, 2 s GOP, B-frames) published by loadgen;
# the engine keeps B-frames for WebRTC (--webrtc-bframes keep) so that every frame's probe
# arrives.
#
# Usage: bench/peers/webrtc.sh [--viewers N] [--seconds N] [--counts "250 500 1000 2000"]
#                              [--no-latency] [--bin DIR] [--light] [--steady]
#                              [--engine-args "ARGS"]
# --no-latency skips table 1; --bin DIR runs the edge-engine and loadgen in DIR instead of
# building this checkout's (two builds side by side: run it once with each, alternating);
# --light runs table 2's viewers with loadgen's `--verify light` (nine in ten read only the
# RTP headers, so the client is less of a limit; RTP packets lost counted from them);
# --steady adds the engine's CPU from 12 s to 22 s of each table-2 run (every viewer has
# joined by then at 200 arrivals a second up to 2,000; needs --seconds 17 or more);
# --engine-args adds ARGS to the engine's (e.g. "--webrtc-audio-frame-ms 60").
# Changes nothing outside a temporary directory.
set -euo pipefail

viewers=40 seconds=15 counts="250 500 1000 2000" latency=1 bin="" verify=full steady=0 extra_args=""
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --counts) counts=$2; shift 2 ;;
        --no-latency) latency=0; shift ;;
        --bin) bin=$2; shift 2 ;;
        --light) verify=light; shift ;;
        --steady) steady=1; shift ;;
        --engine-args) extra_args=$2; shift 2 ;;
        -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/edge-webrtc.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
    bin="$root/target/release"
fi
engine_args="--cores 1 --cpu-list 0 --webrtc-udp 127.0.0.1:0 --webrtc-bframes keep${extra_args:+ $extra_args}"

run() { # label protocol viewers [verify] -> the run's JSON file
    local json="$work/$1.json"
    "$bin/loadgen" --spawn --engine-args "$engine_args" --cores 1 --cpu-list 1 --publish \
        --bitrate 600k --viewers "$3" --protocol "$2" --duration "${seconds}s" --warmup 5s \
        --verify "${4:-full}" \
        --ramp 200 --json "$json" >"$work/$1.log" 2>&1 &
    local loadgen=$! steady_cpu=""
    if ((steady)); then
        # The engine's user and system ticks (/proc/PID/stat fields 14 and 15) over 10 s.
        sleep 12
        local engine ticks0 ticks1 hz
        engine=$(pgrep -P "$loadgen" -f edge-engine | head -1)
        hz=$(getconf CLK_TCK)
        ticks0=$(awk '{print $14 + $15}' "/proc/$engine/stat" 2>/dev/null || echo 0)
        sleep 10
        ticks1=$(awk '{print $14 + $15}' "/proc/$engine/stat" 2>/dev/null || echo 0)
        steady_cpu=$(python3 -c "print('%.1f %%' % (100.0 * ($ticks1 - $ticks0) / $hz / 10))")
    fi
    wait "$loadgen" || true
    echo "$steady_cpu" >"$json.steady"
    echo "$json"
}

report() { # json label kind
    python3 - "$1" "$2" "$3" "$seconds" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
label, kind, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
h, c = j["histograms"], j["counters"]
errors = sum(j["errors"].values())
def pair(k):
    if not h.get(k, {}).get("count"):
        return "-"
    return "%.1f / %.1f" % (h[k]["p50_us"] / 1000, h[k]["p99_us"] / 1000)
if kind == "latency":
    key = {"webrtc": "frame_latency", "flv": "frame_latency", "llhls": "part_latency",
           "hls": "segment_latency"}[label]
    print("| %s | %s | %d | %d |" % (label, pair(key), c.get("stalls", 0) + c.get("gaps", 0), errors))
else:
    e = j.get("engine") or {}
    cpu = e.get("cpu_seconds", 0.0)
    steady = open(sys.argv[1] + ".steady").read().strip() or "-"
    print("| %s | %.1f %% | %s | %s | %d | %d | %d | %d |" % (label, 100 * cpu / (seconds + 5), steady, pair("frame_latency"),
          c.get("missing_frames", 0), c.get("rtp_packets_lost", 0), c.get("viewers_with_media", 0), errors))
PY
}

echo "WebRTC — $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD), binaries in $bin"
echo
if ((latency)); then
    echo "Latency from publication, $viewers viewers per protocol, ${seconds} s (p50 / p99 ms):"
    echo "| protocol | latency | stalls + gaps | errors |"
    echo "| --- | --- | ---: | ---: |"
    for p in webrtc flv llhls hls; do
        report "$(run "lat-$p" "$p" "$viewers")" "$p" latency
    done
    echo
fi
echo "WebRTC viewers on one engine core, ${seconds} s (+5 s warm-up), loadgen --verify $verify:"
echo "| viewers | engine CPU (of one core, whole run) | steady (12–22 s, --steady) | frame p50 / p99 ms | frames missing | RTP packets lost (header-only viewers) | viewers with media | errors |"
echo "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
for n in $counts; do
    report "$(run "core-$n" webrtc "$n" "$verify")" "$n" core
done
