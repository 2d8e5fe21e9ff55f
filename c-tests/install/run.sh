#!/usr/bin/env bash
# install: `make install` into a scratch prefix (make install-test runs
# this group). The layout: a .pc for each prefix (DESTDIR honoured),
# SONAME and links, the library stripped. Programs built with pkg-config
# against it and run linked, not preloaded (scopes must be live): the
# header without and with the library (../scopes/no_library.c), one that
# calls only malloc/free and keeps libmemscope as its allocator under the
# linker's --as-needed (malloc_only.c), one that reads its own stats
# segment through the installed headers (installed_user.c). The installed
# memscope-stat finds the library (also a copy of it moved elsewhere); man
# pages (every option), completions, the systemd drop-in
# (systemd-dropin.sh); uninstall leaves nothing.
#
# It runs make in the repository (install, uninstall); make builds the
# library and CLI there (target/release), whatever --lib and --cli say.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
want install || exit 0
make=(make -C "$root" --no-print-directory)
prefix=$out/prefix
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
major=${version%%.*}
so=$prefix/lib/libmemscope.so.$version
pc() { PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config "$@" memscope; }

rm -rf "$prefix" && mkdir -p "$prefix"
# DESTDIR: the .pc names the final prefix, not the staging directory.
check "make install PREFIX=/nowhere DESTDIR=...: installs" \
    "${make[@]}" install PREFIX=/nowhere DESTDIR="$out/elsewhere"
check "DESTDIR: the .pc names the prefix" grep -q '^prefix=/nowhere$' "$out/elsewhere/nowhere/lib/pkgconfig/memscope.pc"
rm -rf "$out/elsewhere"

check "make install PREFIX=...: installs" "${make[@]}" install PREFIX="$prefix"
check "the .pc names this prefix" grep -q "^prefix=$prefix\$" "$prefix/lib/pkgconfig/memscope.pc"
check "SONAME libmemscope.so.$major" sh -c "readelf -d '$so' | grep -q 'SONAME.*\[libmemscope.so.$major\]'"
check "libmemscope.so -> libmemscope.so.$major" test "$(readlink "$prefix/lib/libmemscope.so")" = "libmemscope.so.$major"
check "libmemscope.so.$major -> libmemscope.so.$version" \
    test "$(readlink "$prefix/lib/libmemscope.so.$major")" = "libmemscope.so.$version"
check "the installed library is stripped" sh -c "! readelf -S '$so' | grep -q '\.debug_info'"

# Built with pkg-config and run linked.
CFLAGS_PC="-std=c11 -Wall -Wextra -Werror"
build pkgconfig-user $CC $CFLAGS_PC -I"$root/c-tests/include" -o "$out/pkgconfig-user" "$root/c-tests/scopes/no_library.c" \
    $(pc --cflags --libs)
check "pkg-config: the header and the library, linked" env LD_LIBRARY_PATH="$prefix/lib" "$out/pkgconfig-user" present
build malloc-only $CC $CFLAGS_PC -Wl,--as-needed -o "$out/malloc-only" "$here/malloc_only.c" $(pc --cflags --libs)
check "--as-needed keeps libmemscope in NEEDED" sh -c "readelf -d '$out/malloc-only' | grep -q 'NEEDED.*\[libmemscope.so.$major\]'"
check "a program calling only malloc/free runs on memscope's malloc" env LD_LIBRARY_PATH="$prefix/lib" "$out/malloc-only"
build installed-user $CC $CFLAGS_PC -I"$root/c-tests/include" -o "$out/installed-user" "$here/installed_user.c" \
    $(pc --cflags --libs)
mkdir -p "$out/installed-stats"
check "installed headers: live scopes, its own stats segment read through memscope_stats.h" \
    env MEMSCOPE_STATS_DIR="$out/installed-stats" LD_LIBRARY_PATH="$prefix/lib" "$out/installed-user"

# The installed CLI finds the library; a copy of it away from the prefix
# finds it through the library directory compiled into it.
check "memscope-stat run finds the installed library" "$prefix/bin/memscope-stat" run -- "$out/pkgconfig-user" present
check "memscope-stat run --locks finds the installed locks library" sh -c \
    "'$prefix/bin/memscope-stat' run --locks noreclaim -- '$out/pkgconfig-user' present && test -x '$prefix/lib/libmemscope_locks.so'"
rm -rf "$out/cli-elsewhere" && mkdir -p "$out/cli-elsewhere"
cp "$prefix/bin/memscope-stat" "$out/cli-elsewhere/"
check "memscope-stat copied elsewhere finds the library through its LIBDIR" \
    env -u MEMSCOPE_LIB LD_LIBRARY_PATH= "$out/cli-elsewhere/memscope-stat" run -- "$out/pkgconfig-user" present

# Man pages: every option the library reads (its table, opt("MEMSCOPE_...")
# in shim/src) and MEMSCOPE_LIB; a page per command; completions.
mapfile -t opts < <(find "$root/shim/src" -name '*.rs' -exec sed -n 's/^ *opt("\(MEMSCOPE_[A-Z_]*\)".*/\1/p' {} + | sort -u)
man=$prefix/share/man/man1
check "the man page names every option (${#opts[@]} found in shim/src, and MEMSCOPE_LIB)" sh -c '
    man=$1; shift
    [ $# -ge 10 ] || { echo "only $# options found in shim/src"; exit 1; }
    for v in "$@" MEMSCOPE_LIB; do grep -qx "\.B $v" "$man/memscope-stat.1" || { echo "man page lacks $v"; exit 1; }; done' \
    _ "$man" "${opts[@]}"
check "a man page per command" sh -c "for c in run list show watch check gc serve; do test -s '$man'/memscope-stat-\$c.1 || exit 1; done"
check "bash completion loads" \
    bash -c "source '$prefix/share/bash-completion/completions/memscope-stat' && complete -p memscope-stat >/dev/null"

# The systemd drop-in: systemd-analyze verify, then a service run with its
# environment, killed with SIGKILL, cleaned by its ExecStopPost.
dropin() { bash "$here/systemd-dropin.sh" "$prefix/share/memscope/systemd/memscope.conf" "$out/systemd"; }
check "systemd drop-in: verified, and a service under it is cleaned up after SIGKILL" dropin
cat "$out/check.out"

check "make uninstall" "${make[@]}" uninstall PREFIX="$prefix"
check "uninstall leaves no file behind" sh -c "test -z \"\$(find '$prefix' ! -type d)\""
