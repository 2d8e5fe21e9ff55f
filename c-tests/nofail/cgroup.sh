#!/usr/bin/env bash
# nofail, in real cgroups (run by run.sh): memory limits and memory
# pressure in cgroups made for the test under the test's own: a
# percentage soft limit follows the cgroup's limit (and a change of it
# while the process runs), and memory pressure the kernel reports (a PSI
# trigger on the cgroup's memory.pressure; a rise of memory.events' high
# where cgroup v2 has the memory controller) makes the maintenance thread
# run the process's reclaimer. Each part that the machine cannot host
# (not root, no writable cgroup, no PSI, no stall could be made) says so
# on a "skip" line.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" cgroup

D=$(mktemp -d)
export MEMSCOPE_STATS_DIR=$D
made=()  # cgroup directories to remove, innermost last
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    for ((i = ${#made[@]} - 1; i >= 0; i--)); do
        # A cgroup can be removed once its last process is gone.
        for _ in $(seq 50); do rmdir "${made[$i]}" 2>/dev/null && break; sleep 0.1; done
    done
    rm -rf "$D" "$out/thrash.dat"
}
trap cleanup EXIT

finish_report() { exit 0; }  # pass, fail and skip record each check

for src in "$root/c-tests/stats/stats_workers.c" "$here/pressure_reclaimer.c"; do
    prog=$(basename "$src" .c)
    if ! $CC $CFLAGS -pthread $INC "$src" -o "$out/$prog" 2>"$out/build.log"; then
        fail "build $prog" "$(head -c 2000 "$out/build.log")"
        finish_report
    fi
done

if [ "$(id -u)" != 0 ]; then
    skip "cgroups" "not root: cannot make cgroups here"
    finish_report
fi

# The hierarchies and this process's place in them.
v2_mount=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } } }' /proc/self/mountinfo)
v1_mount=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)memory(,|$)/) { print $5; exit } } }' /proc/self/mountinfo)
v2_own=$(awk -F: '$1 == "0" && $2 == "" { print $3 }' /proc/self/cgroup)
v1_own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
v2_dir=${v2_mount:+$v2_mount${v2_own%/}}
v1_dir=${v1_mount:+$v1_mount${v1_own%/}}
name=memscope-test.$$

# mkcg PARENT: makes a child cgroup for this run in $cg (not in a
# subshell: it is remembered for cleanup).
mkcg() {
    cg="$1/$name"
    mkdir "$cg" 2>/dev/null || return 1
    made+=("$cg")
}

# Where a memory limit can be set: cgroup v2 with the memory controller
# (enabled for children of this cgroup), else the v1 memory controller.
limit_dir="" limit_file="" high_ok=0
if [ -n "$v2_dir" ] && grep -qw memory "$v2_dir/cgroup.controllers" 2>/dev/null; then
    grep -qw memory "$v2_dir/cgroup.subtree_control" 2>/dev/null || echo +memory >"$v2_dir/cgroup.subtree_control" 2>/dev/null
    if grep -qw memory "$v2_dir/cgroup.subtree_control" 2>/dev/null && mkcg "$v2_dir"; then
        limit_dir=$cg limit_file=memory.max high_ok=1
    fi
fi
if [ -z "$limit_dir" ] && [ -n "$v1_dir" ] && mkcg "$v1_dir"; then
    limit_dir=$cg limit_file=memory.limit_in_bytes
fi
# Where pressure is measured: the v2 cgroup (PSI is per v2 cgroup, whatever
# its controllers).
psi_dir=""
if [ "$high_ok" = 1 ]; then
    psi_dir=$limit_dir
elif [ -n "$v2_dir" ] && mkcg "$v2_dir" && [ -e "$cg/memory.pressure" ]; then
    psi_dir=$cg
fi

