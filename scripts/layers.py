#!/usr/bin/env python3
"""The shim's layers, enforced: `make lint` runs this.

Every top-level module of shim/src (a file `x.rs` or a folder `x/`) is
given a floor below; a module may use (`crate::m` anywhere in its code,
outside comments and `#[cfg(test)]` modules) only modules on lower floors,
or on its own floor when the table marks that pair as allowed. So no cycle
can come back, and a new module must be placed before it builds into the
tree. Exits 1 with one line per violation.

usage: scripts/layers.py [SHIM_SRC_DIR]   (default: shim/src)
"""
import os
import re
import sys

# Lowest first. Keep docs/DESIGN.md's layer picture in step with this.
FLOORS = [
    # 0. every OS call (mmap family, futex, clocks, files, /proc reads)
    ["os"],
    # 1. platform: per-thread state, options, diagnostics, counters,
    #    jemalloc's mallctl, the NORECLAIM front end's size classes
    ["tls", "log", "config", "cgroup", "counters", "ctl", "sizeclass"],
    # 2. beside the stack, fed from below: stats (the observer) and the
    #    maintenance thread's mailbox (flags, counters, a queue)
    ["stats", "mailbox"],
    # 3. memory sources: the pool region and arenas (with the NOFAIL
    #    reserve), the depot of ready pool blocks, a scoped thread's own
    #    carving from committed pool memory, the per-thread lists
    #    (magazines), purging
    ["pool", "depot", "carve", "magazine", "purge", "lockstats", "gauges"],
    # 4. thread lifecycle (first call, exit)
    ["init"],
    # 5. context policy: scopes, reclaimers, the NOFAIL retry loop, and
    #    the routing of a call to the source its scope asks for
    ["scope", "reclaim", "nofail", "route"],
    # 6. the maintenance thread: above all it serves, told through the mailbox
    ["maintenance", "pressure"],
    # 7. entry points: C semantics, glibc extras, the memscope_* API,
    #    changes of user id, memscope's own allocator, the exported symbols
    ["posix", "glibc", "api", "ids", "own_alloc", "exports"],
]
# Uses within one floor that are allowed (user, used): an order inside it.
SAME_FLOOR = {
    ("config", "log"), ("config", "cgroup"),
    ("maintenance", "pressure"),
    ("stats", "config"), ("mailbox", "ctl"),
    ("tls", "sizeclass"),
    ("depot", "pool"), ("magazine", "depot"), ("magazine", "pool"),
    ("carve", "pool"), ("carve", "depot"), ("magazine", "carve"), ("purge", "ctl"), ("lockstats", "pool"),
    ("gauges", "pool"), ("gauges", "depot"),
    ("reclaim", "scope"), ("nofail", "reclaim"), ("route", "scope"),
    ("route", "nofail"),
    ("glibc", "route"), ("exports", "posix"), ("exports", "glibc"),
    ("exports", "ids"), ("own_alloc", "posix"), ("exports", "api"),
}


def code_without_tests(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def modules(src):
    mods = {}
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods[name[:-3]] = [path]
        elif os.path.isdir(path):
            mods[name] = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f.endswith(".rs"))
    return mods


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "shim/src"
    floor = {m: i for i, ms in enumerate(FLOORS) for m in ms}
    mods = modules(src)
    bad = []
    for m in mods:
        if m not in floor:
            bad.append(f"{m}: not in the layer table (scripts/layers.py): give it a floor")
    for m, files in mods.items():
        used = set()
        for f in files:
            code = code_without_tests(open(f, encoding="utf-8").read())
            used |= set(re.findall(r"\bcrate::(\w+)", code))
            for group in re.findall(r"\buse\s+crate::\{([^;]*)\}", code, flags=re.S):
                used |= set(re.findall(r"(?:^|,|\{)\s*(\w+)", group))
        for u in sorted(used & set(mods) - {m}):
            if m not in floor or u not in floor:
                continue
            if floor[u] > floor[m] or (floor[u] == floor[m] and (m, u) not in SAME_FLOOR):
                bad.append(f"{m} (floor {floor[m]}) uses {u} (floor {floor[u]}): not allowed")
    for line in bad:
        print(line)
    if bad:
        return 1
    print(f"layers: {len(mods)} modules on floors 0-{len(FLOORS) - 1}, every use points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
