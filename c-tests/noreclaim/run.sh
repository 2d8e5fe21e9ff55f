#!/usr/bin/env bash
# noreclaim: MEMSCOPE_NORECLAIM makes no syscall, takes no lock and no page
# fault, and serves what its committed memory allows. The seccomp proofs
# (one thread among purging churn; 1 to 8 threads under a write-only
# filter) with their controls, and the pool behind them: exhaustion and
# refill, growth to its maximum, page classes, sized frees, zeroing, first
# and repeated bursts, memscope_prepare, blocks freed after the exit hook,
# no maintenance thread, fork, signal handlers, 300 threads.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
MEMSCOPE_STATS_DIR=$(mktemp -d)
export MEMSCOPE_STATS_DIR
trap 'rm -rf "$MEMSCOPE_STATS_DIR"' EXIT

# ---------------------------------------------------------------- the pool
if want pool_exhaustion; then
    build_c pool_exhaustion &&
        expect_exit pool_exhaustion 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- "$out/pool_exhaustion"
fi
# Pool blocks freed in key destructors after memscope's exit hook go back
# to the pool (a 2 MiB pool, no reserve, 1 MiB a round, 160 rounds).
if want exit_pool_free; then
    build_c exit_pool_free -pthread &&
        expect_exit "exit_pool_free: blocks freed after the exit hook are not stranded" 0 "$P" \
            MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_RESERVE=0 -- "$out/exit_pool_free" 160
fi
# Frees in scope trust memscope's page-class table for a block's size.
if want pool_classes && build_c pool_classes -pthread; then
    expect_exit "pool_classes: every block in scope holds its request" 0 "$P" -- "$out/pool_classes"
    expect_exit "pool_classes: with a pool that runs dry" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- "$out/pool_classes"
fi

# The pool follows use: a process keeping 1 MiB live gives its idle
# headroom back (and RSS with it), keeps its reserve, grows again on demand.
if want footprint && build_c footprint; then
    expect_exit "footprint: an idle pool gives its headroom back, grows on demand" 0 "$P" -- "$out/footprint"
fi

# After a fork, NORECLAIM writes private pages again: the maintenance
# thread writes the pool's shared copy-on-write pages for the parent.
if want fork_cow && build_c fork_cow; then
    expect_exit "fork_cow: no page fault in NORECLAIM after a fork" 0 "$P" -- "$out/fork_cow"
fi

# No maintenance thread (clone refused): said once, counted, and pushes
# after the first make no syscall (a write-only filter kills on any).
if want no_maintenance_thread && build_c no_maintenance_thread; then
    expect_exit "no maintenance thread: scopes still make no syscall" 0 "$P" -- "$out/no_maintenance_thread"
    if [ "$(grep -c 'could not start the maintenance thread' "$out/no maintenance thread: scopes still make no syscall.err")" = 1 ]; then
        pass "no maintenance thread: said once"
    else
        fail "no maintenance thread: said once" "$(head -c 600 "$out/no maintenance thread: scopes still make no syscall.err")"
    fi
fi

# ------------------------------------------------------------ the proofs
# The NORECLAIM proof, against default and aggressive decay, and the
# control that shows the filter bites without the scope.
if want seccomp_noreclaim && build_c seccomp_noreclaim -pthread; then
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
fi
# The strict proof: 1 to 8 scoped threads at once under a filter that
# allows write and exit_group only (no futex, no mmap, no sched_yield),
# mixed operations with every block's contents checked, handed between
# threads and to an unscoped sink, churn purging on the side; under
# jemalloc's default decay, decay 0 and no background threads.
if want noreclaim_strict && build_c noreclaim_strict -pthread; then
    for conf in "" dirty_decay_ms:0,muzzy_decay_ms:0 background_thread:false; do
        for n in 1 2 4 8; do
            expect_exit "strict NORECLAIM, $n thread(s)${conf:+, $conf}" 0 "$P" ${conf:+MALLOC_CONF=$conf} -- \
                timeout 120 "$out/noreclaim_strict" "$n" scoped
        done
    done
    expect_signal "strict control: no scope dies of SIGSYS" 31 "$P" -- "$out/noreclaim_strict" 2 unscoped
    expect_signal "strict control: plain glibc dies of SIGSYS" 31 -- "$out/noreclaim_strict" 2 unscoped
fi
# 300 scoped threads holding one small block each, two waves: no NULL.
if want noreclaim_many; then
    build_c noreclaim_many -pthread &&
        expect_exit "300 scoped threads on the default pool" 0 "$P" -- timeout 120 "$out/noreclaim_many" 300
fi

# ------------------------------------------------------------------ fork
if want fork_noreclaim; then
    build_c fork_noreclaim -pthread &&
        expect_exit "fork under NORECLAIM load: every child served" 0 "$P" -- timeout 120 "$out/fork_noreclaim"
