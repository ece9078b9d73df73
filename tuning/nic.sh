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

usage() { usage_from_header; }

parse_nic_args "$@"

mapfile -t cpus < <(engine_cpus "$cpu_list" "$housekeeping")
n=${#cpus[@]}
((n)) || die "no CPUs left after removing housekeeping CPUs"

# Without ethtool a dry run can still say what it would do; only --apply needs the tool.
if ! command -v "$ETHTOOL" >/dev/null 2>&1; then
    [ "$MODE" = dry-run ] || die "ethtool is required to apply (apt-get install ethtool)"
    echo "note  ethtool is not installed: the NIC's current values are unknown"
    for plan in "combined queues: $n (or the NIC's maximum)" "rx and tx rings: the NIC's maximum" \
        "adaptive-rx/tx: on/on" "gro, gso, tso: on"; do
        CHANGES=$((CHANGES + 1))
        echo "would $iface $plan"
    done
    for ((k = 0; k < n; k++)); do
        set_mask "$SYSFS/class/net/$iface/queues/tx-$k/xps_cpus" "$(cpu_mask "${cpus[k]}")"
        set_mask "$SYSFS/class/net/$iface/queues/rx-$k/rps_cpus" "0"
    done
    finish
    exit 0
fi

# Value of "Name:" in the "Current"/"Pre-set" section of ethtool output.
section_value() { # text section name
    awk -v sec="$2" -v key="$3:" 'index($0, sec) { s = 1; next } s && $1 == key { print $2; exit }' <<<"$1"
}

# 1. Queues: one combined channel per engine core, within the NIC's maximum.
channels=$("$ETHTOOL" -l "$iface")
max_combined=$(section_value "$channels" "Pre-set maximums" Combined)
cur_combined=$(section_value "$channels" "Current hardware settings" Combined)
want=$n
((want <= max_combined)) || want=$max_combined
set_by_command "$iface combined queues" "$cur_combined" "$want" \
    "$ETHTOOL -L $iface combined $cur_combined" -- "$ETHTOOL" -L "$iface" combined "$want"

# 2. Rings at their maximum: fewer drops under bursts.
rings=$("$ETHTOOL" -g "$iface")
for dir in RX TX; do
    max=$(section_value "$rings" "Pre-set maximums" "$dir")
    cur=$(section_value "$rings" "Current hardware settings" "$dir")
    lower=$(tr '[:upper:]' '[:lower:]' <<<"$dir")
    set_by_command "$iface $lower ring" "$cur" "$max" \
        "$ETHTOOL -G $iface $lower $cur" -- "$ETHTOOL" -G "$iface" "$lower" "$max"
done

# 3. Adaptive interrupt coalescing.
coalesce=$("$ETHTOOL" -c "$iface")
cur_rx=$(awk '/^Adaptive RX:/ { print $3; exit }' <<<"$coalesce")
cur_tx=$(awk '/^Adaptive RX:/ { print $5; exit }' <<<"$coalesce")
set_by_command "$iface adaptive-rx/tx" "$cur_rx/$cur_tx" "on/on" \
    "$ETHTOOL -C $iface adaptive-rx $cur_rx adaptive-tx $cur_tx" -- "$ETHTOOL" -C "$iface" adaptive-rx on adaptive-tx on

# 4. XPS: TX queue k is sent from CPU k of the layout; RPS off.
for ((k = 0; k < want; k++)); do
    set_mask "$SYSFS/class/net/$iface/queues/tx-$k/xps_cpus" "$(cpu_mask "${cpus[k]}")"
    set_mask "$SYSFS/class/net/$iface/queues/rx-$k/rps_cpus" "0"
done

# 5. Offloads.
features=$("$ETHTOOL" -k "$iface")
for pair in gro:generic-receive-offload gso:generic-segmentation-offload tso:tcp-segmentation-offload; do
    short=${pair%%:*} long=${pair#*:}
    cur=$(awk -v k="$long:" '$1 == k { print $2; exit }' <<<"$features")
    set_by_command "$iface $short" "$cur" "on" "$ETHTOOL -K $iface $short $cur" -- "$ETHTOOL" -K "$iface" "$short" on
done
finish
