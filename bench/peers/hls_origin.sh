#!/usr/bin/env bash
# The HLS-origin edge against nginx proxy_cache, side by side in one run. One stream published
# by loadgen to an edge-engine origin; a delay relay (every byte held DELAY/2 each way) in
# front of the origin's HTTP port; two edges in front of the relay, each on CPU 0:
# edge-engine --cores 1 --origin http://RELAY/live (prefetch on, then off), and nginx with
# proxy_cache and proxy_cache_lock on (1 s for playlists, 60 s for segments). For each delay
# (default 0, 100 and 300 ms round trip), N loadgen HLS viewers (default 1000, CPU 1) watch
# each edge for SECONDS. Reported: p50/p99 segment download at the viewers, the origin's
# requests per segment (the relay's log), and the live latency (SEI probes).
# Then the collapsed miss: at the largest delay, as each new segment appears in the edge's
# playlist, 20 clients ask the edge for it at once (edge-engine with --hls-prefetch off);
# reported is how long after the relay forwarded the origin's first byte each client got its
# first byte (median and max over the segments and clients).
#
# Usage: bench/peers/hls_origin.sh [--viewers N] [--seconds N] [--delays "0 100 300"]
# Installs nginx when missing (Debian). Changes nothing outside a temporary directory.
set -euo pipefail

viewers=1000 seconds=20 delays="0 100 300"
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --delays) delays=$2; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing nginx:nginx-light
PATH="$PATH:/usr/sbin"

setup_work "${TMPDIR:-/tmp}/edge-hls-origin.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"



ENGINE_NAME=origin ENGINE_CPUS=1 start_engine
origin_rtmp=$ENGINE_RTMP origin_http=$ENGINE_HTTP
taskset -c 1 "$bin/loadgen" --publish --viewers 0 --target "rtmp://$origin_rtmp" --stream-prefix ho \
    --bitrate 600k --duration 3600s >/dev/null 2>&1 &
pids+=("$!")
sleep 3


