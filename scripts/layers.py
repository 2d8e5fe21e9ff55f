#!/usr/bin/env python3
"""The shim's tiers, enforced: `make lint` runs this.

shim/src is a stack of folders, the tiers (TIERS below, lowest first). A
file may use (a `crate::`, `super::` or `self::` path, or a child module's
name in a `mod.rs`, anywhere in its code outside comments and
`#[cfg(test)]` modules):
  - any file of a lower tier;
  - a file of its own tier listed before it in that tier's order (`mod`
    is the folder's mod.rs); a tier whose order is None is one unit.
So no cycle can come back, and a new file must be placed in the table
before it builds into the tree. Exits 1 with one line per violation.

usage: scripts/layers.py [SHIM_SRC_DIR]   (default: shim/src)
"""
import os
import re
import sys

# Lowest first. Keep docs/DESIGN.md's picture and each folder's mod.rs
# comment in step with this.
TIERS = [
    # every OS call (mimalloc's prim/), and the memory cgroup's files
    ("os", ["mod", "cgroup"]),
    # what every tier uses: counters, diagnostics, options, jemalloc's
    # mallctl, size classes, per-thread state, the daemon's mailbox
    ("base", ["counters", "ctl", "log", "sizeclass", "config", "tls", "mailbox"]),
    # the observer: histograms and counters in the shared segment
    ("stats", None),
    # the NORECLAIM pool region, its commit, hooks, reserve, carve cursor
    ("pool", ["mod"]),
    # the NORECLAIM front end: depot, a thread's carving, its lists
    ("front", ["depot", "carve", "magazine"]),
    # thread and process life, and the scope word's push and pop
    ("scope", ["init", "mod", "lock"]),
    # reclaimers and the NOFAIL retry loop
    ("nofail", ["reclaim", "mod"]),
    # the daemon side: purge, gauges, lock counters, pressure, maintenance
    ("daemon", ["purge", "gauges", "lockstats", "pressure", "maintenance"]),
    # the entry points: the router, C semantics, glibc, ids, API, exports
    ("entry", ["route", "posix", "glibc", "ids", "api", "own_alloc", "exports"]),
]


def code_without_tests(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
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


def use_paths(code):
    """Every path a file names: `use` trees expanded, plus inline paths."""
    paths = []

    def expand(prefix, tree):
        tree = tree.strip()
        if tree.startswith("{") and tree.endswith("}"):
            depth, cur = 0, ""
            for ch in tree[1:-1] + ",":
                if ch == "," and depth == 0:
                    if cur.strip():
                        expand(prefix, cur)
                    cur = ""
                    continue
                depth += {"{": 1, "}": -1}.get(ch, 0)
                cur += ch
            return
        head, sep, rest = tree.partition("::")
        head = head.split(" as ")[0].strip()
        if sep:
            expand(prefix + [head], rest)
        else:
            paths.append(prefix + [head])

    for m in re.finditer(r"\buse\s+((?:crate|super|self)::[^;]*);", code, flags=re.S):
        expand([], m.group(1))
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", code):
        paths.append(m.group(1).split("::"))
    return paths


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "shim/src"
    rank = {t: i for i, (t, _) in enumerate(TIERS)}
    order = dict(TIERS)
    bad = []
    files = {}
    for tier in sorted(os.listdir(src)):
        path = os.path.join(src, tier)
        if tier in ("lib.rs", "main.rs"):
            continue
        if not os.path.isdir(path):
            bad.append(f"{tier}: a file at the top of {src}: every file belongs to a tier folder")
            continue
        if tier not in rank:
            bad.append(f"{tier}/: not in the tier table (scripts/layers.py): give it a place")
            continue
        for r, _, fs in os.walk(path):
            for f in fs:
                if f.endswith(".rs"):
                    name = os.path.relpath(os.path.join(r, f), path)[:-3].split(os.sep)[0]
                    files[(tier, name)] = os.path.join(r, f)
                    if order[tier] is not None and name not in order[tier] + ["mod"]:
                        bad.append(f"{tier}/{name}.rs: not in {tier}'s order (scripts/layers.py)")
    names = {t: {n for (tt, n) in files if tt == t} for t in rank}

    def target(tier, name, path):
        """The (tier, file) a path from `tier/name` names, or None."""
        if path[0] == "crate":
            if len(path) < 2 or path[1] not in rank:
                return None
            t = path[1]
            f = path[2] if len(path) > 2 and path[2] in names[t] else "mod"
            return (t, f)
        if path[0] == "super" and name != "mod":
            f = path[1] if len(path) > 1 and path[1] in names[tier] else "mod"
            return (tier, f)
        if path[0] == "self" and name == "mod" and len(path) > 1 and path[1] in names[tier]:
            return (tier, path[1])
        return None

    for (tier, name), path in sorted(files.items()):
        code = code_without_tests(open(path, encoding="utf-8").read())
        used = {target(tier, name, p) for p in use_paths(code)}
        if name == "mod":
            # A mod.rs names its children by their bare names.
            for child in names[tier] - {"mod"}:
                if re.search(rf"(?<![\w:]){child}::", code):
                    used.add((tier, child))
        for u in sorted(x for x in used if x and x != (tier, name)):
            ut, uf = u
            here = f"{tier}/{name}.rs"
            if rank[ut] > rank[tier]:
                bad.append(f"{here} uses {ut}/{uf}.rs: {ut} is above {tier}")
            elif ut == tier and order[tier] is not None and uf in order[tier] and name in order[tier]:
                if order[tier].index(uf) > order[tier].index(name):
                    bad.append(f"{here} uses {ut}/{uf}.rs, listed after it in {tier}'s order")
    for line in bad:
        print(line)
    if bad:
        return 1
    print(f"layers: {len(files)} files in {len(TIERS)} tiers, every use points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
