#!/usr/bin/env bash
# HTTPS over TCP against HTTP/3 over QUIC, side by side in one run, over the same path: HLS
# viewers in a network namespace reach the engine through a pair of TUN devices, and
# tun_path.py holds every IP packet half the round trip each way and drops a share of them
# at random, TCP's and UDP's alike, packet by packet (this kernel has no netem). A relay
# that ended TCP connections and delayed their bytes would hide TCP's handshake, slow start
# and loss recovery behind it: the packets themselves must wait and be lost.
#
# For each round trip and loss, new viewers at once (each its own connection) fetch the HLS
# playlist and its newest segments one after another, then the LL-HLS playlist and its
# newest parts; h3_bench.py is the client for both protocols (Python's ssl over TCP, aioquic
# over UDP). Printed per cell: a new viewer's time to its first segment byte (median), and
# segment and part downloads (median and p99), each over every repetition. A third row,
# h3-0rtt, is a returning viewer over HTTP/3: it resumes a session from a connection made
# before (untimed) and sends its first request in 0-RTT. (A returning HTTPS viewer waits as
# long as a new one: TLS 1.3 resumption saves no round trip without early data, which TLS
# over TCP does not take here.)
#
# Then, with --player, Chromium in the namespace plays LL-HLS from the player page for
# --player-seconds over each protocol (HTTPS with QUIC disabled; HTTP/3 forced), at each
# --player-paths RTT:loss: its distance behind live, stalls and longest stall.
#
# Then, with no delay or loss, the engine's CPU per request for the same requests over
# each protocol at the same rate (64 KB and 700 KB segments).
#
# Usage: bench/peers/http3_loss.sh [--rtts "50 150"] [--losses "0 1 3"] [--reps N]
#        [--viewers N] [--rounds N] [--engine-args "ARGS"]
#        [--player] [--player-paths "150:0 150:1"] [--player-seconds S] [--keep DIR]
#   --rounds: rounds of the CPU measurement (default 10); --engine-args: e.g.
#   "--http3-congestion cubic"; --keep: keep the engine's log (engine.err: with
#   RUST_LOG=edge_engine::net::quic=debug, a line per QUIC connection, its round trip,
#   window, packets sent and lost) and each cell's samples (cell-RTT-LOSS-PROTO.json) there.
# Needs root (a network namespace, TUN devices). Installs ffmpeg and openssl when missing,
# and aioquic in target/tools/venv. Removes its namespace and temporary directory on exit.
set -euo pipefail

rtts="50 150"
losses="0 1 3"
reps=3
viewers=6
rounds=10
engine_args=""
player=""
player_paths="150:0 150:1"
player_seconds=30
keep=""
while (($#)); do
    case "$1" in
        --rtts) rtts=$2; shift 2 ;;
        --losses) losses=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --viewers) viewers=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --engine-args) engine_args=$2; shift 2 ;;
        --player) player=1; shift ;;
        --player-paths) player_paths=$2; shift 2 ;;
        --player-seconds) player_seconds=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/bench/peers"
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"
install_missing ffmpeg:ffmpeg openssl:openssl
PATH="$PATH:/usr/sbin"
venv="$root/target/tools/venv"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import aioquic' 2>/dev/null ||
    "$venv/bin/pip" install --quiet --disable-pip-version-check aioquic==1.7.2
py="$venv/bin/python"

ns=edge-h3-bench
setup_work /dev/shm/edge-bench-h3.XXXXXX
keep_files() { [ -z "$keep" ] || { mkdir -p "$keep" && cp "$work"/engine.err "$work"/cell-*.json "$keep"/; } 2>/dev/null || true; }
trap 'keep_files; ip netns del $ns 2>/dev/null || true; cleanup_work' EXIT

(cd "$root" && cargo build --release -q -p edge-engine)
bin="$root/target/release"

make_cert
make_clip small 200
make_clip big 2750

read -ra extra <<<"$engine_args"
start_engine --https 0.0.0.0:0 --http3 0.0.0.0:0 --tls-cert "$work/cert.pem" \
    --player-assets "$root/tests/node_modules" \
    --tls-key "$work/key.pem" --hls-segment-ms 2000 "${extra[@]}"
