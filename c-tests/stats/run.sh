#!/usr/bin/env bash
# stats: the stats segment and memscope-stat against real processes under
# the preload. The segment's slots and command line; exact counts read
# live, every thread's life, thread churn and overflow, a reader hammering
# writers, fork, slow events, lock waits; attacks on the segment path,
# dropped privileges, corrupt files, closed pipes; gc, serve, Prometheus
# output checked by promtool and the Grafana dashboard; then heap
# profiles (profile.sh).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

D=$(mktemp -d)
export MEMSCOPE_STATS_DIR=$D
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$D"
}
trap cleanup EXIT

# A foreign file in the stats directory, which nothing may touch (the
# attacks and gc check it).
touch "$D/target"

# ------------------------------------------------------------ the segment
# 200 threads one after another reuse the same stats slots' pages.
if want slot_reuse; then
    build_c slot_reuse -pthread &&
        expect_exit "slot_reuse: thread churn keeps the segment small" 0 "$P" -- "$out/slot_reuse"
fi
if want segment_cmdline; then
    # -rdynamic: its open() must interpose on the library's.
    build segment_cmdline $CC $CFLAGS $INC -rdynamic "$here/segment_cmdline.c" -o "$out/segment_cmdline" &&
        expect_exit "segment_cmdline: the command line from argv, a fork child reads the file" 0 "$P" -- \
            "$out/segment_cmdline" "two words" x
    build early_alloc $CC $CFLAGS $INC -shared -fPIC "$here/early_alloc.c" -o "$out/libearly_alloc.so" &&
        build segment_cmdline_early $CC $CFLAGS $INC -DEARLY -rdynamic "$here/segment_cmdline.c" \
            -o "$out/segment_cmdline_early" -L"$out" -Wl,--no-as-needed -learly_alloc -Wl,-rpath,"$out" &&
        expect_exit "segment_cmdline: a segment made by an earlier constructor gets argv too" 0 "$P" -- \
            "$out/segment_cmdline_early" "two words" x
fi

# ----------------------------------------------- programs counted exactly
if ! build_c stats_workers -pthread; then
    exit 1
fi
W="$out/stats_workers"

# start NAME [VAR=VALUE ...] -- ARGS: runs stats_workers under the preload
# with stdin on a fifo (closing it ends the program); waits for "ready".
start() {
    local name=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    rm -f "$out/$name.fifo"
    mkfifo "$out/$name.fifo"
    env LD_PRELOAD="$lib" "${envs[@]}" "$W" "$@" <"$out/$name.fifo" >"$out/$name.out" 2>"$out/$name.err" &
    pid=$!
    pids+=("$pid")
    exec {fifo_fd}>"$out/$name.fifo"
    for _ in $(seq 600); do
        grep -q ready "$out/$name.out" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "$name: start" "no ready line; stderr: $(head -c 500 "$out/$name.err")"
    return 1
}
finish() { # closes the fifo, waits for the program
    exec {fifo_fd}>&-
    wait "$pid"
}

json() { "$cli" show "$1" --json; }

# --------------------------------------------------------------- call sites
# Three known sites and one long scope (sites.c), read live: `sites` names
# each function, and the exact kinds' counts equal what the program did.
# Built twice: with frame pointers (every call timed), where each site's
# caller is named too, and without (the default sampling), where the call
# site alone is.
if want sites && build_c sites -pthread -fno-omit-frame-pointer &&
    build sites_nofp $CC $CFLAGS $INC "$here/sites.c" -o "$out/sites_nofp" -pthread -fomit-frame-pointer; then
    for sample in 1 default; do
        name="sites (sample $sample)"
        envs=(MEMSCOPE_NOFAIL_DEADLINE_MS=30 MEMSCOPE_NOFAIL_POLICY=null)
        prog=sites_nofp
        [ "$sample" = 1 ] && envs+=(MEMSCOPE_STATS_SAMPLE=1) && prog=sites
        rm -f "$out/sites.fifo"
        mkfifo "$out/sites.fifo"
        env LD_PRELOAD="$lib" "${envs[@]}" "$out/$prog" <"$out/sites.fifo" >"$out/sites.out" 2>"$out/sites.err" &
        spid=$!
        pids+=("$spid")
        exec {sfd}>"$out/sites.fifo"
        for _ in $(seq 600); do
            grep -q ready "$out/sites.out" 2>/dev/null && break
            sleep 0.05
        done
        "$cli" sites "$spid" --json >"$out/sites.json" 2>"$out/sites.cli.err"
        "$cli" sites "$spid" >"$out/sites.txt" 2>>"$out/sites.cli.err"
        exec {sfd}>&-
        wait "$spid"
        check "$name: each site named, exact counts equal the program's" python3 - "$out/sites.json" "$sample" <<'PY'
import json, sys
sites = json.load(open(sys.argv[1]))
exact_plain = sys.argv[2] == "1"
frame_pointers = exact_plain
def caller(site, func):
    # With frame pointers the site's caller is named; without, the walk
    # stops at the call site (never a wrong frame).
    names = [f["function"] for f in site["frames"]]
    if frame_pointers:
        assert len(names) >= 2 and (names[1] or "").endswith(func), (func, site)
    else:
        assert len(names) == 1 or (names[1] or "").endswith(func), (func, site)
