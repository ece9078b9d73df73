#!/usr/bin/env bash
# Helpers shared by the peer comparison scripts and flamegraphs/record.sh. Sourced, never run.
# Callers call setup_work (which sets work and pids) and set bin (target/release); they read
# the ENGINE_* variables start_engine sets.
# shellcheck disable=SC2154,SC2034

# Makes the temporary directory `work` (readable by unprivileged nginx workers), and on exit
# stops every process in `pids` and removes it. Argument: a mktemp template.
setup_work() {
    work=$(mktemp -d "$1")
    chmod 755 "$work"
    pids=()
    trap cleanup_work EXIT
}

cleanup_work() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

# Installs the Debian packages for tools that are missing: arguments are TOOL:PACKAGE pairs
# (a TOOL that is an absolute path is checked as a file).
install_missing() {
    local pair tool pkg pkgs=()
    for pair in "$@"; do
        tool=${pair%%:*} pkg=${pair#*:}
        if [[ $tool == /* ]]; then
            [ -e "$tool" ] || pkgs+=("$pkg")
        else
            command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || pkgs+=("$pkg")
        fi
    done
    ((${#pkgs[@]})) || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
}

# Starts edge-engine --cores 1 pinned to CPU 0 on ephemeral loopback ports, with extra
# arguments (a later --cores wins), and waits for its ready line. Sets ENGINE_PID,
# ENGINE_RTMP and ENGINE_HTTP (HOST:PORT). ENGINE_CPUS (taskset list, default 0) and
# ENGINE_NAME (log file names, default engine) allow several engines in one work dir;
# ENGINE_BIN runs another build (e.g. the previous commit's) instead of $bin/edge-engine.
start_engine() {
    local name=${ENGINE_NAME:-engine}
    taskset -c "${ENGINE_CPUS:-0}" "${ENGINE_BIN:-$bin/edge-engine}" --cores 1 --rtmp 127.0.0.1:0 --http 127.0.0.1:0 "$@" \
        >"$work/$name.out" 2>"$work/$name.err" &
    ENGINE_PID=$!
    pids+=("$ENGINE_PID")
    local _
    for _ in $(seq 100); do
        [ -s "$work/$name.out" ] && break
        sleep 0.1
    done
    ENGINE_RTMP=$(sed -n 's/.*rtmp=\([^ ]*\).*/\1/p' "$work/$name.out")
    ENGINE_HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' "$work/$name.out")
    [ -n "$ENGINE_RTMP" ] || { cat "$work/$name.err" >&2; echo "edge-engine did not start" >&2; return 1; }
}

# Starts nginx with $work/nginx.conf pinned to CPU 0 and waits half a second for it. Sets
# NGINX_PID (the master) and NGINX_PIDS (the master and its workers, for CPU accounting).
start_nginx() {
    taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    pids+=("$NGINX_PID")
    sleep 0.5
    mapfile -t NGINX_PIDS < <(echo "$NGINX_PID"; pgrep -P "$NGINX_PID")
}

# Writes $work/nginx.conf: the rtmp module on LISTEN with WORKERS workers of CONNECTIONS each,
# and an application `live` with BODY (e.g. `live on;`).
nginx_rtmp_conf() { # workers connections listen body
    cat >"$work/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes $1;
worker_rlimit_nofile 20000;
error_log $work/nginx.err;
pid $work/nginx.pid;
events { worker_connections $2; }
rtmp {
    server {
        listen $3;
        chunk_size 4096;
        application live { $4 }
    }
}
EOF
}

# Writes $work/NAME.flv: an 8 s 640x360 test clip at VIDEO_KBPS (CBR) with 48 kbit/s AAC, 2 s
# GOPs, so 2 s segments come out near 64 KB (200) or 700 KB (2750).
make_clip() { # name video_kbps
    ffmpeg -v error -y -f lavfi -i "testsrc2=size=640x360:rate=25" -f lavfi -i "sine=frequency=440" -t 8 \
        -c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 \
        -b:v "$2k" -minrate "$2k" -maxrate "$2k" -bufsize "$2k" -x264-params nal-hrd=cbr \
        -c:a aac -b:a 48k -f flv "$work/$1.flv"
}

# A self-signed certificate for localhost and 127.0.0.1 in $work/cert.pem and key.pem. Not a CA
# certificate: webpki (rustls, h3load) refuses a CA certificate as a server's own.
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
}

# Publishes $work/CLIP.flv for each CLIP in a loop to the engine (ffmpeg on CPU 1), and waits
# until the last one has three segments.
publish_clips() { # clip...
    local clip n _
    for clip in "$@"; do
        taskset -c 1 ffmpeg -v error -nostdin -re -stream_loop -1 -i "$work/$clip.flv" -c copy \
            -f flv "rtmp://$ENGINE_RTMP/live/$clip" &
        pids+=($!)
    done
    for _ in $(seq 150); do
        n=$(curl -s "http://$ENGINE_HTTP/live/$clip.m3u8" | grep -c "^$clip-" || true)
        [ "${n:-0}" -ge 3 ] && break
        sleep 0.2
    done
}

# wrk with one thread on CPU 1 for $duration seconds; prints "req/s bytes/s". Extra
# arguments go to wrk (e.g. -H "Connection: close").
# CPU seconds (user + system) used so far by the processes PIDS, summed.
cpu_seconds_of() { # pid...
    local p total=0
    for p in "$@"; do
        total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); print t + (f[12] + f[13]) / hz }' "/proc/$p/stat")
    done
    echo "$total"
}

