"""Instructions per request of an ASGI app: minginx-cffi --asgi against uvicorn and granian.

The ASGI twin of per_request.py's instruction count (callgrind is stable on a noisy machine
where wall time is not): each server runs under `valgrind --tool=callgrind
--trace-children=yes` from bench/.venv (the same FastAPI and uvloop for all three), one
worker; a first request waits for it to be up, wrk -c50 warms it, `callgrind_control -z`
zeroes the counters, wrk runs again, `callgrind_control -d` dumps them, and the total Ir of
every thread of every process is divided by the requests wrk completed.  With
--separate-threads each thread's share is printed too (minginx-cffi: the asyncio loop
thread against the C worker).  Ir per request drifts a few per cent with the batch sizes
a run happens to get: compare runs of the same length, several of each.

    python3 bench/asgi_per_request.py [--servers minginx,uvicorn,granian]
        [--app bench.fastapi_app:app] [--path /hello] [--duration 10] [--separate-threads]
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.per_request import stop  # noqa: E402
from bench.run import BENCH_VENV, free_port, process_tree, wait_port  # noqa: E402


def server_cmd(name, app, port):
    if name == "minginx":
        return [
            os.path.join(BENCH_VENV, "python"),
            "-m",
            "minginx_cffi",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-stats",
            "--asgi",
            app,
        ]
    if name == "uvicorn":
        return [
            os.path.join(BENCH_VENV, "uvicorn"),
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    if name == "granian":
        return [
            os.path.join(BENCH_VENV, "granian"),
            "--interface",
            "asgi",
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            app,
        ]
    raise SystemExit("bench: unknown server %r (minginx, uvicorn, granian)" % name)


def wrk(port, path, duration):
    out = subprocess.run(
        ["wrk", "-t1", "-c50", "-d%ds" % duration, "http://127.0.0.1:%d%s" % (port, path)],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m or "Non-2xx" in out:
        raise RuntimeError("wrk failed:\n" + out)
    return int(m.group(1))


def wait_answer(port, path, timeout=180):
    """Until the app answers (under callgrind, startup and the first request are slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            ["curl", "-s", "-m", "30", "http://127.0.0.1:%d%s" % (port, path)], capture_output=True
        )
        if r.returncode == 0 and r.stdout:
            return
        time.sleep(1)
    raise RuntimeError("the server never answered %s" % path)


def instructions(name, app, path, duration, separate_threads):
    port = free_port()
    out = tempfile.mkdtemp(prefix="callgrind-")
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--callgrind-out-file=%s/cg.%%p" % out]
    if separate_threads:
        cmd.append("--separate-threads=yes")
    proc = subprocess.Popen(
        cmd + server_cmd(name, app, port),
        cwd=os.path.dirname(HERE),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=180)
        wait_answer(port, path)
        wrk(port, path, 3)
        pids = [str(p) for p in process_tree(proc.pid)]
        subprocess.run(["callgrind_control", "-z"] + pids, capture_output=True, check=True)
        n = wrk(port, path, duration)
        for f in glob.glob(out + "/cg.*"):
            os.unlink(f)
        subprocess.run(["callgrind_control", "-d"] + pids, capture_output=True, check=True)
        per_file = {}
        for f in glob.glob(out + "/cg.*"):
            with open(f) as fh:
                for line in fh:
                    if line.startswith("summary:") or line.startswith("totals:"):
                        per_file[os.path.basename(f)] = int(line.split()[1])
                        break
        return n, per_file
    finally:
        stop(proc)
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="minginx,uvicorn,granian")
    ap.add_argument("--app", default="bench.fastapi_app:app")
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--separate-threads", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(BENCH_VENV, "python")):
        raise SystemExit("bench: no bench/.venv (make bench creates it)")
    for name in args.servers.split(","):
        n, per_file = instructions(name, args.app, args.path, args.duration, args.separate_threads)
        print(
            "%-8s %s: %8.0f instructions/request (%d requests under callgrind)"
            % (name, args.app, sum(per_file.values()) / n, n),
            flush=True,
        )
        if args.separate_threads:
            for f, ir in sorted(per_file.items()):
                if ir / n >= 100:
                    print("         %-16s %8.0f" % (f, ir / n))


if __name__ == "__main__":
    main()
