"""An allocation-heavy Python workload: JSON round trip, dict building,
sorting strings. Prints a digest so runs can be compared."""
import hashlib, json, random
random.seed(42)
rows = [{"id": i, "name": "n%06d" % i, "tags": [random.random() for _ in range(i % 17)]} for i in range(80000)]
blob = json.dumps(rows, sort_keys=True)
back = json.loads(blob)
index = {}
for r in back:
    index.setdefault(len(r["tags"]), []).append(r["name"])
words = sorted(("w%d" % random.randrange(10**6)) * (1 + i % 5) for i in range(200000))
print(len(blob), len(index), hashlib.sha256(blob.encode() + "".join(words[:1000]).encode()).hexdigest())