def at(kind, func):
    got = [s for s in sites if s["kind"] == kind and s["frames"] and (s["frames"][0]["function"] or "").endswith(func)]
    assert len(got) == 1, (kind, func, len(got), [(s["kind"], s["count"], [f["function"] for f in s["frames"]]) for s in sites])
    return got[0]
r = at("refused", "refused_here")
assert (r["count"], r["bytes"], r["max"]) == (3, 3 * (8 << 20), 8 << 20), r
assert r["frames"][0]["file"].endswith("sites.c") and r["frames"][0]["line"] > 0, r
w = at("nofail_wait", "nofail_here")
assert (w["count"], w["bytes"]) == (2, 2 * 4096), w
p = at("noreclaim_alloc", "plain_here")
if exact_plain:
    # Every call timed, one in 16 on average recorded (random intervals)
    # with weight 16 (stats/sites.rs): an estimate within a few percent.
    assert 0.9 * 200000 <= p["count"] <= 1.1 * 200000 and p["count"] % 16 == 0 and p["bytes"] == p["count"] * 64, p
    # Sites allocating in a fixed turn are each recorded, near their share.
    for i in range(8):
        e = at("noreclaim_alloc", "rr%d" % i)
        assert 2000 // 2 <= e["count"] <= 2000 * 2 and e["bytes"] == e["count"] * 16 * (i + 1), e
else:
    # About 200 timed calls (one in 1,024, and a thread's first ones), one
    # in 16 recorded: about 13 records of weight 16,384.
    assert 200000 // 8 <= p["count"] <= 200000 * 4, p
assert not p["exact"] and r["exact"] and w["exact"]
rr = at("refused", "realloc_here")
assert (rr["count"], rr["bytes"]) == (4, 4 * (8 << 20)), rr
th = at("refused", "thread_here")
assert th["count"] == 64 * 10, th
sc = at("scope", "long_scope_here")
assert sc["count"] == 1 and sc["max"] >= 30_000_000, sc
for func in ("mallocx_here", "rallocx_here"):
    m = at("refused", func)
    assert (m["count"], m["bytes"]) == (2, 2 * (8 << 20)), m
pp = at("policy", "policy_rallocx_here")
assert (pp["count"], pp["bytes"]) == (2, 2 * (8 << 20)), pp
pm = at("policy", "policy_malloc_here")
assert (pm["count"], pm["bytes"]) == (1, 8 << 20), pm
assert not any(s["kind"] == "refused" and "policy_" in (s["frames"][0]["function"] or "") for s in sites), sites
pd = at("policy", "deadline_here")
assert (pd["count"], pd["bytes"]) == (1, 64 << 20), pd
wd = at("nofail_wait", "deadline_here")
assert wd["count"] == 1, wd
assert all(s["kind"] != "policy" or s is pd or s is pp or s is pm for s in sites), sites
for site, func in [(r, "main"), (w, "main"), (p, "main"), (rr, "main"), (th, "refusing_thread"), (sc, "main")]:
    caller(site, func)
assert all(s["kind"] != "refused" or s["frames"][0]["function"].endswith(("refused_here", "realloc_here", "thread_here", "mallocx_here", "rallocx_here"))
           for s in sites), sites
PY
        check "$name: the text names the functions" grep -q "refused_here (sites.c:" "$out/sites.txt"
    done
    # A process that is not ours to read: a clear error, not a panic.
    if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
        check "sites: another user's segment is refused clearly" bash -c \
            "! su nobody -s /bin/sh -c '\"$cli\" sites $$ --dir \"$D\"' 2>\"$out/sites.nobody\" && grep -qi 'memscope-stat:' \"$out/sites.nobody\""
    fi
fi

# The first slot's thread (main) exits with pthread_exit: the call sites
# of exited threads stay (its table once was the retired one).
if want sites_main_exit && build_c sites_main_exit -pthread; then
    expect_exit "sites: the first slot's thread exiting keeps every site" 0 "$P" -- "$out/sites_main_exit"
fi

# Sites recorded on a coroutine's stack and on a signal stack, each with an
# unmapped hole above it and rbp pointing into the hole: the call site is
# recorded, exactly, no caller is read, nothing faults. And rbp pointing at
# a fake frame whose "return address" is a function's start or a heap
# pointer: memscope-stat shows no caller (one site, all the refusals).
if want sites_stacks && build_c sites_stacks; then
    rm -f "$out/sites_stacks.fifo"
    mkfifo "$out/sites_stacks.fifo"
    env LD_PRELOAD="$lib" "$out/sites_stacks" <"$out/sites_stacks.fifo" >"$out/sites_stacks.out" 2>"$out/sites_stacks.err" &
    spid=$!
    pids+=("$spid")
    exec {sfd}>"$out/sites_stacks.fifo"
    for _ in $(seq 600); do
        grep -q ready "$out/sites_stacks.out" 2>/dev/null && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    "$cli" sites "$spid" --json >"$out/sites_stacks.json" 2>"$out/sites_stacks.cli.err"
    exec {sfd}>&-
    wait "$spid"
    rc=$?
    check "sites_stacks: the program survives recording on other stacks" test "$rc" = 0
    check "sites_stacks: the call site alone, with the exact count" python3 - "$out/sites_stacks.json" <<'PY'
