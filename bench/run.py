#!/usr/bin/env python3
"""Benchmark harness: minginx-cffi against nginx on loopback, interleaved, median of several runs.

Every figure is a ratio against a baseline measured in the same sitting:
servers run one after another in rounds (A B C, A B C, ...), each round
restarting every server, and the table gives each server's median and range.
Results (every run) go to bench/results/<timestamp>.json and a Markdown table.

    python3 bench/run.py                       # all workloads, 3 rounds
    python3 bench/run.py --workload c400 --rounds 5 --duration 10

Workloads:
  c400          the seed's experiment scaled to 2 cores: 2 workers, wrk -t2 -c400, unpinned
  pinned        server on CPU 0 with 1 worker, wrk on CPU 1 with -t2 -c100 (stable to ~3%)
  port          the 6 KiB file, pinned: the C engine against the pure-Python port (1 and 2
                workers, with and without its caches)
  hello-native  13-byte text/plain from a Python handler, pinned as above: minginx-cffi's
                App against granian (RSGI) and uvicorn (ASGI, httptools + uvloop)
  hello-wsgi    the same from a WSGI callable: minginx-cffi --wsgi against gunicorn + gevent

Baselines that are Python packages are looked for in bench/.venv (make bench
creates it from bench/requirements.txt); a missing one is skipped with a line.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from minginx_cffi.server import default_root  # noqa: E402

WORKLOADS = {
    "c400": dict(workers=2, pin=False, wrk=["-t2", "-c400"], path="/index.html",
                 servers=["minginx-cffi lifo", "minginx-cffi fifo", "nginx"]),
    "pinned": dict(workers=1, pin=True, wrk=["-t2", "-c100"], path="/index.html",
                   servers=["minginx-cffi lifo", "minginx-cffi fifo", "minginx-cffi lifo, no caches",
                            "python port", "nginx"]),
    "port": dict(workers=1, pin=True, wrk=["-t2", "-c100"], path="/index.html",
                 servers=["minginx-cffi lifo", "python port", "python port, 2 workers",
                          "python port, no caches"], baseline="python port"),
    "hello-native": dict(workers=1, pin=True, wrk=["-t2", "-c100"], path="/hello",
                         servers=["minginx-cffi App", "granian rsgi", "uvicorn asgi"],
                         baseline="granian rsgi"),
    "hello-wsgi": dict(workers=1, pin=True, wrk=["-t2", "-c100"], path="/hello",
                       servers=["minginx-cffi wsgi", "gunicorn gevent"], baseline="gunicorn gevent"),
}
BENCH_VENV = os.path.join(HERE, ".venv", "bin")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kib(pid):
    """RSS of a process and its children, in KiB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(x) for x in out.split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ------------------------------------------------------------------ servers


def start_minginx(root, port, workers, pin, policy, *extra):
    cmd = [sys.executable, "-m", "minginx_cffi", "serve", "--root", root, "--port", str(port),
           "--workers", str(workers), "--policy", policy] + list(extra)
    if "--workers" in extra:   # a server that fixes its own worker count
        i = cmd.index("--workers")
        del cmd[i:i + 2]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


