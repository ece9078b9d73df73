#!/usr/bin/env bash
# HLS segments over HTTPS, side by side in one run: edge-engine (--cores 1, rustls) against
# nginx (1 worker, OpenSSL, the same segment bytes from tmpfs, the same certificate). Both
# servers on CPU 0, wrk on CPU 1; TLS 1.3 with the same cipher suite on both (printed).
# Segments of about 64 KB and 700 KB over 100 keep-alive connections, then full handshakes
# per second (a new connection per request for a 2-byte body, `Connection: close`).
#
# Usage: bench/peers/https_segments.sh [--duration SECONDS] [--connections N]
# Installs ffmpeg, nginx, wrk, openssl and curl when missing (Debian packages). Changes
# nothing outside a temporary directory in /dev/shm, which it removes on exit.
set -euo pipefail

duration=8
conns=100
while (($#)); do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --connections) conns=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing ffmpeg:ffmpeg nginx:nginx-light wrk:wrk openssl:openssl curl:curl
PATH="$PATH:/usr/sbin"

setup_work /dev/shm/edge-bench-tls.XXXXXX

(cd "$root" && cargo build --release -q -p edge-engine)
bin="$root/target/release"

# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem"

make_clip small 200
make_clip big 2750

cipher() { # host:port -> the negotiated protocol and suite
    openssl s_client -connect "$1" -servername localhost </dev/null 2>/dev/null |
        awk '/^New, / { print $2, $NF; exit }'
}

declare -A result
start_engine --republish-grace-ms 200 --https 127.0.0.1:0 \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
port_rtmp=${ENGINE_RTMP##*:}
port_http=${ENGINE_HTTP##*:}
engine_https=$(sed -n 's/.*https=\([^ ]*\).*/\1/p' "$work/engine.out")
mkdir -p "$work/www" && chmod 755 "$work/www"
for size in small big; do
    taskset -c 1 ffmpeg -v error -readrate 4 -i "$work/$size.flv" -c copy -f flv "rtmp://127.0.0.1:$port_rtmp/bench/$size"
    for _ in $(seq 200); do
        curl -s "http://127.0.0.1:$port_http/bench/$size.m3u8" | grep -q ENDLIST && break
        sleep 0.05
    done
    curl -s -o "$work/www/$size.ts" "http://127.0.0.1:$port_http/bench/$size-1.ts"
    chmod 644 "$work/www/$size.ts"
    result[bytes_$size]=$(stat -c %s "$work/www/$size.ts")
    result["engine_$size"]=$(wrk_run "https://$engine_https/bench/$size-1.ts" "$conns")
done
printf 'ok' >"$work/www/hs"
result[engine_cipher]=$(cipher "$engine_https")
# /healthz is the engine's smallest answer (a few hundred bytes of JSON).
result[engine_hs]=$(wrk_run "https://$engine_https/healthz" "$conns" -H "Connection: close")
kill "$ENGINE_PID"; wait "$ENGINE_PID" 2>/dev/null || true

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
    ssl_protocols TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:18443 ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        root $work/www;
    }
}
EOF
taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=("$!")
sleep 0.5
curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:18443/small.ts | grep -q 200 ||
    { cat "$work/nginx.err" >&2; echo "nginx does not serve the segment" >&2; exit 1; }
for size in small big; do
    result["nginx_$size"]=$(wrk_run "https://127.0.0.1:18443/$size.ts" "$conns")
done
result[nginx_cipher]=$(cipher 127.0.0.1:18443)
result[nginx_hs]=$(wrk_run "https://127.0.0.1:18443/hs" "$conns" -H "Connection: close")

printf '\nHLS segments over HTTPS — %s, commit %s, %s, wrk %ss per cell, %s connections\n' \
    "$(date -u +%F)" "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$duration" "$conns"
printf 'segments: small %s bytes, big %s bytes; engine %s, nginx %s\n\n' \
    "${result[bytes_small]}" "${result[bytes_big]}" "${result[engine_cipher]}" "${result[nginx_cipher]}"
printf '| what | engine req/s | nginx req/s | ratio | engine GB/s | nginx GB/s |\n'
printf '| --- | --- | --- | --- | --- | --- |\n'
for row in small big hs; do
    read -r e_rps e_bps <<<"${result[engine_$row]}"
    read -r n_rps n_bps <<<"${result[nginx_$row]}"
    label=$row
    [ "$row" = hs ] && label="new connection per request (handshakes/s)"
    awk -v s="$label" -v er="$e_rps" -v nr="$n_rps" -v eb="$e_bps" -v nb="$n_bps" \
        'BEGIN { printf "| %s | %.0f | %.0f | %.2fx | %.3f | %.3f |\n", s, er, nr, er / nr, eb / 1e9, nb / 1e9 }'
done