# enter: moves the calling shell into the test's cgroups.
enter() {
    [ -n "$limit_dir" ] && echo "$BASHPID" >"$limit_dir/cgroup.procs"
    [ -n "$psi_dir" ] && [ "$psi_dir" != "$limit_dir" ] && echo "$BASHPID" >"$psi_dir/cgroup.procs"
    return 0
}

gauge() { # PID NAME: the gauge's value, or nothing
    "$cli" show "$1" --json 2>/dev/null | python3 -c '
import json, sys
g = json.load(sys.stdin).get("gauges") or {}
v = g.get(sys.argv[1])
print("" if v is None else v)' "$2"
}
event() { # PID NAME
    "$cli" show "$1" --json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["events"][sys.argv[1]])' "$2"
}
wait_gauge() { # PID NAME VALUE SECONDS
    local end=$((SECONDS + $4))
    while [ $SECONDS -le $end ]; do
        [ "$(gauge "$1" "$2")" = "$3" ] && return 0
        sleep 0.2
    done
    return 1
}

# ------------------------------------------- limits: percentages of the cgroup's
if [ -z "$limit_dir" ]; then
    skip "limits" "no writable memory cgroup (v2 memory controller or v1 memory hierarchy) under this one"
else
    echo $((256 << 20)) >"$limit_dir/$limit_file"
    rm -f "$out/limits.fifo" && mkfifo "$out/limits.fifo"
    (enter && exec env LD_PRELOAD="$lib" MEMSCOPE_SOFT_LIMIT=50% "$out/stats_workers" live 1 10 10) \
        <"$out/limits.fifo" >"$out/limits.out" 2>"$out/limits.err" &
    lpid=$!
    pids+=("$lpid")
    exec {lfd}>"$out/limits.fifo"
    for _ in $(seq 100); do grep -q ready "$out/limits.out" 2>/dev/null && break; sleep 0.05; done
    from=$([ "$limit_file" = memory.max ] && echo 1 || echo 3)
    if wait_gauge $lpid memory_limit_bytes $((256 << 20)) 5 && wait_gauge $lpid memory_limit_from "$from" 1 &&
        wait_gauge $lpid soft_limit_bytes $((128 << 20)) 1; then
        pass "limits: MEMSCOPE_SOFT_LIMIT=50% of the cgroup's $limit_file (256 MiB) is 128 MiB"
    else
        fail "limits: 50% of the cgroup's limit" "gauges: $("$cli" show $lpid --json 2>&1 | grep -A16 '"gauges"' | head -20)"
    fi
    echo $((512 << 20)) >"$limit_dir/$limit_file"
    if wait_gauge $lpid soft_limit_bytes $((256 << 20)) 5; then
        pass "limits: a limit changed under the running process is followed (512 MiB: soft limit 256 MiB)"
    else
        fail "limits: followed when changed" "soft_limit_bytes=$(gauge $lpid soft_limit_bytes)"
    fi
    "$cli" show $lpid >"$out/limits.txt" 2>&1
    if grep -q "limits: 512.0 MiB memory (cgroup" "$out/limits.txt" && grep -q "soft limit 256.0 MiB" "$out/limits.txt"; then
        pass "limits: show prints the limit in use and the soft limit"
    else
        fail "limits: show" "$(grep -i limit "$out/limits.txt")"
    fi
    exec {lfd}>&-
    wait $lpid
fi

