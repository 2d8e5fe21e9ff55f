#!/usr/bin/env bash
# make demo (interim, until the demo storage daemon lands): shows NORECLAIM
# doing what it promises, in under a minute.
#  1. The proof: a thread under a seccomp filter that kills the process on
#     mmap/munmap/madvise/mprotect/mremap/brk survives 200,000 mixed
#     allocations and frees inside NORECLAIM while other threads churn,
#     and the same workload without the scope is killed.
#  2. The numbers: tail latency of a critical thread with and without the
#     scope, and the fast-path costs, against Debian's jemalloc.
set -u
here=$(cd "$(dirname "$0")" && pwd)
lib=$(realpath "$1")
out=$here/../build/demo
mkdir -p "$out"
cc -std=c11 -O1 -Wall -Wextra -Werror -pthread "$here/../c-tests/seccomp_noreclaim.c" -o "$out/seccomp_noreclaim" || exit 1
cc -std=gnu11 -O2 -Wall -Wextra -Werror -pthread "$here/alloc_bench.c" -o "$out/alloc_bench" || exit 1

echo "== 1. NORECLAIM under a seccomp filter that kills on the mmap family =="
LD_PRELOAD=$lib "$out/seccomp_noreclaim" scoped
echo "   with the scope: exit $? (0 = survived, no reclaim syscall made)"
(LD_PRELOAD=$lib "$out/seccomp_noreclaim" unscoped) 2>/dev/null
rc=$?
echo "   without the scope: exit $rc ($([ $rc = 159 ] && echo 'killed by SIGSYS, as plain jemalloc would be' || echo unexpected))"

echo
echo "== 2. a critical thread's free+malloc+first touch while two threads churn (3 s each) =="
jemalloc=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -n 1)
for conf in "" "dirty_decay_ms:0"; do
    echo "   MALLOC_CONF=${conf:-(default)}${conf:+  (memory returned to the OS at once: purges and refaults)}"
    [ -n "$jemalloc" ] && printf '   %-24s %s\n' "Debian jemalloc:" \
        "$(MALLOC_CONF=$conf LD_PRELOAD=$jemalloc "$out/alloc_bench" latency none 3)"
    printf '   %-24s %s\n' "memscope, no scope:" "$(MALLOC_CONF=$conf LD_PRELOAD=$lib "$out/alloc_bench" latency none 3)"
    printf '   %-24s %s\n' "memscope, NORECLAIM:" \
        "$(MALLOC_CONF=$conf MEMSCOPE_LOG=off LD_PRELOAD=$lib "$out/alloc_bench" latency noreclaim 3)"
done

echo
echo "== 3. fast paths (ns) =="
[ -n "$jemalloc" ] && echo "   Debian jemalloc malloc+free 64 B: $(LD_PRELOAD=$jemalloc "$out/alloc_bench" pair 64 20000000 | cut -d' ' -f2)"
echo "   memscope malloc+free 64 B:        $(LD_PRELOAD=$lib "$out/alloc_bench" pair 64 20000000 | cut -d' ' -f2)"
echo "   memscope in NORECLAIM:            $(LD_PRELOAD=$lib "$out/alloc_bench" scoped-pair 64 20000000 | cut -d' ' -f2)"
echo "   memscope push+pop:                $(LD_PRELOAD=$lib "$out/alloc_bench" pushpop 100000000 | cut -d' ' -f2)"
