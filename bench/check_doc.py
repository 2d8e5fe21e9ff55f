#!/usr/bin/env python3
"""make bench-smoke: checks what bench/run.py --doc wrote to a copy.

  bench/check_doc.py ORIGINAL REWRITTEN

ORIGINAL is docs/BENCHMARKS.md, REWRITTEN the copy a --quick run wrote its
current table into. Fails unless: both have one pair of markers; nothing
outside them differs; the copy's block is this run's (the quick-run
notice, this commit's id, the table of every row with jemalloc and
memscope columns, and the stats, latency and tails tables); and every
dated investigation has a line in the index that links to it. Written
apart from bench/current_doc.py on purpose: it checks the writer, it does
not share its code.
"""
import re
import subprocess
import sys

BEGIN = "<!-- current:begin -->"
END = "<!-- current:end -->"


def fail(msg):
    sys.exit(f"check_doc: {msg}")


def split(path):
    with open(path) as f:
        lines = f.read().split("\n")
    b = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    e = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(b) != 1 or len(e) != 1 or b[0] > e[0]:
        fail(f"{path}: expected one {BEGIN} and after it one {END}, found {len(b)} and {len(e)}")
    return lines[:b[0]], lines[b[0] + 1:e[0]], lines[e[0] + 1:]


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def main():
    original, rewritten = sys.argv[1], sys.argv[2]
    before_o, _, after_o = split(original)
    before_r, block, after_r = split(rewritten)
    if before_o != before_r or after_o != after_r:
        fail(f"{rewritten}: the writer changed lines outside the markers")
    text = "\n".join(block)
    if "--quick" not in text:
        fail("the block does not say it is a quick run (was it written by this run?)")
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head and f"commit: {head}" not in text:
        fail(f"the block does not name this commit ({head})")
    for what in ("machine: ", "other processes during the run: ", "rounds: 1", "| benchmark |",
                 "| allocator / scope | p50 |", "stats off", "small (<= 4 KiB) malloc"):
        if what not in text:
            fail(f"the block has no {what!r}")
    header = next(line for line in block if line.startswith("| benchmark |"))
    for name in ("jemalloc", "memscope"):
        if name not in header:
            fail(f"the table has no {name} column")
    rows = [line for line in block if line.startswith("| malloc+free ") or line.startswith("| exec of ")]
    if len(rows) < 7:
        fail(f"the table has {len(rows)} malloc+free and exec rows, expected 7 or more")

    # The index of the dated investigations (headings in code blocks are not headings).
    whole, fenced = [], False
    for line in before_o + after_o:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            whole.append(line)
    try:
        start = next(i for i, line in enumerate(whole) if line.startswith("## Investigations"))
    except StopIteration:
        fail(f"{original}: no '## Investigations' heading")
    headings = [line[4:] for line in whole[start:] if re.match(r"### \d{4}-\d\d-\d\d", line)]
    links = re.findall(r"\]\(#([^)]+)\)", "\n".join(whole))
    anchors = {slug(re.sub(r"^#+ ", "", line)) for line in whole if line.startswith("#")}
    for h in headings:
        if slug(h) not in links:
            fail(f"{original}: the investigation '{h}' has no line in the index (#{slug(h)})")
    for link in links:
        if link not in anchors:
            fail(f"{original}: the index links to #{link}, which no heading has")
    print(f"check_doc: {rewritten}: current table written, nothing else changed; "
          f"{len(headings)} investigations indexed")


if __name__ == "__main__":
    main()
