#!/usr/bin/env bash
# Builds every C test and runs it under LD_PRELOAD of the library, with the
# expectations each case needs (some must die, some run without the
# library). Prints one line per case and ends with "N passed, N failed";
# exits non-zero on any failure.
#
#   c-tests/run-tests.sh LIB BUILD_DIR
set -u
lib=$(realpath "$1")
out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

CC=${CC:-cc}
CXX=${CXX:-c++}
CFLAGS="-std=c11 -Wall -Wextra -Werror -pedantic -O1 -g"
CXXFLAGS="-std=c++17 -Wall -Wextra -Werror -O1 -g"
JEMALLOC_SO=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -n 1)

passed=0
failed=0
failures=()

pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL  %s: %s\n' "$1" "$2"; }

build() { # name, then the compiler command
    local name=$1
    shift
    if ! "$@" 2>"$out/$name.build.log"; then
        fail "build $name" "$(head -c 2000 "$out/$name.build.log")"
        return 1
    fi
}

# expect_exit NAME CODE [VAR=VALUE ...] -- CMD...: CMD exits with CODE.
expect_exit() {
    local name=$1 want=$2
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" timeout 300 "$@" >"$out/$name.out" 2>"$out/$name.err"
    local got=$?
    if [ "$got" = "$want" ]; then
        pass "$name"
    else
        fail "$name" "exit $got, wanted $want; stderr: $(tail -c 1500 "$out/$name.err")"
    fi
}

# expect_stderr NAME PATTERN: the last case's stderr matches (grep -E).
expect_stderr() {
    if grep -qE "$2" "$out/$1.err"; then pass "$1: diagnostic"; else fail "$1: diagnostic" "no /$2/ in: $(head -c 600 "$out/$1.err")"; fi
}

# expect_signal NAME SIGNUM [VAR=VALUE ...] -- CMD...: CMD dies of SIGNUM.
expect_signal() {
    local name=$1 sig=$2
    shift 2
    expect_exit "$name" $((128 + sig)) "$@"
}

P="LD_PRELOAD=$lib"
# Stats segments of these processes (some die on purpose, leaving theirs
# behind) go to a scratch directory, removed at the end.
MEMSCOPE_STATS_DIR=$(mktemp -d)
export MEMSCOPE_STATS_DIR
trap 'rm -rf "$MEMSCOPE_STATS_DIR"' EXIT

# ---------------------------------------------------------------- builds
build exports $CC $CFLAGS "$here/exports.c" -o "$out/exports"
build threads $CC $CFLAGS -pthread "$here/threads.c" -o "$out/threads"
build slot_reuse $CC $CFLAGS -pthread "$here/slot_reuse.c" -o "$out/slot_reuse"
# -rdynamic: its open() must interpose on the library's.
build segment_cmdline $CC $CFLAGS -rdynamic -I"$here/../ffi-include" "$here/segment_cmdline.c" -o "$out/segment_cmdline"
build early_alloc $CC $CFLAGS -shared -fPIC -I"$here/../ffi-include" "$here/early_alloc.c" -o "$out/libearly_alloc.so"
build segment_cmdline_early $CC $CFLAGS -DEARLY -rdynamic -I"$here/../ffi-include" "$here/segment_cmdline.c" \
    -o "$out/segment_cmdline_early" -L"$out" -Wl,--no-as-needed -learly_alloc -Wl,-rpath,"$out"
