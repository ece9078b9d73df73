#!/usr/bin/env bash
# WebRTC (WHEP) measured with loadgen's WHEP viewers (a str0m client each):
#  1. latency from publication by protocol at the origin, in one table: WebRTC and HTTP-FLV
#     `frame_latency` (each frame's SEI probe), LL-HLS `part_latency`, HLS `segment_latency`,
#     one run per protocol of N viewers (default 40) for SECONDS after a 5 s warm-up;
#  2. WebRTC viewers on one engine core: the engine (--cores 1, CPU 0) against loadgen (CPU 1)
#     for each count in COUNTS (default "250 500 1000 2000"): the engine's CPU over the run
#     (joins and DTLS handshakes included), frame latency, frames missing, viewers with media.
# One 600 kbit/s stream (loadgen's 600k rendition, 2 s GOP, B-frames) published by loadgen;
# the engine keeps B-frames for WebRTC (--webrtc-bframes keep) so that every frame's probe
# arrives.
#
# Usage: bench/peers/webrtc.sh [--viewers N] [--seconds N] [--counts "250 500 1000 2000"]
#                              [--no-latency] [--bin DIR] [--light] [--steady]
#                              [--engine-args "ARGS"] [--veth] [--source FLV]
# --no-latency skips table 1; --bin DIR runs the edge-engine and loadgen in DIR instead of
# building this checkout's (two builds side by side: run it once with each, alternating);
# --light runs table 2's viewers with loadgen's `--verify light` (nine in ten read only the
# RTP headers, so the client is less of a limit; RTP packets lost counted from them);
# --steady adds the engine's CPU from 12 s to 22 s of each table-2 run (every viewer has
# joined by then at 200 arrivals a second up to 2,000; needs --seconds 17 or more);
# --engine-args adds ARGS to the engine's (e.g. "--webrtc-audio-frame-ms 60");
# --source FLV publishes FLV (looped) instead of the 600k rendition (e.g. a 1 Mbit/s one);
# --veth (root) runs table 2 with loadgen in a network namespace behind a veth pair whose
# receive side is steered (RPS) to loadgen's CPU: the viewers' receive path (delivery into
# their sockets, their wake-ups) then runs on CPU 1, as it would on other machines behind a
# NIC, instead of inside the engine's send on loopback; the engine's CPU is read from /proc
# (the whole-run column is the steady one), with the datagrams it sent meanwhile and its CPU
# per datagram (loadgen's one core, receiving, is the limit first: at 2,000 viewers its
# publisher fell behind and the engine sent less than at 1,000).
# Changes nothing outside a temporary directory (and, with --veth, a namespace and a veth
# pair it removes at exit).
set -euo pipefail

viewers=40 seconds=15 counts="250 500 1000 2000" latency=1 bin="" verify=full steady=0 extra_args="" veth=0 source=""
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --counts) counts=$2; shift 2 ;;
        --no-latency) latency=0; shift ;;
        --bin) bin=$2; shift 2 ;;
        --light) verify=light; shift ;;
        --steady) steady=1; shift ;;
        --engine-args) extra_args=$2; shift 2 ;;
        --veth) veth=1; shift ;;
        --source) source=$2; shift 2 ;;
        -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "$source" ]; then
    media=(--source "$(realpath "$source")")
else
    media=(--bitrate 600k)
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/edge-webrtc.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
    bin="$root/target/release"
fi
engine_args="--cores 1 --cpu-list 0 --webrtc-udp 127.0.0.1:0 --webrtc-bframes keep${extra_args:+ $extra_args}"