start_nginx() { # relay -> NGINX_PID NGINX_HTTP
    local port
    port=$(free_port)
    rm -rf "$work/cache"
    cat >"$work/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
error_log $work/nginx.err;
pid $work/nginx.pid;
events { worker_connections 9000; }
http {
    access_log off;
    proxy_cache_path $work/cache levels=1:2 keys_zone=hls:10m max_size=1g inactive=60s use_temp_path=off;
    upstream origin { server $1; keepalive 16; }
    server {
        listen 127.0.0.1:$port;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_cache hls;
        proxy_cache_lock on;
        proxy_cache_lock_timeout 10s;
        location ~ \.m3u8\$ { proxy_pass http://origin; proxy_cache_valid 200 1s; }
        location ~ \.ts\$ { proxy_pass http://origin; proxy_cache_valid 200 60s; }
    }
}
EOF
    taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    pids+=("$NGINX_PID")
    NGINX_HTTP="127.0.0.1:$port"
    sleep 0.5
}

# SIGINT for an engine: it closes everything and exits (SIGTERM would drain, and its pull
# would go on reloading through the next run). SIGTERM for the relay and nginx (a background
# job ignores SIGINT).
stop() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
stop_term() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

declare -A row
run_viewers() { # name edge-http relay-log
    local before
    before=$(grep -c '^GET ' "$3" 2>/dev/null || true)
    taskset -c 1 "$bin/loadgen" --viewers "$viewers" --protocol hls --target "http://$2" --stream-prefix ho \
        --duration "${seconds}s" --warmup 6s --json "$work/$1.json" --max-error-rate 1 >/dev/null 2>&1 || true
    row[$1]=$(python3 - "$work/$1.json" "$3" "$before" <<'PY'
import json, sys, collections
j = json.load(open(sys.argv[1]))
h = j["histograms"]
seg = h.get("segment_download", {})
lat = h.get("segment_latency", {})
gets = [l.split()[-2] for l in open(sys.argv[2]) if l.startswith("GET ")][int(sys.argv[3]):]
per = collections.Counter(g.split("?")[0] for g in gets if ".ts" in g)
rps = sum(per.values()) / max(1, len(per))
print(f'{seg.get("p50_us", 0) / 1000:.1f} | {seg.get("p99_us", 0) / 1000:.1f} | {rps:.2f} ({len(per)} segments) | '
      f'{lat.get("p50_us", 0) / 1000:.0f} | {sum(j["errors"].values())} | {j["counters"].get("stalls", 0)}')
PY
)
    printf '%-28s %s\n' "$1" "${row[$1]}"
}

order=()
for d in $delays; do
    start_relay "$origin_http" "$d" "$work/relay-$d.log"
    ENGINE_NAME="edge-$d" ENGINE_CPUS=0 start_engine --origin "http://$RELAY/live"
    run_viewers "edge-engine prefetch, $d ms" "$ENGINE_HTTP" "$work/relay-$d.log"
    stop "$ENGINE_PID"
    ENGINE_NAME="lazy-$d" ENGINE_CPUS=0 start_engine --origin "http://$RELAY/live" --hls-prefetch off
    run_viewers "edge-engine no prefetch, $d ms" "$ENGINE_HTTP" "$work/relay-$d.log"
    stop "$ENGINE_PID"
    start_nginx "$RELAY"
    run_viewers "nginx proxy_cache_lock, $d ms" "$NGINX_HTTP" "$work/relay-$d.log"
    stop_term "$NGINX_PID"
    stop_term "$RELAY_PID"
    order+=("edge-engine prefetch, $d ms" "edge-engine no prefetch, $d ms" "nginx proxy_cache_lock, $d ms")
done

# The collapsed miss at the largest delay.
max_delay=$(tr ' ' '\n' <<<"$delays" | sort -n | tail -1)
collapse() { # name edge-http relay-log
    python3 - "$2" "$origin_http" "$3" <<'PY'
import re, socket, statistics, sys, threading, time, urllib.request
edge, log = sys.argv[1], sys.argv[3]
def listed(host):
    text = urllib.request.urlopen(f"http://{host}/live/ho0.m3u8", timeout=10).read().decode()
    return [l for l in text.splitlines() if l.endswith(".ts")]
def first_byte(path, out):
    s = socket.create_connection(tuple(edge.rsplit(":", 1)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    s.recv(1)
    out.append(time.time())
    while s.recv(65536):
        pass
# New segments as the edge lists them (nobody has asked for them yet).
seen, gaps = set(listed(edge)), []
deadline = time.time() + 60
while len(gaps) < 200 and time.time() < deadline:
    new = [s for s in listed(edge) if s not in seen]
    if not new:
        time.sleep(0.05)
        continue
    seg = new[-1]
    seen.update(new)
    times = []
    threads = [threading.Thread(target=first_byte, args=(f"/live/{seg}", times)) for _ in range(20)]
    for t in threads: t.start()
    for t in threads: t.join()
    time.sleep(0.3)
    fwd = [float(l.split()[1]) for l in open(log) if l.startswith("FIRST ") and seg in l]
    if fwd:
        gaps += [(t - min(fwd)) * 1000 for t in times]
print(f"{statistics.median(gaps):.1f} | {max(gaps):.1f} | {len(gaps)}" if gaps else "- | - | 0")
PY
}
start_relay "$origin_http" "$max_delay" "$work/relay-collapse.log"
ENGINE_NAME=collapse ENGINE_CPUS=0 start_engine --origin "http://$RELAY/live" --hls-prefetch off
engine_gap=$(collapse edge-engine "$ENGINE_HTTP" "$work/relay-collapse.log")
stop "$ENGINE_PID"
start_nginx "$RELAY"
nginx_gap=$(collapse nginx "$NGINX_HTTP" "$work/relay-collapse.log")
stop_term "$NGINX_PID"

printf '\nHLS-origin edge — %s, commit %s, %s: %s HLS viewers, %s s, 600k stream, edges on CPU 0\n' \
    "$(date -u +%F)" "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$viewers" "$seconds"
printf '| edge, origin round trip | segment download p50 ms | p99 ms | origin requests per segment | live latency p50 ms | errors | stalls |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for s in "${order[@]}"; do printf '| %s | %s |\n' "$s" "${row[$s]}"; done
printf '\nCollapsed miss, %s ms round trip: first byte at a waiter after the relay forwarded it\n' "$max_delay"
printf '| edge | median ms | max ms | waiters |\n| --- | ---: | ---: | ---: |\n'
printf '| edge-engine (--hls-prefetch off) | %s |\n| nginx proxy_cache_lock | %s |\n' "$engine_gap" "$nginx_gap"
