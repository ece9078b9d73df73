#!/usr/bin/env bash
# Shared helpers for the tuning scripts. Sourced, never run.
#
# Every script: `--dry-run` (the default) prints exactly what it would write, `--apply` writes
# and saves the values it replaced, `--revert` restores what the last `--apply` saved. Writing
# a value that is already in place is a no-op, so `--apply` is idempotent.
#
# Roots are overridable so tests run against fake trees:
#   TUNING_SYSFS (/sys), TUNING_PROCFS (/proc), TUNING_ETC (/etc),
#   TUNING_STATE_DIR (/var/lib/edge-engine-tuning), TUNING_ETHTOOL (ethtool).

# shellcheck disable=SC2034 # used by the scripts that source this file
SYSFS=${TUNING_SYSFS:-/sys}
PROCFS=${TUNING_PROCFS:-/proc}
ETC=${TUNING_ETC:-/etc}
STATE_DIR=${TUNING_STATE_DIR:-/var/lib/edge-engine-tuning}
ETHTOOL=${TUNING_ETHTOOL:-ethtool}
MODE=dry-run
SCRIPT_NAME=$(basename "$0" .sh)
CHANGES=0

die() {
    echo "$SCRIPT_NAME: $*" >&2
    exit 2
}

# Prints the script's leading comment block (after the #! line) as its help: every line up
# to the first one that is not a comment.
usage_from_header() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

# Consumes --dry-run/--apply/--revert from "$@"; the rest is left in ARGS. Two different
# modes contradict each other: an error, not "the last one wins".
parse_mode() {
    ARGS=()
    local given=""
    while (($#)); do
        case "$1" in
            --dry-run | --apply | --revert)
                if [ -n "$given" ] && [ "$given" != "$1" ]; then
                    die "$given and $1 contradict each other: give one of --dry-run, --apply, --revert"
                fi
                given=$1
                MODE=${1#--}
                ;;
            *) ARGS+=("$1") ;;
        esac
        shift
    done
}

# For the NIC scripts: the mode plus --iface, --cpu-list, --housekeeping (into iface,
# cpu_list, housekeeping). Handles --help (the caller's `usage`) and --revert, which needs
# no other argument and exits here.
parse_nic_args() {
    parse_mode "$@"
    set -- "${ARGS[@]+"${ARGS[@]}"}"
    iface="" cpu_list="" housekeeping=""
    while (($#)); do
        case "$1" in
            --iface) iface=$2; shift 2 ;;
            --cpu-list) cpu_list=$2; shift 2 ;;
            --housekeeping) housekeeping=$2; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown argument '$1' (see --help)" ;;
        esac
    done
    if [ "$MODE" = revert ]; then
        revert_all
        exit 0
    fi
    [ -n "$iface" ] || die "--iface is required"
    [ -n "$cpu_list" ] || die "--cpu-list is required (edge-engine's CPUs)"
}

state_file() {
    echo "$STATE_DIR/$SCRIPT_NAME.state"
}

# Records the original value of a path once per apply run (the first value replaced wins).
save_original() { # path value
    local f
    f=$(state_file)
    mkdir -p "$STATE_DIR"
    touch "$f"
    if ! cut -f1 "$f" | grep -qxF -- "$1"; then
        printf '%s\t%s\n' "$1" "$2" >>"$f"
    fi
}

# Reads a setting: whitespace folded to single spaces; for selector files such as THP's
# "always [madvise] never", the bracketed choice.
read_value() { # path
    local v
    v=$(tr -s '[:space:]' ' ' <"$1" | sed 's/^ //; s/ $//')
    if [[ $v =~ \[([^]]+)\] ]]; then
        v=${BASH_REMATCH[1]}
    fi
    echo "$v"
}

# The mode policy every setter shares: reports "ok" when `current` already is `desired`,
# counts a change and reports "would" in a dry run. Succeeds only when the caller should
# apply the change now.
should_apply() { # description current desired [detail]
    if [ "$2" = "$3" ]; then
        echo "ok    $1 = $3"
        return 1
    fi
    CHANGES=$((CHANGES + 1))
    if [ "$MODE" = dry-run ]; then
        echo "would $1: $2 -> $3${4:+ ($4)}"
        return 1
    fi
}

# Sets a sysfs/procfs/config file to a value, honouring the mode.
set_value() { # path value
    local path=$1 value=$2 current
    [ -e "$path" ] || { echo "skip  $path (absent)"; return 0; }
    current=$(read_value "$path")
    should_apply "$path" "$current" "$value" || return 0
    save_original "$path" "$current"
    printf '%s\n' "$value" >"$path"
    echo "set   $path: $current -> $value"
}

# Sets a file of whitespace-separated numbers (tcp_rmem's "min default max", rmem_max) to
# at least `value`, field by field: a host tuned higher already keeps its higher values.
set_at_least() { # path value
    local path=$1 want=$2 i
    local -a have wanted kept=()
    [ -e "$path" ] || { echo "skip  $path (absent)"; return 0; }
    read -ra have <<<"$(read_value "$path")"
    read -ra wanted <<<"$want"
    for i in "${!wanted[@]}"; do
        if [[ ${have[i]:-} =~ ^[0-9]+$ ]] && ((have[i] > wanted[i])); then
            kept+=("${have[i]}")
        else
            kept+=("${wanted[i]}")
        fi
    done
    set_value "$path" "${kept[*]}"
}

