#!/usr/bin/env bash
# Zero-downtime upgrades under load: an origin, an edge pulling from it with
# --upgrade-socket, and loadgen's mixed viewers arriving at the edge the whole time while the
# edge is replaced by a new process (--upgrade-from) every few seconds. Reported: loadgen's
# connect errors (the figure that must be 0) and every other error kind, the handovers done,
# and whether every old process drained out and exited 0.
#
# Usage: bench/upgrade.sh [--handovers N] [--viewers N] [--every S]
# Changes nothing outside a temporary directory, removed on exit.
set -euo pipefail

handovers=10 viewers=2000 every=3
while (($#)); do
    case "$1" in
        --handovers) handovers=$2; shift 2 ;;
        --viewers) viewers=$2; shift 2 ;;
        --every) every=$2; shift 2 ;;
        -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=peers/common.sh
. "$(dirname "$0")/peers/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-upgrade.XXXXXX"
(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"
sock="$work/upgrade.sock"

ENGINE_NAME=origin start_engine
origin_rtmp=$ENGINE_RTMP
edge_args=(--cores 2 --origin "rtmp://$origin_rtmp/live" --upgrade-socket "$sock" --drain-timeout-s 120)
ENGINE_NAME=edge0 ENGINE_CPUS=0-1 start_engine "${edge_args[@]}"
edge_rtmp=$ENGINE_RTMP edge_http=$ENGINE_HTTP
olds=("$ENGINE_PID")

duration=$(((handovers + 2) * every))
"$bin/loadgen" --publish --publish-target "rtmp://$origin_rtmp" \
    --target "rtmp://$edge_rtmp" --target "http://$edge_http" \
    --viewers "$viewers" --protocol rtmp=0.4,flv=0.3,hls=0.3 \
    --ramp $((viewers / (duration / 2))) --duration "${duration}s" \
    --json "$work/load.json" --max-error-rate 1 >"$work/loadgen.out" 2>&1 &
load=$!
pids+=("$load")
for i in $(seq 1 "$handovers"); do
    sleep "$every"
    ENGINE_NAME=edge$i ENGINE_CPUS=0-1 start_engine "${edge_args[@]}" --upgrade-from "$sock"
    olds+=("$ENGINE_PID")
done
wait "$load" || true
clean=0
for p in "${olds[@]:0:${#olds[@]}-1}"; do
    # Each predecessor drains out once loadgen's viewers have left.
    for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if ! kill -0 "$p" 2>/dev/null && wait "$p" 2>/dev/null; then clean=$((clean + 1)); fi
done
python3 - "$work/load.json" "$handovers" "$clean" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
e = j["errors"]
print(f"handovers: {sys.argv[2]}  predecessors that drained and exited 0: {sys.argv[3]}")
print(f"viewers: {j['viewers']}  connect errors: {e['connect']}  other errors: "
      + " ".join(f"{k}={v}" for k, v in e.items() if k != "connect"))
PYEOF
