#!/usr/bin/env bash
# Soak: MINUTES of mixed load on an origin and an edge, in one run, with RSS, open files and
# CPU of both sampled every 10 s. Every minute-long round:
#   - loadgen publishes 3 streams at the edge (forwarded to the origin) and plays them there
#     with 150 viewers (HLS 50 %, RTMP 25 %, FLV 25 %) arriving at 50/s, then all leave;
#     the publishers stop with the round, so streams come and go;
#   - loadgen plays a stream the edge pulls from the origin (ffmpeg publishes it there) with
#     60 viewers (RTMP, FLV, HLS), joining and leaving;
#   - 3 slow viewers (4 KiB receive buffer, 1 KiB/s) of a stream published at the edge at
#     10x real time (so the kernel's send buffer fills within seconds), which the edge must
#     disconnect;
#   - every KILL_EVERY rounds the origin is SIGKILLed mid-round and restarted on its ports.
# Fails when: a round's loadgen counts an error, or a frame gap on the edge's own streams;
# edge RSS or open files in the last sixth of the run exceed the second sixth's maximum by
# more than 10 % + 8 MiB (RSS) or 25 % + 20 (files); a slow viewer is not disconnected; or,
# after everyone has gone, a counter shows something left (streams, replicas, players,
# publishers, pulls, forwards, connections) or the edge holds more files than at start.
#
# Usage: bench/soak.sh [--minutes N] [--kill-every ROUNDS] [--out FILE]
# Builds release binaries; needs ffmpeg and python3. Uses loopback ports 19350 and 18090
# for the origin (below the ephemeral range, so a restart gets them back).
set -euo pipefail

