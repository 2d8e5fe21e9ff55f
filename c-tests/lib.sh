# c-tests/lib.sh: sourced by every group script (c-tests/GROUP/*.sh), which
# c-tests/run starts. Gives the script:
#
#   lib cli root out here    the library, memscope-stat, the repository,
#                            this script's scratch directory, its folder
#   CC CXX CFLAGS CXXFLAGS   compilers and flags (INC: the include paths)
#   want NAME...             true if one of NAME was asked for (all are
#                            when no test was named); guards each case
#   pass fail skip           record one check (printed, and counted by
#                            c-tests/run in its results file)
#   build build_c check expect_exit expect_signal expect_stderr
#                            the checks every script uses
#   run_part SCRIPT          runs another script of the group
#
# Usage, at the top of a group script:
#   here=$(cd "$(dirname "$0")" && pwd)
#   . "$here/../lib.sh" [PART]      # scratch: OUT/GROUP[/PART]
: "${CT_RESULTS:?run the C tests through c-tests/run (c-tests/run --help)}"
set -u
lib=$CT_LIB
cli=$CT_CLI
# The preload every case runs under: expect_exit NAME STATUS "$P" VAR=... -- CMD.
P="LD_PRELOAD=$lib"
root=$CT_ROOT
out=$CT_OUT/$CT_GROUP${1:+/$1}
# A build directory from before the groups holds programs named like some
# groups (build/c-tests/scopes, .../nofail): a file where the group's
# scratch folder goes is one of those, made again by this run.
for d in "$CT_OUT/$CT_GROUP" "$out"; do
    if [ -e "$d" ] && [ ! -d "$d" ]; then rm -f "$d"; fi
done
mkdir -p "$out"

CC=${CC:-cc}
CXX=${CXX:-c++}
CFLAGS="-std=c11 -Wall -Wextra -Werror -pedantic -O1 -g"
CXXFLAGS="-std=c++17 -Wall -Wextra -Werror -O1 -g"
# memscope.h and memscope_stats.h, then check.h, seccomp.h, segment_find.h.
INC="-I$root/ffi-include -I$root/c-tests/include"

# want NAME...: is one of these tests asked for? (c-tests/run GROUP NAME...)
want() {
    [ -z "${CT_FILTER:-}" ] && return 0
    local n
    for n in "$@"; do
        case " $CT_FILTER " in *" $n "*) return 0 ;; esac
    done
    return 1
}

record() { printf '%s\t%s\t%s\n' "$1" "$CT_GROUP" "$2" >>"$CT_RESULTS"; }
pass() { printf 'ok    %s\n' "$1"; record ok "$1"; }
fail() { printf 'FAIL  %s: %s\n' "$1" "$2"; record FAIL "$1"; }
skip() { printf 'skip  %s: %s\n' "$1" "$2"; record skip "$1"; }
failures_so_far() { grep -c '^FAIL' "$CT_RESULTS"; }

# build NAME COMMAND...: compiles; a failure is a failed check.
build() {
    local name=$1
    shift
    if ! "$@" 2>"$out/$name.build.log"; then
        fail "build $name" "$(head -c 2000 "$out/$name.build.log")"
        return 1
    fi
}

# build_c NAME [FLAGS...]: builds this folder's NAME.c into OUT/NAME.
build_c() {
    local name=$1
    shift
    build "$name" $CC $CFLAGS $INC "$here/$name.c" -o "$out/$name" "$@"
}

# check NAME CMD...: CMD succeeds.
check() {
    local name=$1
    shift
    if "$@" >"$out/check.out" 2>&1; then pass "$name"; else fail "$name" "$(tail -c 1500 "$out/check.out")"; fi
}

# expect_exit NAME CODE [VAR=VALUE ...] -- CMD...: CMD exits with CODE
# (stdout and stderr in OUT/NAME.out and .err).
expect_exit() {
    local name=$1 want=$2
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" timeout 300 "$@" >"$out/$name.out" 2>"$out/$name.err"
    local got=$?
    if [ "$got" = "$want" ]; then
        pass "$name"
    else
        fail "$name" "exit $got, wanted $want; stderr: $(tail -c 1500 "$out/$name.err")"
    fi
}

# expect_stderr NAME PATTERN: the case NAME's stderr matches (grep -E).
expect_stderr() {
    if grep -qE "$2" "$out/$1.err"; then pass "$1: diagnostic"; else fail "$1: diagnostic" "no /$2/ in: $(head -c 600 "$out/$1.err")"; fi
}

# expect_signal NAME SIGNUM [VAR=VALUE ...] -- CMD...: CMD dies of SIGNUM.
expect_signal() {
    local name=$1 sig=$2
    shift 2
    expect_exit "$name" $((128 + sig)) "$@"
}

# run_part SCRIPT: another script of this group; its checks count with
# these, and it failing without a failed check is one.
run_part() {
    local before rc
    before=$(failures_so_far)
    bash "$1"
    rc=$?
    [ "$rc" = 0 ] || [ "$(failures_so_far)" -gt "$before" ] ||
        fail "${1#"$root"/}" "exited $rc without a failed check"
}