https=$(sed -n 's/.*https=\([^ ]*\).*/\1/p' "$work/engine.out")
h3=$(sed -n 's/.*http3=\([^ ]*\).*/\1/p' "$work/engine.out")
publish_clips small big

# The viewers' namespace and the path to it: eh3v there, eh3r here, tun_path.py between.
ip netns add $ns
ip netns exec $ns ip link set lo up
echo "0 0" >"$work/path.conf"
taskset -c 1 python3 "$here/tun_path.py" $ns "$work/path.conf" >"$work/path.out" &
pids+=($!)
for _ in $(seq 50); do grep -q ready "$work/path.out" 2>/dev/null && break; sleep 0.1; done
ip addr add 10.203.0.1 peer 10.203.0.2 dev eh3r
ip link set eh3r up
ip netns exec $ns ip addr add 10.203.0.2 peer 10.203.0.1 dev eh3v
ip netns exec $ns ip link set eh3v up

set_path() { # rtt_ms loss_percent
    echo "$1 $2" >"$work/path.conf"
    sleep 0.3
}

view() { # proto stream segments parts -> JSON
    local port=${https##*:}
    [ "$1" != https ] && port=${h3##*:}
    ip netns exec $ns taskset -c 1 "$py" "$here/h3_bench.py" "$1" 10.203.0.1 "$port" \
        "$work/cert.pem" "live/$2" "$viewers" "$3" "$4"
}

echo "edge-engine $(git -C "$root" rev-parse --short HEAD) $engine_args, $(nproc) CPUs; $viewers viewers at once, $reps repetitions per cell"
echo "segments: live/small (~64 KB, 2 s); parts: its LL-HLS parts"
printf '%-5s %-5s %-7s %14s %14s %14s %14s %14s %7s\n' rtt loss proto \
    "first byte p50" "segment p50" "segment p99" "part p50" "part p99" errors
for rtt in $rtts; do
    for loss in $losses; do
        set_path "$rtt" "$loss"
        for proto in https h3 h3-0rtt; do
            for _ in $(seq "$reps"); do view $proto small 6 10; echo; done >"$work/cell-$rtt-$loss-$proto.json"
        done
        "$py" - "$work" "$rtt" "$loss" <<'PY'
import json, sys
work, rtt, loss = sys.argv[1:4]
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
cells = {}
for proto in ("https", "h3", "h3-0rtt"):
    runs = [json.loads(l) for l in open(f"{work}/cell-{rtt}-{loss}-{proto}.json") if l.strip()]
    agg = {k: sum((r[k] for r in runs), []) for k in ("first_byte_ms", "segment_ms", "part_ms")}
    agg["errors"] = sum(r["errors"] for r in runs)
    cells[proto] = agg
    print(f"{rtt:<5} {loss:<5} {proto:<7} {pct(agg['first_byte_ms'], .5):14.0f} {pct(agg['segment_ms'], .5):14.0f} "
          f"{pct(agg['segment_ms'], .99):14.0f} {pct(agg['part_ms'], .5):14.0f} {pct(agg['part_ms'], .99):14.0f} {agg['errors']:7}")
h, q = cells["https"], cells["h3"]
z = cells["h3-0rtt"]
print(f"{rtt:<5} {loss:<5} {'0rtt/tls':<7} {pct(z['first_byte_ms'], .5) / pct(h['first_byte_ms'], .5):14.2f}")
print(f"{rtt:<5} {loss:<5} {'h3/tls':<7} {pct(q['first_byte_ms'], .5) / pct(h['first_byte_ms'], .5):14.2f} "
      f"{pct(q['segment_ms'], .5) / pct(h['segment_ms'], .5):14.2f} {pct(q['segment_ms'], .99) / pct(h['segment_ms'], .99):14.2f} "
      f"{pct(q['part_ms'], .5) / pct(h['part_ms'], .5):14.2f} {pct(q['part_ms'], .99) / pct(h['part_ms'], .99):14.2f}")
PY
    done
done
set_path 0 0

if [ -n "$player" ]; then
    echo
    echo "Chromium plays LL-HLS (live/small) from the player page for $player_seconds s"
    printf '%-5s %-5s %-6s %10s %12s %8s %18s %10s\n' rtt loss proto protocol "behind live" stalls "longest stall ms" "played s"
    spki=$(openssl x509 -pubkey -noout -in "$work/cert.pem" | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64)
    for path in $player_paths; do
        set_path "${path%%:*}" "${path##*:}"
        for proto in https h3; do
            if [ $proto = h3 ]; then
                origin="10.203.0.1:${h3##*:}"
                flags="[\"--origin-to-force-quic-on=$origin\",\"--ignore-certificate-errors-spki-list=$spki\"]"
            else
                origin="10.203.0.1:${https##*:}"
                flags="[\"--disable-quic\",\"--ignore-certificate-errors-spki-list=$spki\"]"
            fi
            args="{\"url\":\"https://$origin/player?stream=live/small&protocol=llhls\",\"seconds\":$player_seconds,\"chromium_args\":$flags}"
            ip netns exec $ns node "$root/tests/browser/run.mjs" play "$args" >"$work/player.json" 2>"$work/player.err" || true
            "$py" - "$work/player.json" "${path%%:*}" "${path##*:}" $proto <<'PY'
import json, sys
f, rtt, loss, proto = sys.argv[1:5]
try:
    r = json.load(open(f))
except Exception:
    print(f"{rtt:<5} {loss:<5} {proto:<6} (no result)")
    sys.exit()
fin = r["final"]
nhp = sorted({p[1] for p in r.get("protocols", [])})
print(f"{rtt:<5} {loss:<5} {proto:<6} {','.join(nhp):>10} {fin.get('latency')!s:>12} {fin.get('stalls')!s:>8} "
      f"{r.get('longest_stall_ms')!s:>18} {r.get('played_s', 0):10.1f}")
PY
        done
    done
    set_path 0 0
fi

# CPU per request: the same requests over each protocol, straight to the engine (no relay).
# The engine also muxes the two streams meanwhile: its CPU over 5 s with no viewers is
# measured first, and that rate is subtracted from each run's.
b0=$(cpu_seconds_of "$ENGINE_PID"); t0=$(date +%s.%N)
sleep 5
idle=$(awk -v a="$(cpu_seconds_of "$ENGINE_PID")" -v b="$b0" -v t="$t0" -v n="$(date +%s.%N)" 'BEGIN { print (a - b) / (n - t) }')
echo
echo "engine CPU per request, no delay or loss ($viewers viewers, 6 segments each, $rounds rounds;"
echo "its idle CPU, $(awk -v i="$idle" 'BEGIN { printf "%.1f", i * 1000 }') ms/s muxing, subtracted)"
printf '%-6s %-6s %10s %10s %14s\n' clip proto requests "cpu ms" "cpu us/req"
for clip in small big; do
    for proto in https h3; do
        port=${https##*:}
        [ $proto = h3 ] && port=${h3##*:}
        before=$(cpu_seconds_of "$ENGINE_PID"); t0=$(date +%s.%N)
        requests=0
        for _ in $(seq "$rounds"); do
            n=$(taskset -c 1 "$py" "$here/h3_bench.py" $proto 127.0.0.1 "$port" "$work/cert.pem" \
                "live/$clip" "$viewers" 6 0 | "$py" -c 'import json,sys; r=json.load(sys.stdin); print(len(r["segment_ms"]) + len(r["part_ms"]))')
            requests=$((requests + n + viewers))
        done
        after=$(cpu_seconds_of "$ENGINE_PID")
        awk -v c="$clip" -v p="$proto" -v n="$requests" -v b="$before" -v a="$after" -v i="$idle" \
            -v t="$t0" -v e="$(date +%s.%N)" \
            'BEGIN { u = a - b - i * (e - t); printf "%-6s %-6s %10d %10.1f %14.0f\n", c, p, n, u * 1000, u * 1e6 / n }'
    done
done