# Sets a CPU mask file (xps_cpus, rps_cpus), comparing masks by value: the kernel reads them
# back zero-padded and comma-grouped ("00000004").
set_mask() { # path hex-mask
    local path=$1 want=$2 cur_norm want_norm
    [ -e "$path" ] || { echo "skip  $path (absent)"; return 0; }
    norm() {
        local v=${1//,/}
        while [[ $v == 0* && ${#v} -gt 1 ]]; do v=${v#0}; done
        echo "${v:-0}"
    }
    cur_norm=$(norm "$(read_value "$path")")
    want_norm=$(norm "$want")
    if [ "$cur_norm" = "$want_norm" ]; then
        echo "ok    $path = $want"
        return 0
    fi
    set_value "$path" "$want"
}

# Writes a whole config file (e.g. under /etc), saving the previous content.
set_file() { # path content
    local path=$1 content=$2
    if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
        echo "ok    $path"
        return 0
    fi
    CHANGES=$((CHANGES + 1))
    if [ "$MODE" = dry-run ]; then
        echo "would write $path:"
        printf '      | %s\n' "${content//$'\n'/$'\n'      | }"
        return 0
    fi
    local f
    f=$(state_file)
    mkdir -p "$STATE_DIR" "$(dirname "$path")"
    if [ -f "$path" ]; then
        cp "$path" "$STATE_DIR/$SCRIPT_NAME.$(echo "$path" | tr '/' '_').orig"
        save_original "$path" "@file"
    else
        save_original "$path" "@absent"
    fi
    printf '%s\n' "$content" >"$path"
    echo "wrote $path"
}

# Runs a command that changes a non-file setting (ethtool), recording how to undo it.
set_by_command() { # description current desired revert-command -- apply-command...
    local desc=$1 current=$2 desired=$3 revert=$4
    shift 5
    should_apply "$desc" "$current" "$desired" "$*" || return 0
    save_original "$revert" "@cmd"
    "$@"
    echo "set   $desc: $current -> $desired"
}

# Restores everything the last --apply saved, then forgets it.
revert_all() {
    local f path value
    f=$(state_file)
    if [ ! -f "$f" ]; then
        echo "nothing to revert (no $f)"
        return 0
    fi
    while IFS=$'\t' read -r path value; do
        case "$value" in
            @absent) rm -f "$path"; echo "removed $path" ;;
            @file)
                cp "$STATE_DIR/$SCRIPT_NAME.$(echo "$path" | tr '/' '_').orig" "$path"
                echo "restored $path"
                ;;
            @cmd)
                # The path column holds a command that restores a non-file setting.
                read -ra cmd <<<"$path"
                "${cmd[@]}"
                echo "ran $path"
                ;;
            *)
                printf '%s\n' "$value" >"$path"
                echo "restored $path = $value"
                ;;
        esac
    done <"$f"
    rm -f "$f" "$STATE_DIR/$SCRIPT_NAME".*.orig
}

# Expands a CPU list like "2-9,12" to one CPU per line.
expand_cpu_list() {
    local part lo hi
    IFS=',' read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        [ -n "$part" ] || continue
        if [[ $part == *-* ]]; then
            lo=${part%-*}; hi=${part#*-}
        else
            lo=$part; hi=$part
        fi
        [[ $lo =~ ^[0-9]+$ && $hi =~ ^[0-9]+$ && $lo -le $hi ]] || die "bad CPU list '$1'"
        seq "$lo" "$hi"
    done
}

# The engine's CPUs: LIST expanded, minus the housekeeping CPUs, one per line, in order.
engine_cpus() { # cpu-list [housekeeping-list]
    local c hk=()
    [ -z "${2:-}" ] || mapfile -t hk < <(expand_cpu_list "$2")
    while read -r c; do
        [[ " ${hk[*]-} " == *" $c "* ]] || echo "$c"
    done < <(expand_cpu_list "$1")
}

# Hex CPU mask (comma-grouped per 32 bits, as sysfs writes it) for a list of CPUs.
cpu_mask() {
    local cpus=("$@") words=() cpu w i
    local max=0
    for cpu in "${cpus[@]}"; do ((cpu > max)) && max=$cpu; done
    local nwords=$((max / 32 + 1))
    for ((i = 0; i < nwords; i++)); do words[i]=0; done
    for cpu in "${cpus[@]}"; do
        w=$((cpu / 32))
        words[w]=$((words[w] | (1 << (cpu % 32))))
    done
    local out=""
    for ((i = nwords - 1; i >= 0; i--)); do
        if [ -z "$out" ]; then
            out=$(printf '%x' "${words[i]}")
        else
            out="$out,$(printf '%08x' "${words[i]}")"
        fi
    done
    echo "$out"
}

# The IRQs of an interface's queues, in queue order: "irq<TAB>name" lines. Reads MSI IRQs
# from sysfs and orders them by the queue number in their /proc/interrupts name.
nic_queue_irqs() { # iface
    local iface=$1 irq name path
    local dir="$SYSFS/class/net/$iface/device/msi_irqs"
    [ -d "$dir" ] || die "$iface: no $dir (not a PCI NIC with MSI-X?)"
    for path in "$dir"/*; do
        irq=${path##*/}
        name=$(awk -v irq="$irq:" '$1 == irq { print $NF }' "$PROCFS/interrupts")
        # Queue vectors are named like eth0-TxRx-3 or mlx5_comp3; skip the rest (link, admin).
        if [[ $name =~ ([Tt]x[Rr]x|comp|rx|tx|queue)[-_]?([0-9]+)$ ]]; then
            printf '%s\t%s\t%s\n' "${BASH_REMATCH[2]}" "$irq" "$name"
        fi
    done | sort -n -k1,1 | cut -f2,3
}

finish() {
    case "$MODE" in
        dry-run) echo "dry run: $CHANGES change(s) would be made; rerun with --apply (undo later with --revert)" ;;
        apply) echo "applied $CHANGES change(s); undo with: $0 --revert" ;;
    esac
}
