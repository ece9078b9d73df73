#!/usr/bin/env bash
# Per-process limits for edge-engine: open files for 100k+ connections, and locked memory
# for the io_uring rings of every shard (entries x (64 B SQE + 2 x 16 B CQE + 4 B index) per
# shard, doubled for headroom).
#
# Usage: limits.sh [--unit NAME | --user NAME] [--cores N] [--uring-entries N] [--nofile N]
#                  [--dry-run|--apply|--revert]
#   --unit NAME  (default: edge-engine) the systemd unit, as deploy/systemd ships it: it runs
#                as a DynamicUser, so PAM's limits.d never applies to it. Its LimitNOFILE= and
#                LimitMEMLOCK= (unit file and drop-ins) are checked; when they fall short, a
#                drop-in NAME.service.d/limits.conf raises them (then: systemctl daemon-reload).
#   --user NAME  an engine started from a login session as NAME: limits.d/edge-engine.conf.
# Changes: one of the two files above. Undo: limits.sh --revert.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

parse_mode "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
user="" unit=edge-engine cores=$(nproc) entries=4096 nofile=1048576
while (($#)); do
    case "$1" in
        --user) user=$2; shift 2 ;;
        --unit) unit=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --uring-entries) entries=$2; shift 2 ;;
        --nofile) nofile=$2; shift 2 ;;
        -h | --help) usage_from_header; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
for v in "$cores" "$entries" "$nofile"; do [[ $v =~ ^[0-9]+$ ]] || die "numbers expected, got '$v'"; done
if [ "$MODE" = revert ]; then
    revert_all
    exit 0
fi
memlock_kb=$((cores * entries * (64 + 32 + 4) * 2 / 1024))

if [ -n "$user" ]; then
    set_file "$ETC/security/limits.d/edge-engine.conf" "# Managed by edge-engine tuning/limits.sh; --revert restores the previous state.
$user soft nofile $nofile
$user hard nofile $nofile
$user soft memlock $memlock_kb
$user hard memlock $memlock_kb"
    finish
    exit 0
fi

dir=$ETC/systemd/system
unit_file=$dir/$unit.service
dropin=$dir/$unit.service.d/limits.conf
if [ ! -f "$unit_file" ]; then
    echo "skip  $unit_file (not installed; give --user NAME for an engine run outside systemd)"
    finish
    exit 0
fi
# The unit's effective value of KEY: the last setting in the unit file and its drop-ins.
effective() { # key
    {
        cat "$unit_file"
        cat "$dir/$unit.service.d/"*.conf 2>/dev/null || true
    } | sed -n "s/^[[:space:]]*$1=[[:space:]]*//p" | tail -n 1
}
# Whether a systemd limit value is at least `want` (in its unit: plain numbers or infinity).
enough() { # value want
    [ "$1" = infinity ] || { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2)); }
}
cur_nofile=$(effective LimitNOFILE) cur_memlock=$(effective LimitMEMLOCK)
want_memlock=$((memlock_kb * 1024))
if enough "${cur_nofile:-0}" "$nofile" && enough "${cur_memlock:-0}" "$want_memlock"; then
    echo "ok    $unit_file: LimitNOFILE=$cur_nofile LimitMEMLOCK=$cur_memlock"
else
    set_file "$dropin" "# Managed by edge-engine tuning/limits.sh; --revert restores the previous state.
[Service]
LimitNOFILE=$nofile
LimitMEMLOCK=$want_memlock"
    [ "$MODE" = dry-run ] || echo "then: systemctl daemon-reload && systemctl restart $unit"
fi
finish
