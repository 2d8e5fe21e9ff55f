#!/usr/bin/env bash
# make deps (run by make test): installs what the tests need on a fresh
# Debian machine, so that the README's two commands are the whole set-up.
# Quiet when everything is there. As root it installs with apt-get; as
# another user it prints the command to run and fails.
set -eu

# Debian packages, each with a file that shows it is installed.
need=(
    "libjemalloc2:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    "libtcmalloc-minimal4:/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
    "libmimalloc2.0:/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"
    "pkg-config:/usr/bin/pkg-config"
    "git:/usr/bin/git"
    "xz-utils:/usr/bin/xz"
    "python3:/usr/bin/python3"
    "g++:/usr/bin/g++"
    "make:/usr/bin/make"
    "memcached:/usr/bin/memcached"
    "libmemcached-tools:/usr/bin/memcslap"
    "redis-server:/usr/bin/redis-server"
    "redis-tools:/usr/bin/redis-benchmark"
    "postgresql:/usr/share/postgresql-common"
    "util-linux:/usr/bin/setpriv"
    "binutils:/usr/bin/readelf"
    "prometheus:/usr/bin/promtool"
    "systemd:/usr/bin/systemd-analyze"
    "libjemalloc-dev:/usr/bin/jeprof"
    "rocksdb-tools:/usr/bin/db_bench"
)
missing=()
for entry in "${need[@]}"; do
    pkg=${entry%%:*}
    file=${entry#*:}
    # Another architecture's library directory is as good.
    case $file in
    /usr/lib/x86_64-linux-gnu/*) ls /usr/lib/*/"${file##*/}" >/dev/null 2>&1 && continue ;;
    esac
    [ -e "$file" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make deps: missing ${missing[*]}; install them (as root: apt-get update && $cmd)" >&2
    exit 1
fi
echo "make deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends ${missing[*]}
