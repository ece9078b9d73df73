#!/usr/bin/env bash
# The engine's CPU per request over HTTP/3 against HTTPS, side by side in one run: one engine
# (--cores 1, CPU 0) serves both with one certificate; on CPU 1, wrk asks for one segment
# again and again over HTTPS (TLS over TCP) and h3load (loadgen's HTTP/3 client, quinn-proto
# like the engine) does the same over QUIC, with the same number of connections, one request
# at a time on each. Two streams: ~64 KB and ~700 KB segments. The engine's CPU while only
# muxing them is measured first and subtracted.
#
# HTTP/3 runs twice: h3load taking datagrams one by one, and with --gro (h3-gro), taking the
# runs the kernel coalesces (UDP GRO), as a NIC's receive offload hands them over. On
# loopback the engine's kernel delivers into the client's socket, so this changes the
# engine's cost: coalesced, a run is delivered whole, as TCP delivers 64 KB at a time.
#
# Printed per cell: requests per second, the engine's CPU share, its µs per request, and
# h3/https; each cell is the median of --reps runs, the protocols alternating.
#
# Usage: bench/peers/h3_cpu.sh [--connections "1 10 50"] [--reps 3] [--seconds 5]
#        [--engine-args "ARGS"]
set -euo pipefail

connections="1 10 50"
reps=3
duration=5
engine_args=""
while (($#)); do
    case "$1" in
        --connections) connections=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --seconds) duration=$2; shift 2 ;;
        --engine-args) engine_args=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/bench/peers"
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"
install_missing ffmpeg:ffmpeg openssl:openssl wrk:wrk curl:curl
setup_work /dev/shm/edge-bench-h3cpu.XXXXXX

(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

make_cert
make_clip small 200
make_clip big 2750

read -ra extra <<<"$engine_args"
start_engine --https 127.0.0.1:0 --http3 127.0.0.1:0 --tls-cert "$work/cert.pem" \
    --tls-key "$work/key.pem" --hls-segment-ms 2000 --hls-window 100 "${extra[@]}"
https=$(sed -n 's/.*https=\([^ ]*\).*/\1/p' "$work/engine.out")
h3=$(sed -n 's/.*http3=\([^ ]*\).*/\1/p' "$work/engine.out")
publish_clips small big

b0=$(cpu_seconds_of "$ENGINE_PID"); t0=$(date +%s.%N)
sleep 5
idle=$(awk -v a="$(cpu_seconds_of "$ENGINE_PID")" -v b="$b0" -v t="$t0" -v n="$(date +%s.%N)" 'BEGIN { print (a - b) / (n - t) }')

# One run: prints "requests_per_s cpu_share us_per_request".
cell() { # proto url connections
    local proto=$1 url=$2 c=$3 before after t0 t1 rps
    before=$(cpu_seconds_of "$ENGINE_PID"); t0=$(date +%s.%N)
    if [ "$proto" = https ]; then
        rps=$(taskset -c 1 wrk -t1 -c"$c" -d"${duration}s" "$url" 2>/dev/null |
            awk '/Non-2xx/ { bad = 1 } /Requests\/sec/ { r = $2 } END { print bad ? 0 : r }')
    else
        local gro=()
        [ "$proto" = h3-gro ] && gro=(--gro)
        "$bin/h3load" --url "$url" --ca "$work/cert.pem" --server-name localhost \
            --connections "$c" --duration "${duration}s" --cpu 1 --json "$work/h3.json" \
            "${gro[@]}" >/dev/null 2>"$work/h3.err" || { cat "$work/h3.err" >&2; }
        rps=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(0 if r["errors"] or r["not_ok"] else r["requests_per_s"])' "$work/h3.json")
    fi
    after=$(cpu_seconds_of "$ENGINE_PID"); t1=$(date +%s.%N)
    awk -v r="$rps" -v a="$after" -v b="$before" -v i="$idle" -v t0="$t0" -v t1="$t1" 'BEGIN {
        s = t1 - t0; u = a - b - i * s
        printf "%.0f %.3f %.1f\n", r, u / s, (r > 0 ? u * 1e6 / (r * s) : 0) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "engine idle (muxing two streams): $(awk -v i="$idle" 'BEGIN { printf "%.1f", i * 1000 }') ms/s, subtracted"
printf '%-6s %5s %-6s %10s %8s %10s %10s\n' clip conns proto "req/s" "cpu" "us/req" "h3/https"
for clip in small big; do
    seg=$(curl -s "http://$ENGINE_HTTP/live/$clip.m3u8" | grep "^$clip-" | tail -1)
    bytes=$(curl -s "http://$ENGINE_HTTP/live/$seg" | wc -c)
    echo "# $clip: $seg, $bytes bytes"
    for c in $connections; do
        for proto in https h3 h3-gro; do : >"$work/$proto.txt"; done
        for _ in $(seq "$reps"); do
            cell https "https://$https/live/$seg" "$c" >>"$work/https.txt"
            cell h3 "https://$h3/live/$seg" "$c" >>"$work/h3.txt"
            cell h3-gro "https://$h3/live/$seg" "$c" >>"$work/h3-gro.txt"
        done
        hu=$(awk '{ print $3 }' "$work/https.txt" | median)
        for proto in https h3 h3-gro; do
            r=$(awk '{ print $1 }' "$work/$proto.txt" | median)
            s=$(awk '{ print $2 }' "$work/$proto.txt" | median)
            u=$(awk '{ print $3 }' "$work/$proto.txt" | median)
            ratio=""
            [ $proto != https ] && ratio=$(awk -v q="$u" -v h="$hu" 'BEGIN { printf "%.2f", (h > 0 ? q / h : 0) }')
            printf '%-6s %5s %-6s %10s %8s %10s %10s\n' "$clip" "$c" "$proto" "$r" "$s" "$u" "$ratio"
        done
    done
done