import json, sys
sites = [s for s in json.load(open(sys.argv[1])) if s["kind"] == "refused"]
assert len(sites) == 1, sites
s = sites[0]
assert s["count"] == 5 + 7 + 2 * 3 and len(s["frames"]) == 1, s
assert (s["frames"][0]["function"] or "").endswith("call_with_rbp"), s
PY
fi

# -------------------------------------------------------- exact live counts
if want stats_workers live && start live -- live 3 1000 500; then
    json $pid >"$out/live.json"
    check "live: per-thread counts per scope equal what each worker did" python3 - "$out/live.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = {t["name"]: t for t in s["threads"] if t["name"].startswith("worker-")}
assert sorted(w) == ["worker-0", "worker-1", "worker-2"], sorted(w)
for name, t in w.items():
    c = t["calls"]
    got = (c["alloc"]["nofail"], c["free"]["nofail"], c["alloc"]["noreclaim"], c["free"]["noreclaim"])
    assert got == (1000, 1000, 500, 500), (name, got)
assert s["total"]["calls"]["alloc"]["nofail"] == 3000
assert s["live"] and s["schema"] == "memscope-stat/1"
PY
    check "live: show prints the thread table" grep -q worker-2 <("$cli" show $pid)
    check "live: list shows the process" grep -q "$pid" <("$cli" list)
    check "live: watch draws a screen" "$cli" watch $pid --interval 0.2 --count 1
    check "live: check finds no violations" "$cli" check $pid --seconds 0.3
    if command -v promtool >/dev/null; then
        "$cli" show $pid --prometheus >"$out/live.prom"
        check "live: --prometheus passes promtool check metrics" promtool check metrics <"$out/live.prom"
    else
        fail "promtool" "not installed (apt-get install prometheus)"
    fi
    version=$("$cli" --version | awk '{print $2}')
    check "live: build_info names the library's version" \
        grep -q "^memscope_build_info{command=\"stats_workers\",version=\"$version\"} 1$" <("$cli" show $pid --prometheus)
    check "live: --pid-label adds the pid label" \
        grep -q "^memscope_build_info{pid=\"$pid\",command=\"stats_workers\",version=\"$version\"} 1$" <("$cli" show $pid --prometheus --pid-label)
    check "live: resident bytes, in JSON and Prometheus" python3 - "$out/live.json" <(  "$cli" show $pid --prometheus) <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))
assert s["resident_bytes"] > 1 << 20, s["resident_bytes"]
prom = open(sys.argv[2]).read()
m = re.search(r'^memscope_resident_bytes\{[^}]*\} (\d+)$', prom, re.M)
assert m and int(m.group(1)) > 1 << 20, prom[-500:]
PY
    seg=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["segment"])' "$out/live.json")
    check "live: segment mode 0600" test "$(stat -c %a "$seg")" = 600
    finish
    check "live: segment removed at exit" test ! -e "$seg"
fi

# Every call timed: the sampled histograms hold every call.
if want stats_workers sample && start sample1 MEMSCOPE_STATS_SAMPLE=1 -- live 2 300 200; then
    json $pid >"$out/sample1.json"
    check "MEMSCOPE_STATS_SAMPLE=1 times every call" python3 - "$out/sample1.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for t in s["threads"]:
    if t["name"].startswith("worker-"):
        for op in ("alloc", "free"):
            assert t["latency"][op]["nofail"]["samples"] == 300, t["latency"][op]["nofail"]
            assert t["latency"][op]["noreclaim"]["samples"] == 200
            assert t["latency"][op]["noreclaim"]["p99_ns"] is not None
assert s["sample_period"] == 1
PY
    finish
fi

# -------------------------------------------- every thread's life, exactly
# Threads that never call the allocator themselves (glibc frees NULL for
# each as it exits): no slot is taken, none is left behind, none overflows.
if want stats_workers bystanders && start bystanders -- bystanders 600; then
    json $pid >"$out/bystanders.json"
    check "bystanders: 600 threads that never allocate hold no slot" python3 - "$out/bystanders.json" $pid <<'PY'
import json, os, sys
s, pid = json.load(open(sys.argv[1])), sys.argv[2]
dead = [t for t in s["threads"] if not os.path.exists(f"/proc/{pid}/task/{t['tid']}")]
assert not dead, ("slots held by exited threads", [t["tid"] for t in dead])
assert s["threads_live"] == len(s["threads"]) <= 3, s["threads_live"]
assert s["threads_overflowed"] == 0, s["threads_overflowed"]
assert s["threads_seen"] - s["retired"]["threads"] == s["threads_live"], (s["threads_seen"], s["retired"]["threads"])
# Their exit frees are counted all the same (glibc frees NULL for each).
assert s["overflow"]["calls"]["free"]["normal"] >= 600, s["overflow"]["calls"]["free"]
PY
    finish
fi

# Workers that keep their blocks and exit before anyone reads: every call
# is in the retired slot.
if want stats_workers exited && start exited -- exited 10000; then
    json $pid >"$out/exited.json"
    check "exited: two workers' 20,000 calls survive their exit" python3 - "$out/exited.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
