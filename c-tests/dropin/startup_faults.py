#!/usr/bin/env python3
"""startup_faults.py LIB: a short-lived process under the preload does not
build jemalloc's mallctl tree (docs/DESIGN.md), whether it allocates or
not: an exec of /bin/true (no allocator call) and of /bin/sleep 0 (about
260 calls, setlocale's) each take at least 20 fewer page faults than the
same exec with the tree built at load, which naming `background_thread`
in MALLOC_CONF asks for. Medians of 7 execs each, counted with getrusage
(minor faults of the children)."""
import os
import resource
import statistics
import subprocess
import sys


def faults(argv, env):
    counts = []
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        subprocess.run(argv, env=env, check=True)
        counts.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before)
    return statistics.median(counts)


lib = sys.argv[1]
base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_CONF", "_RJEM_MALLOC_CONF")}
failed = False
for argv in (["/bin/true"], ["/bin/sleep", "0"]):
    lazy = faults(argv, dict(base, LD_PRELOAD=lib))
    eager = faults(argv, dict(base, LD_PRELOAD=lib, MALLOC_CONF="background_thread:false"))
    name = " ".join(argv)
    print(f"{name}: {lazy} page faults, {eager} with the mallctl tree built at load")
    if not lazy <= eager - 20:
        print(f"FAIL: {name}: expected at least 20 fewer faults without the tree ({lazy} vs {eager})")
        failed = True
sys.exit(1 if failed else 0)