# wrk_run, plus the server's CPU per request: prints "rps bytes_per_s cpu_us_per_request".
wrk_cell() { # url connections server_pid...
    local url=$1 c=$2 before after out
    shift 2
    before=$(cpu_seconds_of "$@")
    out=$(wrk_run "$url" "$c")
    after=$(cpu_seconds_of "$@")
    awk -v o="$out" -v b="$before" -v a="$after" -v d="$duration" \
        'BEGIN { split(o, f, " "); printf "%s %s %.1f\n", f[1], f[2], (a - b) * 1e6 / (f[1] * d) }'
}

wrk_run() { # url connections [wrk args...]
    local url=$1 c=$2
    shift 2
    taskset -c 1 wrk -t1 -c"$c" -d"${duration}s" "$@" "$url" 2>/dev/null | awk '
        /Requests\/sec/ { rps = $2 }
        /Transfer\/sec/ { v = $2; u = substr(v, length(v) - 1); n = v + 0;
            if (u == "KB") n *= 1024; else if (u == "MB") n *= 1048576; else if (u == "GB") n *= 1073741824;
            bps = n }
        END { printf "%.0f %.0f\n", rps, bps }'
}

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts the delay relay (delay_relay.py) in front of UPSTREAM (HOST:PORT): every byte held
# DELAY_MS/2 each way; HTTP request lines logged to LOG. Arguments: UPSTREAM DELAY_MS LOG.
# Sets RELAY (HOST:PORT) and RELAY_PID.
start_relay() {
    local port
    port=$(free_port)
    python3 "$(dirname "${BASH_SOURCE[0]}")/delay_relay.py" "$port" "$1" "$2" "$3" &
    pids+=("$!")
    RELAY="127.0.0.1:$port" RELAY_PID=$!
    sleep 0.5
}

# Starts edge-engine as an origin (CPU 1) and loadgen publishing one 600 kbit/s stream,
# PREFIX0, to it (CPU 1), then gives it 4 s to go live. Sets origin_rtmp and origin_http.
# Argument: PREFIX.
start_published_origin() {
    ENGINE_NAME=origin ENGINE_CPUS=1 start_engine
    origin_rtmp=$ENGINE_RTMP origin_http=$ENGINE_HTTP
    taskset -c 1 "$bin/loadgen" --publish --viewers 0 --target "rtmp://$origin_rtmp" \
        --stream-prefix "$1" --bitrate 600k --duration 3600s >/dev/null 2>&1 &
    pids+=("$!")
    sleep 4
}
