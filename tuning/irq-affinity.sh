#!/usr/bin/env bash
# Pins each NIC queue's IRQ to one engine core, 1:1 in queue order, skipping housekeeping
# cores, and bans those IRQs from irqbalance so it does not move them back.
#
# Usage: irq-affinity.sh --iface IF --cpu-list LIST [--housekeeping LIST] [--dry-run|--apply|--revert]
#   --cpu-list      the CPUs edge-engine runs on (its --cpu-list)
#   --housekeeping  CPUs to keep free of NIC IRQs even if listed (e.g. 0,1)
# Changes: /proc/irq/N/smp_affinity_list for each queue IRQ, /etc/default/irqbalance
# (IRQBALANCE_ARGS with --banirq per IRQ; irqbalance is restarted if it runs).
# Undo: irq-affinity.sh --revert.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { usage_from_header; }

parse_nic_args "$@"

mapfile -t engine_cpus < <(engine_cpus "$cpu_list" "$housekeeping")
((${#engine_cpus[@]})) || die "no CPUs left after removing housekeeping CPUs"

mapfile -t queues < <(nic_queue_irqs "$iface")
((${#queues[@]})) || die "$iface: no queue IRQs found in $PROCFS/interrupts"
if ((${#queues[@]} > ${#engine_cpus[@]})); then
    echo "note: $iface has ${#queues[@]} queues for ${#engine_cpus[@]} CPUs; queues wrap around (set fewer queues with nic.sh)"
fi

banned=()
for i in "${!queues[@]}"; do
    irq=${queues[i]%%$'\t'*}
    cpu=${engine_cpus[i % ${#engine_cpus[@]}]}
    set_value "$PROCFS/irq/$irq/smp_affinity_list" "$cpu"
    banned+=("--banirq=$irq")
done

set_file "$ETC/default/irqbalance" "# Managed by edge-engine tuning/irq-affinity.sh; --revert restores the previous file.
# NIC queue IRQs of $iface are pinned to edge-engine's cores; irqbalance must leave them.
IRQBALANCE_ARGS=\"${banned[*]}\""

if [ "$MODE" = apply ] && [ -z "${TUNING_ETC:-}" ] && pgrep -x irqbalance >/dev/null 2>&1; then
    systemctl restart irqbalance && echo "restarted irqbalance"
fi
finish
