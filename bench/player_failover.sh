#!/usr/bin/env bash
# The browser player's failover stall and its time to first frame, in headless chromium
# (tests/browser/run.mjs; needs `npm ci --prefix tests`, chromium and node).
#
# An origin with the looped B-frame fixture and two edges that pull it; a loop keeps e2's
# pull warm, as its own viewers would. Each kill run opens the player on e1 with
# ?edges=e1,e2, SIGKILLs e1 after 6 s of playback, and reports the longest time
# video.currentTime stood still after the kill (sampled every 100 ms); e1 is then started
# again. The first-frame runs open the player on the warm e2 and report the page's own
# first-frame time (requestVideoFrameCallback, from navigation start).
#
# Usage: bench/player_failover.sh [--kills N] [--protocol hls|flv] [--first-frames N]
# Changes nothing outside a temporary directory, removed on exit.
set -euo pipefail

kills=10 protocol=hls first_frames=5
while (($#)); do
    case "$1" in
        --kills) kills=$2; shift 2 ;;
        --protocol) protocol=$2; shift 2 ;;
        --first-frames) first_frames=$2; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=peers/common.sh
. "$(dirname "$0")/peers/common.sh"
setup_work "${TMPDIR:-/tmp}/edge-player.XXXXXX"
[ -d "$root/tests/node_modules/puppeteer-core" ] || (cd "$root" && npm ci --prefix tests --no-audit --no-fund --loglevel=error)
(cd "$root" && cargo build --release -q -p edge-engine)
bin="$root/target/release"
assets="$root/tests/node_modules"

ENGINE_NAME=origin ENGINE_CPUS=0 start_engine
origin_rtmp=$ENGINE_RTMP
ffmpeg -nostdin -v error -re -stream_loop -1 -i "$root/tests/fixtures/bframes.flv" -c copy \
    -f flv "rtmp://$origin_rtmp/live/x" >"$work/ffmpeg.out" 2>&1 &
pids+=("$!")
edge() { # name
    ENGINE_NAME=$1 ENGINE_CPUS=0 start_engine --origin "rtmp://$origin_rtmp/live" --player-assets "$assets"
}
edge e2
e2=$ENGINE_HTTP
(while sleep 1; do curl -s -o /dev/null "http://$e2/live/x.m3u8" || true; done) &
pids+=("$!")
sleep 6

run() { # scenario json
    (cd "$root/tests" && taskset -c 1 node browser/run.mjs "$1" "$2")
}
field() { # json expression
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(eval(sys.argv[2], {"r": r}))' "$1" "$2"
}

echo "first frame, warm stream, page on e2 ($protocol): ms from navigation start"
frames=()
for i in $(seq "$first_frames"); do
    r=$(run play "{\"url\":\"http://$e2/player?stream=live/x&protocol=$protocol\",\"seconds\":3}")
    frames+=("$(field "$r" 'r["final"]["firstFrameMs"]')")
    echo "  run $i: ${frames[-1]}"
done

echo "failover ($protocol): longest stall after SIGKILL of e1, ms"
stalls=()
for i in $(seq "$kills"); do
    edge "e1-$i"
    e1=$ENGINE_HTTP e1_pid=$ENGINE_PID
    for _ in $(seq 50); do curl -s -o /dev/null -f "http://$e1/live/x.m3u8" && break; sleep 0.2; done
    sleep 5 # a few segments at e1
    url="http://$e1/player?stream=live/x&protocol=$protocol&edges=http://$e1,http://$e2"
    r=$(run failover "{\"url\":\"$url\",\"seconds\":16,\"kill_pid\":$e1_pid,\"kill_after_s\":6}")
    stalls+=("$(field "$r" 'r["longest_stall_after_kill_ms"]')")
    echo "  kill $i: ${stalls[-1]} (now on $(field "$r" 'r["final"]["edge"]'), played $(field "$r" 'round(r["played_after_kill_s"], 1)') s after the kill)"
done

summary() { # label values...
    local label=$1; shift
    python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[2:]]; print(f"{sys.argv[1]}: median {statistics.median(v):.0f} ms, max {max(v):.0f} ms, n={len(v)}")' "$label" "$@"
}
summary "first frame ($protocol)" "${frames[@]}"
summary "failover stall ($protocol)" "${stalls[@]}"