r = s["retired"]
assert r["threads"] == 2, r["threads"]
assert r["calls"]["alloc"]["noreclaim"] == 10000, r["calls"]["alloc"]
assert r["calls"]["alloc"]["normal"] >= 10000, r["calls"]["alloc"]
assert r["allocated_bytes"] >= 2 * 10000 * 64, r["allocated_bytes"]
assert s["total"]["calls"]["alloc"]["noreclaim"] == 10000
assert not any(t["name"].startswith("worker-") for t in s["threads"])
PY
    finish
fi

# The shapes of threads users have, none of them touching the API: plain
# C threads that exit within milliseconds (joined, detached), threads
# keeping their blocks (one inside NORECLAIM, its scope found with dlsym),
# a thread whose key destructors (run after memscope's exit hook) allocate
# over two destructor rounds. Every call they made, and glibc's frees on
# their behalf after the last destructor, is in the retired slot: exactly.
if want stats_workers shapes && start shapes -- shapes 10000; then
    sleep 1
    json $pid >"$out/shapes.json"
    check "shapes: every call of short-lived threads is counted, key destructors included" python3 - "$out/shapes.json" "$out/shapes.out" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))
m = re.search(r"expect alloc.normal (\d+) free.normal (\d+) alloc.noreclaim (\d+) threads (\d+) glibc_exit_frees (\d+)",
              open(sys.argv[2]).read())
assert m, "no expect line"
an, fn, ar, threads, glibc = map(int, m.groups())
assert 0 <= glibc <= 8, glibc
r, o = s["retired"], s["overflow"]
got = (r["calls"]["alloc"]["normal"], r["calls"]["free"]["normal"], r["calls"]["alloc"]["noreclaim"], r["threads"])
assert got == (an, fn, ar, threads), ("retired (alloc, free, noreclaim alloc, threads)", got, "expected", (an, fn, ar, threads))
assert all(v == 0 for op in r["calls"].values() for ctx, v in op.items() if ctx == "nofail"), r["calls"]
assert r["calls"]["free"]["noreclaim"] == 0 and r["calls"]["realloc"]["normal"] == 0, r["calls"]
assert all(v == 0 for op in o["calls"].values() for v in op.values()), ("overflow", o["calls"])
assert s["total"]["calls"]["alloc"]["noreclaim"] == ar, s["total"]["calls"]["alloc"]
PY
    finish
fi

# Each thread's bytes are jemalloc's own counters for it, read through
# pointers only the first thread asks jemalloc for (the others derive them
# from their TLS address), a thread that only frees included.
if want stats_workers bytes && start bytes -- bytes 4 500; then
    json $pid >"$out/bytes.json"
    check "bytes: every thread's bytes equal jemalloc's thread.allocated/deallocated" python3 - "$out/bytes.json" "$out/bytes.out" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
want = {}
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) == 3 and f[0].startswith("bytes-"):
        want[f[0]] = (int(f[1]), int(f[2]))
assert len(want) == 5, want
got = {t["name"]: (t["allocated_bytes"], t["freed_bytes"]) for t in s["threads"] if t["name"] in want}
assert got == want, (got, want)
assert want["bytes-freer"][0] < want["bytes-freer"][1], want["bytes-freer"]
assert all(want[f"bytes-{i}"][0] >= (500 + 100 * i) * 64 for i in range(4)), want
PY
    finish
fi

# A live thread that went idle without flushing: its counts are exact
# within the harvest interval (100 ms at most; the check waits 300 ms).
if want stats_workers idle && start idle -- idle 777 500; then
    sleep 0.3
    json $pid >"$out/idle.json"
    check "idle: a live idle thread's counts are exact without a flush" python3 - "$out/idle.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = [t for t in s["threads"] if t["name"] == "worker-idle"]
assert len(w) == 1, [t["name"] for t in s["threads"]]
c = w[0]["calls"]
assert c["alloc"]["noreclaim"] == 500 and c["free"]["noreclaim"] == 500, c
# 777 plain pairs; its first NORECLAIM push's set-up adds a few calls.
# Unharvested, the sampled publishes would show about 511.
assert 777 <= c["alloc"]["normal"] <= 790 and c["free"]["normal"] == 777, c
PY
    finish
fi

# The same with plain calls only: they live in the thread's TLS until the
# maintenance thread reads them there.
if want stats_workers idle && start idle-plain -- idle 777 0; then
    sleep 0.3
    json $pid >"$out/idle-plain.json"
    check "idle: a live idle thread's fast-path counts are exact without a flush" python3 - "$out/idle-plain.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
c = [t for t in s["threads"] if t["name"] == "worker-idle"][0]["calls"]
assert 777 <= c["alloc"]["normal"] <= 790 and c["free"]["normal"] == 777, c
PY
    finish
fi

# A worker alternating NORECLAIM and NOFAIL calls: both contexts timed
# (sampling per context, at random intervals, cannot alias with it).
if want stats_workers alternate && start alternate -- alternate 100000; then
    json $pid >"$out/alternate.json"
    check "alternate: both contexts of a periodic pattern are timed" python3 - "$out/alternate.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = [t for t in s["threads"] if t["name"] == "worker-alt"][0]
