#!/usr/bin/env bash
# Kernel network and file limits for an edge serving 100k+ connections: accept backlogs,
# socket buffer limits, TCP memory sized to RAM, the local port range (for origin pulls and
# load generation), file-descriptor ceilings, and busy polling.
#
# Usage: sysctl.sh [--dry-run|--apply|--revert]
# Changes: files under /proc/sys (not persisted across reboots; copy the printed values to
# /etc/sysctl.d/ to keep them). Undo: sysctl.sh --revert.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

parse_mode "$@"
if ((${#ARGS[@]})); then
    case "${ARGS[0]}" in
        -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '${ARGS[0]}'" ;;
    esac
fi
if [ "$MODE" = revert ]; then
    revert_all
    exit 0
fi

# tcp_mem is in pages: pressure at 1/8 of RAM, up to 1/4.
mem_kb=$(awk '/^MemTotal:/ { print $2 }' "$PROCFS/meminfo")
pages=$((mem_kb / 4))
tcp_mem="$((pages / 16)) $((pages / 8)) $((pages / 4))"

while read -r key value; do
    set_value "$PROCFS/sys/${key//.//}" "$value"
done <<EOF_VALUES
net.core.somaxconn 65535
net.ipv4.tcp_max_syn_backlog 65535
net.core.netdev_max_backlog 250000
net.core.rmem_max 16777216
net.core.wmem_max 16777216
net.ipv4.tcp_rmem 4096 131072 16777216
net.ipv4.tcp_wmem 4096 131072 16777216
net.ipv4.tcp_mem $tcp_mem
net.ipv4.ip_local_port_range 1024 65535
fs.nr_open 4194304
fs.file-max 8388608
net.core.busy_poll 50
net.core.busy_read 50
EOF_VALUES
finish