build fork $CC $CFLAGS -pthread "$here/fork.c" -o "$out/fork"
build dlopen_lib $CC $CFLAGS -shared -fPIC "$here/dlopen_lib.c" -o "$out/libdlopen_lib.so"
build dlopen $CC $CFLAGS "$here/dlopen.c" -o "$out/dlopen" -ldl
build cxx_new $CXX $CXXFLAGS -pthread "$here/cxx_new.cc" -o "$out/cxx_new"
build align_sweep $CC $CFLAGS -I"$here/../ffi-include" "$here/align_sweep.c" -o "$out/align_sweep" -ldl
build cxx_align_sweep $CXX $CXXFLAGS -I"$here/../ffi-include" "$here/cxx_align_sweep.cc" -o "$out/cxx_align_sweep"
build dlsym_malloc $CC $CFLAGS "$here/dlsym_malloc.c" -o "$out/dlsym_malloc" -ldl
build no_library $CC $CFLAGS "$here/no_library.c" -o "$out/no_library"
build check_routed $CC $CFLAGS -I"$here/../ffi-include" "$here/check_routed.c" -o "$out/check_routed"
build stats_layout $CC $CFLAGS -I"$here/../ffi-include" "$here/stats_layout.c" -o "$out/stats_layout"
build scopes $CC $CFLAGS -pthread "$here/scopes.c" -o "$out/scopes"
build pool_exhaustion $CC $CFLAGS "$here/pool_exhaustion.c" -o "$out/pool_exhaustion"
build exit_pool_free $CC $CFLAGS -pthread "$here/exit_pool_free.c" -o "$out/exit_pool_free"
build no_maintenance_thread $CC $CFLAGS -I"$here/../ffi-include" "$here/no_maintenance_thread.c" -o "$out/no_maintenance_thread"
build seccomp_noreclaim $CC $CFLAGS -pthread "$here/seccomp_noreclaim.c" -o "$out/seccomp_noreclaim"
build noreclaim_many $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/noreclaim_many.c" -o "$out/noreclaim_many"
build noreclaim_grow $CC $CFLAGS -I"$here/../ffi-include" "$here/noreclaim_grow.c" -o "$out/noreclaim_grow"
build noreclaim_burst $CC $CFLAGS -I"$here/../ffi-include" "$here/noreclaim_burst.c" -o "$out/noreclaim_burst"
build sized_pool_free $CC $CFLAGS -I"$here/../ffi-include" "$here/sized_pool_free.c" -o "$out/sized_pool_free" -ldl
build fork_noreclaim $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/fork_noreclaim.c" -o "$out/fork_noreclaim"
build fork_during_pool_creation $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/fork_during_pool_creation.c" \
    -o "$out/fork_during_pool_creation"
build huge_requests $CC $CFLAGS -I"$here/../ffi-include" "$here/huge_requests.c" -o "$out/huge_requests" -ldl
build noreclaim_zero $CC $CFLAGS -I"$here/../ffi-include" "$here/noreclaim_zero.c" -o "$out/noreclaim_zero" -ldl
build reserve_kept $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/reserve_kept.c" -o "$out/reserve_kept"
build signal_reentry $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/signal_reentry.c" -o "$out/signal_reentry"
build prepare $CC $CFLAGS -I"$here/../ffi-include" "$here/prepare.c" -o "$out/prepare"
build noreclaim_first_burst $CC $CFLAGS -I"$here/../ffi-include" -I"$here" "$here/noreclaim_first_burst.c" \
    -o "$out/noreclaim_first_burst"
build noreclaim_strict $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/noreclaim_strict.c" -o "$out/noreclaim_strict"
build nofail $CC $CFLAGS -pthread "$here/nofail.c" -o "$out/nofail"
build pool_classes $CC $CFLAGS -pthread "$here/pool_classes.c" -o "$out/pool_classes"
if [ -n "$JEMALLOC_SO" ]; then
    build jemalloc_api $CC $CFLAGS "$here/jemalloc_api.c" -o "$out/jemalloc_api" "$JEMALLOC_SO"
    build jemalloc_threads $CC $CFLAGS -pthread -I"$here/../ffi-include" "$here/jemalloc_threads.c" \
        -o "$out/jemalloc_threads" "$JEMALLOC_SO"
else
    fail "build jemalloc_api" "no libjemalloc.so.2 to link against (apt-get install libjemalloc2)"
fi

# ------------------------------------------------------ drop-in behaviour
# Start-up: every exec under the preload loads what the library needs;
# the unwinder is linked in (preload/build.rs), so libgcc_s is not loaded.
expect_exit "the library needs no libgcc_s" 0 -- sh -c "readelf -d '$lib' | grep -q NEEDED && ! readelf -d '$lib' | grep -q libgcc_s"
# jemalloc's profiler calls log and exp; they are the libm crate's, bound
# inside the library (preload/build.rs), and not exported.
expect_exit "the library needs no libm and exports no log or exp" 0 -- sh -c "readelf -d '$lib' | grep -q NEEDED && ! readelf -d '$lib' | grep -q 'libm\.so' && ! nm -D --defined-only '$lib' | grep -qwE 'log|exp'"
# The naked malloc and free start on 64-byte boundaries (their `.p2align 6`,
# shim/src/entry/exports.rs); where they land moved the pair by 0.3-0.5 ns.
if [ "$(uname -m)" = x86_64 ]; then
    expect_exit "malloc and free start on 64-byte boundaries" 0 -- sh -c "nm -D --defined-only '$lib' | awk '\$3 == \"malloc\" || \$3 == \"free\" { n++; if (\$1 !~ /[048c]0\$/) bad++ } END { exit !(n == 2 && !bad) }'"
