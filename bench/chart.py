"""Draw bench/results/<stamp>.json as a PNG: one row per workload, median req/s per server and,
beside it, the server's CPU per request (when wrk is the bottleneck, req/s hides the gap)."""

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
    workloads = [
        w
        for w in dict.fromkeys(r["workload"] for r in runs)
        if not any("slow_s" in r for r in runs if r["workload"] == w)
    ]
    if not workloads:
        return
    fig, axes = plt.subplots(
        len(workloads),
        2,
        figsize=(14, 2.6 * len(workloads)),
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 2]},
    )
    for (ax, cpu_ax), wl in zip(axes, workloads):
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
        cpu = [
            statistics.median(r.get("cpu_us_per_req", 0.0) for r in rows if r["server"] == n) for n in names
        ]
        if idle or not any(cpu):
            cpu_ax.axis("off")
            continue
        cpu_ax.barh(names, cpu, color=colors)
        cpu_ax.invert_yaxis()
        cpu_ax.set_yticklabels([])
        cpu_ax.set_title("server CPU per request, us (lower is better)", fontsize=10)
        for i, v in enumerate(cpu):
            cpu_ax.text(v, i, " %.2f" % v, va="center", fontsize=8)
        cpu_ax.tick_params(labelsize=8)
    fig.suptitle("minginx-cffi bench, %s: %s" % (data.get("date", ""), data.get("machine", "")), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.6 * len(workloads))))  # room for the title
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
