#!/usr/bin/env bash
# NIC settings for edge-engine: one combined RSS queue per engine core, maximum ring sizes,
# adaptive interrupt coalescing, XPS masks that send each TX queue from the core its IRQ is
# pinned to (the irq-affinity.sh layout), RPS off (RSS spreads in hardware), GRO/GSO/TSO on.
#
# Usage: nic.sh --iface IF --cpu-list LIST [--housekeeping LIST] [--dry-run|--apply|--revert]
# Changes: ethtool -L/-G/-C/-K on IF; /sys/class/net/IF/queues/{tx-N/xps_cpus,rx-N/rps_cpus}.
# Undo: nic.sh --revert (replays the saved ethtool values and files).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

parse_nic_args "$@"
command -v ethtool >/dev/null 2>&1 || die "ethtool is required (apt-get install ethtool)"

mapfile -t cpus < <(engine_cpus "$cpu_list" "$housekeeping")
n=${#cpus[@]}
((n)) || die "no CPUs left after removing housekeeping CPUs"

# Value of "Name:" in the "Current"/"Pre-set" section of ethtool output.
section_value() { # text section name
    awk -v sec="$2" -v key="$3:" 'index($0, sec) { s = 1; next } s && $1 == key { print $2; exit }' <<<"$1"
}

# 1. Queues: one combined channel per engine core, within the NIC's maximum.
channels=$(ethtool -l "$iface")
max_combined=$(section_value "$channels" "Pre-set maximums" Combined)
cur_combined=$(section_value "$channels" "Current hardware settings" Combined)
want=$n
((want <= max_combined)) || want=$max_combined
set_by_command "$iface combined queues" "$cur_combined" "$want" \
    "ethtool -L $iface combined $cur_combined" -- ethtool -L "$iface" combined "$want"

# 2. Rings at their maximum: fewer drops under bursts.
rings=$(ethtool -g "$iface")
for dir in RX TX; do
    max=$(section_value "$rings" "Pre-set maximums" "$dir")
    cur=$(section_value "$rings" "Current hardware settings" "$dir")
    lower=$(tr '[:upper:]' '[:lower:]' <<<"$dir")
    set_by_command "$iface $lower ring" "$cur" "$max" \
        "ethtool -G $iface $lower $cur" -- ethtool -G "$iface" "$lower" "$max"
done

# 3. Adaptive interrupt coalescing.
coalesce=$(ethtool -c "$iface")
cur_rx=$(awk '/^Adaptive RX:/ { print $3; exit }' <<<"$coalesce")
cur_tx=$(awk '/^Adaptive RX:/ { print $5; exit }' <<<"$coalesce")
set_by_command "$iface adaptive-rx/tx" "$cur_rx/$cur_tx" "on/on" \
    "ethtool -C $iface adaptive-rx $cur_rx adaptive-tx $cur_tx" -- ethtool -C "$iface" adaptive-rx on adaptive-tx on

# 4. XPS: TX queue k is sent from CPU k of the layout; RPS off.
for ((k = 0; k < want; k++)); do
    set_mask "$SYSFS/class/net/$iface/queues/tx-$k/xps_cpus" "$(cpu_mask "${cpus[k]}")"
    set_mask "$SYSFS/class/net/$iface/queues/rx-$k/rps_cpus" "0"
done

# 5. Offloads.
features=$(ethtool -k "$iface")
for pair in gro:generic-receive-offload gso:generic-segmentation-offload tso:tcp-segmentation-offload; do
    short=${pair%%:*} long=${pair#*:}
    cur=$(awk -v k="$long:" '$1 == k { print $2; exit }' <<<"$features")
    set_by_command "$iface $short" "$cur" "on" "ethtool -K $iface $short $cur" -- ethtool -K "$iface" "$short" on
done
finish