fi
# A short-lived process never builds jemalloc's mallctl tree (~40 page
# faults per exec); naming background_thread in MALLOC_CONF builds it at load.
expect_exit "start-up: no mallctl tree in a short-lived process" 0 -- python3 "$here/startup_faults.py" "$lib"
expect_exit exports 0 "$P" -- "$out/exports"
expect_exit threads 0 "$P" -- "$out/threads"
# jemalloc starts a background thread from its constructor, under its
# background_thread_lock, and glibc's pthread_create then calls our calloc:
# nothing on that path may take that lock again (it deadlocked once).
expect_exit "threads, background threads from start-up" 0 "$P" MALLOC_CONF=background_thread:true -- "$out/threads"
# The same turned on by the program while its threads run, with the
# mallctl tree not built at load (no background_thread in MALLOC_CONF).
expect_exit "threads, background threads turned on at run time" 0 "$P" -- "$out/threads" background-at-run-time
# 200 threads one after another reuse the same stats slots' pages.
expect_exit "slot_reuse: thread churn keeps the segment small" 0 "$P" -- "$out/slot_reuse"
expect_exit "segment_cmdline: the command line from argv, a fork child reads the file" 0 "$P" -- "$out/segment_cmdline" "two words" x
expect_exit "segment_cmdline: a segment made by an earlier constructor gets argv too" 0 "$P" -- "$out/segment_cmdline_early" "two words" x
expect_exit fork 0 "$P" -- "$out/fork"
expect_exit dlopen 0 "$P" -- "$out/dlopen" "$out/libdlopen_lib.so"
expect_exit cxx_new 0 "$P" -- "$out/cxx_new"
# Every aligned entry point, alignment 1 B..64 KiB, sizes 0..2x the
# alignment, outside and inside every scope; again with jemalloc purging
# at once on the freeing thread (the adversary the pool must outlast).
expect_exit "align_sweep: every entry point, alignment and scope" 0 "$P" -- "$out/align_sweep"
expect_exit "align_sweep, dirty_decay_ms:0" 0 "$P" MALLOC_CONF=dirty_decay_ms:0 -- "$out/align_sweep"
expect_exit "align_sweep: header only, no library" 0 -- "$out/align_sweep"
expect_exit "cxx_align_sweep: aligned new and delete in every scope" 0 "$P" -- "$out/cxx_align_sweep"
expect_exit dlsym_malloc 0 "$P" -- "$out/dlsym_malloc"
[ -x "$out/jemalloc_api" ] && expect_exit jemalloc_api 0 "$P" EXPECT_NARENAS=3 MALLOC_CONF=narenas:3 -- "$out/jemalloc_api"
# The program's threads get jemalloc's arenas in order and a free-only
# thread no tcache, as under plain jemalloc (checked first without us).
if [ -x "$out/jemalloc_threads" ]; then
    expect_exit "jemalloc_threads: plain jemalloc, no library" 0 MALLOC_CONF=narenas:8 -- "$out/jemalloc_threads"
    expect_exit "jemalloc_threads: arenas and tcaches as jemalloc's" 0 "$P" MALLOC_CONF=narenas:8 -- "$out/jemalloc_threads"
fi

# -------------------------------------------------------- configuration
env "$P" MEMSCOPE_NORECLAIM_POOL=12Q MEMSCOPE_STATS=maybe /bin/true 2>"$out/badenv.err"
rc=$?
lines=$(wc -l <"$out/badenv.err")
if [ $rc = 0 ] && [ "$lines" = 2 ] && grep -q 'MEMSCOPE_NORECLAIM_POOL=12Q: .*default 32M' "$out/badenv.err" &&
    grep -q 'MEMSCOPE_STATS=maybe: .*default on' "$out/badenv.err"; then
    pass "bad environment values: one line each, program unharmed"
