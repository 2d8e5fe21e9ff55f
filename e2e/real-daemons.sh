#!/usr/bin/env bash
# Real daemons under the preload, on loopback, driven by their own clients,
# checked for correct answers and a clean shutdown, with memscope-stat
# reading each while it runs.
#
#   e2e/real-daemons.sh LIB CLI OUT [--quick] [memcached] [redis] [postgres]
#
# With no daemon named, all three. --quick: smaller loads (make test).
# What each calls: memcached, glibc's malloc family; redis (Debian's,
# linked with libjemalloc.so.2), jemalloc's extended API (mallocx, sdallocx,
# malloc_usable_size, mallctl for INFO memory), answered by memscope's
# jemalloc because the preload interposes those names; postgres, malloc
# under its memory contexts, a process per connection (each forked backend
# gets its own stats segment).
set -u
lib=$(realpath "$1")
cli=$(realpath "$2")
out=$3
shift 3
quick=0
daemons=()
for a in "$@"; do
    case $a in
    --quick) quick=1 ;;
    *) daemons+=("$a") ;;
    esac
done
[ ${#daemons[@]} = 0 ] && daemons=(memcached redis postgres)
mkdir -p "$out"

passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL  %s: %s\n' "$1" "$2"; }
check() {
    local name=$1
    shift
    if "$@" >"$out/check.out" 2>&1; then pass "$name"; else fail "$name" "$(tail -c 800 "$out/check.out")"; fi
}

stats=$(mktemp -d)
chmod 1777 "$stats" # postgres runs as its own user
export MEMSCOPE_STATS_DIR=$stats
running=()
running_dirs=()
cleanup() {
    for p in "${running[@]}"; do kill "$p" 2>/dev/null; done
    for d in "${running_dirs[@]}"; do
        [ -f "$d/data/postmaster.pid" ] && setpriv --reuid=postgres --regid=postgres --init-groups \
            "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1
        rm -rf "$d"
    done
    rm -rf "$stats"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT: up to 10 s
    for _ in $(seq 200); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),timeout=1)" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# stats_show NAME PID: memscope-stat reads the live daemon, which made calls.
stats_show() {
    "$cli" show "$2" --json >"$out/$1.json" 2>"$out/$1.json.err"
    check "$1: memscope-stat show reads the live daemon" python3 - "$out/$1.json" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["live"] and s["pid"] == int(sys.argv[2])
calls = sum(s["total"]["calls"][op][ctx] for op in s["total"]["calls"] for ctx in s["total"]["calls"][op])
assert calls > 0, calls
PY
}

have() { command -v "$1" >/dev/null 2>&1; }

# ------------------------------------------------------------ memcached
run_memcached() {
    if ! have memcached || ! have memcslap; then
        fail memcached "not installed (apt-get install memcached libmemcached-tools)"
        return
    fi
    local port n
    port=$(free_port)
    n=$([ $quick = 1 ] && echo 2000 || echo 50000)
    LD_PRELOAD=$lib memcached -u root -l 127.0.0.1 -p "$port" -U 0 -t 2 -m 64 >"$out/memcached.log" 2>&1 &
    local pid=$!
    running+=("$pid")
    if ! wait_port "$port"; then
        fail "memcached: starts under the preload" "$(tail -c 400 "$out/memcached.log")"
        return
    fi
    pass "memcached: starts under the preload"
    check "memcached: memcslap load ($n ops, 4 connections)" \
        memcslap --servers=127.0.0.1:"$port" --concurrency=4 --execute-number="$n" --binary
    check "memcached: every value read back as written" python3 - "$port" "$n" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def val(i):
    return (b"v%d-" % i) * (1 + i % 300)
for i in range(min(n, 5000)):
    v = val(i)
    s.sendall(b"set memscope-%d 0 0 %d\r\n%s\r\n" % (i, len(v), v))
    assert f.readline() == b"STORED\r\n"
for i in range(min(n, 5000)):
    s.sendall(b"get memscope-%d\r\n" % i)
    head = f.readline().split()
    assert head[0] == b"VALUE", head
    data = f.read(int(head[3]) + 2)[:-2]
    assert data == val(i), i
    assert f.readline() == b"END\r\n"
PY
    stats_show memcached "$pid"
    kill -TERM "$pid"
    wait "$pid"
    local rc=$?
    check "memcached: clean shutdown (exit $rc)" test "$rc" = 0
}

# ---------------------------------------------------------------- redis
run_redis() {
    if ! have redis-server || ! have redis-benchmark; then
        fail redis "not installed (apt-get install redis-server redis-tools)"
        return
    fi
    local port n
    port=$(free_port)
    n=$([ $quick = 1 ] && echo 5000 || echo 100000)
    LD_PRELOAD=$lib redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --logfile "$out/redis.log" >/dev/null 2>&1 &
    local pid=$!
    running+=("$pid")
    if ! wait_port "$port"; then
        fail "redis: starts under the preload" "$(tail -c 400 "$out/redis.log")"
        return
    fi
    pass "redis: starts under the preload"
    check "redis: redis-benchmark ($n requests per test)" \
        redis-benchmark -p "$port" -n "$n" -q -t set,get,lpush,lpop,incr,hset -d 256 -P 4
    check "redis: answers checked (strings, lists, big values, INCR)" python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
def cmd(*args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return reply()
def reply():
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t in b"+-:":
        return rest
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if t == b"*":
        return [reply() for _ in range(int(rest))]
    raise AssertionError(line)
for i in range(2000):
    v = b"%d:" % i * (1 + i % 1000)
    assert cmd(b"SET", b"k%d" % i, v) == b"OK"
for i in range(2000):
    assert cmd(b"GET", b"k%d" % i) == b"%d:" % i * (1 + i % 1000), i
big = b"x" * (8 << 20)
assert cmd(b"SET", b"big", big) == b"OK" and cmd(b"GET", b"big") == big
for i in range(1000):
    cmd(b"RPUSH", b"list", b"%d" % i)
assert cmd(b"LRANGE", b"list", b"0", b"-1") == [b"%d" % i for i in range(1000)]
assert cmd(b"INCRBY", b"ctr", b"41") == b"41" and cmd(b"INCR", b"ctr") == b"42"
info = cmd(b"INFO", b"memory")
assert b"mem_allocator:jemalloc" in info, info[:200]
assert b"allocator_allocated:" in info  # from mallctl, answered by memscope's jemalloc
PY
    stats_show redis "$pid"
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
    wait "$pid"
    local rc=$?
    check "redis: clean shutdown (exit $rc)" test "$rc" = 0
}

# ------------------------------------------------------------- postgres
run_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ] || ! have pgbench || ! id postgres >/dev/null 2>&1; then
        fail postgres "not installed (apt-get install postgresql)"
        return
    fi
    # The cluster lives under /tmp: the checkout may sit where the postgres
    # user cannot reach (/root).
    local pgdir data port as_pg
    pgdir=$(mktemp -d /tmp/memscope-pg.XXXXXX)
    data=$pgdir/data
    mkdir -p "$data"
    chown -R postgres "$pgdir"
    running_dirs+=("$pgdir")
    port=$(free_port)
    as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups env MEMSCOPE_STATS_DIR="$stats")
    if ! "${as_pg[@]}" "$bin/initdb" -D "$data" -A trust -U postgres >"$out/initdb.log" 2>&1; then
        fail "postgres: initdb" "$(tail -c 400 "$out/initdb.log")"
        return
    fi
    "${as_pg[@]}" LD_PRELOAD="$lib" "$bin/pg_ctl" -D "$data" -l "$pgdir/postgres.log" -w -t 30 \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >"$out/pg_ctl.log" 2>&1
    if [ $? != 0 ]; then
        fail "postgres: starts under the preload" "$(tail -c 600 "$pgdir/postgres.log")"
        return
    fi
    pass "postgres: starts under the preload"
    local scale=$([ $quick = 1 ] && echo 1 || echo 5) secs=$([ $quick = 1 ] && echo 3 || echo 15)
    check "postgres: pgbench -i -s $scale" pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s "$scale" postgres
    check "postgres: pgbench -c 4 -T $secs" pgbench -h 127.0.0.1 -p "$port" -U postgres -c 4 -j 2 -T "$secs" postgres
    check "postgres: answers checked" sh -c "
        test \"\$(psql -h 127.0.0.1 -p $port -U postgres -Atc 'select count(*) from pgbench_accounts' postgres)\" = $((scale * 100000)) &&
        test \"\$(psql -h 127.0.0.1 -p $port -U postgres -Atc 'select sum(x) from generate_series(1,100000) x' postgres)\" = 5000050000 &&
        test \"\$(psql -h 127.0.0.1 -p $port -U postgres -Atc \"select md5(string_agg(i::text, ',' order by i)) = md5(string_agg(i::text, ',' order by i)) from generate_series(1,200000) i\" postgres)\" = t"
    local pm
    pm=$(head -n 1 "$data/postmaster.pid")
    stats_show postgres "$pm"
    check "postgres: backends have their own segments" sh -c "test \$(ls '$stats' | wc -l) -ge 2"
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >>"$out/pg_ctl.log" 2>&1
    check "postgres: clean shutdown" grep -q "database system is shut down" "$pgdir/postgres.log"
    cp "$pgdir/postgres.log" "$out/postgres.log"
}

for d in "${daemons[@]}"; do
    case $d in
    memcached) run_memcached ;;
    redis) run_redis ;;
    postgres) run_postgres ;;
    *) fail "$d" "unknown daemon" ;;
    esac
done
echo
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
