#!/usr/bin/env bash
# HLS segment serving, side by side in one run: edge-engine (--cores 1) sending segment
# bodies by reference (--zero-copy on: vmsplice + splice) and by copy (--zero-copy off:
# writev, --http-writes MODE) against nginx (1 worker, sendfile, the same segment bytes from
# tmpfs). Servers on CPU 0, wrk on CPU 1. Segments of about 64 KB and 700 KB, 100 and 1000
# connections, with each server's CPU per request over the cell; plus the loopback limit
# from iperf3 with the same pinning.
#
# Usage: bench/peers/hls_segments.sh [--duration SECONDS] [--writes separate|vectored|both]
# Installs ffmpeg, nginx, wrk and iperf3 when missing (Debian packages). Changes nothing
# outside a temporary directory in /dev/shm, which it removes on exit.
set -euo pipefail

duration=8
writes=separate # the engine's default
while (($#)); do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --writes) writes=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing ffmpeg:ffmpeg nginx:nginx-light wrk:wrk iperf3:iperf3 curl:curl
PATH="$PATH:/usr/sbin"

setup_work /dev/shm/edge-bench.XXXXXX # tmpfs: nginx serves the segments from here

(cd "$root" && cargo build --release -q -p edge-engine)
bin="$root/target/release"

# Test clips: ~256 kbit/s and ~2.8 Mbit/s in total, so 2 s segments come out near 64 KB and
# 700 KB.
make_clip small 200
make_clip big 2750

declare -A result
run_engine() { # mode: zerocopy, or an --http-writes mode for the copying path
    local mode=$1 port_rtmp port_http
    if [ "$mode" = zerocopy ]; then
        start_engine --republish-grace-ms 200 --zero-copy on
    else
        start_engine --republish-grace-ms 200 --zero-copy off --http-writes "$mode"
    fi
    curl -s "http://$ENGINE_HTTP/healthz" | grep -q "\"send_path\":\"$([ "$mode" = zerocopy ] && echo splice || echo writev)\"" ||
        { echo "edge-engine runs another send path than asked for ($mode)" >&2; exit 1; }
    port_rtmp=${ENGINE_RTMP##*:}
    port_http=${ENGINE_HTTP##*:}
    for size in small big; do
        taskset -c 1 ffmpeg -v error -readrate 4 -i "$work/$size.flv" -c copy -f flv "rtmp://127.0.0.1:$port_rtmp/bench/$size"
        for _ in $(seq 200); do
            curl -s "http://127.0.0.1:$port_http/bench/$size.m3u8" | grep -q ENDLIST && break
            sleep 0.05
        done
        mkdir -p "$work/www" && chmod 755 "$work/www"
        curl -s -o "$work/www/$size.ts" "http://127.0.0.1:$port_http/bench/$size-1.ts"
        chmod 644 "$work/www/$size.ts"
        result[bytes_$size]=$(stat -c %s "$work/www/$size.ts")
        for c in 100 1000; do
            result["engine_${mode}_${size}_$c"]=$(wrk_cell "http://127.0.0.1:$port_http/bench/$size-1.ts" "$c" "$ENGINE_PID")
        done
    done
    kill "$ENGINE_PID"; wait "$ENGINE_PID" 2>/dev/null || true
}

modes=(zerocopy "$writes"); [ "$writes" = both ] && modes=(zerocopy vectored separate)
for m in "${modes[@]}"; do run_engine "$m"; done

cat >"$work/nginx.conf" <<EOF
worker_processes 1;
error_log $work/nginx.err;
pid $work/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    types { video/mp2t ts; }
    server { listen 127.0.0.1:18181; root $work/www; }
}
EOF
start_nginx
curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18181/small.ts | grep -q 200 || { echo "nginx does not serve the segment" >&2; exit 1; }
for size in small big; do
    for c in 100 1000; do
        result["nginx_${size}_$c"]=$(wrk_cell "http://127.0.0.1:18181/$size.ts" "$c" "${NGINX_PIDS[@]}")
    done
done

taskset -c 0 iperf3 -s -1 -p 15201 >/dev/null 2>&1 &
pids+=("$!")
sleep 1
loopback=$(taskset -c 1 iperf3 -c 127.0.0.1 -p 15201 -t 5 -J | grep -A6 '"sum_received"' |
    awk -F: '/bits_per_second/ { gsub(/[ \t,]/, "", $2); printf "%.0f", $2 / 8; exit }')
[ -n "$loopback" ] || { echo "iperf3 gave no result" >&2; exit 1; }

printf '\nHLS segment serving — %s, commit %s, %s, wrk %ss per cell\n' "$(date -u +%F)" \
    "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$duration"
printf 'segments: small %s bytes, big %s bytes; loopback (iperf3) %.2f GB/s\n\n' \
    "${result[bytes_small]}" "${result[bytes_big]}" "$(awk -v l="$loopback" 'BEGIN { print l / 1e9 }')"
printf '| segment | conns | engine path | engine req/s | nginx req/s | ratio | engine GB/s | nginx GB/s | engine / loopback | engine CPU µs/req | nginx CPU µs/req | CPU ratio |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
for size in small big; do
    for c in 100 1000; do
        read -r n_rps n_bps n_cpu <<<"${result[nginx_${size}_$c]}"
        for m in "${modes[@]}"; do
            read -r e_rps e_bps e_cpu <<<"${result[engine_${m}_${size}_$c]}"
            awk -v s="$size" -v c="$c" -v m="$m" -v er="$e_rps" -v nr="$n_rps" -v eb="$e_bps" -v nb="$n_bps" -v lb="$loopback" -v ec="$e_cpu" -v nc="$n_cpu" \
                'BEGIN { printf "| %s | %d | %s | %.0f | %.0f | %.2fx | %.2f | %.2f | %.2f | %.1f | %.1f | %.2fx |\n", s, c, m, er, nr, er / nr, eb / 1e9, nb / 1e9, eb / lb, ec, nc, ec / nc }'
        done
    done
done
