#!/usr/bin/env bash
# Prints current against recommended for every tuning script (their dry runs) and the
# edge-engine --cpu-list that matches the NIC's current IRQ layout. Changes nothing. Every
# section is reported even when another fails (a virtio NIC has no queue IRQs to read, say).
# Exits 1 when anything differs from the recommendation or a section could not be checked.
#
# Usage: check.sh --iface IF [--cpu-list LIST] [--housekeeping LIST] [--user NAME]
#                 [--cache-mb MIB] [--ports LIST]
#   Without --cpu-list, the layout found on the NIC's queue IRQs is checked. Limits are
#   checked for the systemd unit unless --user names a login user (see limits.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

here=$(dirname "$0")
iface="" cpu_list="" housekeeping="" user="" cache_mb=1024 ports=""
while (($#)); do
    case "$1" in
        --iface) iface=$2; shift 2 ;;
        --cpu-list) cpu_list=$2; shift 2 ;;
        --housekeeping) housekeeping=$2; shift 2 ;;
        --user) user=$2; shift 2 ;;
        --cache-mb) cache_mb=$2; shift 2 ;;
        --ports) ports=$2; shift 2 ;;
        -h | --help) usage_from_header; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
[ -n "$iface" ] || die "--iface is required"

# Compresses "2 3 4 7" to "2-4,7".
compress() {
    local out="" start="" prev=""
    for c in "$@"; do
        if [ -z "$start" ]; then
            start=$c prev=$c
        elif ((c == prev + 1)); then
            prev=$c
        else
            out+="${out:+,}$start$([ "$start" = "$prev" ] || echo "-$prev")"
            start=$c prev=$c
        fi
    done
    [ -z "$start" ] || out+="${out:+,}$start$([ "$start" = "$prev" ] || echo "-$prev")"
    echo "$out"
}

off=0 failed=0
# The layout the NIC has now: each queue IRQ's CPU, in queue order.
layout=()
pinned=1
found=""
if irqs=$(nic_queue_irqs "$iface" 2>&1); then
    while IFS=$'\t' read -r irq _name; do
        [ -n "$irq" ] || continue
        irq_cpus=$(read_value "$PROCFS/irq/$irq/smp_affinity_list")
        [[ $irq_cpus =~ ^[0-9]+$ ]] || pinned=0
        layout+=("$irq_cpus")
    done <<<"$irqs"
    if ((pinned)) && ((${#layout[@]})); then
        uniq_layout=()
        for c in "${layout[@]}"; do [[ " ${uniq_layout[*]-} " == *" $c "* ]] || uniq_layout+=("$c"); done
        found=$(compress "${uniq_layout[@]}")
        echo "NIC $iface: ${#layout[@]} queue IRQs pinned 1:1 in order to CPUs $found"
        echo "matching engine command: edge-engine --cores ${#uniq_layout[@]} --cpu-list $found"
    else
        echo "NIC $iface: queue IRQs are not pinned one CPU each (run irq-affinity.sh)"
    fi
else
    echo "NIC $iface: its queue IRQs cannot be read: ${irqs#*: }"
fi
cpu_list=${cpu_list:-$found}
if [ -n "$cpu_list" ]; then
    cores=$(expand_cpu_list "$cpu_list" | wc -l)
else
    cores=$(nproc)
    echo "no --cpu-list given and none found on the NIC: the IRQ and NIC sections are skipped"
    failed=1
fi

run() { # title script args...
    local title=$1 out status=0
    shift
    echo
    echo "== $title"
    out=$("$@" --dry-run 2>&1) || status=$?
    grep -v '^dry run:' <<<"$out" || true
    if ((status)); then
        echo "ERROR: the $title check failed (status $status)"
        failed=1
    elif grep -q '^would' <<<"$out"; then
        off=1
    fi
}
hk=()
[ -z "$housekeeping" ] || hk=(--housekeeping "$housekeeping")
if [ -n "$cpu_list" ]; then
    run "IRQ affinity" "$here/irq-affinity.sh" --iface "$iface" --cpu-list "$cpu_list" "${hk[@]+"${hk[@]}"}"
    run "NIC" "$here/nic.sh" --iface "$iface" --cpu-list "$cpu_list" "${hk[@]+"${hk[@]}"}"
fi
sysctl_args=()
[ -z "$ports" ] || sysctl_args=(--ports "$ports")
run "sysctl" "$here/sysctl.sh" "${sysctl_args[@]+"${sysctl_args[@]}"}"
run "huge pages" "$here/hugepages.sh" --cache-mb "$cache_mb" --cores "$cores"
limits_args=(--cores "$cores")
[ -z "$user" ] || limits_args+=(--user "$user")
run "limits" "$here/limits.sh" "${limits_args[@]}"
echo
if ((failed)); then
    echo "RESULT: some sections could not be checked (lines marked ERROR or skipped)"
    exit 1
fi
if ((off)); then
    echo "RESULT: some settings differ from the recommendation (lines marked 'would')"
    exit 1
fi
echo "RESULT: everything matches the recommendation"
