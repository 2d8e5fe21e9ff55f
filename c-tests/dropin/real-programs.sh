#!/usr/bin/env bash
# dropin, real programs (run by run.sh): each checked against the same run
# without the preload: identical output, clean exit.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh" real-programs
rm -rf "$out"
mkdir -p "$out"
cd "$out" || exit 2
work=$out
# Their stats segments go where a user's would (the default directory).
unset MEMSCOPE_STATS_DIR

# same NAME CMD...: runs CMD plain and preloaded; outputs and status must match.
same() {
    local name=$1
    shift
    "$@" >"$name.plain" 2>"$name.plain.err"
    local want=$?
    LD_PRELOAD=$lib "$@" >"$name.preload" 2>"$name.preload.err"
    local got=$?
    if [ "$got" != 0 ] || [ "$want" != 0 ]; then
        fail "$name" "exit $got under the preload, $want plain: $(tail -c 800 "$name.preload.err")"
    elif ! cmp -s "$name.plain" "$name.preload"; then
        fail "$name" "output differs: $(diff "$name.plain" "$name.preload" | head -5)"
    elif [ -s "$name.preload.err" ] && grep -q memscope "$name.preload.err"; then
        fail "$name" "memscope complained: $(head -3 "$name.preload.err")"
    else
        pass "$name ($(wc -c <"$name.preload") bytes of identical output)"
    fi
}

# ---------------------------------------------------------------- python3
if want python3; then
    same python3 /usr/bin/python3 "$root/bench/alloc_heavy.py"
fi

# -------------------------------------------------------------------- git
git_session() (
    set -e -o pipefail
    d=$(mktemp -d "$work/repo.XXXX")
    cd "$d"
    export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
    git init -q -b main .
    git config user.email t@example.invalid
    git config user.name t
    for i in $(seq 1 40); do
        seq "$i" 3000 >"f$i.txt"
        git add "f$i.txt"
        git commit -qm "commit $i"
    done
    git gc -q
    git fsck --no-progress
    git log --stat --format='%s %T' | sha256sum
    git diff HEAD~30 --stat | tail -1
    cd "$work"
    rm -rf "$d"
)
if want git; then
    same git git_session
fi

# ------------------------------------------------------------------- sort
if want sort xz; then
    awk 'BEGIN { srand(7); for (i = 0; i < 800000; i++) printf "%08x %d\n", int(rand() * 4294967295), i }' >big.txt
fi
if want sort; then
    same sort sort -S 32M --parallel=2 big.txt
fi

# ----------------------------------------- threaded compression, a compile
if want xz; then
    same xz sh -c 'xz -T2 -3 -c big.txt | xz -d -T2 | sha256sum'
fi
compile() {
    c++ -std=c++17 -O2 -pthread -c "$here/cxx_new.cc" -o "cxx_new.$1.o" && sha256sum <"cxx_new.$1.o"
}
if want cxx_compile; then
    same "c++ compile" compile out
fi
