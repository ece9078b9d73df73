#!/usr/bin/env bash
# Records a CPU flamegraph of edge-engine under one scenario and renders it with inferno.
#
# Usage: flamegraphs/record.sh SCENARIO [--seconds N]
#   hls-serving   wrk fetching one ~74 KB segment over 100 connections
#   rtmp-fanout   200 RTMP players of one ~300 kbit/s stream (the committed fixture, looped)
#   ingest-mux    one publisher as fast as the engine takes it, no viewers: RTMP ingest plus
#                 HLS muxing (reports media frames per second during the recording)
# The engine runs --cores 1 on CPU 0, the load on CPU 1. perf uses `-e cpu-clock -g` (this
# machine has no hardware counters). Installs linux-perf, ffmpeg and wrk (Debian) and
# inferno (crates.io) when missing. Writes flamegraphs/SCENARIO/flamegraph.svg and
# flamegraphs/SCENARIO/recording.txt (commit, command, load, kernel, top symbols).
set -euo pipefail

scenario=${1:-}
seconds=10
shift || true
while (($#)); do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$scenario" in
    hls-serving | rtmp-fanout | ingest-mux) ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/flamegraphs/$scenario"
mkdir -p "$out"
# shellcheck source-path=SCRIPTDIR source=../bench/peers/common.sh
. "$root/bench/peers/common.sh"
install_missing perf:linux-perf ffmpeg:ffmpeg wrk:wrk
command -v inferno-flamegraph >/dev/null 2>&1 || cargo install -q inferno
PATH="$PATH:$HOME/.cargo/bin"

(cd "$root" && cargo build --release -q -p edge-engine -p bench)
bin="$root/target/release"
setup_work "${TMPDIR:-/tmp}/edge-flamegraph.XXXXXX"
load_pid=""

start_engine --republish-grace-ms 200
engine=$ENGINE_PID rtmp=$ENGINE_RTMP http=$ENGINE_HTTP
fixture="$root/tests/fixtures/bframes.flv"

case "$scenario" in
    hls-serving)
        ffmpeg -v error -f lavfi -i "testsrc2=size=640x360:rate=25" -f lavfi -i sine -t 6 -c:v libx264 -preset veryfast \
            -g 50 -b:v 200k -c:a aac -b:a 48k -f flv "$work/clip.flv"
        taskset -c 1 ffmpeg -v error -readrate 4 -i "$work/clip.flv" -c copy -f flv "rtmp://$rtmp/fg/s"
        sleep 0.5
        load="wrk -t1 -c100 -d$((seconds + 2))s http://$http/fg/s-1.ts (pinned to CPU 1)"
        taskset -c 1 wrk -t1 -c100 -d$((seconds + 2))s "http://$http/fg/s-1.ts" >"$work/load.txt" &
        load_pid=$!
        ;;
    rtmp-fanout)
        load="ffmpeg -re -stream_loop -1 (fixture) + 200 RTMP players (bench rtmp-players), CPU 1"
        taskset -c 1 ffmpeg -v error -re -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://$rtmp/fg/p" &
        pids+=("$!")
        sleep 1
        taskset -c 1 "$bin/rtmp-players" "$rtmp" fg p 200 $((seconds + 3)) >"$work/load.txt" &
        load_pid=$!
        sleep 2
        ;;
    ingest-mux)
        load="ffmpeg -stream_loop -1 (fixture, no rate limit) publishing, no viewers, CPU 1"
        taskset -c 1 ffmpeg -v error -stream_loop -1 -i "$fixture" -c copy -f flv "rtmp://$rtmp/fg/i" &
        pids+=("$!")
        sleep 1
        frames_before=$(curl -s "http://$http/metrics" | awk '/^edge_frames_in/ { s += $2 } END { print s }')
        ;;
esac

perf record -F 999 -e cpu-clock -g -p "$engine" -o "$work/perf.data" -- sleep "$seconds" >/dev/null 2>&1
if [ "$scenario" = ingest-mux ]; then
    frames_after=$(curl -s "http://$http/metrics" | awk '/^edge_frames_in/ { s += $2 } END { print s }')
    echo "ingest: $(((frames_after - frames_before) / seconds)) media frames/s while recording" >"$work/load.txt"
fi
if [ -n "$load_pid" ]; then
    pids+=("$load_pid")
    wait "$load_pid" 2>/dev/null || true
fi
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
inferno-flamegraph --title "edge-engine: $scenario" <"$work/folded" >"$out/flamegraph.svg"
{
    echo "scenario: $scenario"
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "kernel: $(uname -r)"
    echo "engine: edge-engine --cores 1 (CPU 0), release build"
    echo "load: $load"
    echo "perf: perf record -F 999 -e cpu-clock -g -p <engine> -- sleep $seconds"
    echo "load result: $(tr '\n' ' ' <"$work/load.txt" | tr -s ' ' | cut -c1-300)"
    echo
    echo "top symbols (self time):"
    perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | awk 'NR <= 10'
} >"$out/recording.txt"
echo "wrote $out/flamegraph.svg and $out/recording.txt"
