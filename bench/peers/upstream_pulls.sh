#!/usr/bin/env bash
# Duplicate upstream pulls, side by side in one run: one stream, N RTMP viewers (default 1000)
# at an edge with two cores, in front of an edge-engine origin fed by loadgen's publisher.
# Edges: edge-engine --cores 2 --origin …, and nginx with the rtmp module on 2 workers with
# `pull`. Reported per edge: the play connections the origin received for the stream (its
# edge_rtmp_play_requests counter), i.e. the upstream pulls, and the viewers' video frames and
# errors (loadgen's counters).
#
# Usage: bench/peers/upstream_pulls.sh [--viewers N] [--seconds N]
# Installs ffmpeg, nginx and libnginx-mod-rtmp when missing (Debian). Changes nothing outside
# a temporary directory, removed on exit.
set -euo pipefail

viewers=1000 seconds=10
while (($#)); do
    case "$1" in
        --viewers) viewers=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"
install_missing nginx:nginx-light /usr/lib/nginx/modules/ngx_rtmp_module.so:libnginx-mod-rtmp
PATH="$PATH:/usr/sbin"

setup_work "${TMPDIR:-/tmp}/edge-pulls.XXXXXX"

(cd "$root" && cargo build --release -q -p edge-engine -p loadgen)
bin="$root/target/release"

ENGINE_NAME=origin start_engine
origin_rtmp=$ENGINE_RTMP origin_http=$ENGINE_HTTP
"$bin/loadgen" --publish --viewers 0 --target "rtmp://$origin_rtmp" --stream-prefix pulls \
    --duration 3600s >/dev/null 2>&1 &
pids+=("$!")
sleep 2

plays() { # the origin's play requests so far
    python3 - "http://$origin_http/metrics" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1]).read().decode()
print(sum(int(l.split()[-1]) for l in text.splitlines() if l.startswith("edge_rtmp_play_requests{")))
PY
}

declare -A pulls frames errors
measure() { # name edge-rtmp-addr
    local before after
    before=$(plays)
    "$bin/loadgen" --viewers "$viewers" --protocol rtmp --target "rtmp://$2" --stream-prefix pulls \
        --duration "${seconds}s" --cores 1 --json "$work/$1.json" --max-error-rate 1 >/dev/null 2>&1 || true
    after=$(plays)
    pulls[$1]=$((after - before))
    local f e
    read -r f e < <(python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j["counters"].get("video_frames", 0), sum(j["errors"].values()))' "$work/$1.json")
    frames[$1]=$f errors[$1]=$e
    printf '%-12s upstream pulls=%s video frames=%s errors=%s\n' "$1" "${pulls[$1]}" "${frames[$1]}" "${errors[$1]}"
}

ENGINE_NAME=edge ENGINE_CPUS=0,1 start_engine --cores 2 --origin "rtmp://$origin_rtmp/live"
measure edge-engine "$ENGINE_RTMP"
kill "$ENGINE_PID"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nginx_rtmp_conf 2 9000 "127.0.0.1:$port" "live on; pull rtmp://$origin_rtmp/live;"
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
pids+=("$!")
sleep 0.5
measure nginx-rtmp "127.0.0.1:$port"

printf '\nDuplicate upstream pulls — %s, commit %s, %s: 1 stream, %s RTMP viewers, 2 cores\n' \
    "$(date -u +%F)" "$(git -C "$root" rev-parse --short HEAD)" "$(uname -r)" "$viewers"
printf '| edge | upstream pulls (origin play requests) | video frames at the viewers | viewer errors |\n| --- | --- | --- | --- |\n'
for s in edge-engine nginx-rtmp; do
    printf '| %s | %s | %s | %s |\n' "$s" "${pulls[$s]}" "${frames[$s]}" "${errors[$s]}"
done