else
    fail "bad environment values" "rc=$rc, stderr: $(cat "$out/badenv.err")"
fi
# Values out of range are clamped, each with one line saying to what and why.
env "$P" MEMSCOPE_NORECLAIM_POOL=1T MEMSCOPE_RESERVE=1T MEMSCOPE_STATS_SAMPLE=99999999999 /bin/true 2>"$out/clamp.err"
rc=$?
if [ $rc = 0 ] && [ "$(wc -l <"$out/clamp.err")" = 3 ] &&
    grep -q 'MEMSCOPE_NORECLAIM_POOL=1T: above the largest value, .*; using 536870912' "$out/clamp.err" &&
    grep -q 'MEMSCOPE_RESERVE=1T: above the largest value, .*; using 268435456' "$out/clamp.err" &&
    grep -q 'MEMSCOPE_STATS_SAMPLE=99999999999: above the largest value, .*; using 4294967295' "$out/clamp.err"; then
    pass "clamped values: one line each, saying to what and why"
else
    fail "clamped values" "rc=$rc, stderr: $(cat "$out/clamp.err")"
fi
env "$P" MEMSCOPE_NORECLAIM_POOL=4K /bin/true 2>"$out/clamp-low.err"
if grep -q 'MEMSCOPE_NORECLAIM_POOL=4K: below the smallest value, .*; using 2097152' "$out/clamp-low.err"; then
    pass "a pool below one chunk: raised, with one line"
else
    fail "pool below one chunk" "stderr: $(cat "$out/clamp-low.err")"
fi
env "$P" MEMSCOPE_LOG=off MEMSCOPE_NORECLAIM_POOL=12Q /bin/true 2>"$out/logoff.err"
if [ $? = 0 ] && [ ! -s "$out/logoff.err" ]; then
    pass "MEMSCOPE_LOG=off silences diagnostics"
else
    fail "MEMSCOPE_LOG=off" "stderr: $(cat "$out/logoff.err")"
fi

# ------------------------------------------------------ README snippets
# Every C snippet in the README, as written: built with the header alone,
# run without the library (scopes are no-ops) and under the preload.
mkdir -p "$out/readme"
python3 - "$here/../README.md" "$out/readme" <<'PY'
import re, sys
blocks = re.findall(r"```c\n(.*?)```", open(sys.argv[1]).read(), re.S)
for i, b in enumerate(blocks):
    open(f"{sys.argv[2]}/snippet{i + 1}.c", "w").write(b)
print(len(blocks), file=open(f"{sys.argv[2]}/count", "w"))
PY
nsnip=$(cat "$out/readme/count")
[ "$nsnip" -ge 3 ] || fail "README snippets" "only $nsnip C snippets found"
for i in $(seq "$nsnip"); do
    src="$out/readme/snippet$i.c"
    if build "readme-snippet$i" $CC $CFLAGS -pthread -I"$here/../ffi-include" "$src" -o "$out/readme/snippet$i"; then
        expect_exit "README C snippet $i, no library" 0 -- "$out/readme/snippet$i"
        expect_exit "README C snippet $i, preloaded" 0 "$P" -- "$out/readme/snippet$i"
    fi
done

# ----------------------------------------------------------------- scopes
expect_exit "no_library: header without the library" 0 -- "$out/no_library" absent
expect_exit "no_library: same binary preloaded" 0 "$P" -- "$out/no_library" present
if grep -q "was built with memscope.h" "$out/no_library: same binary preloaded.err"; then
    fail "no_library: same header and library versions are quiet" "$(cat "$out/no_library: same binary preloaded.err")"
else
    pass "no_library: same header and library versions are quiet"
fi
# The same program built with a header of another version (0.99): one
# line says so, and everything still works.
mkdir -p "$out/otherhdr/ffi-include" "$out/otherhdr/c-tests"
sed 's/^#define MEMSCOPE_VERSION_MINOR .*/#define MEMSCOPE_VERSION_MINOR 99/' "$here/../ffi-include/memscope.h" \
    >"$out/otherhdr/ffi-include/memscope.h"