minutes=30
kill_every=4
out=""
while (($#)); do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        --kill-every) kill_every=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
((minutes >= 3)) || { echo "--minutes must be at least 3" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=peers/common.sh
. "$(dirname "$0")/peers/common.sh"
install_missing ffmpeg:ffmpeg python3:python3
setup_work /tmp/edge-soak.XXXXXX
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"
fixture="$root/tests/fixtures/bframes.flv"
if [ -n "$out" ]; then exec > >(tee "$out"); fi

origin_rtmp=127.0.0.1:19350
origin_http=127.0.0.1:18090
start_origin() {
    ENGINE_NAME=origin ENGINE_CPUS=0 start_engine --rtmp "$origin_rtmp" --http "$origin_http" \
        --republish-grace-ms 5000
    origin_pid=$ENGINE_PID
    echo "$origin_pid" >"$work/origin.pid"
}
start_feed() {
    taskset -c 1 ffmpeg -nostdin -v error -re -stream_loop -1 -i "$fixture" -c copy -f flv \
        "rtmp://$origin_rtmp/live/feed0" >>"$work/feed.err" 2>&1 &
    feed_pid=$!
    pids+=("$feed_pid")
}

start_origin
ENGINE_NAME=edge ENGINE_CPUS=0 start_engine --origin "rtmp://$origin_rtmp/live" \
    --republish-grace-ms 15000 --upstream-idle-ms 5000 --max-queue-bytes 262144 \
    --slow-viewer-ms 3000
edge_pid=$ENGINE_PID
edge_rtmp=$ENGINE_RTMP
edge_http=$ENGINE_HTTP
start_feed
# The slow viewers' stream: ten times real time, published at the edge for the whole run.
taskset -c 1 ffmpeg -nostdin -v error -readrate 10 -stream_loop -1 -i "$fixture" -c copy -f flv \
    "rtmp://$edge_rtmp/live/fast" >>"$work/fast.err" 2>&1 &
fast_pid=$!
pids+=("$fast_pid")
sleep 3
fds_of() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_of() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
ticks_of() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
edge_fds_start=$(fds_of "$edge_pid")

# Samples: seconds since start, edge RSS KiB, edge files, edge CPU ticks, origin RSS, files.
start_s=$(date +%s)
(
    while kill -0 "$edge_pid" 2>/dev/null; do
        o=$(cat "$work/origin.pid")
        echo "$(($(date +%s) - start_s)) $(rss_of "$edge_pid") $(fds_of "$edge_pid") $(ticks_of "$edge_pid") $(rss_of "$o") $(fds_of "$o")"
        sleep 10
    done
) >"$work/samples" &
pids+=("$!")

# A viewer of `path` on the edge that reads 1 KiB a second through a 4 KiB receive buffer;
# prints "disconnected" when the edge closes it within 60 s.
slow_viewer() {
    python3 - "$edge_http" "$1" <<'EOF'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((host, int(port)))
s.sendall(f"GET {sys.argv[2]} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
s.settimeout(5)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        if not s.recv(1024):
            print("disconnected"); sys.exit(0)
    except socket.timeout:
        pass
    except OSError:
        print("disconnected"); sys.exit(0)
    time.sleep(1)
print("still-connected")
EOF
}

failures=()
round_s=60
for round in $(seq 1 "$minutes"); do
    lg_common=(--cores 1 --cpu-list 1 --duration 45s --ramp 50 --max-error-rate 0)
    taskset -c 1 "$bin/loadgen" --target "rtmp://$edge_rtmp" --target "http://$edge_http" \
        --publish --streams 3 --stream-prefix "churn" --viewers 150 \
        --protocol hls=0.5,rtmp=0.25,flv=0.25 "${lg_common[@]}" \
        --json "$work/churn-$round.json" >"$work/churn-$round.out" 2>&1 &
    churn=$!
    taskset -c 1 "$bin/loadgen" --target "rtmp://$edge_rtmp" --target "http://$edge_http" \
        --streams 1 --stream-prefix feed --viewers 60 --protocol rtmp=0.4,flv=0.3,hls=0.3 \
        "${lg_common[@]}" --json "$work/feed-$round.json" >"$work/feed-$round.out" 2>&1 &
    feed_viewers=$!
    sleep 5
    slow=()
    for i in 1 2 3; do
        slow_viewer "/live/fast.flv" >"$work/slow-$round-$i" 2>&1 &
        slow+=("$!")
    done
    killed=""
    if ((round % kill_every == 0)); then
        sleep 15
        kill -9 "$origin_pid"
        kill "$feed_pid" 2>/dev/null || true
        wait "$origin_pid" 2>/dev/null || true
        start_origin
        start_feed
        killed=" (origin SIGKILLed and restarted)"
    fi
    wait "$churn" || failures+=("round $round: churn loadgen failed (errors; see churn-$round.out)")
    wait "$feed_viewers" || failures+=("round $round: edge-pull loadgen failed (errors; see feed-$round.out)")
    for p in "${slow[@]}"; do wait "$p" || true; done
    for i in 1 2 3; do
        grep -q disconnected "$work/slow-$round-$i" ||
            failures+=("round $round: slow viewer $i was not disconnected")
    done
    gaps=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['counters']; print(c.get('gaps',0)+c.get('segment_gaps',0))" "$work/churn-$round.json" 2>/dev/null || echo "?")
    [ "$gaps" = 0 ] || failures+=("round $round: $gaps frame or segment gaps on the edge's own streams")
    printf 'round %d/%d done: churn gaps %s%s\n' "$round" "$minutes" "$gaps" "$killed"
    rest=$((start_s + round * round_s - $(date +%s)))
    if ((rest > 0)); then sleep "$rest"; fi
done

# Everyone leaves: the feed stops, pulls idle out, grace periods end.
kill "$feed_pid" "$fast_pid" 2>/dev/null || true
sleep 25
metrics=$(curl -s "http://$edge_http/metrics")
sum() { awk -v n="edge_$1{" 'index($0, n) == 1 { s += $NF } END { print s + 0 }' <<<"$metrics"; }
for gauge in streams_owned replicas rtmp_players flv_players publishers upstream_pulls_active forward_sessions; do
    v=$(sum "$gauge")
    [ "$v" = 0 ] || failures+=("after the run: edge_$gauge is $v, not 0")
done
open=$(sum connections_open)
[ "$open" = 1 ] || failures+=("after the run: edge_connections_open is $open, not 1 (this request)")
edge_fds_end=$(fds_of "$edge_pid")
((edge_fds_end <= edge_fds_start + 2)) ||
    failures+=("after the run: the edge holds $edge_fds_end files, $edge_fds_start at start")
slow_closed=$(sum slow_viewer_disconnects)

verdict=0
python3 - "$work/samples" "$minutes" >"$work/verdict" <<'EOF' || verdict=$?
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 6]
total = int(sys.argv[2]) * 60
second = [r for r in rows if total / 6 <= r[0] < 2 * total / 6]
last = [r for r in rows if r[0] >= 5 * total / 6]
print("| minute | edge RSS MiB (max) | edge files (max) | edge CPU % | origin RSS MiB (max) | origin files (max) |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
by_minute = {}
for r in rows:
    by_minute.setdefault(r[0] // 60, []).append(r)
for m, rs in sorted(by_minute.items()):
    # CPU: clock ticks (1/100 s) per second over the minute's samples = percent of a core.
    cpu = (rs[-1][3] - rs[0][3]) / max(1, rs[-1][0] - rs[0][0])
    print(f"| {m} | {max(r[1] for r in rs) / 1024:.1f} | {max(r[2] for r in rs)} | {cpu:.0f} "
          f"| {max(r[4] for r in rs) / 1024:.1f} | {max(r[5] for r in rs)} |")
ok = True
if second and last:
    r2, rl = max(r[1] for r in second), max(r[1] for r in last)
    f2, fl = max(r[2] for r in second), max(r[2] for r in last)
    print(f"\nedge RSS max: {r2 / 1024:.1f} MiB in the second sixth, {rl / 1024:.1f} MiB in the last")
    print(f"edge files max: {f2} in the second sixth, {fl} in the last")
    if rl > r2 * 1.10 + 8 * 1024:
        print("FAIL: edge RSS grew"); ok = False
    if fl > f2 * 1.25 + 20:
        print("FAIL: edge open files grew"); ok = False
sys.exit(0 if ok else 1)
EOF
printf '\nSoak — %s, commit %s, %s, %s min, origin killed every %s rounds\n\n' "$(date -u +%F)" \
    "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$minutes" "$kill_every"
cat "$work/verdict"
printf 'slow viewers disconnected by the edge: %s; edge files at start %s, after everyone left %s\n' \
    "$slow_closed" "$edge_fds_start" "$edge_fds_end"
((verdict == 0)) || failures+=("growth between the second and the last sixth of the run")
if ((${#failures[@]})); then
    printf 'FAIL: %s\n' "${failures[@]}"
    exit 1
fi
echo "PASS"