for op in ("alloc", "free"):
    for ctx in ("noreclaim", "nofail"):
        assert w["calls"][op][ctx] == 100000, (op, ctx, w["calls"][op][ctx])
        n = w["latency"][op][ctx]["samples"]
        # about 100000 / 1024 = 98 expected; a Poisson count that far off
        # has odds below one in a billion.
        assert 40 <= n <= 200, (op, ctx, n)
PY
    finish
fi

# How long NORECLAIM scopes are held: a thread's first scope, then its
# next one after each harvest (every 40 ms), is timed; nested and
# NOFAIL-only scopes are not scopes of their own.
if want stats_workers held && start held -- held 40 25000; then
    json $pid >"$out/held.json"
    "$cli" show $pid >"$out/held.txt"
    "$cli" show $pid --prometheus >"$out/held.prom"
    check "held: timed NORECLAIM scopes, each about as long as it was held" python3 - "$out/held.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = [t for t in s["threads"] if t["name"] == "worker-held"][0]
h = w["noreclaim_scope"]
n = h["samples"]
# 40 scopes of 25 ms over about a second: the first, then about one per
# 40 ms; never more than there were scopes.
assert 10 <= n <= 40, h
# A percentile is its power-of-two bucket's upper bound, capped by the
# maximum (so below 2x); preemption may stretch a few.
assert 25_000_000 <= h["p50_ns"] <= 2 * 33_554_432, h
assert h["max_ns"] >= 25_000_000 and h["sum_ns"] >= n * 25_000_000, h
assert s["total"]["noreclaim_scope"]["samples"] == n, s["total"]["noreclaim_scope"]
open(sys.argv[1] + ".n", "w").write(str(n))
PY
    check "held: show lists the scoped thread's scope durations" \
        sh -c "grep -q 'NORECLAIM scopes held' '$out/held.txt' && grep 'worker-held' '$out/held.txt' | grep -Eq ' [0-9.]+ms '"
    "$cli" show $pid --plot "$out/held.svg" >/dev/null 2>"$out/held.plot.err"
    check "held: show --plot writes an SVG with call-latency and scope-duration curves" python3 - "$out/held.svg" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
ns = "{http://www.w3.org/2000/svg}"
texts = " ".join("".join(t.itertext()) for t in root.iter(ns + "text"))
assert "allocator call latency" in texts and "NORECLAIM scopes held" in texts, texts[:300]
assert "alloc normal" in texts and "worker-held" in texts, texts[:600]
# Curves (and their legend marks) are drawn 2 wide, axes and grid 1 wide:
# at least a call curve and the scope curve, each with its mark.
curves = [p for p in root.iter(ns + "polyline") if p.get("stroke-width") == "2"]
assert len(curves) >= 4, len(curves)
PY
    check "held: Prometheus has the scope-duration histogram" \
        grep -q "^memscope_noreclaim_scope_duration_seconds_count{command=\"stats_workers\"} $(cat "$out/held.json.n" 2>/dev/null)\$" "$out/held.prom"
    # Gauges: the maintenance thread (started by the scopes) refreshes them
    # about once a second; the first refresh may precede the pool.
    for _ in $(seq 40); do
        json $pid >"$out/gauges.json"
        python3 -c 'import json,sys; g = json.load(open(sys.argv[1]))["gauges"]; sys.exit(not (g and g["pool_carved_bytes"]))' \
            "$out/gauges.json" && break
        sleep 0.1
    done
    "$cli" show $pid --prometheus >"$out/gauges.prom"
    check "gauges: pool and heap gauges published and consistent" python3 - "$out/gauges.json" "$out/gauges.prom" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["gauges"]
assert g is not None, "no gauges"
assert g["pool_reserved_bytes"] >= g["pool_committed_bytes"] >= g["pool_carved_bytes"] > 0, g
assert 0 < g["pool_ready_bytes"] <= g["pool_carved_bytes"], g
# worker-held keeps small pool blocks in its lists after its scopes.
assert 0 < g["pool_thread_held_bytes"], g
assert g["pool_ready_bytes"] + g["pool_thread_held_bytes"] <= g["pool_carved_bytes"], g
assert g["reserve_ready_bytes"] > 0, g
assert 0 < g["heap_allocated_bytes"] <= g["heap_active_bytes"] <= g["heap_mapped_bytes"], g
assert g["heap_resident_bytes"] > 0, g
prom = open(sys.argv[2]).read()
for name, v in g.items():
    assert f'memscope_{name}{{command="stats_workers"}} ' in prom, name
PY
    finish
fi
if want stats_workers held && start held_many -- held 200000 5; then
    json $pid >"$out/held_many.json"
    check "held: timed by time, not by count (200,000 short scopes in about a second)" python3 - "$out/held_many.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = [t for t in s["threads"] if t["name"] == "worker-held"][0]
n = w["noreclaim_scope"]["samples"]
up = s["uptime_s"]
# the first scope, then about one per 40 ms of scoped work.
assert 3 <= n <= 2 + up / 0.04 * 1.5, (n, up)
PY
    finish
fi

# A thread waiting in NOFAIL right now is listed, with its request and
# how long it has waited.
if want stats_workers stall && start stall MEMSCOPE_RESERVE=0 MEMSCOPE_NOFAIL_DEADLINE_MS=4000 -- stall; then
    json $pid >"$out/stall.json"
    "$cli" show $pid >"$out/stall.txt"
    check "stall: show --json lists the thread waiting in NOFAIL" python3 - "$out/stall.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = [t for t in s["threads"] if t["name"] == "worker-stall"][0]
