#!/usr/bin/env bash
# How far behind live a browser plays, by protocol, in one run: headless Chromium opens the
# player page (/player?stream=…&protocol=P) of one edge-engine (--cores 2) for SECONDS per
# protocol, while ffmpeg loops the 4 s test fixture (1 s GOP, 25 fps, B-frames) into it in
# real time. The page's own figure is reported: for LL-HLS the distance from the playing
# picture's EXT-X-PROGRAM-DATE-TIME to now, for HLS hls.js's distance to the live edge, for
# HTTP-FLV the buffered media; and the page's stalls. Each protocol RUNS times, in turn.
# With --edge rtmp|http, the page is an edge's (--cores 2): an RTMP-pull edge, or an
# HLS-origin edge (LL-HLS relayed), DELAY ms of round trip (--delay, default 0) from the
# engine, which is then the origin the stream is published to.
#
# Usage: bench/peers/player_latency.sh [--seconds N] [--runs N] [--engine-args "ARGS"]
#        [--edge rtmp|http] [--delay MS]
# Needs chromium, ffmpeg and `npm ci --prefix tests` (puppeteer-core, hls.js, mpegts.js).
set -euo pipefail

seconds=20 runs=3 engine_args="" edge="" delay=0
while (($#)); do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --engine-args) engine_args=$2; shift 2 ;;
        --edge) edge=$2; shift 2 ;;
        --delay) delay=$2; shift 2 ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/release"
cargo build --release -q -p edge-engine --manifest-path "$root/Cargo.toml"
setup_work /dev/shm/player-latency.XXXXXX
# shellcheck disable=SC2086
ENGINE_CPUS=0,1 start_engine --cores 2 --player-assets "$root/tests/node_modules" $engine_args
ffmpeg -nostdin -v error -re -stream_loop -1 -i "$root/tests/fixtures/bframes.flv" -c copy \
    -f flv "rtmp://$ENGINE_RTMP/live/lat" &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://$ENGINE_HTTP/live/lat.m3u8" | grep -q EXTINF && break
    sleep 0.1
done
case "$edge" in
    "") ;;
    rtmp | http)
        if [ "$edge" = rtmp ]; then upstream=$ENGINE_RTMP; else upstream=$ENGINE_HTTP; fi
        start_relay "$upstream" "$delay" "$work/relay.log"
        ENGINE_NAME=edge ENGINE_CPUS=0,1 start_engine --cores 2 \
            --player-assets "$root/tests/node_modules" --origin "$edge://$RELAY/live"
        ;;
    *) echo "--edge: rtmp or http" >&2; exit 2 ;;
esac
sleep 6
printf '%-8s %4s %14s %7s %9s\n' protocol run behind_live_s stalls played_s
for run in $(seq "$runs"); do
    for protocol in llhls hls flv; do
        url="http://$ENGINE_HTTP/player?stream=live/lat&protocol=$protocol"
        report=$(cd "$root/tests" && node browser/run.mjs play "{\"url\":\"$url\",\"seconds\":$seconds}")
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); f=r["final"]
print("%-8s %4s %14s %7s %9.1f" % (sys.argv[2], sys.argv[3], f["latency"], f["stalls"], r["played_s"]))' \
            "$report" "$protocol" "$run"
    done
done
