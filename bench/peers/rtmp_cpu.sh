#!/usr/bin/env bash
# Server CPU per RTMP player at fixed player counts, side by side in one run: edge-engine
# (--cores 1; writes at once with --write-coalesce-ms 0, and a fixed window with --write-coalesce-ms
# MS --write-coalesce-load 0) against nginx with the rtmp module
# (1 worker). Servers on CPU 0, loadgen on CPU 1 (one publisher at ~600 kbit/s, all players
# joining at once). For each server and count, two windows of the same run: the join (the
# first 5 s after loadgen starts: the publisher, every player's handshake, play and, for
# edge-engine, its GOP burst) and steady state (from 6 s to the end). Reported per player:
# join CPU in ms, steady CPU in µs per second, p99 frame latency, errors and gaps, and the
# client's busy percent (near 100, the client is the limit).
#
# Usage: bench/peers/rtmp_cpu.sh [--seconds N] [--players "1000 2000"] [--coalesce MS]
#                                [--baseline BIN]
#   --baseline BIN  also measure another edge-engine binary (an earlier commit's build), in
#                   the same run, as "baseline" rows (writes at once)
# Installs ffmpeg, nginx and libnginx-mod-rtmp when missing (Debian). Changes nothing outside
# a temporary directory, removed on exit.
set -euo pipefail

seconds=20 players="1000 2000" coalesce=40 baseline=""
while (($#)); do
    case "$1" in
        --baseline) baseline=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --players) players=$2; shift 2 ;;
        --coalesce) coalesce=$2; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
((seconds >= 10)) || { echo "--seconds must be at least 10 (5 s join, then steady state)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing ffmpeg:ffmpeg nginx:nginx-light /usr/lib/nginx/modules/ngx_rtmp_module.so:libnginx-mod-rtmp
PATH="$PATH:/usr/sbin"

setup_work "${TMPDIR:-/tmp}/edge-rtmpcpu.XXXXXX"

(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

# One run of N players against ADDR; prints "join_ms_per_player steady_us_per_player_s p99_ms
# errors gaps client_busy_percent".
measure() { # server-pid rtmp-addr players stream
    local pid=$1 addr=$2 n=$3 stream=$4 c0 c1 c2 lg
    c0=$(cpu_seconds_of "$pid")
    taskset -c 1 "$bin/loadgen" --publish --viewers "$n" --protocol rtmp --duration "${seconds}s" --warmup 5s \
        --bitrate 600k --stream-prefix "$stream" --cores 1 --cpu-list 1 \
        --target "rtmp://$addr" --json "$work/out.json" --max-error-rate 1 >/dev/null 2>&1 &
    lg=$!
    sleep 5
    c1=$(cpu_seconds_of "$pid")
    sleep 1
    local t1 t2
    t1=$(date +%s.%N)
    c1b=$(cpu_seconds_of "$pid")
    # loadgen runs `seconds` after its viewers start, about a second after it starts.
    sleep "$((seconds - 5))"
    c2=$(cpu_seconds_of "$pid")
    t2=$(date +%s.%N)
    wait "$lg" || true
    python3 - "$work/out.json" "$c0" "$c1" "$c1b" "$c2" "$t1" "$t2" "$n" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
c0, c1, c1b, c2, t1, t2 = map(float, sys.argv[2:8])
n = int(sys.argv[8])
h = j["histograms"]["frame_latency"]
p99 = h.get("p99_us", 10**12) / 1000 if h["count"] else float("inf")
errors = sum(j["errors"].values())
gaps = j["counters"].get("gaps", 0)
join = (c1 - c0) * 1000 / n
steady = (c2 - c1b) * 1e6 / n / (t2 - t1)
busy = 100 * j["loadgen_cpu_s"] / j["elapsed_s"]
print(f"{join:.2f} {steady:.1f} {p99:.1f} {errors} {gaps} {busy:.0f}")
EOF
}

declare -A result
run_server() { # name pid addr
    local name=$1 pid=$2 addr=$3 n run=0
    for n in $players; do
        run=$((run + 1))
        result["$name,$n"]=$(measure "$pid" "$addr" "$n" "${name// /_}-$run-")
        printf '%-24s players=%-6s %s\n' "$name" "$n" "${result["$name,$n"]}" >&2
    done
}

start_engine --republish-grace-ms 500 --write-coalesce-ms 0
run_server "edge-engine" "$ENGINE_PID" "$ENGINE_RTMP"
kill -INT "$ENGINE_PID"
if [ -n "$baseline" ]; then
    ENGINE_BIN=$baseline ENGINE_NAME=baseline start_engine --republish-grace-ms 500
    run_server "baseline" "$ENGINE_PID" "$ENGINE_RTMP"
    kill -INT "$ENGINE_PID"
fi
ENGINE_NAME=coalesce start_engine --republish-grace-ms 500 --write-coalesce-ms "$coalesce" --write-coalesce-load 0
run_server "edge-engine coalesce $coalesce" "$ENGINE_PID" "$ENGINE_RTMP"
kill -INT "$ENGINE_PID"

nginx_rtmp_conf 1 19000 127.0.0.1:19356 'live on;'
start_nginx
run_server nginx-rtmp "${NGINX_PIDS[1]:-$NGINX_PID}" 127.0.0.1:19356

printf '\nRTMP CPU per player at ~600 kbit/s — %s, commit %s, %s, %ss per run\n' "$(date -u +%F)" \
    "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$seconds"
printf '| server | players | join CPU per player (ms) | steady CPU per player (µs/s) | steady vs nginx-rtmp | p99 frame latency (ms) | errors | gaps | client busy |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for n in $players; do
    read -r _ nsteady _ _ _ _ <<<"${result["nginx-rtmp,$n"]}"
    for s in "edge-engine" ${baseline:+baseline} "edge-engine coalesce $coalesce" nginx-rtmp; do
        read -r join steady p99 errors gaps busy <<<"${result["$s,$n"]}"
        awk -v s="$s" -v n="$n" -v j="$join" -v st="$steady" -v ns="$nsteady" -v p="$p99" -v e="$errors" -v g="$gaps" -v b="$busy" \
            'BEGIN { printf "| %s | %d | %.2f | %.1f | %.2fx | %.1f | %d | %d | %d %% |\n", s, n, j, st, st / ns, p, e, g, b }'
    done
done
