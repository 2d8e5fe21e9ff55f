#!/usr/bin/env bash
# locks: libmemscope_locks.so, which holds a program's pthread lock
# sections in the scope MEMSCOPE_LOCK_SCOPE names and counts what they
# allocate. Exact counts under every lock kind and mode (threads that exit
# at once, a key destructor, condition waits with a handler run during the
# wait, memscope's own locks left out, explicit scopes composed); the
# strict seccomp proof for allocations in lock sections, with its control;
# a program that dies on a refused request under a lock, read afterwards;
# and an unmodified RocksDB db_bench (db_bench.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
D=$(mktemp -d)
export MEMSCOPE_STATS_DIR=$D
trap 'rm -rf "$D"' EXIT

locks_lib=$(dirname "$lib")/libmemscope_locks.so
if [ ! -f "$locks_lib" ]; then
    fail "locks library" "no $locks_lib (make builds it beside $lib)"
    exit 1
fi
# Both libraries, memscope's first: expect_exit NAME STATUS "$PL" VAR=... -- CMD.
PL="LD_PRELOAD=$lib:$locks_lib"

if want locks && build_c locks -pthread; then
    for mode in report noreclaim noreclaim,nofail; do
        expect_exit "locks ($mode): exact counts, scopes inside sections only" 0 "$PL" \
            MEMSCOPE_LOCK_SCOPE=$mode -- "$out/locks" $mode
    done
    # Every count comes from the locks library: without it nothing is
    # counted, and the same program fails (the test can fail).
    check "locks: without libmemscope_locks.so the counts are missing" \
        bash -c '! env "$1" "$2" report' _ "$P" "$out/locks"
    # Read live: `locks --json`, `show --json` and Prometheus say what the
    # program counted itself.
    rm -f "$out/locks.fifo"
    mkfifo "$out/locks.fifo"
    env "$PL" MEMSCOPE_LOCK_SCOPE=noreclaim "$out/locks" noreclaim hold <"$out/locks.fifo" >"$out/locks.live" \
        2>"$out/locks.live.err" &
    lpid=$!
    exec {lfd}>"$out/locks.fifo"
    for _ in $(seq 200); do grep -q ready "$out/locks.live" 2>/dev/null && break; sleep 0.05; done
    "$cli" locks "$lpid" --json >"$out/locks.json" 2>"$out/locks.cli.err"
    "$cli" locks "$lpid" >"$out/locks.txt" 2>>"$out/locks.cli.err"
    "$cli" show "$lpid" --prometheus >"$out/locks.prom" 2>>"$out/locks.cli.err"
    "$cli" show "$lpid" >"$out/locks.show" 2>>"$out/locks.cli.err"
    exec {lfd}>&-
    wait "$lpid"
    check "locks: read live, memscope-stat says what the program counted" python3 - "$out/locks.live" \
        "$out/locks.json" "$out/locks.prom" "$out/locks.txt" "$out/locks.show" <<'PY'
import json, re, sys
live = open(sys.argv[1]).read().split()
want = dict(zip(live[0:8:2], map(int, live[1:8:2])))
j = json.load(open(sys.argv[2]))
t = j["total"]
assert j["lock_scope"] == "noreclaim" and j["live"], j
assert (t["sections"], t["allocs"], t["frees"], t["alloc_bytes"]) == (want["sections"], want["allocs"], want["frees"], want["bytes"]), (t, want)
assert sum(b["count"] for b in t["sizes"]) == t["allocs"], t
assert any(s["frames"][0]["function"] == "take" for s in j["sites"]), j["sites"]
assert j["threads"] and all(t["name"] == "locks" for t in j["threads"]), j["threads"]
assert any((s["frames"][0]["function"] or "").startswith(("mutexes", "waiter", "plain_thread", "destructor", "keyed_thread", "rwlocks", "cond_wait", "composition")) for s in j["lock_calls"]), j["lock_calls"]
prom = open(sys.argv[3]).read()
for name, key in [("memscope_lock_sections_total", "sections"), ("memscope_lock_allocs_total", "allocs"), ("memscope_lock_alloc_bytes_total", "bytes")]:
    m = re.search(r"^%s\{command=\"locks\"\} (\d+)$" % name, prom, re.M)
    assert m and int(m.group(1)) == want[key], (name, m and m.group(0), want)
txt = open(sys.argv[4]).read()
assert "lock scope: noreclaim" in txt and "take (locks.c:" in txt, txt
assert "lock sections (noreclaim)" in open(sys.argv[5]).read()
PY
    # The locks library without memscope passes every call through: the
    # program runs (its counts are missing: a failure count, not a crash).
    check "locks: libmemscope_locks.so alone passes every lock through" \
        bash -c 'env LD_PRELOAD="$1" "$2" report; rc=$?; [ $rc -ge 1 ] && [ $rc -le 125 ]' _ "$locks_lib" "$out/locks"
fi

