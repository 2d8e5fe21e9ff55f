#!/usr/bin/env bash
# make demo: the storage daemon (examples/kvd.c) under memscope, the same
# load with scopes off and then on, and what changes: allocator tails
# under the lock (read live by memscope-stat), lock-hold times (the
# daemon's own), and the clients' round trips. Then the Rust variant
# (examples/kvd-rs), which links memscope as its #[global_allocator]: no
# preload, read by memscope-stat all the same. Under two minutes; leaves
# no process or stats segment behind.
#
#   examples/demo.sh LIB CLI [KVD_RS]
set -u
here=$(cd "$(dirname "$0")" && pwd)
lib=$(realpath "$1")
cli=$(realpath "$2")
kvd_rs=${3:-}
out=$here/../build/demo
mkdir -p "$out"
CC=${CC:-cc}
# -g and frame pointers: memscope-stat sites names functions, lines and callers.
$CC -std=gnu11 -O2 -g -fno-omit-frame-pointer -Wall -Wextra -Werror -pthread -I"$here/../ffi-include" "$here/kvd.c" -o "$out/kvd" || exit 1
$CC -std=gnu11 -O2 -Wall -Wextra -Werror -pthread "$here/kvload.c" -o "$out/kvload" || exit 1

stats_dir=$(mktemp -d)
export MEMSCOPE_STATS_DIR=$stats_dir
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$stats_dir"
}
trap cleanup EXIT

CLIENTS=${DEMO_CLIENTS:-2}
OPS=${DEMO_OPS:-60000}
KEYS=${DEMO_KEYS:-400}
# Dirty pages go back to the OS within a millisecond, by jemalloc's
# background threads: new memory is faulted in as it is first touched,
# under the lock. Both runs use the same configuration (the one memscope
# switches to itself at the first NORECLAIM scope), so the only difference
# is the scopes.
CONF=dirty_decay_ms:1,muzzy_decay_ms:0,background_thread:true

request() { # PORT LINE: one request, its one-line answer
    python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().readline().strip())
PY
}

port_free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run NAME BINARY ARGS...: starts the daemon (preloaded, unless
# PRELOAD= is set empty for a program that links memscope), loads it,
# collects.
run() {
    local name=$1
    shift
    local port
    port=$(port_free)
    local preload=${PRELOAD-$lib}
    env MALLOC_CONF=$CONF MEMSCOPE_STATS_SAMPLE=8 MEMSCOPE_LOG=off ${preload:+LD_PRELOAD=$preload} "$1" "$port" "${@:2}" \
        >"$out/$name.daemon" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do
        grep -q listening "$out/$name.daemon" 2>/dev/null && break
        sleep 0.05
    done
    echo "   $name: $(head -n 1 "$out/$name.daemon")"
    if ! "$out/kvload" "$port" "$CLIENTS" "$OPS" "$KEYS" >"$out/$name.load"; then
        echo "kvload against $name failed: $(cat "$out/$name.load")" >&2
        exit 1
    fi
    request "$port" STATS >"$out/$name.stats"
    "$cli" show "$daemon" --json >"$out/$name.json"
    "$cli" show "$daemon" >"$out/$name.show"
    "$cli" sites "$daemon" >"$out/$name.sites"
    request "$port" SHUTDOWN >/dev/null
    wait "$daemon"
    local rc=$?
    daemon=
    [ $rc = 0 ] || { echo "$name exited with $rc" >&2; exit 1; }
    grep -q "clean shutdown" "$out/$name.daemon" || { echo "$name: no clean shutdown" >&2; exit 1; }
}

echo "memscope demo: a key-value daemon (examples/kvd.c) allocating under its store lock;"
echo "$CLIENTS clients x $OPS requests (SET/GET/DEL, every answer checked), a compaction thread churning"
echo "on the side; MALLOC_CONF=$CONF in every run."
echo
run "scopes off" "$out/kvd"
run "scopes on" "$out/kvd" --scopes
if [ -n "$kvd_rs" ]; then
    PRELOAD= run "Rust, scopes on" "$kvd_rs" --scopes
fi
echo

python3 - "$out" "$CLIENTS" "$OPS" "scopes off" "scopes on" ${kvd_rs:+"Rust, scopes on"} <<'PY'
import json, sys
out, clients, ops, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def kv(path):
    return dict(f.split("=", 1) for f in open(path).read().split() if "=" in f)

def us(ns):
    return "-" if ns is None else (f"{ns/1000:.1f} us" if ns < 1_000_000 else f"{ns/1e6:.2f} ms")

rows = []
for n in names:
    load, st = kv(f"{out}/{n}.load"), kv(f"{out}/{n}.stats")
    js = json.load(open(f"{out}/{n}.json"))
    ctx = "noreclaim" if "scopes on" in n else "normal"
    # The request threads have exited (the clients disconnected): their
    # numbers are in the retired slot, apart from the compaction thread's.
    lat = js["retired"]["latency"]
    def allocator(op):
        h = lat[op][ctx]
        return h["p99_ns"], h["p999_ns"], h["max_ns"] if h["samples"] else None
    rows.append((n, load, st, allocator("alloc"), allocator("free"), js))

w = 24
print(f"{'':34}" + "".join(f"{n:>{w}}" for n, *_ in rows))
def line(label, f):
    print(f"{label:34}" + "".join(f"{f(r):>{w}}" for r in rows))
line("requests/s", lambda r: f"{float(r[1]['ops_per_s']):,.0f}")
line("wrong answers", lambda r: r[1]["wrong"])
line("client round trip p99", lambda r: f"{float(r[1]['p99_us']):.1f} us")
line("client round trip p99.9", lambda r: f"{float(r[1]['p999_us']):.1f} us")
line("lock held p99", lambda r: us(int(r[2]["hold_p99_ns"])))
line("lock held p99.9", lambda r: us(int(r[2]["hold_p999_ns"])))
line("lock held max", lambda r: us(int(r[2]["hold_max_ns"])))
line("malloc, request threads, p99", lambda r: us(r[3][0]))
line("malloc, request threads, p99.9", lambda r: us(r[3][1]))
line("malloc, request threads, max", lambda r: us(r[3][2]))
line("free, request threads, p99", lambda r: us(r[4][0]))
line("free, request threads, p99.9", lambda r: us(r[4][1]))
line("free, request threads, max", lambda r: us(r[4][2]))
ev = lambda r, e: r[5]["events"].get(e, 0)
line("NORECLAIM frees deferred", lambda r: f"{ev(r, 'deferred_frees'):,}")
line("NORECLAIM OS calls (must be 0)", lambda r: ev(r, "noreclaim_os_calls"))
line("pool refills", lambda r: ev(r, "pool_refills"))
print()
print("Allocator rows: memscope-stat, request threads (one call in 8 timed per thread and operation);")
print("scopes off: all their calls; scopes on: their NORECLAIM calls, the ones made under the store lock.")
print("Lock-hold times are kvd's own (STATS). On a 2-core machine the max also holds preemptions.")
PY
echo
echo "memscope-stat show, scopes on (abridged):"
sed -n '/Latency/,/└/p' "$out/scopes on.show"
echo
echo "memscope-stat sites, scopes on: what kvd allocates under its store lock (sampled):"
awk '/^[a-z_]+:/ { on = /^noreclaim_alloc:/ } on' "$out/scopes on.sites" | head -14
echo
echo "(full outputs in build/demo/; the daemons exited cleanly; no segment is left)"