NGINX_CONF = """
user root;
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 65;
    types {{ text/html html; text/css css; application/javascript js; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def start_nginx(root, port, workers, pin):
    tmp = tempfile.mkdtemp(prefix="bench-nginx-")
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(workers=workers, tmp=tmp, port=port, root=root))
    cmd = [shutil.which("nginx"), "-c", conf, "-p", tmp]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_py(argv, port, pin):
    """A Python baseline from bench/.venv, run from the repository root (bench.hello_app)."""
    cmd = [os.path.join(BENCH_VENV, argv[0])] + argv[1:]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(cmd, cwd=os.path.dirname(HERE), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def servers_available():
    out = {
        "minginx-cffi lifo": lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo"),
        "minginx-cffi fifo": lambda r, p, w, pin: start_minginx(r, p, w, pin, "fifo"),
        "minginx-cffi lifo, no caches": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--open-file-cache", "0", "--small-file-cache", "0"),
        "python port": lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo", "--engine", "python"),
        "python port, 2 workers": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--engine", "python", "--workers", "2"),
        "python port, no caches": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--engine", "python", "--open-file-cache", "0",
            "--small-file-cache", "0"),
        "minginx-cffi App": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--app", "bench.hello_app:app"),
        "minginx-cffi wsgi": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--wsgi", "bench.hello_plain:wsgi"),
    }
    if shutil.which("nginx"):
        out["nginx"] = start_nginx
    else:
        print("bench: nginx not installed; skipping it (apt-get install nginx-light)")
    py = {
        "granian rsgi": lambda r, p, w, pin: start_py(
            ["granian", "--interface", "rsgi", "--workers", str(w), "--runtime-threads", "1",
             "--host", "127.0.0.1", "--port", str(p), "--no-ws", "--log-level", "error",
             "bench.hello_plain:rsgi"], p, pin),
        "uvicorn asgi": lambda r, p, w, pin: start_py(
            ["uvicorn", "bench.hello_plain:asgi", "--host", "127.0.0.1", "--port", str(p),
             "--workers", str(w), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
             "--log-level", "warning"], p, pin),
        "gunicorn gevent": lambda r, p, w, pin: start_py(
            ["gunicorn", "-k", "gevent", "-w", str(w), "-b", "127.0.0.1:%d" % p,
             "--worker-connections", "1000", "--log-level", "warning", "bench.hello_plain:wsgi"],
            p, pin),
    }
    for name, start in py.items():
        if os.path.exists(os.path.join(BENCH_VENV, name.split()[0])):
            out[name] = start
        else:
            print("bench: %s not in bench/.venv; skipping it (make bench installs it)" % name)
    return out


# ---------------------------------------------------------------------- wrk


def parse_wrk(text):
    def num(pattern, default=0.0):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else default

    def dur_ms(s):
        m = re.match(r"([\d.]+)(us|ms|s|m)", s)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "transfer": (re.search(r"Transfer/sec:\s+(\S+)", text) or [None, "?"])[1],
        "lat_avg_ms": dur_ms(lat.group(1)) if lat else None,
        "lat_max_ms": dur_ms(lat.group(3)) if lat else None,
        "errors": [int(x) for x in errs.groups()] if errs else [0, 0, 0, 0],
        "non2xx": int(num(r"Non-2xx or 3xx responses:\s+(\d+)")),
    }


def run_wrk(port, spec, duration, pin):
    cmd = ["wrk"] + spec["wrk"] + ["-d%ds" % duration, "http://127.0.0.1:%d%s" % (port, spec["path"])]
    if pin:
        cmd = ["taskset", "-c", "1"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    return parse_wrk(out), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--root", default=default_root())
    ap.add_argument("--only", action="append", help="server names to run (substring match)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (apt-get install wrk)")

    servers = servers_available()
    if args.only:
        servers = {k: v for k, v in servers.items() if any(o in k for o in args.only)}
    workloads = args.workload or list(WORKLOADS)
    root = os.path.abspath(args.root)
    results = []
    for wl in workloads:
        spec = WORKLOADS[wl]
        for rnd in range(args.rounds):
            for name, start in servers.items():
                if name not in spec["servers"]:
                    continue
                port = free_port()
                proc = start(root, port, spec["workers"], spec["pin"])
                try:
                    if not wait_port(port):
                        print("bench: %s did not start" % name)
                        continue
                    run_wrk(port, dict(spec, wrk=["-t1", "-c10"]), 1, spec["pin"])   # warm-up
                    r, raw = run_wrk(port, spec, args.duration, spec["pin"])
                    r.update(server=name, workload=wl, round=rnd, rss_kib=rss_kib(proc.pid))
                    results.append(r)
                    print("%-8s round %d  %-20s %10.0f req/s  max %7.1f ms  errors %s"
                          % (wl, rnd + 1, name, r["rps"], r["lat_max_ms"] or 0, r["errors"]),
                          flush=True)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    report(results, workloads, servers, args)


def report(results, workloads, servers, args):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, stamp + ".json"), "w") as f:
        json.dump({"machine": machine(), "args": vars(args), "runs": results}, f, indent=1)
    lines = ["# minginx-cffi bench, %s" % stamp, "", "Machine: %s" % machine(), ""]
    for wl in workloads:
        rows = [r for r in results if r["workload"] == wl]
        if not rows:
            continue
        base, base_name = None, WORKLOADS[wl].get("baseline", "nginx")
        if any(r["server"] == base_name for r in rows):
            base = statistics.median(r["rps"] for r in rows if r["server"] == base_name)
        lines += ["## %s: wrk %s -d%ds %s%s" % (wl, " ".join(WORKLOADS[wl]["wrk"]), args.duration,
                                                WORKLOADS[wl]["path"], " (pinned)" if WORKLOADS[wl]["pin"] else ""),
                  "", "| server | median req/s | min-max | vs %s | avg / max latency ms | socket errors | RSS MiB |" % base_name,
                  "|---|---|---|---|---|---|---|"]
        for name in servers:
            rs = [r for r in rows if r["server"] == name]
            if not rs:
                continue
            med = statistics.median(r["rps"] for r in rs)
            lines.append("| %s | %.0f | %.0f-%.0f | %s | %.2f / %.1f | %s | %.1f |" % (
                name, med, min(r["rps"] for r in rs), max(r["rps"] for r in rs),
                "%.2fx" % (med / base) if base else "-",
                statistics.median(r["lat_avg_ms"] or 0 for r in rs),
                max(r["lat_max_ms"] or 0 for r in rs),
                "/".join(str(sum(r["errors"][i] for r in rs)) for i in range(4)),
                max(r["rss_kib"] for r in rs) / 1024))
        lines.append("")
    text = "\n".join(lines)
    with open(os.path.join(outdir, stamp + ".md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%d cores, %s, Linux %s" % (os.cpu_count(), cpu, platform.release())


if __name__ == "__main__":
    main()
