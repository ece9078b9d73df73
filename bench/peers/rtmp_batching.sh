#!/usr/bin/env bash
# Adaptive write batching against SRS 7 and nginx-rtmp, side by side in one run: server CPU
# per RTMP (or HTTP-FLV) player, frame latency and system calls, each server with its defaults.
#
# Rows: edge-engine with its defaults (adaptive batching), edge-engine --write-coalesce-ms 0
# (every frame written at once: the figure before adaptive batching), SRS 7 (built from
# source by ../shared/peers/build-srs.sh; its defaults merge writes for about 350 ms) and
# nginx with the rtmp module (1 worker). Each server on CPU 0, loadgen on CPU 1: one
# publisher at ~600 kbit/s and N players joining at once. Two windows of each run: the join
# (the first 5 s after loadgen starts) and steady state (from 6 s to the end). Reported per
# player: CPU over the whole run in ms (joins included, as the issue's first table counted
# it), join CPU in ms, steady CPU in µs per second, steady system calls per second (perf,
# every syscall of the server's process), p99 frame latency, errors and gaps, the client's
# busy percent (near 100, the client is the limit); for edge-engine also its writes per
# player per second and its write window at the end.
#
# Usage: bench/peers/rtmp_batching.sh --srs BIN [--seconds N] [--players "100 1000 2000 4000"]
#                                     [--protocol rtmp|flv] [--engine-args "ARGS"] [--no-nginx]
#   --srs BIN          SRS 7's binary (build-srs.sh prints its path)
#   --protocol flv     HTTP-FLV players instead (SRS with http_remux; nginx-rtmp has none)
#   --engine-args      extra arguments for the defaults row (to try other settings)
# Needs perf (linux-perf) and the right to count a process's tracepoints (root, or
# perf_event_paranoid <= 1). Installs ffmpeg, nginx and libnginx-mod-rtmp when missing
# (Debian). Changes nothing outside a temporary directory, removed on exit.
set -euo pipefail

seconds=20 players="100 1000 2000 4000" srs="" engine_args="" with_nginx=1 protocol=rtmp
while (($#)); do
    case "$1" in
        --srs) srs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --players) players=$2; shift 2 ;;
        --engine-args) engine_args=$2; shift 2 ;;
        --protocol) protocol=$2; shift 2 ;;
        --no-nginx) with_nginx=0; shift ;;
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -x "$srs" ] || { echo "--srs BIN: SRS 7's binary is required (../shared/peers/build-srs.sh)" >&2; exit 2; }
((seconds >= 12)) || { echo "--seconds must be at least 12 (5 s join, then steady state)" >&2; exit 2; }
case "$protocol" in rtmp) ;; flv) with_nginx=0 ;; *) echo "--protocol rtmp|flv" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is required (apt-get install linux-perf)" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing ffmpeg:ffmpeg nginx:nginx-light /usr/lib/nginx/modules/ngx_rtmp_module.so:libnginx-mod-rtmp
PATH="$PATH:/usr/sbin"

setup_work "${TMPDIR:-/tmp}/edge-batching.XXXXXX"

