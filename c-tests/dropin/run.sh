#!/usr/bin/env bash
# dropin: memscope is a drop-in malloc. What the library needs and exports,
# what an exec under the preload costs, every exported function's edge
# cases, every aligned entry point (C and C++), threads, fork, dlopen,
# dlsym, programs written against jemalloc's API, bad option values,
# secure execution, and real programs (real-programs.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
JEMALLOC_SO=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -n 1)
# Stats segments of these processes go to a scratch directory.
MEMSCOPE_STATS_DIR=$(mktemp -d)
export MEMSCOPE_STATS_DIR
trap 'rm -rf "$MEMSCOPE_STATS_DIR"' EXIT

# ------------------------------------------------------------- the library
if want library; then
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
fi
# A short-lived process never builds jemalloc's mallctl tree (~40 page
# faults per exec); naming background_thread in MALLOC_CONF builds it at load.
if want startup_faults; then
    expect_exit "start-up: no mallctl tree in a short-lived process" 0 -- python3 "$here/startup_faults.py" "$lib"
fi

# --------------------------------------------------------------- malloc
if want exports; then
    build exports $CC $CFLAGS $INC "$here/exports.c" -o "$out/exports" &&
        expect_exit exports 0 "$P" -- "$out/exports"
fi
if want threads; then
    if build threads $CC $CFLAGS $INC -pthread "$here/threads.c" -o "$out/threads"; then
        expect_exit threads 0 "$P" -- "$out/threads"
        # jemalloc starts a background thread from its constructor, under its
        # background_thread_lock, and glibc's pthread_create then calls our calloc:
        # nothing on that path may take that lock again (it deadlocked once).
        expect_exit "threads, background threads from start-up" 0 "$P" MALLOC_CONF=background_thread:true -- "$out/threads"
        # The same turned on by the program while its threads run, with the
        # mallctl tree not built at load (no background_thread in MALLOC_CONF).
        expect_exit "threads, background threads turned on at run time" 0 "$P" -- "$out/threads" background-at-run-time
    fi
fi
if want fork; then
    build fork $CC $CFLAGS $INC -pthread "$here/fork.c" -o "$out/fork" &&
        expect_exit fork 0 "$P" -- "$out/fork"
fi
if want dlopen; then
    build dlopen_lib $CC $CFLAGS $INC -shared -fPIC "$here/dlopen_lib.c" -o "$out/libdlopen_lib.so" &&
        build dlopen $CC $CFLAGS $INC "$here/dlopen.c" -o "$out/dlopen" -ldl &&
        expect_exit dlopen 0 "$P" -- "$out/dlopen" "$out/libdlopen_lib.so"
fi
if want cxx_new; then
    build cxx_new $CXX $CXXFLAGS $INC -pthread "$here/cxx_new.cc" -o "$out/cxx_new" &&
        expect_exit cxx_new 0 "$P" -- "$out/cxx_new"
fi
# Every aligned entry point, alignment 1 B..64 KiB, sizes 0..2x the
# alignment, outside and inside every scope; again with jemalloc purging
# at once on the freeing thread (the adversary the pool must outlast).
if want align_sweep; then
    if build align_sweep $CC $CFLAGS $INC "$here/align_sweep.c" -o "$out/align_sweep" -ldl; then
        expect_exit "align_sweep: every entry point, alignment and scope" 0 "$P" -- "$out/align_sweep"
        expect_exit "align_sweep, dirty_decay_ms:0" 0 "$P" MALLOC_CONF=dirty_decay_ms:0 -- "$out/align_sweep"
        expect_exit "align_sweep: header only, no library" 0 -- "$out/align_sweep"
    fi
fi
if want cxx_align_sweep; then
    build cxx_align_sweep $CXX $CXXFLAGS $INC "$here/cxx_align_sweep.cc" -o "$out/cxx_align_sweep" &&
        expect_exit "cxx_align_sweep: aligned new and delete in every scope" 0 "$P" -- "$out/cxx_align_sweep"
fi
if want dlsym_malloc; then
    build dlsym_malloc $CC $CFLAGS $INC "$here/dlsym_malloc.c" -o "$out/dlsym_malloc" -ldl &&
        expect_exit dlsym_malloc 0 "$P" -- "$out/dlsym_malloc"
