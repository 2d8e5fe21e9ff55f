#!/usr/bin/env bash
# Real programs under the preload, each checked against the same run
# without it: identical output, clean exit. Ends with "N passed, N failed".
#
#   c-tests/real-programs.sh LIB WORK_DIR
set -u
lib=$(realpath "$1")
work=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 2

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s: %s\n' "$1" "$2"; }

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
same python3 /usr/bin/python3 "$here/../bench/alloc_heavy.py"

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
same git git_session

# ------------------------------------------------------------------- sort
awk 'BEGIN { srand(7); for (i = 0; i < 800000; i++) printf "%08x %d\n", int(rand() * 4294967295), i }' >big.txt
same sort sort -S 32M --parallel=2 big.txt

# ----------------------------------------- threaded compression, a compile
same xz sh -c 'xz -T2 -3 -c big.txt | xz -d -T2 | sha256sum'
compile() {
    c++ -std=c++17 -O2 -pthread -c "$here/cxx_new.cc" -o "cxx_new.$1.o" && sha256sum <"cxx_new.$1.o"
}
same "c++ compile" compile out

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