(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

# A counter summed over the engine's shards (0 for other servers).
engine_counter() { # http-addr name
    [ -n "$1" ] || { echo 0; return; }
    curl -fsS "http://$1/metrics" | awk -v n="edge_$2" '$1 ~ "^"n"[{ ]" || $1 == n { s += $2 } END { print s + 0 }'
}

# One run of N players; prints "run_ms join_ms steady_us_s syscalls_s p99_ms errors gaps busy
# writes_s window_ms" (the last two per player per second and in ms, 0 for other servers).
measure() { # server-pids rtmp-addr http-addr players stream engine-http
    local pidlist=$1 addr=$2 haddr=$3 n=$4 stream=$5 http=$6 c0 c1 c1b c2 c3 lg w1 w2 window target
    target=(--target "rtmp://$addr")
    [ "$protocol" = flv ] && target=(--target "http://$haddr" --publish-target "rtmp://$addr")
    # shellcheck disable=SC2086
    c0=$(cpu_seconds_of $pidlist)
    taskset -c 1 "$bin/loadgen" --publish --viewers "$n" --protocol "$protocol" --duration "${seconds}s" --warmup 5s \
        --bitrate 600k --stream-prefix "$stream" --cores 1 --cpu-list 1 \
        "${target[@]}" --json "$work/out.json" --max-error-rate 1 >/dev/null 2>&1 &
    lg=$!
    sleep 5
    # shellcheck disable=SC2086
    c1=$(cpu_seconds_of $pidlist)
    sleep 1
    local t1 t2 steady=$((seconds - 5))
    t1=$(date +%s.%N)
    # shellcheck disable=SC2086
    c1b=$(cpu_seconds_of $pidlist)
    w1=$(engine_counter "$http" viewer_writes)
    perf stat -x, -e raw_syscalls:sys_enter -p "${pidlist// /,}" -o "$work/perf.txt" -- sleep "$steady" 2>/dev/null
    # shellcheck disable=SC2086
    c2=$(cpu_seconds_of $pidlist)
    t2=$(date +%s.%N)
    w2=$(engine_counter "$http" viewer_writes)
    window=$(engine_counter "$http" write_window_ms)
    wait "$lg" || true
    # shellcheck disable=SC2086
    c3=$(cpu_seconds_of $pidlist)
    python3 - "$work/out.json" "$work/perf.txt" "$c0" "$c1" "$c1b" "$c2" "$t1" "$t2" "$n" "$w1" "$w2" "$window" "$c3" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
calls = 0
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[2].startswith("raw_syscalls:sys_enter") and f[0].isdigit():
        calls += int(f[0])
c0, c1, c1b, c2, t1, t2 = map(float, sys.argv[3:9])
n = int(sys.argv[9])
w1, w2, window, c3 = map(float, sys.argv[10:14])
h = j["histograms"]["frame_latency"]
p99 = h.get("p99_us", 10**12) / 1000 if h["count"] else float("inf")
errors = sum(j["errors"].values())
gaps = j["counters"].get("gaps", 0)
wall = t2 - t1
join = (c1 - c0) * 1000 / n
steady = (c2 - c1b) * 1e6 / n / wall
busy = 100 * j["loadgen_cpu_s"] / j["elapsed_s"]
print(f"{(c3 - c0) * 1000 / n:.2f} {join:.2f} {steady:.1f} {calls / wall:.0f} {p99:.1f} {errors} {gaps} {busy:.0f} {(w2 - w1) / n / wall:.1f} {window:.0f}")
EOF
}

declare -A result
rows=()
run_server() { # name pids rtmp-addr http-addr [engine-http]
    local name=$1 pidlist=$2 addr=$3 haddr=$4 http=${5:-} n run=0
    rows+=("$name")
    for n in $players; do
        run=$((run + 1))
        result["$name,$n"]=$(measure "$pidlist" "$addr" "$haddr" "$n" "${name//[^a-z0-9]/_}-$run-" "$http")
        printf '%-36s players=%-6s %s\n' "$name" "$n" "${result["$name,$n"]}" >&2
    done
}

# shellcheck disable=SC2086
start_engine --republish-grace-ms 500 $engine_args
run_server "edge-engine defaults${engine_args:+ $engine_args}" "$ENGINE_PID" "$ENGINE_RTMP" "$ENGINE_HTTP" "$ENGINE_HTTP"
kill -INT "$ENGINE_PID"
ENGINE_NAME=nobatch start_engine --republish-grace-ms 500 --write-coalesce-ms 0
run_server "edge-engine --write-coalesce-ms 0" "$ENGINE_PID" "$ENGINE_RTMP" "$ENGINE_HTTP" "$ENGINE_HTTP"
kill -INT "$ENGINE_PID"

srs_port=$(free_port)
srs_http=$(free_port)
cat >"$work/srs.conf" <<EOF
listen 127.0.0.1:$srs_port;
max_connections 12000;
daemon off;
srs_log_tank console;
srs_log_level error;
http_server { enabled on; listen 127.0.0.1:$srs_http; }
vhost __defaultVhost__ {
    gop_cache on;
    http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }
}
EOF
(cd "$(dirname "$srs")/.." && exec taskset -c 0 "$srs" -c "$work/srs.conf" >"$work/srs.log" 2>&1) &
srs_pid=$!
pids+=("$srs_pid")
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$srs_port") 2>/dev/null && break
    sleep 0.1
done
run_server "SRS 7 defaults" "$srs_pid" "127.0.0.1:$srs_port" "127.0.0.1:$srs_http"
kill "$srs_pid"

if ((with_nginx)); then
    nginx_port=$(free_port)
    nginx_rtmp_conf 1 19000 "127.0.0.1:$nginx_port" 'live on;'
    start_nginx
    run_server nginx-rtmp "${NGINX_PIDS[*]:-$NGINX_PID}" "127.0.0.1:$nginx_port" ""
fi

printf '\n%s write batching at ~600 kbit/s — %s, commit %s, %s, %ss per run\n' "$protocol" "$(date -u +%F)" \
    "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$seconds"
printf '| server | players | run CPU per player (ms) | run vs SRS | join CPU per player (ms) | steady CPU per player (µs/s) | steady vs SRS | syscalls/s | p99 frame latency (ms) | p99 vs SRS | errors | gaps | client busy | engine writes per player/s | window (ms) |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for n in $players; do
    read -r srun _ ssteady _ sp99 _ <<<"${result["SRS 7 defaults,$n"]}"
    for s in "${rows[@]}"; do
        read -r run join steady calls p99 errors gaps busy writes window <<<"${result["$s,$n"]}"
        awk -v s="$s" -v n="$n" -v r="$run" -v sr="$srun" -v j="$join" -v st="$steady" -v ss="$ssteady" -v c="$calls" \
            -v p="$p99" -v sp="$sp99" -v e="$errors" -v g="$gaps" -v b="$busy" -v w="$writes" -v win="$window" \
            'BEGIN { printf "| %s | %d | %.2f | %.2fx | %.2f | %.1f | %.2fx | %d | %.1f | %.2fx | %d | %d | %d %% | %.1f | %d |\n", s, n, r, r / sr, j, st, st / ss, c, p, p / sp, e, g, b, w, win }'
    done
done
