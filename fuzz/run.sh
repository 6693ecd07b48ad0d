#!/usr/bin/env sh
# Runs every fuzz target (or the ones named) for N seconds each, one after the other,
# starting from the checked-in seeds. Usage: fuzz/run.sh [seconds] [target...]
# FUZZ_MAX_LEN (default 4096) caps input size: more executions per second; the
# 16 KiB truncation paths are covered by crates/flm-guard/tests/corpus.rs.
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
seeds="$root/crates/flm-guard/tests/seeds"
own="$root/fuzz/seeds"
targets=${*:-"normalize detectors net policy api_key"}
cd "$root"
for t in $targets; do
    case $t in
        normalize) dirs="$seeds/path $seeds/query $seeds/header" ;;
        detectors) dirs="$seeds/request $seeds/path $seeds/query $seeds/header $seeds/fields" ;;
        net) dirs="$seeds/cidr $seeds/xff" ;;
        policy) dirs="$seeds/policy" ;;
        api_key) dirs="$own/api_key" ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    mkdir -p "$root/fuzz/corpus/$t"
    # The first directory receives new inputs (git-ignored); the seed dirs are read-only.
    # shellcheck disable=SC2086
    cargo +nightly fuzz run -a "$t" "$root/fuzz/corpus/$t" $dirs -- \
        -max_total_time="$secs" -max_len="${FUZZ_MAX_LEN:-4096}" -print_final_stats=1
done
