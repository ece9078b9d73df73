#!/usr/bin/env bash
# Reserves 2 MB huge pages for edge-engine's segment cache (its --cache-mb, plus one page per
# shard for rounding) and sets transparent huge pages to "madvise", which the engine uses
# when no reserved pages are available.
#
# Usage: hugepages.sh [--cache-mb MIB] [--cores N] [--dry-run|--apply|--revert]
# Changes: /proc/sys/vm/nr_hugepages, /sys/kernel/mm/transparent_hugepage/enabled.
# Undo: hugepages.sh --revert.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

parse_mode "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
cache_mb=1024 cores=$(nproc)
while (($#)); do
    case "$1" in
        --cache-mb) cache_mb=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        -h | --help) usage_from_header; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
[[ $cache_mb =~ ^[0-9]+$ && $cores =~ ^[0-9]+$ ]] || die "--cache-mb and --cores take numbers"
if [ "$MODE" = revert ]; then
    revert_all
    exit 0
fi
pages=$(((cache_mb + 1) / 2 + cores))
set_value "$PROCFS/sys/vm/nr_hugepages" "$pages"
set_value "$SYSFS/kernel/mm/transparent_hugepage/enabled" "madvise"
finish