ticks() { # PID -> its user and system ticks so far (/proc/PID/stat fields 14 and 15)
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

busy() { # TICKS0 TICKS1 -> the share of a core they make over 10 s
    python3 -c "print('%.1f %%' % (100.0 * ($2 - $1) / $(getconf CLK_TCK) / 10))"
}

run() { # label protocol viewers [verify] -> the run's JSON file
    local json="$work/$1.json"
    "$bin/loadgen" --spawn --engine-args "$engine_args" --cores 1 --cpu-list 1 --publish \
        "${media[@]}" --viewers "$3" --protocol "$2" --duration "${seconds}s" --warmup 5s \
        --verify "${4:-full}" \
        --ramp 200 --json "$json" >"$work/$1.log" 2>&1 &
    local loadgen=$! steady_cpu=""
    if ((steady)); then
        # The engine's CPU over 10 s.
        sleep 12
        local engine ticks0 ticks1
        engine=$(pgrep -P "$loadgen" -f edge-engine | head -1)
        ticks0=$(ticks "$engine")
        sleep 10
        ticks1=$(ticks "$engine")
        steady_cpu=$(busy "$ticks0" "$ticks1")
    fi
    wait "$loadgen" || true
    echo "$steady_cpu" >"$json.steady"
    echo "$json"
}

# --veth: the namespace, the pair (10.251.0.1 the engine's side, 10.251.0.2 loadgen's), and
# receive steering: what the engine sends is received on CPU 1, what loadgen sends on CPU 0.
ns=ewebrtc$$
setup_veth() {
    ip netns add "$ns"
    trap 'ip netns del "$ns" 2>/dev/null; ip link del ewv0$$ 2>/dev/null; rm -rf "$work"' EXIT
    ip link add "ewv0$$" type veth peer name "ewv1$$"
    ip link set "ewv1$$" netns "$ns"
    ip addr add 10.251.0.1/24 dev "ewv0$$"
    ip link set "ewv0$$" up
    ip netns exec "$ns" ip addr add 10.251.0.2/24 dev "ewv1$$"
    ip netns exec "$ns" ip link set "ewv1$$" up
    ip netns exec "$ns" ip link set lo up
    echo 1 >"/sys/class/net/ewv0$$/queues/rx-0/rps_cpus"
    ip netns exec "$ns" sh -c "echo 2 >/sys/class/net/ewv1$$/queues/rx-0/rps_cpus"
}

datagrams_out() { # the engine's WebRTC datagrams sent so far
    curl -sf http://10.251.0.1:18081/metrics |
        awk '/^edge_webrtc_datagrams_out[{ ]/ { n += $2 } END { print n + 0 }'
}

run_veth() { # label viewers verify -> the run's JSON file
    local json="$work/$1.json" engine steady_cpu ticks0 ticks1 eargs
    read -r -a eargs <<<"$engine_args"
    "$bin/edge-engine" "${eargs[@]}" --rtmp 10.251.0.1:19351 --http 10.251.0.1:18081 \
        --webrtc-udp 10.251.0.1:0 >"$work/$1.engine.log" 2>&1 &
    engine=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null http://10.251.0.1:18081/metrics && break
        sleep 0.1
    done
    ip netns exec "$ns" "$bin/loadgen" --target rtmp://10.251.0.1:19351 \
        --target http://10.251.0.1:18081 --cores 1 --cpu-list 1 --publish \
        "${media[@]}" --viewers "$2" --protocol webrtc --duration "${seconds}s" --warmup 5s \
        --verify "$3" --ramp 200 --json "$json" >"$work/$1.log" 2>&1 &
    local loadgen=$!
    local out0 out1
    sleep 12
    ticks0=$(ticks "$engine")
    out0=$(datagrams_out)
    sleep 10
    ticks1=$(ticks "$engine")
    out1=$(datagrams_out)
    steady_cpu=$(busy "$ticks0" "$ticks1")
    python3 -c "print('%d datagrams/s' % (($out1 - $out0) / 10), '%.2f' % (1e6 * ($ticks1 - $ticks0) / $(getconf CLK_TCK) / max(1, $out1 - $out0)))" \
        >"$json.sent"
    wait "$loadgen" || true
    kill -9 "$engine" 2>/dev/null; wait "$engine" 2>/dev/null || true
    echo "$steady_cpu" >"$json.steady"
    echo "$json"
}

report() { # json label kind
    python3 - "$1" "$2" "$3" "$seconds" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
label, kind, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
h, c = j["histograms"], j["counters"]
errors = sum(j["errors"].values())
def pair(k):
    if not h.get(k, {}).get("count"):
        return "-"
    return "%.1f / %.1f" % (h[k]["p50_us"] / 1000, h[k]["p99_us"] / 1000)
if kind == "latency":
    key = {"webrtc": "frame_latency", "flv": "frame_latency", "llhls": "part_latency",
           "hls": "segment_latency"}[label]
    print("| %s | %s | %d | %d |" % (label, pair(key), c.get("stalls", 0) + c.get("gaps", 0), errors))
else:
    e = j.get("engine") or {}
    cpu = e.get("cpu_seconds", 0.0)
    steady = open(sys.argv[1] + ".steady").read().strip() or "-"
    whole = "%.1f %%" % (100 * cpu / (seconds + 5)) if e else steady
    print("| %s | %s | %s | %s | %d | %d | %d | %d |" % (label, whole, steady, pair("frame_latency"),
          c.get("missing_frames", 0), c.get("rtp_packets_lost", 0), c.get("viewers_with_media", 0), errors))
PY
}

echo "WebRTC — $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD), binaries in $bin"
echo
if ((latency)); then
    echo "Latency from publication, $viewers viewers per protocol, ${seconds} s (p50 / p99 ms):"
    echo "| protocol | latency | stalls + gaps | errors |"
    echo "| --- | --- | ---: | ---: |"
    for p in webrtc flv llhls hls; do
        report "$(run "lat-$p" "$p" "$viewers")" "$p" latency
    done
    echo
fi
echo "WebRTC viewers on one engine core, ${seconds} s (+5 s warm-up), loadgen --verify $verify:"
echo "| viewers | engine CPU (of one core, whole run) | steady (12–22 s, --steady) | frame p50 / p99 ms | frames missing | RTP packets lost (header-only viewers) | viewers with media | errors |"
echo "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
sent=""
if ((veth)); then
    setup_veth
    engine_args="--cores 1 --cpu-list 0 --webrtc-bframes keep${extra_args:+ $extra_args}"
    echo "(--veth: loadgen behind a veth pair, its receive path on CPU 1; both CPU columns are the steady one)"
fi
for n in $counts; do
    if ((veth)); then
        json=$(run_veth "core-$n" "$n" "$verify")
        report "$json" "$n" core
        read -r rate unit each <"$json.sent"
        sent="$sent$n viewers: $rate $unit sent from 12 s to 22 s, $each µs of engine CPU each"$'\n'
    else
        report "$(run "core-$n" webrtc "$n" "$verify")" "$n" core
    fi
done
if ((veth)); then
    printf '\n%s' "$sent"
fi
