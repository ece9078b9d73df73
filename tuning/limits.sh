#!/usr/bin/env bash
# Per-process limits for the user edge-engine runs as: open files for 100k+ connections,
# and locked memory for the io_uring rings of every shard (entries x (64 B SQE + 2 x 16 B CQE
# + 4 B index) per shard, doubled for headroom).
#
# Usage: limits.sh [--user NAME] [--cores N] [--uring-entries N] [--nofile N] [--dry-run|--apply|--revert]
# Changes: /etc/security/limits.d/edge-engine.conf (PAM sessions). Under systemd, set
# LimitNOFILE= and LimitMEMLOCK= in the unit as printed. Undo: limits.sh --revert.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

parse_mode "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
user=edge cores=$(nproc) entries=4096 nofile=1048576
while (($#)); do
    case "$1" in
        --user) user=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --uring-entries) entries=$2; shift 2 ;;
        --nofile) nofile=$2; shift 2 ;;
        -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
for v in "$cores" "$entries" "$nofile"; do [[ $v =~ ^[0-9]+$ ]] || die "numbers expected, got '$v'"; done
if [ "$MODE" = revert ]; then
    revert_all
    exit 0
fi
memlock_kb=$((cores * entries * (64 + 32 + 4) * 2 / 1024))
set_file "$ETC/security/limits.d/edge-engine.conf" "# Managed by edge-engine tuning/limits.sh; --revert restores the previous state.
$user soft nofile $nofile
$user hard nofile $nofile
$user soft memlock $memlock_kb
$user hard memlock $memlock_kb"
echo "systemd units: LimitNOFILE=$nofile LimitMEMLOCK=$((memlock_kb * 1024))"
finish
