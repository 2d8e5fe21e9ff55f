#!/usr/bin/env bash
# make bench: builds the benchmark binary and runs every allocator through it.
#   bench/run.sh LIB [--rounds N] [--quick] [--plot FILE.svg] [--doc FILE.md]
# --doc FILE.md: the results replace the current table of FILE.md (bench/current_doc.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lib=$1
shift
out=${BENCH_BUILD:-$here/../build/bench}
mkdir -p "$out"
cc -std=gnu11 -O2 -Wall -Wextra -Werror -pthread "$here/alloc_bench.c" -o "$out/alloc_bench"
# The CCDF plot needs matplotlib (from PyPI when missing; the tables do not).
case " $* " in
*" --plot "*)
    python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib ||
        echo "matplotlib could not be installed: tables only" >&2
    ;;
esac
exec python3 "$here/run.py" "$lib" "$out/alloc_bench" "$@"
