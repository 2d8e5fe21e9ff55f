"""The current table of docs/BENCHMARKS.md, written by `make bench`.

bench/run.py --doc FILE renders its results as markdown (every row
against every peer, the stats, latency and tails tables) with the date,
the machine, the commit and the rounds, and puts them between the two
marker lines below in FILE, replacing what was there. Nothing outside the
markers changes. make bench-smoke writes to a copy (bench/check_doc.py
checks it); a --quick run refuses to write the repository's own
docs/BENCHMARKS.md.
"""
import datetime
import os
import subprocess
import tempfile
import time

BEGIN = "<!-- current:begin -->"
END = "<!-- current:end -->"

# Debian packages of the peers, for their versions.
PACKAGES = {
    "glibc": "libc6",
    "jemalloc": "libjemalloc2",
    "tcmalloc": "libtcmalloc-minimal4",
    "mimalloc": "libmimalloc2.0",
}


def _markers(text, path):
    lines = text.split("\n")
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise SystemExit(f"{path}: needs one line {BEGIN} and, after it, one line {END} "
                         f"(found {len(begins)} and {len(ends)})")
    return lines, begins[0], ends[0]


def check_writable(path, quick, repo):
    """Fails before the run if the results could not be written at its end."""
    if quick and os.path.realpath(path) == os.path.realpath(os.path.join(repo, "docs", "BENCHMARKS.md")):
        raise SystemExit(f"{path}: a --quick run's numbers mean nothing; write them to a copy")
    try:
        with open(path) as f:
            _markers(f.read(), path)
    except OSError as e:
        raise SystemExit(f"{path}: {e.strerror}")
    if not os.access(path, os.W_OK) or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        raise SystemExit(f"{path}: not writable (it is replaced through a file in the same directory)")


def replace(text, block, path="document"):
    """text with the lines between the markers replaced by block."""
    lines, b, e = _markers(text, path)
    return "\n".join(lines[:b + 1] + block.rstrip("\n").split("\n") + lines[e:])


def write(path, block):
    with open(path) as f:
        text = f.read()
    new = replace(text, block, path)
    fd, tmp = tempfile.mkstemp(prefix=".current-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new)
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _git(repo, *args):
    try:
        out = subprocess.run(["git", "-C", repo] + list(args), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit(repo, outputs):
    """The commit id, and the tracked files that differ from it (outputs of the run aside)."""
    head = _git(repo, "rev-parse", "--short=7", "HEAD")
    if not head:
        return "unknown (not a git checkout)"
    changed = (_git(repo, "diff", "--name-only", "--no-renames", "HEAD") or "").split("\n")
    changed = [p for p in changed if p and p not in outputs]
    if changed:
        return f"{head} with uncommitted changes to {', '.join(changed)}"
    return head


def _ns(v):
    """A latency for the doc: ns below 10 us, else us or ms (the maxima run to tens of ms)."""
    if v < 10_000:
        return f"{v:.0f}"
    if v < 10_000_000:
        return f"{v / 1e3:.1f} us" if v < 100_000 else f"{v / 1e3:.0f} us"
    return f"{v / 1e6:.1f} ms"


def cpu_times():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children, wall seconds)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(fields[:8]) - fields[3] - fields[4]
    ours = os.times()
    return (busy / os.sysconf("SC_CLK_TCK"), ours.user + ours.system + ours.children_user + ours.children_system,
            time.monotonic())


def others_share(start, end):
    """The share of the machine's CPU time that other processes used between start and end."""
    if not start or not end or end[2] <= start[2]:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, others / ((end[2] - start[2]) * (os.cpu_count() or 1)))


def _version(package):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _cell(med, lo, hi, ratio, ranges):
    p = 3 if med < 10 else 1
    text = f"{med:.{p}f}"
    if ranges:
        text += f" [{lo:.{p}f}-{hi:.{p}f}]"
    if ratio is not None:
        text += f" {ratio:.2f}x"
    return text


