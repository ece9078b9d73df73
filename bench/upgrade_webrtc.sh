#!/usr/bin/env bash
# WebRTC (WHEP) viewers through an upgrade. An engine (--cores 2, --webrtc-udp on fixed
# ports, --upgrade-socket) takes an ffmpeg publish; loadgen's WHEP viewers watch it for 40 s.
# 8 s in, a successor takes the listeners over (--upgrade-from), binding either the same
# --webrtc-udp ports ("same") or the next range ("other"), and 3 s later N new viewers play for
# 8 s. Reported per mode: new viewers that got media, and the old viewers' received rate
# (loadgen's Gbit/s per second) before the handover and 15-30 s after it.
#
# Usage: bench/upgrade_webrtc.sh [--base PORT] [--viewers N]
# PORT (default 20000, below the ephemeral range) and the ports after it must be free.
# Changes nothing outside a temporary directory, removed on exit.
set -euo pipefail

base=20000 viewers=40
while (($#)); do
    case "$1" in
        --base) base=$2; shift 2 ;;
        --viewers) viewers=$2; shift 2 ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=peers/common.sh
. "$(dirname "$0")/peers/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-upgrade-webrtc.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"
fixture="$root/tests/fixtures/bframes.flv"

run() { # mode: same | other
    local sock="$work/$1.sock" next=$base
    [ "$1" = same ] || next=$((base + 100))
    local args=(--cores 2 --webrtc-bframes keep --upgrade-socket "$sock")
    ENGINE_NAME=$1-a ENGINE_CPUS=0-1 start_engine "${args[@]}" --webrtc-udp "127.0.0.1:$base"
    local a=$ENGINE_PID http=$ENGINE_HTTP
    ffmpeg -nostdin -v error -re -stream_loop -1 -i "$fixture" -c copy -f flv \
        "rtmp://$ENGINE_RTMP/live/w" >/dev/null 2>&1 &
    local ff=$!
    pids+=("$ff")
    sleep 3
    "$bin/loadgen" --target "http://$http" --protocol webrtc --stream live/w \
        --viewers "$viewers" --duration 40s >"$work/$1-old.log" 2>&1 &
    local old=$!
    sleep 8
    ENGINE_NAME=$1-b ENGINE_CPUS=0-1 start_engine "${args[@]}" --webrtc-udp "127.0.0.1:$next" \
        --upgrade-from "$sock"
    local b=$ENGINE_PID
    sleep 3
    "$bin/loadgen" --target "http://$http" --protocol webrtc --stream live/w \
        --viewers "$viewers" --duration 8s --max-error-rate 1 >"$work/$1-new.log" 2>&1 || true
    wait "$old" || true
    kill -9 "$a" "$b" "$ff" 2>/dev/null || true
    wait "$a" "$b" "$ff" 2>/dev/null || true
    python3 - "$1" "$work/$1-old.log" "$work/$1-new.log" "$viewers" <<'PYEOF'
import re, sys
mode, old, new, viewers = sys.argv[1:]
rate = {}
for line in open(old):
    m = re.match(r"\[\s*(\d+)s\].*Gbit/s=([0-9.]+)", line)
    if m:
        rate[int(m.group(1))] = float(m.group(2)) * 1000
avg = lambda a, b: sum(rate.get(s, 0) for s in range(a, b)) / (b - a)
got = re.search(r"viewers_with_media=(\d+)", open(new).read())
print(f"| {mode} | {got.group(1) if got else 0} of {viewers} | "
      f"{avg(2, 8):.1f} Mbit/s | {avg(23, 38):.1f} Mbit/s |")
PYEOF
}

echo "WebRTC through an upgrade — $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD)"
echo "| successor's --webrtc-udp | new viewers with media | old viewers before | old viewers 15-30 s after |"
echo "| --- | ---: | ---: | ---: |"
run same
run other