assert w["nofail_wait"] is not None, w
assert w["nofail_wait"]["bytes"] == 12345, w["nofail_wait"]
assert 0.2 <= w["nofail_wait"]["waited_s"] < 4, w["nofail_wait"]
assert all(t["nofail_wait"] is None for t in s["threads"] if t["name"] != "worker-stall")
PY
    check "stall: show lists it in a table" grep -A4 "Waiting in NOFAIL now" "$out/stall.txt"
    finish
    check "stall: the request gave up at its deadline, once" grep -c "MEMSCOPE_NOFAIL_DEADLINE_MS passed" "$out/stall.err"
fi

# ---------------------------------------- thread churn and slot overflow
if want stats_workers churn && start churn -- churn 2000 10 300; then
    json $pid >"$out/churn.json"
    check "churn: 2300 threads, slots plus retired plus overflow equal the calls exactly" python3 - "$out/churn.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for op in ("alloc", "free"):
    assert s["total"]["calls"][op]["nofail"] == 23000, s["total"]["calls"][op]
assert s["retired"]["threads"] >= 2000, s["retired"]["threads"]
assert s["threads_overflowed"] > 0 and s["overflow"]["threads"] > 0, (s["threads_overflowed"], s["overflow"]["threads"])
assert s["threads_seen"] >= 2300
PY
    finish
fi

# -------------------------------------- a reader hammering busy writers
if want stats_workers hammer && start hammer MEMSCOPE_STATS_SAMPLE=1 -- hammer 4; then
    check "hammer: every snapshot consistent while writers run" "$cli" check $pid --seconds 2.5
    finish
fi

# ---------------------------------------------------------------- fork
if want stats_workers fork && start fork MEMSCOPE_STATS_SAMPLE=1 -- fork; then
    child=$(sed -n 's/^child //p' "$out/fork.out")
    json "$child" >"$out/fork-child.json"
    check "fork: the child has its own segment, counting from the fork" python3 - "$out/fork-child.json" "$child" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["pid"] == int(sys.argv[2])
assert s["total"]["calls"]["alloc"]["nofail"] == 7, s["total"]["calls"]["alloc"]
PY
    finish
fi

# ------------------------------------------------ slow events, all timed
if want stats_workers events && start events -- events; then
    json $pid >"$out/events.json"
    check "slow events: reclaimer calls, NOFAIL slow paths, purges and refills are timed and counted" \
        python3 - "$out/events.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t, e = s["slow_events"], s["events"]
for name in ("reclaimer_call", "nofail_slow_path", "purge", "pool_refill"):
    assert t[name]["samples"] >= 1 and t[name]["max_ns"] > 0, (name, t[name])
assert e["reclaimer_calls"] >= 1 and e["nofail_retries"] >= 1 and e["pool_refills"] >= 1, e
assert t["reclaimer_call"]["samples"] == e["reclaimer_calls"], (t["reclaimer_call"], e["reclaimer_calls"])
PY
    finish
fi

# ------------------------------------------------ lock waits
# Four threads fight over one arena with no caches while a fifth does the
# same inside NORECLAIM: jemalloc's mutex waits show up in the segment
# (text, JSON, Prometheus); none of them can be the scoped thread's.
if want stats_workers contend && start contend MALLOC_CONF=narenas:1,tcache:false -- contend 2; then
    json $pid >"$out/contend.json"
    "$cli" show $pid >"$out/contend.txt"
    "$cli" show $pid --prometheus >"$out/contend.prom"
    check "lock waits: ordinary arenas' contended waits are counted" python3 - "$out/contend.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["events"]
assert e["lock_waits_arenas"] > 0, e
PY
    check "lock waits: shown by show" grep -qE "lock_waits_arenas +[0-9,]+" "$out/contend.txt"
    check "blocked: every live thread's voluntary context switches, in JSON and show" python3 - "$out/contend.json" \
        "$out/contend.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["threads"] and all(isinstance(t["voluntary_switches"], int) for t in s["threads"]), s["threads"]
assert "blocked" in open(sys.argv[2]).read()
PY
    check "lock waits: exported to Prometheus" grep -qE 'memscope_events_total\{.*event="lock_waits_arenas"\} [1-9]' \
        "$out/contend.prom"
    finish
fi