def _table(header, rows, align):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render(summary, meta):
    """The block between the markers: markdown, no marker lines."""
    repo = meta["repo"]
    rounds = meta["rounds"]
    ranges = rounds > 1
    doc = os.path.realpath(meta["doc"])
    outputs = {os.path.relpath(doc, repo)}
    if meta.get("plot"):
        outputs.add(os.path.relpath(os.path.realpath(meta["plot"]), repo))
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    peers = []
    for name, path in meta["allocs"]:
        if name in PACKAGES:
            version = _version(PACKAGES[name])
            how = "no preload" if name == "glibc" else "preloaded"
            peers.append(f"{name} ({PACKAGES[name]} {version or 'version unknown'}, {how})")
        elif name == "memscope":
            peers.append("memscope (this commit's target/release build)" if os.path.realpath(path).startswith(
                os.path.realpath(repo) + os.sep) else f"memscope ({os.path.basename(path)})")
        else:
            peers.append(f"{name} (given with --also: {os.path.basename(path)})")
    out = []
    if meta["quick"]:
        out += ["**A `--quick` run (`make bench-smoke`): the harness works; these numbers mean nothing.**", ""]
    out += [
        f"Written by `make bench` (bench/run.py --doc) on {when}; the next run replaces everything "
        "between this section's markers, so do not edit it by hand.",
        "",
        f"- commit: {commit(repo, outputs)}",
        f"- machine: {meta['machine']}",
        "- other processes during the run: "
        + ("unknown" if meta["others"] is None else
           f"{meta['others'] * 100:.0f} % of the machine's CPU time (0 % = the benchmark had it to itself)"),
        f"- rounds: {rounds}, interleaved (every second round in reverse order)"
        + ("" if rounds == 3 else "; `make bench` runs 3")
        + f"; the whole run took {meta['minutes']:.0f} min",
        f"- peers: {', '.join(peers)}",
        "",
        "Each cell: the median of the rounds"
        + (", [min-max]" if ranges else " (one round: no range)")
        + " and the ratio to Debian's jemalloc (median over jemalloc's median). Rows in ns, us, s or KiB: "
        "lower is better; rows in Mops/s: higher is better. Compare only within this table: the machines are "
        "noisy and the same code moves 10-30 % from one hour to the next.",
        "",
    ]
    names = summary["allocs"]
    header = ["benchmark"] + [f"{n} (= 1.00x)" if n == "jemalloc" else n for n in names]
    rows = []
    for title, row in summary["main"]:
        cells = [title]
        for name in names:
            if name not in row:
                cells.append("-")
                continue
            med, lo, hi, ratio = row[name]
            cells.append(_cell(med, lo, hi, None if name == "jemalloc" else ratio, ranges))
        rows.append(cells)
    out += _table(header, rows, ["---"] + ["--:"] * len(names))

    modes = summary["stats_modes"]
    out += ["", "memscope with its stats on against off (ratio: throughput on/off, >= 0.97 is the target; "
            "SAMPLE=1 times every call):", ""]
    out += _table(["benchmark"] + [f"stats {m}" for m in modes],
                  [[title] + [_cell(*row[m][:3], None, ranges) + f" {row[m][3]:.3f}x" for m in modes]
                   for title, row in summary["stats"]],
                  ["---"] + ["--:"] * len(modes))

    if summary.get("locks"):
        lmodes = summary["lock_modes"]
        out += ["", "Lock sections: `libmemscope_locks.so` against memscope alone (ratio to `without`, > 1 is "
                "better; targets: the pair +5 ns at most in `report`, db_bench readrandom >= 0.97x in `report` "
                "and >= 0.95x in `noreclaim`):", ""]
        out += _table(["benchmark"] + lmodes,
                      [[title] + [_cell(*row[m][:3], None, ranges) + f" {row[m][3]:.3f}x" for m in lmodes]
                       for title, row in summary["locks"]],
                      ["---"] + ["--:"] * len(lmodes))

    out += ["", "Tail latency of free+malloc+first touch on a critical thread while 2 churn threads run (ns "
            "unless marked us or ms, medians of the rounds; noise max = the longest empty timed interval). "
            "With `dirty_decay_ms:0` purges and refaults reach the critical thread: the case NORECLAIM is for.", ""]
    keys = [("p50", "p50"), ("p99", "p99"), ("p99.9", "p99.9"), ("p99.99", "p99.99"), ("max", "max"),
            ("noise_max", "noise max")]
    out += _table(["allocator / scope"] + [h for _, h in keys],
                  [[label] + [_ns(med[k]) for k, _ in keys] for label, med in summary["latency"]],
                  ["---"] + ["--:"] * len(keys))

    kinds = [("small", "<= 4 KiB"), ("medium", "4-64 KiB"), ("large", "256 KiB-1 MiB")]
    ops = ("malloc", "call", "free")
    out += ["", "Tails by request size under 2 churn threads, p99 / p99.9 / p99.99 in ns unless marked us or ms "
            "(medians of the rounds): "
            "malloc with the first touch of every page, call = the malloc call alone, free; empty = an empty "
            "timed interval and busy150 = a 150 ns spin from the same run (what interrupts and preemption alone "
            "give).", ""]
    header = ["allocator / scope"] + [f"{k} ({size}) {op}" for k, size in kinds for op in ops] + ["empty", "busy150"]
    rows = []
    for label, q in summary["tails"]:
        cols = [f"{k}.{op}" for k, _ in kinds for op in ops] + ["small.empty", "small.busy150"]
        rows.append([label] + [" / ".join(_ns(v) for v in q[c]) for c in cols])
    out += _table(header, rows, ["---"] + ["--:"] * (len(header) - 1))

    if meta.get("plot") and os.path.exists(meta["plot"]):
        rel = os.path.relpath(os.path.realpath(meta["plot"]), os.path.dirname(doc))
        out += ["", f"The latency distribution of the same run (CCDF): ![latency CCDF]({rel})"]
    return "\n".join(out) + "\n"