fi
# fork() while another thread makes the pool (populating 256 MiB holds the
# creation lock long enough to fork inside it): memscope's fork handler must
# run before jemalloc's, or the fork deadlocks. Hangs every time with the
# handlers in the wrong order.
if want fork_during_pool_creation; then
    build_c fork_during_pool_creation -pthread &&
        expect_exit "fork while another thread makes the pool" 0 "$P" MEMSCOPE_NORECLAIM_POOL=256M -- \
            timeout 60 "$out/fork_during_pool_creation"
fi

# -------------------------------------------------- what the pool hands out
# Pool blocks of a larger class than asked, freed outside the scope by a
# sized free (jemalloc would file them in the asked size's bin).
if want sized_pool_free && build_c sized_pool_free -ldl; then
    for how in free_sized sdallocx; do
        expect_exit "sized free of pool blocks outside the scope ($how)" 0 "$P" MEMSCOPE_NORECLAIM_POOL=2M -- \
            "$out/sized_pool_free" $how
    done
fi
# The pool grows under a NORECLAIM working set, on a thread that may make no
# syscall: 40 MiB from a 2 MiB pool, stopping at MEMSCOPE_NORECLAIM_MAX;
# then 1.2 GiB, past what one region used to hold (1 GiB).
if want noreclaim_grow && build_c noreclaim_grow; then
    GROW="MEMSCOPE_RESERVE=0 MEMSCOPE_STATS=off"
    expect_exit "NORECLAIM pool grows to MEMSCOPE_NORECLAIM_MAX and stops" 0 "$P" $GROW MEMSCOPE_NORECLAIM_POOL=2M \
        MEMSCOPE_NORECLAIM_MAX=64M -- timeout 120 "$out/noreclaim_grow" 40 64
    expect_exit "NORECLAIM pool grows past 1 GiB" 0 "$P" $GROW MEMSCOPE_NORECLAIM_POOL=64M MEMSCOPE_NORECLAIM_MAX=1400M -- \
        timeout 120 "$out/noreclaim_grow" 1200 1400
fi
# Zeroed allocations are zero to their usable size in every scope (NORECLAIM
# zeroed only the bytes asked for: 8,584 dirty blocks in this sweep).
if want noreclaim_zero; then
    build_c noreclaim_zero -ldl &&
        expect_exit "zeroed blocks are zero to their usable size" 0 "$P" -- timeout 120 "$out/noreclaim_zero"
fi
# The first time a shape appears, in a fresh process with the default pool:
# served from committed memory the thread carves itself, never refused
# while such memory is free (a burst larger than the default headroom may
# be refused in its first round only, each refusal counted as the pool
# exhausted). Before, 7,321 of 10,000 small blocks were refused.
if want noreclaim_first_burst && build_c noreclaim_first_burst; then
    for burst in "small 10000 2" "small 30000 3" large aligned; do
        expect_exit "NORECLAIM first burst: $burst" 0 "$P" -- timeout 60 "$out/noreclaim_first_burst" $burst
    done
fi
# memscope_prepare stocks a burst larger than the pool's headroom before the
# scope: served in full under a write-only filter; the control is not.
if want prepare && build_c prepare; then
    expect_exit "memscope_prepare: a prepared burst is served in full" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- \
        "$out/prepare" prepared
    expect_exit "memscope_prepare control: unprepared, refused" 0 "$P" MEMSCOPE_NORECLAIM_POOL=4M -- \
        "$out/prepare" unprepared
fi
# Signal handlers that push NORECLAIM and allocate, landing inside the
# thread's own NORECLAIM mallocs and frees (SIGSEGV 3 runs of 3 before).
if want signal_reentry; then
    build_c signal_reentry -pthread &&
        expect_exit "signal handlers allocating inside NORECLAIM calls" 0 "$P" -- timeout 60 "$out/signal_reentry" 3
fi
# Repeated bursts (net demand zero): the stock follows the peak. Before,
# 100 x 128 KiB was refused 60 blocks every time, for as long as it ran.
if want noreclaim_burst && build_c noreclaim_burst; then
    for burst in "100 131072" "34 131072" "100 16384" "300 4096" "400 64"; do
        expect_exit "NORECLAIM bursts of ${burst/ / x } B: served after warm-up" 0 "$P" MEMSCOPE_STATS=off -- \
            timeout 60 "$out/noreclaim_burst" $burst
    done
fi
# A maximum the address space cannot hold: one line, and the largest that fits.
if want noreclaim_max; then
    expect_exit "MEMSCOPE_NORECLAIM_MAX beyond RLIMIT_AS" 0 -- \
        bash -c "ulimit -v 1500000 && exec env LD_PRELOAD='$lib' MEMSCOPE_NORECLAIM_MAX=2G true"
    expect_stderr "MEMSCOPE_NORECLAIM_MAX beyond RLIMIT_AS" \
        '^memscope: MEMSCOPE_NORECLAIM_MAX=2147483648: could not reserve that much address space; the pool may grow to [0-9]+ bytes$'
fi
