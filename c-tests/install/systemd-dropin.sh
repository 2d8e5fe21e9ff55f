#!/usr/bin/env bash
# The installed systemd drop-in does what it says (make install-test).
#   c-tests/install/systemd-dropin.sh DROPIN OUTDIR   (run by install/run.sh)
# (the service is `sleep 60`: any dynamically linked program will do)
# 1. systemd accepts it: `systemd-analyze verify` of a unit with the
#    drop-in (skipped, with a line, where systemd is not installed).
# 2. It works as systemd would run it: the service is started with exactly the
#    drop-in's Environment= lines (its LD_PRELOAD path is the installed
#    library) and must come up under memscope with its stats segment in
#    the drop-in's MEMSCOPE_STATS_DIR; it is then killed with SIGKILL (no
#    exit handler runs, the segment stays), and the drop-in's ExecStopPost=
#    command must remove that segment.
set -u
dropin=$(realpath "$1")
out=$2
program=$(command -v sleep)
mkdir -p "$out"
fail() { echo "systemd drop-in: $*" >&2; exit 1; }

if command -v systemd-analyze >/dev/null; then
    unit=$out/unit
    rm -rf "$unit" && mkdir -p "$unit/memscope-test.service.d"
    printf '[Unit]\nDescription=memscope drop-in test\n[Service]\nExecStart=%s 60\n' "$program" \
        >"$unit/memscope-test.service"
    cp "$dropin" "$unit/memscope-test.service.d/memscope.conf"
    if ! (cd "$unit" && systemd-analyze verify --man=no ./memscope-test.service) >"$out/verify.log" 2>&1; then
        fail "systemd-analyze verify: $(cat "$out/verify.log")"
    fi
    echo "systemd drop-in: systemd-analyze verify accepts it"
else
    echo "systemd drop-in: systemd-analyze not installed, verify skipped"
fi

# Environment=NAME=VALUE lines, as systemd passes them (no quoting used).
mapfile -t envs < <(sed -n 's/^Environment=//p' "$dropin")
stop_post=$(sed -n 's/^ExecStopPost=//p' "$dropin")
[ ${#envs[@]} -ge 2 ] && [ -n "$stop_post" ] || fail "no Environment= or ExecStopPost= in $dropin"
stats_dir=$(printf '%s\n' "${envs[@]}" | sed -n 's/^MEMSCOPE_STATS_DIR=//p')
[ -n "$stats_dir" ] || fail "the drop-in names no MEMSCOPE_STATS_DIR"

env "${envs[@]}" "$program" 60 >"$out/program.out" 2>&1 &
pid=$!
seg=$stats_dir/memscope.$pid
for _ in $(seq 100); do [ -e "$seg" ] && break; sleep 0.05; done
[ -e "$seg" ] || { kill -9 $pid; fail "no segment $seg: the program did not come up under memscope ($(cat "$out/program.out"))"; }
kill -9 $pid
wait $pid 2>/dev/null
[ -e "$seg" ] || fail "the segment went away without the stop command (test is void)"
read -r -a cmd <<<"$stop_post"
MEMSCOPE_STATS_DIR=$stats_dir "${cmd[@]}" >"$out/stop-post.out" 2>&1 || fail "ExecStopPost failed: $(cat "$out/stop-post.out")"
[ -e "$seg" ] && fail "ExecStopPost left $seg"
echo "systemd drop-in: a preloaded service killed with SIGKILL leaves its segment, ExecStopPost removes it"