cp "$here/no_library.c" "$here/check.h" "$out/otherhdr/c-tests/"
build no_library_other_header $CC $CFLAGS "$out/otherhdr/c-tests/no_library.c" -o "$out/no_library_other_header"
expect_exit "header of another version" 0 "$P" -- "$out/no_library_other_header" present
expect_stderr "header of another version" \
    '^memscope: this program was built with memscope.h 0\.99\.[0-9]+ and runs with libmemscope [0-9]+\.[0-9]+\.[0-9]+: what one of them lacks does nothing; rebuild against the installed header$'
if [ "$(grep -c "was built with" "$out/header of another version.err")" = 1 ]; then
    pass "header of another version: said once"
else
    fail "header of another version: said once" "$(cat "$out/header of another version.err")"
fi

# memscope_check_routed: served, bypassed (one line, the event), declined
# in NORECLAIM. The event is read live with memscope-stat's reader through
# the segment (the C layout: memscope_stats.h), while the program waits.
routed_dir=$(mktemp -d)
rm -f "$out/check_routed.fifo" && mkfifo "$out/check_routed.fifo"
env LD_PRELOAD="$lib" MEMSCOPE_STATS_DIR="$routed_dir" "$out/check_routed" <"$out/check_routed.fifo" \
    >"$out/check_routed.out" 2>"$out/check_routed.err" &
routed_pid=$!
exec {routed_fd}>"$out/check_routed.fifo"
for _ in $(seq 200); do grep -q ready "$out/check_routed.out" && break; sleep 0.05; done
seg=$(ls "$routed_dir"/memscope.$routed_pid 2>/dev/null)
# The event's value, found through the C layout (stats_layout prints every
# offset of memscope_stats.h) and the event's place in abi/src/names.rs.
bypassed=$(python3 - "$seg" "$out/stats_layout" "$here/../abi/src/names.rs" <<'PY'
import re, struct, subprocess, sys
seg, layout, names = sys.argv[1:4]
off = dict(l.split() for l in subprocess.run([layout], capture_output=True, text=True).stdout.splitlines())
block = open(names).read().split("pub const EVENTS")[1].split("];")[0]
events = re.findall(r'\(\s*"([a-z_]+)",', block)
d = open(seg, "rb").read(int(off["size.header"]))
n = struct.unpack_from("=I", d, int(off["header.event_count"]))[0]
i = events.index("scopes_bypassed")
assert i < n, (i, n)
print(struct.unpack_from("=Q", d, int(off["header.events"]) + 8 * i)[0])
PY
)
exec {routed_fd}>&-
wait $routed_pid
rc=$?
if [ $rc = 0 ] && [ "$(grep -c "do not go through memscope" "$out/check_routed.err")" = 1 ]; then
    pass "memscope_check_routed: served, bypassed (said once), declined in NORECLAIM"
else
    fail "memscope_check_routed: served, bypassed (said once), declined in NORECLAIM" "exit $rc: $(cat "$out/check_routed.err")"
fi
if [ "$bypassed" = 2 ]; then
    pass "memscope_check_routed: scopes_bypassed counted (twice)"
else
    fail "memscope_check_routed: scopes_bypassed counted (twice)" "got: $bypassed"
fi
rm -rf "$routed_dir"
expect_exit scopes 0 "$P" -- "$out/scopes"
if grep -q 'memscope_pop(0x14) does not match' "$out/scopes.err"; then
    pass "scopes: a mismatched pop is reported"
else
    fail "scopes: a mismatched pop is reported" "stderr: $(cat "$out/scopes.err")"
fi
expect_exit pool_exhaustion 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- "$out/pool_exhaustion"
# Pool blocks freed in key destructors after memscope's exit hook go back
# to the pool (a 2 MiB pool, no reserve, 1 MiB a round, 160 rounds).
expect_exit "exit_pool_free: blocks freed after the exit hook are not stranded" 0 "$P" \
    MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_RESERVE=0 -- "$out/exit_pool_free" 160
# Frees in scope trust memscope's page-class table for a block's size.
expect_exit "pool_classes: every block in scope holds its request" 0 "$P" -- "$out/pool_classes"
expect_exit "pool_classes: with a pool that runs dry" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- "$out/pool_classes"

