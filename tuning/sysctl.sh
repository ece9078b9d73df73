#!/usr/bin/env bash
# Kernel network and file limits for an edge serving 100k+ connections: accept backlogs,
# socket buffer limits and TCP memory (raised, never lowered), a local port range for origin
# pulls and load generation that leaves the engine's listening ports alone (they are also
# reserved), file-descriptor ceilings, and, only with --busy-poll, socket busy polling.
#
# Usage: sysctl.sh [--ports LIST] [--config FILE] [--busy-poll] [--dry-run|--apply|--revert]
#   --ports LIST   the engine's listening ports, e.g. 1935,8080,443 (default: 1935,8080)
#   --config FILE  also reserve the ports of the rtmp/http/rtmps/https addresses in FILE
#   --busy-poll    set net.core.busy_poll and busy_read: every socket on the host then spins
#                  up to 50 us on a read (lower latency, more CPU); off unless asked for
# Changes: files under /proc/sys (not persisted across reboots; copy the printed values to
# /etc/sysctl.d/ to keep them). Undo: sysctl.sh --revert.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# Outgoing connections take ports from here: above the usual service ports, so none of them
# (the engine's 1935 and 8080, a database's, an admin's) is taken by a pull and blocks a
# restart.
PORT_RANGE_LOW=10240

parse_mode "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
ports=1935,8080 config="" busy_poll=0
while (($#)); do
    case "$1" in
        --ports) ports=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --busy-poll) busy_poll=1; shift ;;
        -h | --help) usage_from_header; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
if [ "$MODE" = revert ]; then
    revert_all
    exit 0
fi
if [ -n "$config" ]; then
    [ -r "$config" ] || die "--config $config: not readable"
    # The TOML config's top-level `rtmp = "0.0.0.0:1935"` (and rtmps, http, https): the port
    # after the last colon.
    from_file=$(sed -nE 's/^[[:space:]]*(rtmps?|https?)[[:space:]]*=[[:space:]]*"?[^"#]*:([0-9]+)"?.*/\2/p' "$config" | paste -sd, -)
    ports=${ports}${from_file:+,$from_file}
fi
[[ $ports =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--ports: a comma-separated list of port numbers, got '$ports'"

# tcp_mem is in pages: pressure at 1/8 of RAM, up to 1/4.
mem_kb=$(awk '/^MemTotal:/ { print $2 }' "$PROCFS/meminfo")
pages=$((mem_kb / 4))
tcp_mem="$((pages / 16)) $((pages / 8)) $((pages / 4))"

sys() { echo "$PROCFS/sys/${1//.//}"; }

while read -r key value; do
    set_value "$(sys "$key")" "$value"
done <<EOF_VALUES
net.core.somaxconn 65535
net.ipv4.tcp_max_syn_backlog 65535
net.core.netdev_max_backlog 250000
net.ipv4.ip_local_port_range $PORT_RANGE_LOW 65535
fs.nr_open 4194304
fs.file-max 8388608
EOF_VALUES
# Buffers and TCP memory: at least these, never below what the host already has.
while read -r key value; do
    set_at_least "$(sys "$key")" "$value"
done <<EOF_VALUES
net.core.rmem_max 16777216
net.core.wmem_max 16777216
net.ipv4.tcp_rmem 4096 131072 16777216
net.ipv4.tcp_wmem 4096 131072 16777216
net.ipv4.tcp_mem $tcp_mem
EOF_VALUES

# The engine's ports, reserved: never handed out to an outgoing connection, whatever the
# range (the reservations already there are kept).
reserved_path=$(sys net.ipv4.ip_local_reserved_ports)
if [ -e "$reserved_path" ]; then
    current=$(read_value "$reserved_path")
    union=$(printf '%s\n' "${current//,/$'\n'}" "${ports//,/$'\n'}" | grep -v '^$' | sort -n -u | paste -sd, -)
    set_value "$reserved_path" "$union"
else
    echo "skip  $reserved_path (absent)"
fi
for p in ${ports//,/ }; do
    if ((p >= PORT_RANGE_LOW)); then
        echo "note  port $p is inside the local port range: it is reserved above, so no outgoing connection takes it"
    fi
done

if ((busy_poll)); then
    set_value "$(sys net.core.busy_poll)" 50
    set_value "$(sys net.core.busy_read)" 50
fi
finish
