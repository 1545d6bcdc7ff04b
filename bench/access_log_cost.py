"""The access log's cost: server CPU per request, 6 KiB keep-alive, log to a file against no log.

    python3 bench/access_log_cost.py [--rounds 4] [--duration 4]

The server (one worker) is pinned to CPU 0 and wrk to CPU 1, as bench/run.py pins
them; each round runs without and with --access-log, alternating, and the CPU the
server process used (utime + stime from /proc) is divided by the requests wrk made.
Prints each run and the medians.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
from bench.run import free_port  # noqa: E402


def cpu_seconds(pid):
    """utime + stime of pid and of its live children: `serve` is a master process whose
    server process does the work (the master's own share is near zero)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            f = open("/proc/%s/stat" % entry).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(f[1]) == pid:  # f[1]: the parent's pid
            total += int(f[11]) + int(f[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(root, log, duration):
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "minginx_cffi",
        "serve",
        "--root",
        root,
        "--port",
        str(port),
        "--workers",
        "1",
    ] + (["--access-log", log] if log else [])
    # the server process inherits the master's CPU affinity
    p = subprocess.Popen(
        ["taskset", "-c", "0"] + args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=HERE),
    )
    try:
        p.stdout.readline()
        c0 = cpu_seconds(p.pid)
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t1",
                "-c50",
                "-d%ds" % duration,
                "http://127.0.0.1:%d/6k.bin" % port,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        c1 = cpu_seconds(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait()
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return (c1 - c0) / n * 1e6, n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "6k.bin"), "wb") as f:
            f.write(os.urandom(6144))
        log = os.path.join(root, "access.log")
        res = {False: [], True: []}
        for _ in range(args.rounds):
            for with_log in (False, True):
                us, n = run(root, log if with_log else None, args.duration)
                res[with_log].append(us)
                print(
                    "%-7s %6.2f us CPU/request  (%d requests)" % ("log" if with_log else "no log", us, n),
                    flush=True,
                )
    a, b = statistics.median(res[False]), statistics.median(res[True])
    print("median: no log %.2f us/request, log %.2f us/request: %+.1f%%" % (a, b, (b / a - 1) * 100))


if __name__ == "__main__":
    main()