# No maintenance thread (clone refused): said once, counted, and pushes
# after the first make no syscall (a write-only filter kills on any).
expect_exit "no maintenance thread: scopes still make no syscall" 0 "$P" -- "$out/no_maintenance_thread"
if [ "$(grep -c 'could not start the maintenance thread' "$out/no maintenance thread: scopes still make no syscall.err")" = 1 ]; then
    pass "no maintenance thread: said once"
else
    fail "no maintenance thread: said once" "$(head -c 600 "$out/no maintenance thread: scopes still make no syscall.err")"
fi

# The NORECLAIM proof, against default and aggressive decay, and the
# control that shows the filter bites without the scope.
expect_exit "seccomp NORECLAIM (default decay)" 0 "$P" -- "$out/seccomp_noreclaim" scoped
expect_exit "seccomp NORECLAIM (decay 1 ms)" 0 "$P" MALLOC_CONF=dirty_decay_ms:1,muzzy_decay_ms:1 -- \
    "$out/seccomp_noreclaim" scoped
expect_exit "seccomp NORECLAIM (decay 0, no background threads asked)" 0 "$P" \
    MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0,background_thread:false -- "$out/seccomp_noreclaim" scoped
# Every call timed and published: the stats path makes no syscall and
# takes no page fault on a NORECLAIM thread either.
expect_exit "seccomp NORECLAIM (stats: every call timed)" 0 "$P" MEMSCOPE_STATS_SAMPLE=1 -- "$out/seccomp_noreclaim" scoped
expect_signal "seccomp control: no scope dies of SIGSYS" 31 "$P" -- "$out/seccomp_noreclaim" unscoped
expect_signal "seccomp control: plain glibc dies of SIGSYS" 31 -- "$out/seccomp_noreclaim" unscoped
# The strict proof: 1 to 8 scoped threads at once under a filter that
# allows write and exit_group only (no futex, no mmap, no sched_yield),
# mixed operations with every block's contents checked, handed between
# threads and to an unscoped sink, churn purging on the side; under
# jemalloc's default decay, decay 0 and no background threads.
for conf in "" dirty_decay_ms:0,muzzy_decay_ms:0 background_thread:false; do
    for n in 1 2 4 8; do
        expect_exit "strict NORECLAIM, $n thread(s)${conf:+, $conf}" 0 "$P" ${conf:+MALLOC_CONF=$conf} -- \
            timeout 120 "$out/noreclaim_strict" "$n" scoped
    done
done
expect_signal "strict control: no scope dies of SIGSYS" 31 "$P" -- "$out/noreclaim_strict" 2 unscoped
expect_signal "strict control: plain glibc dies of SIGSYS" 31 -- "$out/noreclaim_strict" 2 unscoped
# 300 scoped threads holding one small block each, two waves: no NULL.
expect_exit "300 scoped threads on the default pool" 0 "$P" -- timeout 120 "$out/noreclaim_many" 300
expect_exit "fork under NORECLAIM load: every child served" 0 "$P" -- timeout 120 "$out/fork_noreclaim"
# fork() while another thread makes the pool (populating 256 MiB holds the
# creation lock long enough to fork inside it): memscope's fork handler must
# run before jemalloc's, or the fork deadlocks. Hangs every time with the
# handlers in the wrong order.
expect_exit "fork while another thread makes the pool" 0 "$P" MEMSCOPE_NORECLAIM_POOL=256M -- \
    timeout 60 "$out/fork_during_pool_creation"
# Pool blocks of a larger class than asked, freed outside the scope by a
# sized free (jemalloc would file them in the asked size's bin).
for how in free_sized sdallocx; do
    expect_exit "sized free of pool blocks outside the scope ($how)" 0 "$P" MEMSCOPE_NORECLAIM_POOL=2M -- \
        "$out/sized_pool_free" $how
