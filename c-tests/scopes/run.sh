#!/usr/bin/env bash
# scopes: the memscope.h API. Every C snippet of the README as written; a
# program built with the header runs without the library and gets real
# scopes preloaded; a header of another version says so once;
# memscope_check_routed; push/pop semantics (nesting, mismatched pops,
# threads, fork and signal handlers inside scopes).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
MEMSCOPE_STATS_DIR=$(mktemp -d)
export MEMSCOPE_STATS_DIR
trap 'rm -rf "$MEMSCOPE_STATS_DIR"' EXIT

# ------------------------------------------------------ README snippets
# Every C snippet in the README, as written: built with the header alone,
# run without the library (scopes are no-ops) and under the preload.
if want readme; then
    mkdir -p "$out/readme"
    python3 - "$root/README.md" "$out/readme" <<'PY'
import re, sys
blocks = re.findall(r"```c\n(.*?)```", open(sys.argv[1]).read(), re.S)
for i, b in enumerate(blocks):
    open(f"{sys.argv[2]}/snippet{i + 1}.c", "w").write(b)
print(len(blocks), file=open(f"{sys.argv[2]}/count", "w"))
PY
    nsnip=$(cat "$out/readme/count")
    [ "$nsnip" -ge 3 ] || fail "README snippets" "only $nsnip C snippets found"
    for i in $(seq "$nsnip"); do
        src="$out/readme/snippet$i.c"
        if build "readme-snippet$i" $CC $CFLAGS -pthread -I"$root/ffi-include" "$src" -o "$out/readme/snippet$i"; then
            expect_exit "README C snippet $i, no library" 0 -- "$out/readme/snippet$i"
            expect_exit "README C snippet $i, preloaded" 0 "$P" -- "$out/readme/snippet$i"
        fi
    done
fi

# ------------------------------------------------- the header alone
if want no_library; then
    if build no_library $CC $CFLAGS $INC "$here/no_library.c" -o "$out/no_library"; then
        expect_exit "no_library: header without the library" 0 -- "$out/no_library" absent
        expect_exit "no_library: same binary preloaded" 0 "$P" -- "$out/no_library" present
        if grep -q "was built with memscope.h" "$out/no_library: same binary preloaded.err"; then
            fail "no_library: same header and library versions are quiet" "$(cat "$out/no_library: same binary preloaded.err")"
        else
            pass "no_library: same header and library versions are quiet"
        fi
    fi
fi
# The same program built with a header of another version (0.99): one
# line says so, and everything still works.
if want other_header; then
    mkdir -p "$out/otherhdr"
    sed 's/^#define MEMSCOPE_VERSION_MINOR .*/#define MEMSCOPE_VERSION_MINOR 99/' "$root/ffi-include/memscope.h" \
        >"$out/otherhdr/memscope.h"
    # The edited header comes first on the include path.
    if build no_library_other_header $CC $CFLAGS -I"$out/otherhdr" -I"$root/c-tests/include" "$here/no_library.c" \
        -o "$out/no_library_other_header"; then
        expect_exit "header of another version" 0 "$P" -- "$out/no_library_other_header" present
        expect_stderr "header of another version" \
            '^memscope: this program was built with memscope.h 0\.99\.[0-9]+ and runs with libmemscope [0-9]+\.[0-9]+\.[0-9]+: what one of them lacks does nothing; rebuild against the installed header$'
        if [ "$(grep -c "was built with" "$out/header of another version.err")" = 1 ]; then
            pass "header of another version: said once"
        else
            fail "header of another version: said once" "$(cat "$out/header of another version.err")"
        fi
    fi
fi

# ------------------------------------------------- memscope_check_routed
# Served, bypassed (one line, the event), declined in NORECLAIM. The event
# is read live with memscope-stat's reader through the segment (the C
# layout: memscope_stats.h), while the program waits.
if want check_routed; then
    build check_routed $CC $CFLAGS $INC "$here/check_routed.c" -o "$out/check_routed"
    build stats_layout $CC $CFLAGS $INC "$root/c-tests/stats/stats_layout.c" -o "$out/stats_layout"
    routed_dir=$(mktemp -d)
    rm -f "$out/check_routed.fifo" && mkfifo "$out/check_routed.fifo"
    env LD_PRELOAD="$lib" MEMSCOPE_STATS_DIR="$routed_dir" "$out/check_routed" <"$out/check_routed.fifo" \
        >"$out/check_routed.out" 2>"$out/check_routed.err" &
    routed_pid=$!
    exec {routed_fd}>"$out/check_routed.fifo"
    for _ in $(seq 200); do grep -q ready "$out/check_routed.out" && break; sleep 0.05; done
    seg=$(ls "$routed_dir"/memscope.$routed_pid 2>/dev/null)
    # The event's value, found through the C layout (stats_layout prints every
    # offset of memscope_stats.h) and the event's place in abi/src/names.rs.
    bypassed=$(python3 - "$seg" "$out/stats_layout" "$root/abi/src/names.rs" <<'PY'
import re, struct, subprocess, sys
seg, layout, names = sys.argv[1:4]
off = dict(l.split() for l in subprocess.run([layout], capture_output=True, text=True).stdout.splitlines())
block = open(names).read().split("pub const EVENTS")[1].split("];")[0]
events = re.findall(r'\(\s*"([a-z_]+)",', block)
d = open(seg, "rb").read(int(off["size.header"]))
n = struct.unpack_from("=I", d, int(off["header.event_count"]))[0]
i = events.index("scopes_bypassed")
assert i < n, (i, n)
print(struct.unpack_from("=Q", d, int(off["header.events"]) + 8 * i)[0])
PY
    )
    exec {routed_fd}>&-
    wait $routed_pid
    rc=$?
    if [ $rc = 0 ] && [ "$(grep -c "do not go through memscope" "$out/check_routed.err")" = 1 ]; then
        pass "memscope_check_routed: served, bypassed (said once), declined in NORECLAIM"
    else
        fail "memscope_check_routed: served, bypassed (said once), declined in NORECLAIM" "exit $rc: $(cat "$out/check_routed.err")"
    fi
    if [ "$bypassed" = 2 ]; then
        pass "memscope_check_routed: scopes_bypassed counted (twice)"
    else
        fail "memscope_check_routed: scopes_bypassed counted (twice)" "got: $bypassed"
    fi
    rm -rf "$routed_dir"
fi

# ---------------------------------------------------------- push and pop
if want scopes; then
    build scopes $CC $CFLAGS $INC -pthread "$here/scopes.c" -o "$out/scopes"
    expect_exit scopes 0 "$P" -- "$out/scopes"
    if grep -q 'memscope_pop(0x14) does not match' "$out/scopes.err"; then
        pass "scopes: a mismatched pop is reported"
    else
        fail "scopes: a mismatched pop is reported" "stderr: $(cat "$out/scopes.err")"
    fi
fi
