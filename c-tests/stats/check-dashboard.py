#!/usr/bin/env python3
"""Checks the sample Grafana dashboard against what memscope exports.

    c-tests/stats/check-dashboard.py DASHBOARD.json METRICS.txt

Every panel query must parse as PromQL (`promtool check rules` on a rules
file made of them, with Grafana's variables replaced), every memscope
series it names must be in METRICS.txt (a /metrics scrape), and every event
it names literally must be one the library exports. Exits non-zero with
the reasons otherwise.
"""
import json
import re
import subprocess
import sys
import tempfile

dashboard, metrics_path = sys.argv[1], sys.argv[2]
dash = json.load(open(dashboard))
metrics = open(metrics_path).read()
exported = set(re.findall(r"^(memscope_[a-z_]+)", metrics, re.M))
events = set(re.findall(r'event="([a-z_]+)"', metrics))

exprs = []
for panel in dash["panels"]:
    for target in panel.get("targets", []):
        exprs.append((panel["title"], target["expr"]))
for var in dash.get("templating", {}).get("list", []):
    if var.get("type") == "query":
        m = re.match(r"label_values\((\w+), *(\w+)\)", var["definition"])
        if not m:
            sys.exit(f"variable {var['name']}: not a label_values() query: {var['definition']}")
        exprs.append((f"variable {var['name']}", m.group(1)))

problems = []
rules = {"groups": [{"name": "dashboard", "rules": []}]}
for i, (title, expr) in enumerate(exprs):
    promql = expr.replace("$__rate_interval", "5m").replace("$command", ".*")
    if "$" in promql:
        problems.append(f"{title}: unreplaced variable in {expr}")
    rules["groups"][0]["rules"].append({"record": f"dashboard:query_{i}", "expr": promql})
    for name in re.findall(r"\b(memscope_[a-z_]+)", promql):
        if name not in exported:
            problems.append(f"{title}: {name} is not exported")
    for alternatives in re.findall(r'event=~"([^"]+)"', promql):
        for alt in alternatives.split("|"):
            if re.fullmatch(r"[a-z_]+", alt) and alt not in events:
                problems.append(f"{title}: no event named {alt}")

with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
    json.dump(rules, f)  # JSON is YAML
    f.flush()
    r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if r.returncode != 0:
        problems.append("promtool check rules:\n" + r.stdout + r.stderr)

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{len(exprs)} queries parse and name exported series")