done
# The pool grows under a NORECLAIM working set, on a thread that may make no
# syscall: 40 MiB from a 2 MiB pool, stopping at MEMSCOPE_NORECLAIM_MAX;
# then 1.2 GiB, past what one region used to hold (1 GiB).
GROW="MEMSCOPE_RESERVE=0 MEMSCOPE_STATS=off"
expect_exit "NORECLAIM pool grows to MEMSCOPE_NORECLAIM_MAX and stops" 0 "$P" $GROW MEMSCOPE_NORECLAIM_POOL=2M \
    MEMSCOPE_NORECLAIM_MAX=64M -- timeout 120 "$out/noreclaim_grow" 40 64
expect_exit "NORECLAIM pool grows past 1 GiB" 0 "$P" $GROW MEMSCOPE_NORECLAIM_POOL=64M MEMSCOPE_NORECLAIM_MAX=1400M -- \
    timeout 120 "$out/noreclaim_grow" 1200 1400
# Requests no allocator can meet (sizes near SIZE_MAX, alignments to 2^62,
# overflowing products) through every entry point in every scope: refused,
# nothing handed out (NORECLAIM wrapped the size and handed out 114 small
# blocks before); under NOFAIL they follow the policy at once (an
# alignment of 2^62 retried forever; overflows ignored policy=abort).
expect_exit "huge requests: refused everywhere" 0 "$P" -- timeout 120 "$out/huge_requests" sweep
expect_exit "huge requests under NOFAIL abort: each aborts" 0 "$P" MEMSCOPE_NOFAIL_POLICY=abort -- \
    timeout 300 "$out/huge_requests" abort-each
# Zeroed allocations are zero to their usable size in every scope (NORECLAIM
# zeroed only the bytes asked for: 8,584 dirty blocks in this sweep).
expect_exit "zeroed blocks are zero to their usable size" 0 "$P" -- timeout 120 "$out/noreclaim_zero"
# The first time a shape appears, in a fresh process with the default pool:
# served from committed memory the thread carves itself, never refused
# while such memory is free (a burst larger than the default headroom may
# be refused in its first round only, each refusal counted as the pool
# exhausted). Before, 7,321 of 10,000 small blocks were refused.
for burst in "small 10000 2" "small 30000 3" large aligned; do
    expect_exit "NORECLAIM first burst: $burst" 0 "$P" -- timeout 60 "$out/noreclaim_first_burst" $burst
done
# memscope_prepare stocks a burst larger than the pool's headroom before the
# scope: served in full under a write-only filter; the control is not.
expect_exit "memscope_prepare: a prepared burst is served in full" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- \
    "$out/prepare" prepared
expect_exit "memscope_prepare control: unprepared, refused" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- \
    "$out/prepare" unprepared
# The NOFAIL reserve serves NOFAIL requests only: with the pool exhausted, a
# NORECLAIM-only thread beside a NOFAIL one gets nothing (it took 381-2,065
# reserve blocks before).
expect_exit "NOFAIL reserve kept for NOFAIL" 0 "$P" MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_RESERVE=2M \
    MEMSCOPE_NORECLAIM_MAX=64M -- timeout 120 "$out/reserve_kept"
# Signal handlers that push NORECLAIM and allocate, landing inside the
# thread's own NORECLAIM mallocs and frees (SIGSEGV 3 runs of 3 before).
expect_exit "signal handlers allocating inside NORECLAIM calls" 0 "$P" -- timeout 60 "$out/signal_reentry" 3
# Repeated bursts (net demand zero): the stock follows the peak. Before,
# 100 x 128 KiB was refused 60 blocks every time, for as long as it ran.
for burst in "100 131072" "34 131072" "100 16384" "300 4096" "400 64"; do
    expect_exit "NORECLAIM bursts of ${burst/ / x } B: served after warm-up" 0 "$P" MEMSCOPE_STATS=off -- \
        timeout 60 "$out/noreclaim_burst" $burst
done
# A maximum the address space cannot hold: one line, and the largest that fits.
expect_exit "MEMSCOPE_NORECLAIM_MAX beyond RLIMIT_AS" 0 -- \
    bash -c "ulimit -v 1500000 && exec env LD_PRELOAD='$lib' MEMSCOPE_NORECLAIM_MAX=2G true"
expect_stderr "MEMSCOPE_NORECLAIM_MAX beyond RLIMIT_AS" \
    '^memscope: MEMSCOPE_NORECLAIM_MAX=2147483648: could not reserve that much address space; the pool may grow to [0-9]+ bytes$'