fi

# ---------------------------------------------------- jemalloc's own API
if want jemalloc_api jemalloc_threads && [ -z "$JEMALLOC_SO" ]; then
    fail "build jemalloc_api" "no libjemalloc.so.2 to link against (apt-get install libjemalloc2)"
fi
if want jemalloc_api && [ -n "$JEMALLOC_SO" ]; then
    build jemalloc_api $CC $CFLAGS $INC "$here/jemalloc_api.c" -o "$out/jemalloc_api" "$JEMALLOC_SO" &&
        expect_exit jemalloc_api 0 "$P" EXPECT_NARENAS=3 MALLOC_CONF=narenas:3 -- "$out/jemalloc_api"
fi
# The program's threads get jemalloc's arenas in order and a free-only
# thread no tcache, as under plain jemalloc (checked first without us).
if want jemalloc_threads && [ -n "$JEMALLOC_SO" ]; then
    if build jemalloc_threads $CC $CFLAGS $INC -pthread "$here/jemalloc_threads.c" -o "$out/jemalloc_threads" "$JEMALLOC_SO"; then
        expect_exit "jemalloc_threads: plain jemalloc, no library" 0 MALLOC_CONF=narenas:8 -- "$out/jemalloc_threads"
        expect_exit "jemalloc_threads: arenas and tcaches as jemalloc's" 0 "$P" MALLOC_CONF=narenas:8 -- "$out/jemalloc_threads"
    fi
fi

# -------------------------------------------------------- configuration
if want config; then
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
fi

# ----------------------------------------------------------- AT_SECURE
# Secure-execution mode: a set-user-id program owned by another user,
# run as root with hostile MEMSCOPE_* and MALLOC_CONF values.
if want secure_exec; then
    if [ "$(id -u)" = 0 ]; then
        # The library goes beside it under its SONAME (the loader looks for
        # libmemscope.so.0), in a directory the other user can read.
        X=$(mktemp -d)
        chmod 755 "$X"
        install -m 0755 "$lib" "$X/libmemscope.so.0"
        ln -s libmemscope.so.0 "$X/libmemscope.so"
        if $CC $CFLAGS $INC "$here/secure_exec.c" -o "$X/secure_exec" \
            -L"$X" -Wl,--no-as-needed -lmemscope -Wl,-rpath,"$X" 2>"$out/secure.build"; then
            chown 65534:65534 "$X/secure_exec"
            chmod 4755 "$X/secure_exec"
            T=$(mktemp -d)
            chmod 1777 "$T"
            env MEMSCOPE_STATS_DIR="$T" MEMSCOPE_NORECLAIM_POOL=12Q MEMSCOPE_STATS=maybe MALLOC_CONF=no_such_option:1 \
                "$X/secure_exec" "$T" >"$out/secure.out" 2>"$out/secure.err"
            rc=$?
            if [ $rc = 0 ] && [ ! -s "$out/secure.err" ] && [ -z "$(ls -A "$T")" ]; then
                pass "AT_SECURE: MEMSCOPE_* and MALLOC_CONF ignored, stats in the default directory"
            else
                fail "AT_SECURE" "rc=$rc; stderr: $(head -c 500 "$out/secure.err"); in $T: $(ls -A "$T")"
            fi
            # The control: the same program, not set-user-id, obeys them.
            chmod 0755 "$X/secure_exec"
            env MEMSCOPE_STATS_DIR="$T" MALLOC_CONF=no_such_option:1 "$X/secure_exec" "$T" >/dev/null 2>"$out/secure-control.err"
            check "AT_SECURE control: without set-user-id the environment is obeyed" grep -q no_such_option "$out/secure-control.err"
            rm -rf "$T"
        else
            fail "build secure_exec" "$(head -c 1000 "$out/secure.build")"
        fi
        rm -rf "$X"
    else
        skip "AT_SECURE checks" "they need root"
    fi
fi

# ------------------------------------------------------- real programs
if want real_programs python3 git sort xz cxx_compile; then
    run_part "$here/real-programs.sh"
fi
