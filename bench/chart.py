"""Draw bench/results/<stamp>.json as a PNG: one panel per workload, median req/s per server."""

import json
import statistics
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    data = json.load(open(src))
    runs = data["runs"]
    # slow-beside's figures are latencies under load, for its table only
    workloads = [w for w in dict.fromkeys(r["workload"] for r in runs)
                 if not any("slow_s" in r for r in runs if r["workload"] == w)]
    if not workloads:
        return
    fig, axes = plt.subplots(len(workloads), 1, figsize=(10, 2.6 * len(workloads)), squeeze=False)
    for ax, wl in zip(axes[:, 0], workloads):
        rows = [r for r in runs if r["workload"] == wl]
        names = list(dict.fromkeys(r["server"] for r in rows))
        idle = all(r["rps"] == 0 for r in rows)
        key = (lambda r: r["rss_kib"] / 1024) if idle else (lambda r: r["rps"])
        vals = [statistics.median(key(r) for r in rows if r["server"] == n) for n in names]
        colors = ["#0a7d5a" if n.startswith("minginx") else "#8a94a6" for n in names]
        ax.barh(names, vals, color=colors)
        ax.invert_yaxis()
        ax.set_title("%s (%s)" % (wl, "server RSS, MiB" if idle else "median req/s"), fontsize=10)
        for i, v in enumerate(vals):
            ax.text(v, i, " %s" % ("%.1f" % v if idle else "{:,.0f}".format(v)), va="center", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle("minginx-cffi bench, %s: %s" % (data.get("date", ""), data.get("machine", "")), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.6 * len(workloads))))   # room for the title
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
