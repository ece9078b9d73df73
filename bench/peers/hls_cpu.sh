#!/usr/bin/env bash
# Server CPU per HLS request at a fixed request rate, side by side in one run: edge-engine
# (--cores 1) sending segments by reference (--zero-copy on) and by copy (--zero-copy off),
# against nginx (1 worker) with the rtmp module's `hls on` writing 2 s segments to tmpfs and
# its http module serving them with sendfile. The same loadgen command drives each: one
# publisher of the bundled 200 kbit/s rendition (about 64 KB segments) and VIEWERS HLS
# viewers (light verification, 1,000 connections), which is a fixed rate of about
# VIEWERS / 2 segments and as many playlist reloads a second, below both servers' limits.
# Servers on CPU 0, loadgen on CPU 1. Reported per server: requests, CPU per request (µs),
# the ratio to nginx, p99 segment download, errors and stalls.
#
# Usage: bench/peers/hls_cpu.sh [--viewers N] [--seconds N] [--runs N] [--baseline BIN]
#   --baseline BIN  also measure another edge-engine binary (an earlier commit's build), in
#                   the same run, as "baseline" rows (zero-copy on)
# Installs ffmpeg, nginx and libnginx-mod-rtmp when missing (Debian). Changes nothing outside
# a temporary directory in /dev/shm, removed on exit.
set -euo pipefail

viewers=20000 seconds=30 runs=1 baseline=""
while (($#)); do
    case "$1" in
        --baseline) baseline=$2; shift 2 ;;
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing ffmpeg:ffmpeg nginx:nginx-light /usr/lib/nginx/modules/ngx_rtmp_module.so:libnginx-mod-rtmp
PATH="$PATH:/usr/sbin"

setup_work /dev/shm/edge-hlscpu.XXXXXX

(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

# One loadgen run; prints "requests cpu_us_per_request p99_ms errors stalls".
measure() { # name server-pid... -- loadgen target args...
    local name=$1 before after pids=()
    shift
    while [ "$1" != -- ]; do pids+=("$1"); shift; done
    shift
    before=$(cpu_seconds_of "${pids[@]}")
    taskset -c 1 "$bin/loadgen" --publish --viewers "$viewers" --protocol hls --bitrate 200k \
        --ramp "$((viewers / 5))" --duration "${seconds}s" --verify light --connections 1000 \
        --cores 1 --cpu-list 1 --stream-prefix "${name}x" --json "$work/out.json" --max-error-rate 1 \
        "$@" >/dev/null 2>&1 || true
    after=$(cpu_seconds_of "${pids[@]}")
    python3 - "$work/out.json" "$before" "$after" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
before, after = float(sys.argv[2]), float(sys.argv[3])
req = j["requests"]
h = j["histograms"]["segment_download"]
p99 = h.get("p99_us", 10**12) / 1000 if h["count"] else float("inf")
errors = sum(j["errors"].values())
print(f"{req} {(after - before) * 1e6 / max(req, 1):.1f} {p99:.1f} {errors} {j['counters'].get('stalls', 0)}")
EOF
}

declare -A result
for run in $(seq "$runs"); do
    for mode in on off; do
        ENGINE_NAME="engine-$mode" start_engine --republish-grace-ms 500 --zero-copy "$mode"
        result["engine-$mode,$run"]=$(measure "e${mode}${run}" "$ENGINE_PID" -- --target "rtmp://$ENGINE_RTMP" --target "http://$ENGINE_HTTP")
        kill -INT "$ENGINE_PID"
        echo "edge-engine zero-copy $mode, run $run: ${result["engine-$mode,$run"]}" >&2
    done
    if [ -n "$baseline" ]; then
        ENGINE_BIN=$baseline ENGINE_NAME=baseline start_engine --republish-grace-ms 500 --zero-copy on
        result["baseline,$run"]=$(measure "b${run}" "$ENGINE_PID" -- --target "rtmp://$ENGINE_RTMP" --target "http://$ENGINE_HTTP")
        kill -INT "$ENGINE_PID"
        echo "baseline zero-copy on, run $run: ${result["baseline,$run"]}" >&2
    fi
    mkdir -p "$work/www/live"
    chmod -R 755 "$work/www"
    port_rtmp=19357 port_http=18183
    cat >"$work/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
error_log $work/nginx.err;
pid $work/nginx.pid;
events { worker_connections 19000; }
rtmp {
    server {
        listen 127.0.0.1:$port_rtmp;
        chunk_size 4096;
        application live { live on; hls on; hls_path $work/www/live; hls_fragment 2s; hls_playlist_length 12s; }
    }
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    types { video/mp2t ts; application/vnd.apple.mpegurl m3u8; }
    server { listen 127.0.0.1:$port_http; root $work/www; }
}
EOF
    start_nginx
    result["nginx,$run"]=$(measure "n$run" "${NGINX_PIDS[@]}" -- --publish-target "rtmp://127.0.0.1:$port_rtmp" --target "http://127.0.0.1:$port_http")
    kill "$NGINX_PID"
    wait "$NGINX_PID" 2>/dev/null || true
    echo "nginx, run $run: ${result["nginx,$run"]}" >&2
done

printf '\nHLS server CPU per request at a fixed rate — %s, commit %s, %s, %s viewers, %ss, light verification\n' \
    "$(date -u +%F)" "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$viewers" "$seconds"
printf '| run | server | requests | CPU µs per request | vs nginx | p99 segment download (ms) | errors | stalls |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- |\n'
for run in $(seq "$runs"); do
    read -r _ ncpu _ _ _ <<<"${result["nginx,$run"]}"
    for s in engine-on engine-off ${baseline:+baseline} nginx; do
        read -r req cpu p99 errors stalls <<<"${result["$s,$run"]}"
        label=$s
        [ "$s" = engine-on ] && label="edge-engine, zero-copy"
        [ "$s" = engine-off ] && label="edge-engine, writev"
        [ "$s" = baseline ] && label="baseline build, zero-copy"
        awk -v r="$run" -v s="$label" -v q="$req" -v c="$cpu" -v n="$ncpu" -v p="$p99" -v e="$errors" -v st="$stalls" \
            'BEGIN { printf "| %d | %s | %d | %.1f | %.2fx | %.1f | %d | %d |\n", r, s, q, c, c / n, p, e, st }'
    done
done