# ------------------------------------------------ attacks on the path
# sh's pid is the one the preloaded program gets after exec.
attack() { # NAME PREPARE: runs PREPARE with $1 = the path-to-be, then sleeps preloaded
    sh -c "$2"'; exec env LD_PRELOAD="$2" sleep 3' _ "$D" "$lib" &
    apid=$!
    pids+=("$apid")
    # Until the preloaded program's segment is readable (up to 5 s).
    for _ in $(seq 100); do
        "$cli" show "$apid" >/dev/null 2>&1 && break
        sleep 0.05
    done
}
if want attacks; then
    attack symlink 'ln -s "$1/target" "$1/memscope.$$"'
    check "symlink at the path: not followed, left alone, a fresh name used" sh -c \
        "test -L '$D/memscope.$apid' && test ! -s '$D/target' && test \$(stat -c %a '$D/memscope.$apid.1') = 600 && '$cli' show $apid >/dev/null"
    wait $apid
    rm -f "$D/memscope.$apid"

    attack foreign 'touch "$1/memscope.$$" && chown nobody "$1/memscope.$$"'
    check "another user's file at the path: untouched, a fresh name used" sh -c \
        "test ! -s '$D/memscope.$apid' && test \$(stat -c %U '$D/memscope.$apid') = nobody && '$cli' show $apid >/dev/null"
    wait $apid
    rm -f "$D/memscope.$apid"

    # The holder must have its lock before the program starts: wait for it.
    attack locked 'echo keep >"$1/memscope.$$" && { (flock -s 9; touch "$1/held"; sleep 3) 9<"$1/memscope.$$" & } &&
        while [ ! -e "$1/held" ]; do sleep 0.01; done; rm -f "$1/held"'
    check "a file someone holds at the path: untouched, a fresh name used" sh -c \
        "grep -q keep '$D/memscope.$apid' && test -e '$D/memscope.$apid.1'"
    wait $apid
    sleep 0.5
    rm -f "$D/memscope.$apid"*

    attack stale 'echo junk >"$1/memscope.$$"'
    check "our own stale file at the path: replaced by a fresh segment" "$cli" show $apid
    wait $apid
fi

# ------------------------------------------------------------ privileges
if want privileges; then
    if [ "$(id -u)" = 0 ]; then
        # A daemon that drops root (setuid/setresuid) still removes its
        # segment at a clean exit, in a sticky directory as /dev/shm is.
        S=$(mktemp -d)
        chmod 1777 "$S"
        for call in 'os.setgid(65534); os.setuid(65534)' 'os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)' \
            'os.seteuid(65534)' 'os.setreuid(65534, 65534)'; do
            env LD_PRELOAD="$lib" MEMSCOPE_STATS_DIR="$S" python3 -c "import os; $call; assert os.geteuid() == 65534" 2>"$out/drop.err"
            rc=$?
            if [ $rc = 0 ] && [ -z "$(ls -A "$S")" ]; then
                pass "privilege drop ($call): segment removed at exit"
            else
                fail "privilege drop ($call)" "rc=$rc, left: $(ls -la "$S"); $(head -c 300 "$out/drop.err")"
            fi
            rm -f "$S"/memscope.*
        done
        # A drop that fails leaves the segment with its owner.
        env LD_PRELOAD="$lib" MEMSCOPE_STATS_DIR="$S" python3 -c '
import os, glob
os.setresuid(0, 0, 0)  # allowed: nothing changes
seg = glob.glob(os.environ["MEMSCOPE_STATS_DIR"] + "/memscope.*")[0]
assert os.stat(seg).st_uid == 0, os.stat(seg).st_uid
' 2>"$out/drop.err"
        check "privilege calls that change nothing leave the segment as it was" test $? = 0
        rm -rf "$S"
    else
        skip "privilege drop checks" "they need root"
    fi
fi

# ------------------------------------------------------- corrupt files
# (and a reader that goes away, on copies of the same good segment)
if want stats_workers corrupt; then
    C=$(mktemp -d)
    if start corrupt-src -- live 1 10 10; then
        cp "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["segment"])' < <(json $pid))" "$C/good"
        finish
    fi
    mk() { cp "$C/good" "$C/memscope.$1"; }
    mk 101 && truncate -s 100000 "$C/memscope.101"
    head -c 50000 /dev/urandom >"$C/memscope.102"
    mk 103 && printf '\x07\x00' | dd of="$C/memscope.103" bs=1 seek=12 conv=notrunc status=none
    mk 104 && printf '\x01\x02\x03\x04' | dd of="$C/memscope.104" bs=1 seek=8 conv=notrunc status=none
    : >"$C/memscope.105"
    ln -s "$C/good" "$C/memscope.106"
    mk 107
    chmod 600 "$C/memscope.107"
    chmod 755 "$C"
    expect_code() { # NAME CODE PID [--as-nobody]
        local who=()
        [ "${4:-}" = --as-nobody ] && who=(setpriv --reuid=65534 --regid=65534 --clear-groups)
        "${who[@]}" "$cli" show "$3" --dir "$C" >"$out/code.out" 2>"$out/code.err"
        local got=$?
        if [ $got = "$2" ] && [ -s "$out/code.err" ] && ! grep -q panicked "$out/code.err"; then
            pass "$1 (exit $got: $(head -c 80 "$out/code.err"))"
        else
            fail "$1" "exit $got, wanted $2: $(head -c 300 "$out/code.err")"
        fi
    }
    expect_code "truncated segment" 6 101
    expect_code "random bytes" 4 102
    expect_code "another ABI version" 5 103
    expect_code "the other byte order" 5 104
    expect_code "empty file" 8 105
    expect_code "symlink" 7 106
    expect_code "another user's segment" 7 107 --as-nobody
    expect_code "no segment" 3 108
    check "a stale copy is shown as exited" grep -q "exited" <("$cli" show 107 --dir "$C")

    # A reader that goes away: every verb ends quietly with status 0.
    P2=$(mktemp -d)
    for i in $(seq 200 260); do cp "$C/good" "$P2/memscope.$i"; done
    epipe() { # NAME CMD...: CMD writing into a pipe whose reader is gone exits 0, silent
        local name=$1
        shift
        # The read end is closed before CMD starts: its first write fails with
        # EPIPE every time (a `| head` would race CMD's small output).
        python3 -c '
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
sys.exit(subprocess.run(sys.argv[1:], stdout=w).returncode)' "$@" 2>"$out/epipe.err"
        local rc=$?
        if [ "$rc" = 0 ] && [ ! -s "$out/epipe.err" ]; then
            pass "closed pipe: $name exits 0 quietly"
        else
            fail "closed pipe: $name" "exit $rc: $(head -c 300 "$out/epipe.err")"
        fi
    }
    epipe "gc --dry-run" "$cli" gc --dry-run --dir "$P2"
    epipe "list --all" "$cli" list --all --dir "$P2"
    epipe "show" "$cli" show 200 --dir "$P2"
    epipe "show --json" "$cli" show 200 --json --dir "$P2"
    epipe "show --prometheus" "$cli" show 200 --prometheus --dir "$P2"
    epipe "watch" timeout 20 "$cli" watch 200 --interval 0.05 --count 100 --dir "$P2"
    rm -rf "$P2" "$C"
