#!/usr/bin/env bash
# Prints current against recommended for every tuning script (their dry runs) and the
# edge-engine --cpu-list that matches the NIC's current IRQ layout. Changes nothing.
# Exits 1 when anything differs from the recommendation.
#
# Usage: check.sh --iface IF [--cpu-list LIST] [--housekeeping LIST] [--user NAME] [--cache-mb MIB]
#   Without --cpu-list, the layout found on the NIC's queue IRQs is checked.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

here=$(dirname "$0")
iface="" cpu_list="" housekeeping="" user=edge cache_mb=1024
while (($#)); do
    case "$1" in
        --iface) iface=$2; shift 2 ;;
        --cpu-list) cpu_list=$2; shift 2 ;;
        --housekeeping) housekeeping=$2; shift 2 ;;
        --user) user=$2; shift 2 ;;
        --cache-mb) cache_mb=$2; shift 2 ;;
        -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# The layout the NIC has now: each queue IRQ's CPU, in queue order.
layout=()
pinned=1
while IFS=$'\t' read -r irq _name; do
    irq_cpus=$(read_value "$PROCFS/irq/$irq/smp_affinity_list")
    [[ $irq_cpus =~ ^[0-9]+$ ]] || pinned=0
    layout+=("$irq_cpus")
done < <(nic_queue_irqs "$iface")
if ((pinned)) && ((${#layout[@]})); then
    uniq_layout=()
    for c in "${layout[@]}"; do [[ " ${uniq_layout[*]-} " == *" $c "* ]] || uniq_layout+=("$c"); done
    found=$(compress "${uniq_layout[@]}")
    echo "NIC $iface: ${#layout[@]} queue IRQs pinned 1:1 in order to CPUs $found"
    echo "matching engine command: edge-engine --cores ${#uniq_layout[@]} --cpu-list $found"
else
    echo "NIC $iface: queue IRQs are not pinned one CPU each (run irq-affinity.sh)"
    found=""
fi
cpu_list=${cpu_list:-$found}
[ -n "$cpu_list" ] || die "no --cpu-list given and none found on the NIC"
cores=$(expand_cpu_list "$cpu_list" | wc -l)

off=0
run() { # title script args...
    local title=$1 out
    shift
    echo
    echo "== $title"
    out=$("$@" --dry-run)
    grep -v '^dry run:' <<<"$out" || true
    if grep -q '^would' <<<"$out"; then
        off=1
    fi
}
hk=()
[ -z "$housekeeping" ] || hk=(--housekeeping "$housekeeping")
run "IRQ affinity" "$here/irq-affinity.sh" --iface "$iface" --cpu-list "$cpu_list" "${hk[@]+"${hk[@]}"}"
run "NIC" "$here/nic.sh" --iface "$iface" --cpu-list "$cpu_list" "${hk[@]+"${hk[@]}"}"
run "sysctl" "$here/sysctl.sh"
run "huge pages" "$here/hugepages.sh" --cache-mb "$cache_mb" --cores "$cores"
run "limits" "$here/limits.sh" --user "$user" --cores "$cores"
echo
if ((off)); then
    echo "RESULT: some settings differ from the recommendation (lines marked 'would')"
    exit 1
fi
echo "RESULT: everything matches the recommendation"
