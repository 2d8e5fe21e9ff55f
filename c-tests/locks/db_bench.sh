#!/usr/bin/env bash
# db_bench: an unmodified RocksDB db_bench (Debian's rocksdb-tools) under
# libmemscope_locks.so, as an operator would run it: fillrandom, then
# readrandom and readwhilewriting, 2 threads, 2 s each, through
# `memscope-stat run --locks MODE --report`. Under noreclaim at the
# default pool and at an 8 MiB pool: no abort, lock sections that
# allocated, and no refusal (committed memory lasts). Under
# noreclaim,nofail at a 2 MiB pool, where the pool runs dry: no abort, no
# NULL, the reserve serving what the pool could not; the largest request
# made under a lock is printed.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" db_bench
DB_BENCH=${DB_BENCH:-$(command -v db_bench)}
if [ -z "$DB_BENCH" ]; then
    skip "db_bench" "no db_bench (Debian: apt-get install rocksdb-tools; make deps does)"
    exit 0
fi

# bench NAME MODE [VAR=VALUE ...]: runs db_bench, its report in OUT/NAME.json.
bench() {
    local name=$1 mode=$2
    shift 2
    rm -rf "$out/db" "$out/$name.json"
    env "$@" timeout 300 "$cli" run --locks "$mode" --report "$out/$name.json" "$DB_BENCH" \
        --benchmarks=fillrandom,readrandom,readwhilewriting --threads=2 --num=200000 --duration=2 \
        --db="$out/db" --compression_type=none >"$out/$name.out" 2>"$out/$name.err"
}

# verdict NAME REFUSALS_ALLOWED: the report's lock sections and refusals.
verdict() {
    python3 - "$out/$1.json" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["locks"]["total"]
events = {e["name"]: e["count"] for e in r["show"]["events"]} if isinstance(r["show"]["events"], list) else r["show"]["events"]
assert t["sections"] > 100000 and t["sections_allocating"] > 0 and t["allocs"] > 0, t
assert t["refused"] == 0, ("refused under locks", t)
refusals = sum(v for k, v in events.items() if k.startswith("noreclaim_refused"))
if sys.argv[2] == "none":
    assert refusals == 0, {k: v for k, v in events.items() if "refus" in k}
print("sections %d (allocating %d), allocations %d (%d bytes, largest %d), refused 0, reserve hits %d"
      % (t["sections"], t["sections_allocating"], t["allocs"], t["alloc_bytes"], t["largest"], events.get("reserve_hits", 0)))
PY
}

for cfg in "default pool:noreclaim" "8 MiB pool:noreclaim:MEMSCOPE_NORECLAIM_POOL=8M"; do
    IFS=: read -r label mode var <<<"$cfg"
    name="db_bench noreclaim ($label)"
    bench "$name" "$mode" ${var:+"$var"}
    rc=$?
    if [ $rc != 0 ]; then
        fail "$name: runs to the end" "exit $rc; $(tail -c 1200 "$out/$name.err")"
        continue
    fi
    pass "$name: runs to the end"
    check "$name: sections counted, no refusal" verdict "$name" none
    say_line=$(verdict "$name" none 2>/dev/null) && echo "      $say_line"
done

name="db_bench noreclaim,nofail (2 MiB pool)"
bench "$name" noreclaim,nofail MEMSCOPE_NORECLAIM_POOL=2M
rc=$?
if [ $rc != 0 ]; then
    fail "$name: runs to the end" "exit $rc; $(tail -c 1200 "$out/$name.err")"
else
    pass "$name: runs to the end"
    # The pool may run dry here (its refusals are counted); NOFAIL answers
    # every one from the reserve: nothing returns NULL under a lock.
    check "$name: no NULL under a lock, the reserve serves" verdict "$name" some
    say_line=$(verdict "$name" some 2>/dev/null) && echo "      $say_line"
fi