fi

# ---------------------------------------------------------------------- gc
if want stats_workers gc serve && start gc -- live 1 10 10; then
    live_seg=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["segment"])' < <(json $pid))
    cp "$live_seg" "$D/memscope.999999"
    "$cli" gc >"$out/gc.out" 2>&1
    check "gc: removes a stale segment, keeps the live one and foreign files" sh -c \
        "test ! -e '$D/memscope.999999' && test -e '$live_seg' && test -e '$D/target'"
    # ------------------------------------------------------------- serve
    # Two processes of one command (sleep) beside the live worker; a stale
    # segment for serve's own gc to remove.
    LD_PRELOAD="$lib" sleep 30 &
    s1=$!
    LD_PRELOAD="$lib" sleep 30 &
    s2=$!
    pids+=("$s1" "$s2")
    for _ in $(seq 100); do [ -e "$D/memscope.$s1" ] && [ -e "$D/memscope.$s2" ] && break; sleep 0.05; done
    cp "$live_seg" "$D/memscope.999998"
    port=$((20000 + RANDOM % 20000))
    "$cli" serve --listen 127.0.0.1:$port --gc-every 1 >"$out/serve.out" 2>"$out/serve.err" &
    spid=$!
    pids+=("$spid")
    fetch() { python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read().decode())"; }
    for _ in $(seq 50); do
        fetch >"$out/serve.prom" 2>/dev/null && break
        sleep 0.1
    done
    check "serve: /metrics lists the live process, by command, no pid label" sh -c \
        "grep -q 'command=\"stats_workers\"' '$out/serve.prom' && ! grep -q 'pid=' '$out/serve.prom'"
    check "serve: the processes of one command are added together" \
        grep -q '^memscope_processes{command="sleep"} 2$' "$out/serve.prom"
    sleep 2
    check "serve: removes segments of exited processes on its timer (--gc-every)" test ! -e "$D/memscope.999998"
    # One sleep exits: the command's counters must not go down (Prometheus
    # would read a reset), the process gauge must.
    kill $s1 2>/dev/null
    wait $s1 2>/dev/null
    fetch >"$out/serve2.prom" 2>/dev/null
    sleep_calls() { awk '/^memscope_calls_total\{command="sleep",/ {n += $2} END {print n + 0}' "$1"; }
    c1=$(sleep_calls "$out/serve.prom")
    c2=$(sleep_calls "$out/serve2.prom")
    check "serve: a command's counters keep an exited process's counts ($c1 -> $c2 calls)" \
        sh -c "[ $c1 -gt 0 ] && [ $c2 -ge $c1 ] && grep -q '^memscope_processes{command=\"sleep\"} 1\$' '$out/serve2.prom'"
    check "gauges: a process without the maintenance thread publishes none" \
        sh -c "! grep -q 'memscope_pool_committed_bytes{command=\"sleep\"}' '$out/serve2.prom'"
    kill $s2 2>/dev/null
    wait $s2 2>/dev/null
    if command -v promtool >/dev/null; then
        check "serve: /metrics passes promtool check metrics" promtool check metrics <"$out/serve.prom"
        check "grafana: every dashboard query parses and names series serve exports" \
            python3 "$here/check-dashboard.py" "$root/docs/grafana/memscope-dashboard.json" "$out/serve.prom"
    fi
    check "serve: refuses a non-loopback address" sh -c "! '$cli' serve --listen 0.0.0.0:$port 2>/dev/null"
    kill $spid
    finish
fi

# ---------------------------------------------------------- stats off
if want stats_off; then
    mkdir "$D/off"
    MEMSCOPE_STATS_DIR="$D/off" MEMSCOPE_STATS=off LD_PRELOAD="$lib" sh -c 'ls "$MEMSCOPE_STATS_DIR"' >"$out/off.out"
    check "MEMSCOPE_STATS=off: no segment" test ! -s "$out/off.out"
fi

# ---------------------------------------------------------- heap profiles
if want profile prof_site; then
    run_part "$here/profile.sh"
fi