# ------------------------------------------- pressure: the kernel says, reclaimers run
# thrash: in the test's cgroups, writes and reads a file larger than the
# limit, over and over: page-cache reclaim and writeback stall it.
thrash() {
    (enter && while :; do
        dd if=/dev/zero of="$out/thrash.dat" bs=1M count=512 status=none
        cat "$out/thrash.dat" >/dev/null
    done) &
    tpid=$!
    pids+=("$tpid")
}
# reclaimer_under_load NAME PRESSURE: runs pressure_reclaimer (30 s at
# most) in the test's cgroups with MEMSCOPE_PRESSURE=PRESSURE, then the
# thrasher until the reclaimer ran or gave up; leaves its pid in $rpid and
# its stdin open on $rfd (close it to let it exit).
reclaimer_under_load() {
    rm -f "$out/$1.fifo" && mkfifo "$out/$1.fifo"
    (enter && exec env LD_PRELOAD="$lib" MEMSCOPE_PRESSURE="$2" "$out/pressure_reclaimer" 30) \
        <"$out/$1.fifo" >"$out/$1.out" 2>"$out/$1.err" &
    rpid=$!
    pids+=("$rpid")
    exec {rfd}>"$out/$1.fifo"
    for _ in $(seq 100); do grep -q ready "$out/$1.out" 2>/dev/null && break; sleep 0.05; done
    thrash
    for _ in $(seq 300); do grep -q "reclaimer called\|no reclaimer call" "$out/$1.out" && break; sleep 0.1; done
    stop_thrash
}
stop_thrash() { { pkill -9 -P "$tpid"; kill -9 "$tpid"; wait "$tpid"; } 2>/dev/null; }
stall_us() { awk '/^some/ { sub("total=", "", $5); print $5 }' "$psi_dir/memory.pressure"; }

if [ -z "$psi_dir" ]; then
    skip "pressure" "no writable cgroup v2 with memory.pressure under this one (PSI off, or no cgroup2 mount)"
elif [ -z "$limit_dir" ]; then
    skip "pressure" "no memory limit can be set here, so no memory stall can be made"
else
    # Room for the daemon (and its pool), not for the thrasher's page cache.
    echo $((160 << 20)) >"$limit_dir/$limit_file"
    before=$(stall_us)
    reclaimer_under_load pressure 20ms/1s
    ppid_=$rpid pfd=$rfd
    after=$(stall_us)
    stalled=$((after - before))
    if grep -q "reclaimer called" "$out/pressure.out"; then
        triggers=$(event $ppid_ pressure_triggers)
        reclaims=$(event $ppid_ pressure_reclaims)
        if [ "${triggers:-0}" -ge 1 ] && [ "${reclaims:-0}" -ge 1 ]; then
            pass "pressure: a PSI trigger on the cgroup's memory.pressure ran the reclaimer ($(grep -o 'after.*' "$out/pressure.out"), stalled ${stalled} us; triggers $triggers, reclaims $reclaims)"
        else
            fail "pressure: events" "reclaimer called but pressure_triggers=$triggers pressure_reclaims=$reclaims"
        fi
    elif [ "$stalled" -lt 40000 ]; then
        skip "pressure" "no memory stall could be made here (the cgroup stalled ${stalled} us in 30 s)"
    else
        fail "pressure: the reclaimer runs under memory pressure" \
            "the cgroup stalled ${stalled} us on memory, above the trigger, and no reclaimer ran; stderr: $(head -c 600 "$out/pressure.err")"
    fi
    exec {pfd}>&-
    wait $ppid_ 2>/dev/null

    # memory.high: cgroup v2's memory controller only.
    if [ "$high_ok" != 1 ]; then
        skip "memory.high" "cgroup v2 has no memory controller here (memory.events is v2's)"
    else
        echo max >"$limit_dir/memory.max"
        echo $((32 << 20)) >"$limit_dir/memory.high"
        # PSI set out of reach (9 s in 10 s): only memory.events can fire.
        reclaimer_under_load high 9s/10s
        hpid=$rpid hfd=$rfd
        highs=$(event $hpid memory_high_events)
        if grep -q "reclaimer called" "$out/high.out" && [ "${highs:-0}" -ge 1 ]; then
            pass "memory.high: going over it ran the reclaimer (memory_high_events $highs)"
        else
            fail "memory.high" "$(cat "$out/high.out"); memory_high_events=$highs; $(cat "$limit_dir/memory.events")"
        fi
        exec {hfd}>&-
        wait $hpid 2>/dev/null
    fi
fi

finish_report