# ----------------------------------------------------------------- NOFAIL
# Under RLIMIT_AS jemalloc cannot start more background threads and says
# so on every retry; one background thread keeps its stderr readable.
expect_exit "nofail rlimit" 0 "$P" MALLOC_CONF=max_background_threads:1 -- "$out/nofail" rlimit
# The address space used up before the first scope: the first NOFAIL
# scope is served from the reserve, every request (timeout 60 s: a hang
# fails); again with a reserve four times the default.
expect_exit "nofail rlimit, first scope after exhaustion" 0 "$P" -- timeout 60 "$out/nofail" rlimit-first
expect_stderr "nofail rlimit, first scope after exhaustion" 'first NOFAIL scope: 0/1000 NULL'
expect_exit "nofail rlimit, first scope after exhaustion, 64M reserve" 0 "$P" MEMSCOPE_RESERVE=64M -- \
    timeout 60 "$out/nofail" rlimit-first
expect_stderr "nofail rlimit, first scope after exhaustion, 64M reserve" 'first NOFAIL scope: 0/1000 NULL'
# A request that waits 10 s says so once, with its size, scope and time.
expect_exit "nofail stall" 0 "$P" MEMSCOPE_RESERVE=0 MEMSCOPE_NOFAIL_DEADLINE_MS=10500 -- "$out/nofail" stall
expect_stderr "nofail stall" 'NOFAIL allocation of 12345 bytes stalls for 10[0-9]{3} ms on thread [0-9]+ \(scope flags 0x4\)'
expect_exit "nofail stall NOWARN" 0 "$P" MEMSCOPE_RESERVE=0 MEMSCOPE_NOFAIL_DEADLINE_MS=10500 -- "$out/nofail" stall-nowarn
if grep -q stalls "$out/nofail stall NOWARN.err"; then
    fail "nofail stall NOWARN: silent" "$(head -c 300 "$out/nofail stall NOWARN.err")"
else
    pass "nofail stall NOWARN: silent"
fi
expect_exit "nofail order" 0 "$P" -- "$out/nofail" order
expect_exit "nofail unblock" 0 "$P" -- "$out/nofail" unblock
expect_exit "nofail deadline null" 0 "$P" MEMSCOPE_NOFAIL_DEADLINE_MS=200 -- "$out/nofail" deadline
expect_stderr "nofail deadline null" 'impossible NOFAIL allocation of 67108864 bytes \(MEMSCOPE_NOFAIL_DEADLINE_MS passed\): NULL'
expect_signal "nofail deadline abort" 6 "$P" MEMSCOPE_NOFAIL_DEADLINE_MS=200 MEMSCOPE_NOFAIL_POLICY=abort -- "$out/nofail" deadline
expect_stderr "nofail deadline abort" 'impossible NOFAIL allocation of 67108864 bytes .* on thread [0-9]+, scope flags 0x4; MEMSCOPE_NOFAIL_POLICY=abort'
expect_exit "nofail toolarge null" 0 "$P" MEMSCOPE_NOFAIL_MAX=1G -- "$out/nofail" toolarge
expect_stderr "nofail toolarge null" 'impossible NOFAIL allocation of 2147483648 bytes \(larger than MEMSCOPE_NOFAIL_MAX\)'
expect_exit "nofail toolarge NOWARN" 0 "$P" MEMSCOPE_NOFAIL_MAX=1G -- "$out/nofail" toolarge-nowarn
if [ -s "$out/nofail toolarge NOWARN.err" ]; then
    fail "nofail toolarge NOWARN: silent" "$(head -c 300 "$out/nofail toolarge NOWARN.err")"
else
    pass "nofail toolarge NOWARN: silent"
fi
expect_signal "nofail toolarge abort" 6 "$P" MEMSCOPE_NOFAIL_MAX=1G MEMSCOPE_NOFAIL_POLICY=abort -- "$out/nofail" toolarge
expect_exit "nofail soft limit: the maintenance thread reclaims" 0 "$P" MEMSCOPE_SOFT_LIMIT=96M -- "$out/nofail" softlimit
expect_exit "nofail inside NORECLAIM under seccomp" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M MEMSCOPE_RESERVE=4M -- \
    "$out/nofail" noreclaim

echo
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
