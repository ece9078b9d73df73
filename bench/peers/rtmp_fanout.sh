#!/usr/bin/env bash
# RTMP fan-out at ~600 kbit/s, side by side in one run: edge-engine (--cores 1) against
# nginx with the rtmp module (1 worker). Servers on CPU 0, loadgen on CPU 1 (the same command
# for both). For each server, the player count doubles until p99 frame latency (from the SEI
# probes) exceeds 100 ms or anything breaks; reported: the most players that held, and the
# server's CPU time per player. Latency is steady state: each player's first 3 s (all players
# join at once, and edge-engine sends each one its GOP cache; nginx-rtmp has none) is left
# out with loadgen's --warmup; the frames still count for gaps.
#
# Usage: bench/peers/rtmp_fanout.sh [--seconds N] [--start PLAYERS] [--max PLAYERS]
#        [--compare BIN [--compare-label NAME]] [--engine-args "ARGS"]
# --engine-args passes more flags to edge-engine (e.g. "--write-coalesce-ms 40").
# --compare also runs another edge-engine build (e.g. the previous commit's) in the same run,
# so a change is measured side by side with what it replaced.
# Installs ffmpeg, nginx and libnginx-mod-rtmp when missing (Debian). Changes nothing outside
# a temporary directory, removed on exit.
set -euo pipefail

seconds=15 start=250 max=8000 compare="" compare_label=previous engine_args=""
while (($#)); do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --start) start=$2; shift 2 ;;
        --max) max=$2; shift 2 ;;
        --compare) compare=$2; shift 2 ;;
        --compare-label) compare_label=$2; shift 2 ;;
        --engine-args) engine_args=$2; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

# Each run leaves its first 3 s out of the latency (--warmup), so it must last longer.
((seconds > 3)) || { echo "--seconds must be more than the 3 s warm-up" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing ffmpeg:ffmpeg nginx:nginx-light /usr/lib/nginx/modules/ngx_rtmp_module.so:libnginx-mod-rtmp
PATH="$PATH:/usr/sbin"

setup_work "${TMPDIR:-/tmp}/edge-fanout.XXXXXX"

(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

cpu_seconds() { # pid
    awk -v hz="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); print (f[12] + f[13]) / hz }' "/proc/$1/stat"
}

# Runs loadgen against rtmp://ADDR with N players; prints "p99_ms errors gaps cpu_per_player_ms
# client_busy_percent" (loadgen's CPU over the run's wall time: near 100, the client is the limit).
measure() { # server-pid rtmp-addr players stream
    local pid=$1 addr=$2 n=$3 stream=$4 before after
    before=$(cpu_seconds "$pid")
    taskset -c 1 "$bin/loadgen" --publish --viewers "$n" --protocol rtmp --duration "${seconds}s" --warmup 3s \
        --bitrate 600k --stream-prefix "$stream" --cores 1 --cpu-list 1 \
        --target "rtmp://$addr" --json "$work/out.json" --max-error-rate 1 >/dev/null 2>&1 || true
    after=$(cpu_seconds "$pid")
    python3 - "$work/out.json" "$before" "$after" "$n" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
h = j["histograms"]["frame_latency"]
p99 = h.get("p99_us", 10**12) / 1000 if h["count"] else float("inf")
errors = sum(j["errors"].values())
gaps = j["counters"].get("gaps", 0)
cpu = (float(sys.argv[3]) - float(sys.argv[2])) * 1000 / int(sys.argv[4])
busy = 100 * j["loadgen_cpu_s"] / j["elapsed_s"]
print(f"{p99:.1f} {errors} {gaps} {cpu:.3f} {busy:.0f}")
EOF
}

declare -A best best_cpu
search() { # name pid addr
    local name=$1 pid=$2 addr=$3 n=$start run=0
    best[$name]=0 best_cpu[$name]=-
    while ((n <= max)); do
        run=$((run + 1))
        read -r p99 errors gaps cpu busy < <(measure "$pid" "$addr" "$n" "s$run-")
        printf '%-12s players=%-6s p99=%-8s ms errors=%-4s gaps=%-4s server CPU/player=%s ms client busy=%s%%\n' \
            "$name" "$n" "$p99" "$errors" "$gaps" "$cpu" "$busy"
        if [ "$errors" != 0 ] || [ "$gaps" != 0 ] || awk -v p="$p99" 'BEGIN { exit !(p > 100) }'; then
            break
        fi
        best[$name]=$n best_cpu[$name]=$cpu
        n=$((n * 2))
    done
}

# shellcheck disable=SC2086 # engine_args is a list of flags
start_engine --republish-grace-ms 500 $engine_args
search edge-engine "$ENGINE_PID" "$ENGINE_RTMP"
kill "$ENGINE_PID"
servers=(edge-engine)
if [ -n "$compare" ]; then
    ENGINE_BIN=$compare ENGINE_NAME=compare start_engine --republish-grace-ms 500
    search "$compare_label" "$ENGINE_PID" "$ENGINE_RTMP"
    kill "$ENGINE_PID"
    servers+=("$compare_label")
fi
servers+=(nginx-rtmp)

nginx_rtmp_conf 1 19000 127.0.0.1:19355 'live on;'
taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
pids+=("$nginx_pid")
sleep 0.5
worker=$(pgrep -P "$nginx_pid" | head -n1)
search nginx-rtmp "${worker:-$nginx_pid}" 127.0.0.1:19355

printf '\nRTMP fan-out at ~600 kbit/s — %s, commit %s, %s, %ss per step\n' "$(date -u +%F)" \
    "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$seconds"
printf '| server | most players with p99 ≤ 100 ms, no gaps, no errors | server CPU per player (ms over the run) |\n| --- | --- | --- |\n'
for s in "${servers[@]}"; do
    printf '| %s | %s | %s |\n' "$s" "${best[$s]}" "${best_cpu[$s]}"
done
if [ "${best[nginx-rtmp]}" -gt 0 ]; then
    awk -v e="${best[edge-engine]}" -v n="${best[nginx-rtmp]}" 'BEGIN { printf "ratio (edge-engine / nginx-rtmp): %.2fx\n", e / n }'
fi
