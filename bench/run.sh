#!/usr/bin/env bash
# make bench: builds the benchmark binary and runs every allocator through it.
#   bench/run.sh LIB [--rounds N] [--quick]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lib=$1
shift
out=${BENCH_BUILD:-$here/../build/bench}
mkdir -p "$out"
cc -std=gnu11 -O2 -Wall -Wextra -Werror -pthread "$here/alloc_bench.c" -o "$out/alloc_bench"
exec python3 "$here/run.py" "$lib" "$out/alloc_bench" "$@"
