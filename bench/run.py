#!/usr/bin/env python3
"""make bench: every allocator in the same run, interleaved, repeated.

Runs bench/alloc_bench (built by the Makefile) under glibc, Debian's
jemalloc, tcmalloc and mimalloc and memscope (each by LD_PRELOAD of the same
binary), ROUNDS times in interleaved order, and prints per benchmark the
median, min-max and the ratio to jemalloc. Peers that are not installed are
skipped with the package to install. Usage: run.py LIBMEMSCOPE BENCH_BINARY
[--rounds N] [--quick] [--plot FILE] [--doc FILE]

With --doc, the same results (with the date, the machine, the commit and
the rounds) replace what is between the markers of bench/current_doc.py
in FILE (make bench: docs/BENCHMARKS.md), and nothing else in it.
"""
import argparse
import collections
import glob
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import current_doc


def find(pattern):
    hits = sorted(glob.glob(pattern))
    return hits[0] if hits else None


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Linux {platform.release()}"


def run(binary, preload, args, extra_env=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    env.update(extra_env or {})
    out = subprocess.run([binary] + args, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{args} under {preload}: exit {out.returncode}: {out.stderr[-300:]}")
    return out.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib")
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    ap.add_argument("--plot", help="write the latency CCDF here (.svg or .png; needs matplotlib)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=LIB",
                    help="another memscope build to compare in the same run (e.g. before=/tmp/old.so); "
                         "it runs every row memscope runs except the stats and latency sections")
    ap.add_argument("--doc", help="write the results as the current table of this markdown file "
                                  "(between its markers; the rest of the file is left as it is)")
    a = ap.parse_args()
    started = time.monotonic()
    cpu_start = current_doc.cpu_times()
    here = os.path.dirname(os.path.abspath(__file__))
    if a.doc:
        # Before the run, not after an hour of it.
        current_doc.check_writable(a.doc, a.quick, os.path.dirname(here))

    peers = [
        ("glibc", "", None),
        ("jemalloc", find("/usr/lib/*/libjemalloc.so.2"), "libjemalloc2"),
        ("tcmalloc", find("/usr/lib/*/libtcmalloc_minimal.so.4"), "libtcmalloc-minimal4"),
        ("mimalloc", find("/usr/lib/*/libmimalloc.so.2"), "libmimalloc2.0"),
        ("memscope", os.path.realpath(a.lib), None),
    ] + [(spec.split("=", 1)[0], os.path.realpath(spec.split("=", 1)[1]), None) for spec in a.also]
    allocs = []
    for name, path, pkg in peers:
        if path is None:
            print(f"skipping {name}: not installed (apt-get install {pkg})")
        else:
            allocs.append((name, path))

    # Start-up of programs that allocate before main and as they exit: a
    # C++ program (libstdc++'s emergency exception pool, its locale) and a
    # Rust one (std's runtime, a line on stdout), built here.
    progs = tempfile.mkdtemp(prefix="memscope-bench-progs-")
    start_progs = []
    for title, src, name, build in [
        ("exec of a C++ int main(){} under it (us)", "int main() {}\n", "main.cc",
         ["g++", "-O2", "-o", "cxx_main"]),
        ("exec of a Rust hello-world under it (us)", 'fn main() { println!("hello"); }\n', "main.rs",
         ["rustc", "-O", "-o", "rust_hello"]),
    ]:
        with open(os.path.join(progs, name), "w") as f:
            f.write(src)
        try:
            subprocess.run(build + [name], cwd=progs, check=True, capture_output=True)
            start_progs.append((title, os.path.join(progs, build[-1])))
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"skipping '{title}': {build[0]} failed ({e})")

    n = 2_000_000 if a.quick else 20_000_000
    lat_secs = "0.5" if a.quick else "3"
    benches = [
        ("malloc+free 16 B (ns)", ["pair", "16", str(n)], "all"),
        ("malloc+free 64 B (ns)", ["pair", "64", str(n)], "all"),
        ("malloc+free 256 B (ns)", ["pair", "256", str(n)], "all"),
        ("malloc+free 4 KiB (ns)", ["pair", "4096", str(n // 2)], "all"),
        ("malloc+free 64 KiB (ns)", ["pair", "65536", str(n // 10)], "all"),
        ("calloc+free 4 KiB (ns)", ["calloc", "4096", str(n // 4)], "all"),
        ("realloc growth step (ns)", ["realloc", str(n // 20000)], "all"),
        ("cross-thread pairs, 1 producer+1 consumer (Mops/s)", ["xthread", "1", str(n // 2)], "all"),
        ("producer/consumer: peak RSS (KiB)", ["xthread-rss", "1", str(n // 2)], "all"),
        ("mixed sizes, working set of 4096, free+malloc (ns)", ["mixed", str(n // 4)], "all"),
        ("server: 2 threads replacing shared blocks (Mops/s)", ["server", "2", str(n // 8)], "all"),
        ("server: peak RSS (KiB)", ["server-rss", "2", str(n // 8)], "all"),
        ("idle RSS (KiB)", ["rss"], "all"),
        ("exec of /bin/true under it (us)", ["spawn", "50" if a.quick else "300"], "all"),
        # sleep allocates about 260 times before it exits (setlocale).
        ("exec of /bin/sleep 0 under it (us)", ["spawn", "50" if a.quick else "300", "/bin/sleep", "0"], "all"),
    ] + [
        (title, ["spawn", "50" if a.quick else "300", path], "all") for title, path in start_progs
    ] + [
        ("NORECLAIM malloc+free 64 B (ns)", ["scoped-pair", "64", str(n)], "memscope"),
        ("cross-thread, producer in NORECLAIM (Mops/s)", ["xthread-scoped", "1", str(n // 2)], "memscope"),
        ("push+pop (ns)", ["pushpop", str(n * 5)], "memscope"),
    ]
    if (os.cpu_count() or 1) >= 4:
        # Two spinning pairs on fewer than 4 cores measure the scheduler.
        benches.insert(8, ("cross-thread pairs, 2 producers+2 consumers (Mops/s)", ["xthread", "2", str(n // 4)], "all"))
    results = {}
    extra_names = {spec.split("=", 1)[0] for spec in a.also}
    total = a.rounds * sum(len(allocs) if w == "all" else 1 + len(extra_names) for _, _, w in benches)
    done = 0
    for rnd in range(a.rounds):
        order = allocs if rnd % 2 == 0 else list(reversed(allocs))
        for title, args, who in benches:
            for name, path in order:
                if who != "all" and name != who and name not in extra_names:
                    continue
                done += 1
                print(f"\r[{done}/{total}] round {rnd + 1}/{a.rounds} {name:9} {title:50}", end="", file=sys.stderr)
                value = float(run(a.binary, path, args).split()[-1])
                results.setdefault(title, {}).setdefault(name, []).append(value)
    # Tail latency under jemalloc's default decay, and with dirty pages
    # returned at once (dirty_decay_ms:0: purges and refaults on every
    # thread, the case NORECLAIM is for). glibc, tcmalloc and mimalloc
    # ignore MALLOC_CONF, so they run once.
    # Whole programs: wall time of real allocation-heavy runs.
    sort_input = os.path.join(tempfile.mkdtemp(prefix="memscope-bench-"), "lines.txt")
    with open(sort_input, "w") as f:
        for i in range(400_000 if a.quick else 2_000_000):
            f.write(f"{(i * 2654435761) % 4294967296:08x} {i}\n")
    programs = [
        ("python3 alloc_heavy.py (s)", ["/usr/bin/python3", os.path.join(here, "alloc_heavy.py")]),
        ("sort --parallel=2, 2M lines (s)", ["sort", "-S", "64M", "--parallel=2", "-o", "/dev/null", sort_input]),
    ]
    for rnd in range(a.rounds):
        for title, cmd in programs:
            for name, path in allocs:
                print(f"\r[program] round {rnd + 1}/{a.rounds} {name:9} {title:40}", end="", file=sys.stderr)
                env = dict(os.environ)
                env.pop("LD_PRELOAD", None)
                if path:
                    env["LD_PRELOAD"] = path
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
                results.setdefault(title, {}).setdefault(name, []).append(time.perf_counter() - t0)
    benches += [(title, None, "all") for title, _ in programs]
    os.unlink(sort_input)
    os.rmdir(os.path.dirname(sort_input))

    # Stats on vs off (contract target >= 0.97x throughput), memscope only,
    # interleaved; "on" at the default sample period and at 1 (every call
    # timed, for exact tails).
    stats_rows = [("malloc+free 64 B (ns)", ["pair", "64", str(n)]),
                  ("cross-thread pairs (Mops/s)", ["xthread", "1", str(n // 2)])]
    stats_modes = [("off", {"MEMSCOPE_STATS": "off"}), ("on", {}), ("on, SAMPLE=1", {"MEMSCOPE_STATS_SAMPLE": "1"})]
    stats_results = {}
    memscope_path = dict(allocs)["memscope"]
    for rnd in range(a.rounds):
        for title, args in stats_rows:
            for mode, env in (stats_modes if rnd % 2 == 0 else list(reversed(stats_modes))):
                print(f"\r[stats] round {rnd + 1}/{a.rounds} {mode:14} {title:40}", end="", file=sys.stderr)
                stats_dir = tempfile.mkdtemp(prefix="memscope-bench-stats-")
                value = float(run(a.binary, memscope_path, args, dict(env, MEMSCOPE_STATS_DIR=stats_dir)).split()[-1])
                shutil.rmtree(stats_dir, ignore_errors=True)
                stats_results.setdefault(title, {}).setdefault(mode, []).append(value)

    lock_modes, lock_results = lock_sections(a, memscope_path, n)

    latency = {}
    hists = collections.defaultdict(collections.Counter)
    histfile = tempfile.NamedTemporaryFile(prefix="memscope-hist-", delete=False).name
    for rnd in range(a.rounds):
        for conf in ["", "dirty_decay_ms:0"]:
            for name, path in allocs:
                if (conf and name not in ("jemalloc", "memscope")) or name in extra_names:
                    continue
                modes = ["none", "noreclaim", "nofail"] if name == "memscope" else ["none"]
                for mode in modes:
                    label = f"{name} {mode}" + (f" ({conf})" if conf else "")
                    print(f"\r[latency] round {rnd + 1}/{a.rounds} {label:50}", end="", file=sys.stderr)
                    env = {"MALLOC_CONF": conf, "MEMSCOPE_LOG": "off"} if conf else {}
                    env["BENCH_HIST"] = histfile
                    line = run(a.binary, path, ["latency", mode, lat_secs], env)
                    with open(histfile) as h:
                        for row in h:
                            ns, count = row.split()
                            hists[label][float(ns)] += int(count)
                    f = line.split()
                    vals = {f[i]: float(f[i + 1]) for i in range(1, 10, 2)}
                    vals["noise_max"] = float(f[f.index("noise") + 4])
                    latency.setdefault(label, []).append(vals)
    # NORECLAIM tails by size and operation, 1 and 4 critical threads.
    tails = {}
    tail_secs = "0.5" if a.quick else "3"
    for rnd in range(a.rounds):
        for conf in ["", "dirty_decay_ms:0"]:
            for threads in ["1", "4"]:
                for name, path in allocs:
                    if name not in ("jemalloc", "memscope"):
                        continue
                    for mode in (["none", "noreclaim"] if name == "memscope" else ["none"]):
                        label = f"{name} {mode}, {threads} thread{'s' if threads != '1' else ''}" + (
                            f" ({conf})" if conf else "")
                        print(f"\r[tails] round {rnd + 1}/{a.rounds} {label:50}", end="", file=sys.stderr)
                        env = {"MALLOC_CONF": conf, "MEMSCOPE_LOG": "off"} if conf else {"MEMSCOPE_LOG": "off"}
                        f = run(a.binary, path, ["tails", mode, threads, tail_secs], env).split()
                        vals = {f[i]: [float(x) for x in f[i + 1].split("/")] for i in range(1, len(f), 2)}
                        tails.setdefault(label, []).append(vals)
    print(file=sys.stderr)
    os.unlink(histfile)
    if a.plot:
        plot_ccdf(hists, a.plot, machine())

    summary = summarize(allocs, benches, results, stats_modes, stats_results, latency, tails)
    summary["lock_modes"] = lock_modes
    summary["locks"] = summarize_locks(lock_modes, lock_results)
    print_text(summary, a.rounds)
    if a.doc:
        current_doc.write(a.doc, current_doc.render(summary, {
            "doc": a.doc,
            "rounds": a.rounds,
            "quick": a.quick,
            "minutes": (time.monotonic() - started) / 60,
            "others": current_doc.others_share(cpu_start, current_doc.cpu_times()),
            "machine": machine(),
            "plot": a.plot,
            "allocs": allocs,
            "repo": os.path.dirname(here),
        }))
        print(f"current table written to {a.doc}", file=sys.stderr)


def run_db_bench(env, args):
    """db_bench's ops/s for its one benchmark, and the process's peak RSS in KiB (from wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = os.posix_spawnp("db_bench", ["db_bench"] + args, env,
                              file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                                            (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"db_bench {args}: {os.waitstatus_to_exitcode(status)}: {err.read()[-300:]}")
        line = next(line for line in out.read().splitlines() if line.startswith(args[0].split("=")[1]))
    return float(line.split("ops/sec")[0].split()[-1]), usage.ru_maxrss


def lock_sections(a, memscope_path, n):
    """libmemscope_locks.so against memscope alone, interleaved: the uncontended mutex pair, and
    RocksDB db_bench readrandom (2 threads) with its peak RSS. Modes: without the locks library,
    MEMSCOPE_LOCK_SCOPE=report, noreclaim."""
    locks = os.path.join(os.path.dirname(memscope_path), "libmemscope_locks.so")
    if not os.path.exists(locks):
        print(f"skipping the lock-section rows: no {locks}")
        return [], {}
    modes = [("without", memscope_path, {}),
             ("report", f"{memscope_path}:{locks}", {"MEMSCOPE_LOCK_SCOPE": "report"}),
             ("noreclaim", f"{memscope_path}:{locks}", {"MEMSCOPE_LOCK_SCOPE": "noreclaim"})]
    results = {}
    db_dir = None
    if shutil.which("db_bench"):
        db_dir = tempfile.mkdtemp(prefix="memscope-bench-rocksdb-")
        num = "200000"
        env = dict(os.environ, LD_PRELOAD=memscope_path)
        subprocess.run(["db_bench", "--benchmarks=fillrandom", "--threads=2", f"--num={num}", f"--db={db_dir}",
                        "--compression_type=none"], env=env, check=True, capture_output=True, timeout=600)
    else:
        print("skipping db_bench rows: no db_bench (apt-get install rocksdb-tools)")
    # db_bench on two cores swings by 20 % from run to run (all modes
    # alike): two short runs per mode and round, in alternating order.
    secs = "1" if a.quick else "3"
    for rnd in range(a.rounds):
        for mode, preload, extra in (modes if rnd % 2 == 0 else list(reversed(modes))):
            print(f"\r[locks] round {rnd + 1}/{a.rounds} {mode:10}", end="", file=sys.stderr)
            v = float(run(a.binary, preload, ["lockpair", str(n)], extra).split()[-1])
            results.setdefault("mutex lock+unlock, uncontended (ns)", {}).setdefault(mode, []).append(v)
        for mode, preload, extra in modes + list(reversed(modes)):
            if db_dir:
                env = dict(os.environ, LD_PRELOAD=preload, MEMSCOPE_LOG="off", **extra)
                ops, rss = run_db_bench(env, ["--benchmarks=readrandom", "--use_existing_db=1", "--threads=2",
                                              f"--duration={secs}", "--num=200000", f"--db={db_dir}",
                                              "--compression_type=none"])
                results.setdefault("db_bench readrandom, 2 threads (ops/s)", {}).setdefault(mode, []).append(ops)
                results.setdefault("db_bench readrandom: peak RSS (KiB)", {}).setdefault(mode, []).append(rss)
    if db_dir:
        shutil.rmtree(db_dir, ignore_errors=True)
    return [m for m, _, _ in modes], results


def summarize_locks(modes, results):
    """Per row and mode: (median, min, max, ratio to `without`): throughput ratio for ops/s, base/med
    for times and sizes (so > 1 is better)."""
    out = []
    for title, row in results.items():
        base = statistics.median(row["without"])
        out.append((title, {m: cell_stats(row[m], base, "ops/s" in title) for m in modes}))
    return out


def cell_stats(vals, base=None, higher_better=False):
    """(median, min, max, ratio) of one cell; ratio to base (None without one)."""
    med = statistics.median(vals)
    if base is None:
        ratio = None
    elif higher_better:
        ratio = med / base
    else:
        ratio = base / med
    return med, min(vals), max(vals), ratio


def summarize(allocs, benches, results, stats_modes, stats_results, latency, tails):
    """Medians of every table, computed once for the terminal and for the doc."""
    main = []
    for title, _, _ in benches:
        row = results[title]
        base = statistics.median(row["jemalloc"]) if "jemalloc" in row else None
        cells = {}
        for name, _ in allocs:
            if name in row:
                med, lo, hi, _ = cell_stats(row[name])
                cells[name] = (med, lo, hi, med / base if base else None)
        main.append((title, cells))
    stats = []
    for title, row in stats_results.items():
        off = statistics.median(row["off"])
        stats.append((title, {mode: cell_stats(row[mode], off, "Mops" in title) for mode, _ in stats_modes}))
    lat = [(key, {k: statistics.median(r[k] for r in runs) for k in runs[0]}) for key, runs in latency.items()]
    tl = [(key, {k: [statistics.median(r[k][i] for r in runs) for i in range(3)] for k in runs[0]})
          for key, runs in tails.items()]
    return {
        "allocs": [name for name, _ in allocs],
        "main": main,
        "stats_modes": [mode for mode, _ in stats_modes],
        "stats": stats,
        "latency": lat,
        "tails": tl,
    }


def fmt_range(med, lo, hi):
    """median [min-max], 3 decimals below 10, else 1 (the median decides for all three)."""
    p = 3 if med < 10 else 1
    return f"{med:.{p}f} [{lo:.{p}f}-{hi:.{p}f}]"


TAIL_KINDS = [("small", "<= 4 KiB"), ("medium", "4-64 KiB"), ("large", "256 KiB-1 MiB")]
TAIL_OPS = ("malloc", "call", "free")


def print_text(summary, rounds):
    print(f"\nmachine: {machine()}; {rounds} rounds, interleaved; medians, [min-max], ratio to jemalloc\n")
    width = max(len(t) for t, _ in summary["main"])
    cell = 26
    print(f"{'benchmark':{width}}  " + "  ".join(f"{name:>{cell}}" for name in summary["allocs"]))
    for title, row in summary["main"]:
        cells = []
        for name in summary["allocs"]:
            if name not in row:
                cells.append(f"{'-':>{cell}}")
                continue
            med, lo, hi, ratio = row[name]
            ratio = f"{ratio:.2f}x" if ratio is not None else "  -  "
            cells.append(f"{fmt_range(med, lo, hi)} {ratio}".rjust(cell))
        print(f"{title:{width}}  " + "  ".join(cells))
    print("\nmemscope stats on vs off (medians, [min-max]; throughput ratio on/off: >= 0.97 is the target)")
    for title, row in summary["stats"]:
        cells = [f"{mode}: {fmt_range(*row[mode][:3])} {row[mode][3]:.3f}x" for mode in summary["stats_modes"]]
        print(f"{title:30} " + "   ".join(cells))
    if summary.get("locks"):
        print("\nlock sections (libmemscope_locks.so) against memscope alone (medians, [min-max]; ratio to "
              "`without`, > 1 better; targets: pair +5 ns at most in report, db_bench >= 0.97x report, "
              ">= 0.95x noreclaim)")
        for title, row in summary["locks"]:
            cells = [f"{m}: {fmt_range(*row[m][:3])} {row[m][3]:.3f}x" for m in summary["lock_modes"]]
            print(f"{title:42} " + "   ".join(cells))
    print("\ntail latency of free+malloc+first touch on a critical thread while 2 churn threads run "
          "(ns, medians of rounds; noise max = the longest empty timed interval)")
    print(f"{'allocator / scope':40} {'p50':>6} {'p99':>8} {'p99.9':>8} {'p99.99':>9} {'max':>9} {'noise max':>10}")
    for key, med in summary["latency"]:
        print(f"{key:40} {med['p50']:6.0f} {med['p99']:8.0f} {med['p99.9']:8.0f} {med['p99.99']:9.0f} "
              f"{med['max']:9.0f} {med['noise_max']:10.0f}")
    print("\ntails by request size under 2 churn threads: malloc (with the first touch of every page) and free "
          "timed apart, fenced timestamps; p99 / p99.9 / p99.99 in ns, medians of rounds; "
          "empty = an empty timed interval, busy150 = a 150 ns spin, from the same run (the tail interrupts and "
          "preemption alone give an interval that long)")
    print("(call = the malloc call alone, without touching the block's pages)")
    print(f"{'allocator / scope':44} " + " ".join(f"{k + ' ' + op:>24}" for k, _ in TAIL_KINDS for op in TAIL_OPS)
          + f" {'empty':>20} {'busy150':>20}")
    for key, q in summary["tails"]:
        cells = []
        for k, _ in TAIL_KINDS:
            for op in TAIL_OPS:
                v = q[f"{k}.{op}"]
                cells.append(f"{v[0]:.0f}/{v[1]:.0f}/{v[2]:.0f}".rjust(24))
        e, b = q["small.empty"], q["small.busy150"]
        print(f"{key:44} " + " ".join(cells) + f" {e[0]:.0f}/{e[1]:.0f}/{e[2]:.0f}".rjust(21)
              + f" {b[0]:.0f}/{b[1]:.0f}/{b[2]:.0f}".rjust(21))


def plot_ccdf(hists, path, title):
    """Log-log CCDF, one curve per allocator and scope: P(latency > x)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is missing (python3 -m pip install matplotlib)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, hist in hists.items():
        total = sum(hist.values())
        xs, ys, above = [], [], total
        for ns in sorted(hist):
            above -= hist[ns]
            if above > 0:
                xs.append(max(ns, 1.0))
                ys.append(above / total)
        style = "-" if "noreclaim" in label else "--"
        ax.step(xs, ys, style, where="post", label=label, linewidth=1.4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("free + malloc + first touch latency (ns)")
    ax.set_ylabel("fraction of calls slower (CCDF)")
    ax.set_title(f"critical thread under churn; {title}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"latency CCDF written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
