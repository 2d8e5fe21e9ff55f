#!/usr/bin/env python3
"""How many times a request's path comes back to a file it already left.

Follows a parameter (the `size` of `malloc`, the pointer of `free`) from an
entry function down through the shim, the way a reader does: every call
whose arguments carry the value itself (not a value computed from it,
such as its size class: converting ends the size's path, as jemalloc's
`sz_size2index` does) is entered, in the order the calls appear;
after a call returns, the next call that carries it from the caller is a
stay in the caller's file again. A "stay" is a run of consecutive steps in
one file; a "return" is a stay in a file the path had already left.

Static and heuristic: every branch is followed (the path of all calls, not
one execution), a function is entered once per way of carrying the value,
methods (`x.f()`), calls through closures passed as values and values
formatted into diagnostics (`format_args!`) are not followed. Good enough to see the shape; `make lint` holds the counts
under the limits below (docs/DESIGN.md, "One pass down").

usage: scripts/passdown.py [SHIM_SRC_DIR] [--show] [--derived]
"""
import os
import re
import sys

# Comments and #[cfg(test)] modules are on no path: read as layers.py reads.
from layers import code_without_tests

# (entry file, function, parameter followed, most returns allowed)
# malloc: 4 returns serve the request; 3 more record where it came from
# (issue 25's call sites, stats/sites.rs: the policy's record in nofail,
# route's after the call).
ROUTES = [
    ("entry/posix.rs", "malloc", "size", 7),
    ("entry/posix.rs", "free", "p", 3),
    # x86_64 Linux: the assembly `malloc` and `free` (entry/exports.rs)
    # jump to these; the paths the shipped library runs.
    ("entry/posix.rs", "malloc_slow_c", "size", 7),
    ("entry/posix.rs", "free_slow_c", "p", 3),
    ("entry/posix.rs", "free_pool_block_c", "p", 3),
]

FN = re.compile(r"\bfn\s+(\w+)\s*(<[^>{]*>)?\s*\(")
CALL = re.compile(r"(?<![\w.:])((?:[A-Za-z_]\w*::)*)([a-z_]\w*)\s*(?:::<[^>]*>)?\(")
# Follow only the value itself (the default, as a reader follows `size`),
# or (--derived) also every local computed from it.
NO_DERIVED = "--derived" not in sys.argv
KEYWORDS = {"if", "while", "match", "for", "return", "fn", "Some", "Ok", "Err", "loop", "in", "as", "let"}


def matching(text, i, open_ch, close_ch):
    """Index just past the bracket that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_ch:
            depth += 1
        elif text[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def split_args(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    if cur.strip():
        out.append(cur)
    return out


def load(src):
    """{(file, fn name): (params, body)} and {file: module names}."""
    fns = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)
            text = code_without_tests(open(path, encoding="utf-8").read())
            for m in FN.finditer(text):
                p_open = m.end() - 1
                p_close = matching(text, p_open, "(", ")")
                params = [a.split(":")[0].strip().replace("mut ", "") for a in split_args(text[p_open + 1:p_close - 1])]
                b = text.find("{", p_close)
                semi = text.find(";", p_close)
                if b < 0 or (0 <= semi < b):
                    continue
                fns.setdefault((rel, m.group(1)), (params, text[b:matching(text, b, "{", "}")]))
    return fns


def module_of(rel):
    parts = rel[:-3].split("/")
    return parts[-2] if parts[-1] == "mod" else parts[-1]


def resolve(fns, here, qual, name):
    mods = [q for q in qual.split("::") if q]
    if mods and mods[-1] in ("Self",) or (mods and mods[-1][:1].isupper()):
        return (here, name) if (here, name) in fns else None
    if not mods:
        if (here, name) in fns:
            return (here, name)
        return None
    want = mods[-1]
    hits = [k for k in fns if k[1] == name and module_of(k[0]) == want]
    return hits[0] if len(hits) == 1 else None


def tainted_locals(body, names):
    names = set(names)
    lets = re.findall(r"\blet\s+(.*?)=\s*([^;]*);", body, flags=re.S)
    changed = True
    while changed:
        changed = False
        for pat, expr in lets:
            if any(re.search(rf"\b{re.escape(n)}\b", expr) for n in names):
                for v in re.findall(r"\b([a-z_]\w*)\b", pat.split(":")[0] if "(" not in pat else pat):
                    if v not in names and v not in KEYWORDS and v != "mut":
                        names.add(v)
                        changed = True
    return names


def calls_in_order(body):
    """The calls in `body` in the order they run: a call's arguments before
    the call, and calls inside a closure passed as an argument just after
    the call that takes it (which runs them)."""
    spans = []
    for m in CALL.finditer(body):
        a = body.find("(", m.end() - 1)
        spans.append((m, m.start(), a, matching(body, a, "(", ")")))
    def key(item):
        m, start, a, end = item
        # The innermost enclosing call whose closure argument holds this one.
        best = None
        for _, s2, a2, e2 in spans:
            if a2 < start and end <= e2:
                arg_start = body.rfind(",", a2, start)
                arg_start = max(arg_start, a2) + 1
                if re.match(r"\s*(move\s+)?\|", body[arg_start:start]) and (best is None or s2 > best[0]):
                    best = (s2, e2)
        if best is not None:
            return (best[1], 1, start)
        return (end, 0, start)
    return [m for m, *_ in sorted(spans, key=key)]


def follow(fns, key, carried, steps, seen):
    params, body = fns[key]
    names = set(carried) if NO_DERIVED else tainted_locals(body, carried)
    steps.append(key)
    for m in calls_in_order(body):
        qual, name = m.group(1), m.group(2)
        if name in KEYWORDS:
            continue
        a = body.find("(", m.end() - 1)
        # A value formatted into a message (`format_args!`, `write!`) is
        # reported, not passed down: macro arguments do not carry it.
        inner = re.sub(r"\w+!\s*\((?:[^()]|\([^()]*\))*\)", "", body[a + 1:matching(body, a, "(", ")") - 1])
        args = split_args(inner)
        hot = [i for i, x in enumerate(args) if any(re.search(rf"\b{re.escape(n)}\b", x) for n in names)]
        if not hot:
            continue
        callee = resolve(fns, key[0], qual, name)
        if callee is None or callee == key:
            continue
        cparams = fns[callee][0]
        if cparams and cparams[0] in ("self", "&self", "&mut self"):
            continue
        carried_in = tuple(cparams[i] for i in hot if i < len(cparams))
        if not carried_in or (callee, carried_in) in seen:
            continue
        seen.add((callee, carried_in))
        if steps[-1] != key:
            steps.append(key)
        follow(fns, callee, carried_in, steps, seen)


def stays(steps):
    files = []
    for f, _ in steps:
        if not files or files[-1] != f:
            files.append(f)
    return files


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show = "--show" in sys.argv
    src = args[0] if args else "shim/src"
    fns = load(src)
    bad = 0
    for rel, name, param, limit in ROUTES:
        steps = []
        follow(fns, (rel, name), (param,), steps, set())
        files = stays(steps)
        returns = sum(1 for i, f in enumerate(files) if f in files[:i])
        print(f"{name}({param}): {len(files)} stays in {len(set(files))} files, {returns} returns (limit {limit})")
        if show:
            for f, fn in steps:
                print(f"    {f}: {fn}")
            print("    " + " -> ".join(module_of(f) for f in files))
        if returns > limit:
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
