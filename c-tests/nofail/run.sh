#!/usr/bin/env bash
# nofail: MEMSCOPE_NOFAIL never returns NULL for a possible request:
# reclaimers (order, NOFS/NOIO, never under NORECLAIM), the reserve (kept
# for NOFAIL, the first scope after the address space ran out), waiting
# and its diagnostic, the deadline, MEMSCOPE_NOFAIL_MAX and the policy
# (null, abort), requests no allocator can meet, the soft limit; then
# limits and memory pressure in real cgroups (cgroup.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
MEMSCOPE_STATS_DIR=$(mktemp -d)
export MEMSCOPE_STATS_DIR
trap 'rm -rf "$MEMSCOPE_STATS_DIR"' EXIT

# Requests no allocator can meet (sizes near SIZE_MAX, alignments to 2^62,
# overflowing products) through every entry point in every scope: refused,
# nothing handed out (NORECLAIM wrapped the size and handed out 114 small
# blocks before); under NOFAIL they follow the policy at once (an
# alignment of 2^62 retried forever; overflows ignored policy=abort).
if want huge_requests && build_c huge_requests -ldl; then
    expect_exit "huge requests: refused everywhere" 0 "$P" -- timeout 120 "$out/huge_requests" sweep
    expect_exit "huge requests under NOFAIL abort: each aborts" 0 "$P" MEMSCOPE_NOFAIL_POLICY=abort -- \
        timeout 300 "$out/huge_requests" abort-each
fi
# The NOFAIL reserve serves NOFAIL requests only: with the pool exhausted, a
# NORECLAIM-only thread beside a NOFAIL one gets nothing (it took 381-2,065
# reserve blocks before).
# Inside NORECLAIM|NOFAIL the reserve serves any size it has room for, not
# only its stacks' (a 2 MiB pool, bursts of 6.4, 6.25 and 8 MiB), and is
# committed back for the next burst.
if want reserve_carve && build_c reserve_carve; then
    for shape in "334762 20" "65536 100" "1048576 8"; do
        expect_exit "reserve_carve: NORECLAIM|NOFAIL bursts of ${shape% *} B served from the reserve" 0 "$P" \
            MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_LOG=off -- "$out/reserve_carve" $shape
    done
fi
if want reserve_kept; then
    build_c reserve_kept -pthread &&
        expect_exit "NOFAIL reserve kept for NOFAIL" 0 "$P" MEMSCOPE_NORECLAIM_POOL=2M MEMSCOPE_RESERVE=2M \
            MEMSCOPE_NORECLAIM_MAX=64M -- timeout 120 "$out/reserve_kept"
fi

# ------------------------------------------------------ nofail, case by case
if want nofail && build_c nofail -pthread; then
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
    expect_exit "nofail resize retry" 0 "$P" -- "$out/nofail" resize-retry
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
fi

# ---------------------------------------------- limits and pressure, cgroups
if want cgroup; then
    run_part "$here/cgroup.sh"
fi