# A lock of the program's own, told with memscope_lock_acquired/released
# (no locks library); without memscope both do nothing.
if want locks_api && build_c locks_api; then
    expect_exit "locks_api: a program's own lock told to memscope" 0 "$P" MEMSCOPE_LOCK_SCOPE=noreclaim -- \
        "$out/locks_api" noreclaim
    expect_exit "locks_api: without the library, nothing" 0 -- "$out/locks_api" absent
fi

# The strict proof: no syscall at all (write and exit_group only) for
# 100,000 lock sections allocating 16 B to 256 KiB, every request served;
# the same thread in report mode dies of SIGSYS.
if want locks_strict && build_c locks_strict -pthread; then
    expect_exit "locks_strict: lock sections under noreclaim make no syscall, every request served" 0 "$PL" \
        MEMSCOPE_LOCK_SCOPE=noreclaim -- "$out/locks_strict"
    expect_exit "locks_strict: the same under noreclaim,nofail" 0 "$PL" \
        MEMSCOPE_LOCK_SCOPE=noreclaim,nofail -- "$out/locks_strict"
    expect_signal "locks_strict control: report mode dies of SIGSYS" 31 "$PL" \
        MEMSCOPE_LOCK_SCOPE=report -- "$out/locks_strict"
fi

# A signal handler taking a spinlock every 50 us, wherever it lands in the
# interrupted thread's own lock calls, holds it inside the section's scope;
# in report mode (sections begun and ended by the locks library itself),
# what it allocates there is counted, exactly.
if want locks_signal && build_c locks_signal -pthread; then
    expect_exit "locks_signal: a handler's lock is always in the scope" 0 "$PL" MEMSCOPE_LOCK_SCOPE=noreclaim -- \
        "$out/locks_signal" noreclaim
    expect_exit "locks_signal: a handler's allocations under its lock are counted (report)" 0 "$PL" \
        MEMSCOPE_LOCK_SCOPE=report -- "$out/locks_signal" report
fi

# A handler's lock while its thread's first section makes the pool: no
# hang (a handler once waited for its own thread, for good).
if want locks_first_signal && build_c locks_first_signal -pthread; then
    expect_exit "locks_first_signal: a handler's lock during the first section's set-up does not hang" 0 "$PL" \
        MEMSCOPE_LOCK_SCOPE=noreclaim -- timeout 60 "$out/locks_first_signal"
fi

# A thread blocked in an interposed lock call unwinds through the entry
# stub to its callers (backtrace from a handler on the blocked thread).
if want locks_unwind && build_c locks_unwind -pthread -rdynamic; then
    expect_exit "locks_unwind: a thread blocked in a lock call unwinds to its callers" 0 "$PL" -- \
        "$out/locks_unwind"
    expect_exit "locks_unwind: the same with the locks library alone" 0 "LD_PRELOAD=$locks_lib" -- \
        "$out/locks_unwind"
fi

# A process that dies (abort) on an 8 MiB request refused under a lock:
# its segment, left behind, names the refusal and its size (its site as an
# address: the process's maps are gone), and `run --report` names the
# site's function too.
if want locks_refused && build_c locks_refused -pthread; then
    rm -f "$out/refused.json"
    "$cli" run --locks noreclaim --report "$out/refused.json" "$out/locks_refused" 2>"$out/refused.err"
    rc=$?
    if [ $rc = 134 ]; then pass "locks_refused: dies of SIGABRT"; else fail "locks_refused: dies of SIGABRT" "exit $rc"; fi
    check "locks_refused: run --report names the refusal, its size and its function" python3 - "$out/refused.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["locks"]["total"]
assert t["refused"] == 1 and t["refused_last_bytes"] == 8 << 20, t
s = r["locks"]["refused_sites"]
assert len(s) == 1 and s[0]["count"] == 1 and s[0]["max"] == 8 << 20, s
assert s[0]["frames"][0]["function"].endswith("refused_under_lock"), s
assert [t["name"] for t in r["locks"]["threads"]] == ["locks_refused"], r["locks"]["threads"]
taken = r["locks"]["lock_calls"]
assert len(taken) == 1 and taken[0]["frames"][0]["function"] == "main", taken
PY
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$out/refused.json" 2>/dev/null)
    check "locks_refused: the dead process's segment still names the refusal and its site" bash -c '
        "$1" locks "$2" --json >"$3" 2>/dev/null && python3 - "$3" <<"PY"
import json, sys
r = json.load(open(sys.argv[1]))
assert not r["live"] and r["total"]["refused"] == 1 and r["total"]["refused_last_bytes"] == 8 << 20, r["total"]
s = r["refused_sites"]
assert len(s) == 1 and s[0]["max"] == 8 << 20 and s[0]["frames"][0]["address"].startswith("0x"), s
PY' _ "$cli" "${pid:-0}" "$out/refused.locks.json"
fi

if want db_bench; then
    run_part "$here/db_bench.sh"
fi
