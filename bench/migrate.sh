#!/usr/bin/env bash
# HLS viewers moved by a drain: a Redis registry, an origin that loadgen publishes to, and two
# edges. loadgen's HLS viewers watch edge e1; in a "drain" run e1 gets SIGTERM mid-run and its
# viewers move to e2 (cold: it has no viewer of the stream until e1 warms it); a "baseline"
# run is the same without the SIGTERM. Reported per run: stalls, skipped segment numbers,
# redirects followed, errors, and the p99 of segment latency (publish to the end of the
# segment's download, from loadgen's SEI probes) and of segment download time over the whole
# run. Runs alternate baseline/drain so that both see the same machine.
#
# Usage: bench/migrate.sh [--viewers N] [--runs N] [--seconds S]
# Changes nothing outside a temporary directory, removed on exit.
set -euo pipefail

viewers=2000 runs=3 seconds=40
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=peers/common.sh
. "$(dirname "$0")/peers/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-migrate.XXXXXX"
install_missing redis-server:redis-server
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

# A port outside the ephemeral range, free a moment ago.
redis_port=$(python3 -c 'import socket,random
while True:
    p = random.randint(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass')
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --loglevel warning >"$work/redis.out" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do redis-cli -p "$redis_port" PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
registry="redis://127.0.0.1:$redis_port"

one_run() { # mode run
    local mode=$1 run=$2 node
    redis-cli -p "$redis_port" FLUSHALL >/dev/null
    ENGINE_NAME=origin-$run-$mode ENGINE_CPUS=0 start_engine --registry "$registry" --node-id o
    local origin=$ENGINE_PID origin_rtmp=$ENGINE_RTMP
    ENGINE_NAME=e1-$run-$mode ENGINE_CPUS=0 start_engine --registry "$registry" --node-id e1 --origin registry
    local e1=$ENGINE_PID e1_http=$ENGINE_HTTP
    ENGINE_NAME=e2-$run-$mode ENGINE_CPUS=0 start_engine --registry "$registry" --node-id e2 --origin registry
    local e2=$ENGINE_PID
    sleep 2 # node records exchanged
    taskset -c 1 "$bin/loadgen" --publish --publish-target "rtmp://$origin_rtmp" \
        --target "http://$e1_http" --viewers "$viewers" --protocol hls \
        --duration "${seconds}s" --json "$work/$mode-$run.json" --max-error-rate 1 \
        >"$work/loadgen-$mode-$run.out" 2>&1 &
    local load=$!
    if [ "$mode" = drain ]; then
        sleep $((seconds / 2))
        kill -TERM "$e1"
    fi
    wait "$load" || true
    for node in "$origin" "$e1" "$e2"; do kill -INT "$node" 2>/dev/null || true; done
    wait "$origin" "$e1" "$e2" 2>/dev/null || true
}

for run in $(seq 1 "$runs"); do
    one_run baseline "$run"
    one_run drain "$run"
done

python3 - "$work" "$runs" "$viewers" <<'PYEOF'
import json, sys
work, runs, viewers = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(f"{viewers} HLS viewers on e1, {runs} runs of each mode")
print("mode      run  stalls  gaps  redirects  errors  p99 latency ms  p99 download ms  error kinds")
for run in range(1, runs + 1):
    for mode in ("baseline", "drain"):
        j = json.load(open(f"{work}/{mode}-{run}.json"))
        c, h = j["counters"], j["histograms"]
        errors = sum(j["errors"].values())
        lat = h["segment_latency"].get("p99_us", 0) / 1000
        dl = h["segment_download"].get("p99_us", 0) / 1000
        print(f"{mode:9} {run:3}  {c.get('stalls', 0):6}  {c.get('segment_gaps', 0):4}  "
              f"{c.get('redirects', 0):9}  {errors:6}  {lat:14.1f}  {dl:15.1f}  "
              + " ".join(f"{k}={v}" for k, v in j["errors"].items() if v))
PYEOF
