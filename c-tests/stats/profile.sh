#!/usr/bin/env bash
# stats, heap profiles (run by run.sh): memscope's jemalloc is built with
# profiling, off unless MALLOC_CONF=prof:true. `memscope-stat profile PID`
# asks a live process for a dump through its stats segment, served by a
# thread allocating outside scopes (busy) or by the maintenance thread
# (idle); `jeprof --text` of the dump names the known allocation site of
# prof_site.c. Without prof:true: a clear error.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" profile

D=$(mktemp -d)
export MEMSCOPE_STATS_DIR=$D
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT

build_c prof_site || exit 1
have_jeprof=1
command -v jeprof >/dev/null || { have_jeprof=0; echo "note: jeprof not installed (libjemalloc-dev): dumps checked, not rendered"; }

start() { # MODE [VAR=VALUE...]: prof_site under the preload, until "ready"
    local mode=$1
    shift
    env LD_PRELOAD="$lib" "$@" "$out/prof_site" "$mode" >"$out/site.out" 2>"$out/site.err" &
    pid=$!
    for _ in $(seq 200); do grep -q ready "$out/site.out" && return 0; sleep 0.05; done
    fail "prof_site $mode: start" "$(cat "$out/site.err")"
    return 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null; pid=; }

for mode in busy idle; do
    name="profile of a live process ($mode: served by $([ $mode = busy ] && echo 'an allocating thread' || echo 'the maintenance thread'))"
    start $mode MALLOC_CONF=prof:true || continue
    rm -f "$out/$mode.heap"
    if "$cli" profile "$pid" --out "$out/$mode.heap" --timeout 20 $([ $have_jeprof = 1 ] && echo --text) >"$out/$mode.txt" 2>"$out/$mode.err"; then
        if [ ! -s "$out/$mode.heap" ]; then
            fail "$name" "no dump written"
        elif ! head -c 20 "$out/$mode.heap" | grep -q "heap_v2"; then
            fail "$name" "not a jemalloc heap profile: $(head -c 100 "$out/$mode.heap")"
        elif [ "$(stat -c %a "$out/$mode.heap")" != 600 ]; then
            fail "$name" "dump mode $(stat -c %a "$out/$mode.heap"), wanted 600"
        elif [ $have_jeprof = 1 ] && ! grep -q memscope_test_known_site "$out/$mode.txt"; then
            fail "$name" "jeprof --text lacks the known site: $(head -c 1500 "$out/$mode.txt")"
        else
            pass "$name"
        fi
    else
        fail "$name" "exit $?: $(cat "$out/$mode.err")"
    fi
    ls "$D" | grep -q '\.heap$' && fail "$name: nothing left in the stats dir" "$(ls "$D")" || pass "$name: nothing left in the stats dir"
    grep -q "Invalid conf" "$out/site.err" && fail "$name: prof:true accepted" "$(cat "$out/site.err")" || pass "$name: prof:true accepted"
    stop
done

# Two requests in a row: each gets its own dump.
if start busy MALLOC_CONF=prof:true; then
    if "$cli" profile "$pid" --out "$out/one.heap" >/dev/null 2>&1 && "$cli" profile "$pid" --out "$out/two.heap" >/dev/null 2>&1 &&
        [ -s "$out/one.heap" ] && [ -s "$out/two.heap" ]; then
        pass "two requests, two dumps"
    else
        fail "two requests, two dumps" "$(ls -la "$out"/*.heap)"
    fi
    stop
fi

# Profiling off: a clear error, exit 1, no file.
if start busy; then
    "$cli" profile "$pid" --out "$out/off.heap" >"$out/off.out" 2>"$out/off.err"
    rc=$?
    if [ $rc = 1 ] && grep -q "heap profiling is off" "$out/off.err" && [ ! -e "$out/off.heap" ]; then
        pass "profiling off: a clear error"
    else
        fail "profiling off: a clear error" "exit $rc: $(cat "$out/off.err")"
    fi
    stop
fi
