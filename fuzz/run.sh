#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20), one after another, over its
# committed corpus; exits non-zero at the first crash (the input is left in
# fuzz/artifacts/TARGET/). The mutations follow a fixed seed (FUZZ_SEED, default 1), so a
# CI run explores what the last one did and a crash it reports is one a rerun finds again;
# FUZZ_SEED=0 draws a new seed each run, for exploring. Needs cargo-fuzz; on a stable
# toolchain RUSTC_BOOTSTRAP=1 stands in for nightly. Long runs: `fuzz/run.sh 3600`, or one target with
# `cargo fuzz run TARGET -- -max_total_time=3600` (see docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
seed="${FUZZ_SEED:-1}"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
cargo fuzz build
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    # New inputs go to a scratch directory: the committed corpus stays the minimised one.
    scratch=$(mktemp -d)
    echo "fuzzing $target for ${seconds}s"
    cargo fuzz run "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -seed="$seed" -print_final_stats=1 2>&1 \
        | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|thread .* panicked)' || true
    rm -rf "$scratch"
    if [ -d "artifacts/$target" ] && [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "fuzz target $target crashed; inputs in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
