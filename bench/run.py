#!/usr/bin/env python3
"""Benchmark harness: minginx-cffi against nginx on loopback, interleaved, median of several runs.

Every figure is a ratio against a baseline measured in the same sitting:
servers run one after another in rounds (A B C, A B C, ...), each round
restarting every server, and the table gives each server's median and range.
Results (every run) go to bench/results/<timestamp>.json and a Markdown table.

    python3 bench/run.py                       # all workloads, 3 rounds
    python3 bench/run.py --workload c400 --rounds 5 --duration 10
    python3 bench/run.py --workload pinned --open-file-cache 0   # a serve flag: every minginx-cffi row

Workloads:
  pinned        the 6 KiB index.html; server on CPU 0 with 1 worker, wrk on CPU 1 with -t2 -c100
                (stable to ~3%): minginx-cffi's variants, nginx (as the issue measured it, and with
                its open_file_cache), h2o, lighttpd, the port, and a
                bare C epoll loop answering from memory (the ceiling)
  c400          the seed's experiment scaled to 2 cores: 2 workers, wrk -t2 -c400, unpinned
  1mib          a 1 MiB file, pinned, wrk -t2 -c10: bytes per second
  ab            connection per request: ab -n 20000 -c 50 (no keep-alive), pinned; minginx-cffi
                and nginx each with and without TCP_DEFER_ACCEPT (h2o has it on by default)
  idle10k       10,000 idle keep-alive connections (one request each), server RSS
  idle19k       19,000 on one server process (the fd limit is 20,000), then a next request
                on every one, timed
  idle50k       50,000 on three server processes (--processes 3; nginx: 3 workers), held by
                four client processes
  burst         2,000 connections at once, each with half a request head in flight (a
                coroutine, a stack and a request buffer each), then closed: server RSS before,
                at the peak, and 1, 3 and 5 s after (pooled stacks and buffers beyond what the
                live connections need go back to the kernel)
  ideas         the seed's ideas, each switched off in turn: caches, stack pool, buffer pool,
                fd batching, the fast context switch
  ideas-churn   the same for the pools and fd batching, under ab (a new connection, so a new
                coroutine, stack and request buffer, per request)
  port          the 6 KiB file, pinned: the C engine against the pure-Python port (1 and 2
                workers, with and without its caches)
  hello-native  13-byte text/plain from a Python handler, pinned as above: minginx-cffi's
                App, with its handler pool (--threads 8, the default) and inline (--threads 0),
                against granian (RSGI) and uvicorn (ASGI, httptools + uvloop)
  hello-wsgi    the same from a WSGI callable: minginx-cffi --wsgi (both modes) against
                gunicorn + gevent
  fastapi-hello a FastAPI route returning PlainTextResponse("hello"), pinned as above:
                minginx-cffi --asgi against uvicorn (uvloop + httptools) and granian (ASGI),
                every one run by bench/.venv's Python (the same FastAPI, the same uvloop)
  interp, interp-hello, interp-wsgi, interp-idle
                the interpreter axis: the C engine and the port, each run by CPython (this
                Python) and by PyPy (--pypy, or bench/.venv-pypy), on the 6 KiB file pinned,
                the App and the WSGI hello pinned (--threads 8), and 10,000 idle
                connections (RSS); the PyPy rows are skipped with a line without a PyPy,
                and get 5 s of warm-up at the measured load (the JIT compiles first)
  slow-beside   --workers 1, pinned, 4 requests to a handler sleeping 2 s in flight, and
                meanwhile static-file and fast-route requests, each on its own connection:
                their latency (median, max), with the handler pool and with --threads 0

Any option of `minginx-cffi serve` given here (--open-file-cache 0, --small-file-cache 0,
--switch fast, ...) is passed to every minginx-cffi server the run starts, after the row's
own flags, and named in the results' first line; other unknown options are an error.

Baselines that are Python packages are looked for in bench/.venv (make bench
creates it from bench/requirements.txt); a missing one is skipped with a line.
The PyPy rows want a PyPy that imports this tree's engine:
    pypy3 -m venv bench/.venv-pypy && bench/.venv-pypy/bin/pip install cffi click
    bench/.venv-pypy/bin/python minginx_cffi/_build.py
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
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

STATIC = [
    "minginx-cffi lifo",
    "minginx-cffi fifo",
    "minginx-cffi fast",
    "minginx-cffi reuseport",
    "minginx-cffi uring",
    "minginx-cffi uring fast",
    "nginx",
    "nginx open_file_cache",
    "h2o",
    "lighttpd",
]
WORKLOADS = {
    "pinned": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/index.html",
        servers=STATIC + ["minginx-cffi lifo, no caches", "python port", "bare C loop"],
    ),
    "c400": dict(
        workers=2,
        pin=False,
        wrk=["-t2", "-c400"],
        path="/index.html",
        servers=[
            "minginx-cffi lifo",
            "minginx-cffi fifo",
            "minginx-cffi reuseport",
            "nginx",
            "h2o",
            "lighttpd",
        ],
    ),
    "1mib": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c10"],
        path="/1mib.bin",
        servers=["minginx-cffi lifo", "minginx-cffi uring", "nginx", "h2o", "lighttpd"],
    ),
    "ab": dict(
        workers=1,
        pin=True,
        kind="ab",
        ab=["-n", "20000", "-c", "50"],
        path="/index.html",
        servers=[
            "minginx-cffi lifo",
            "minginx-cffi reuseport",
            "minginx-cffi no defer-accept",
            "minginx-cffi uring",
            "nginx",
            "nginx deferred",
            "h2o",
            "lighttpd",
        ],
    ),
    "idle10k": dict(
        workers=2,
        pin=False,
        kind="idle",
        conns=10000,
        path="/index.html",
        servers=[
            "minginx-cffi, keep-alive 75 s",
            "minginx-cffi uring, keep-alive 75 s",
            "python port, keep-alive 75 s",
            "nginx",
            "h2o",
            "lighttpd",
        ],
    ),
    # past one process's fd limit (20,000 here, root cannot raise it): 19,000 on one server
    # process, and 50,000 on three processes (nginx: three worker processes), held by
    # several client processes
    "idle19k": dict(
        workers=2,
        pin=False,
        kind="idle",
        conns=19000,
        path="/index.html",
        servers=["minginx-cffi, keep-alive 75 s", "nginx"],
    ),
    "idle50k": dict(
        workers=1,
        pin=False,
        kind="idle",
        conns=50000,
        path="/index.html",
        servers=["minginx-cffi lifo, 3 processes", "nginx, 3 processes"],
    ),
    "burst": dict(
        workers=1,
        pin=False,
        kind="burst",
        conns=2000,
        path="/index.html",
        after=[1, 3, 5],
        servers=["minginx-cffi lifo", "minginx-cffi fast", "python port", "nginx"],
    ),
    "ideas": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/index.html",
        servers=[
            "minginx-cffi lifo",
            "minginx-cffi fast",
            "minginx-cffi lifo, no caches",
            "minginx-cffi no small-file cache",
            "minginx-cffi no stack pool",
            "minginx-cffi no buffer pool",
            "minginx-cffi fd_batch 1",
        ],
        baseline="minginx-cffi lifo",
    ),
    "ideas-churn": dict(
        workers=1,
        pin=True,
        kind="ab",
        ab=["-n", "20000", "-c", "50"],
        path="/index.html",
        servers=[
            "minginx-cffi lifo",
            "minginx-cffi no stack pool",
            "minginx-cffi no buffer pool",
            "minginx-cffi fd_batch 1",
        ],
        baseline="minginx-cffi lifo",
    ),
    "port": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/index.html",
        servers=["minginx-cffi lifo", "python port", "python port, 2 workers", "python port, no caches"],
        baseline="python port",
    ),
    "hello-native": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/hello",
        servers=[
            "minginx-cffi App, threads 8",
            "minginx-cffi App, threads 0",
            "granian rsgi",
            "uvicorn asgi",
        ],
        baseline="granian rsgi",
        also_vs=["uvicorn asgi"],
    ),
    "hello-wsgi": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/hello",
        servers=["minginx-cffi wsgi, threads 8", "minginx-cffi wsgi, threads 0", "gunicorn gevent"],
        baseline="gunicorn gevent",
    ),
    "fastapi-hello": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/hello",
        servers=["minginx-cffi asgi fastapi", "uvicorn fastapi", "granian fastapi"],
        baseline="uvicorn fastapi",
        also_vs=["granian fastapi"],
    ),
    # the interpreter axis (PyPy): INTERP's rows, each also as "<name> (pypy)"
    "interp": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/index.html",
        servers=["minginx-cffi lifo", "python port", "minginx-cffi lifo (pypy)", "python port (pypy)"],
        baseline="python port",
    ),
    "interp-hello": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/hello",
        servers=[
            "minginx-cffi App, threads 8",
            "python port App, threads 8",
            "minginx-cffi App, threads 8 (pypy)",
            "python port App, threads 8 (pypy)",
        ],
        baseline="minginx-cffi App, threads 8",
    ),
    "interp-wsgi": dict(
        workers=1,
        pin=True,
        wrk=["-t2", "-c100"],
        path="/hello",
        servers=[
            "minginx-cffi wsgi, threads 8",
            "python port wsgi, threads 8",
            "minginx-cffi wsgi, threads 8 (pypy)",
            "python port wsgi, threads 8 (pypy)",
        ],
        baseline="minginx-cffi wsgi, threads 8",
    ),
    "interp-idle": dict(
        workers=2,
        pin=False,
        kind="idle",
        conns=10000,
        path="/index.html",
        servers=[
            "minginx-cffi, keep-alive 75 s",
            "python port, keep-alive 75 s",
            "minginx-cffi, keep-alive 75 s (pypy)",
            "python port, keep-alive 75 s (pypy)",
        ],
    ),
    "slow-beside": dict(
        workers=1,
        pin=True,
        kind="slow",
        slow=4,
        samples=10,
        path="/fast",
        static="/index.html",
        servers=["minginx-cffi slow app, threads 8", "minginx-cffi slow app, threads 0"],
    ),
}
BENCH_VENV = os.path.join(HERE, ".venv", "bin")
PYPY_DEFAULT = os.path.join(HERE, ".venv-pypy", "bin", "python")
PYPY_WARMUP = 5  # seconds of load before a (pypy) row is measured: the JIT's warm-up
# the interpreter axis: these rows run by CPython and, as "<name> (pypy)", by PyPy
INTERP = {
    "minginx-cffi lifo": (),
    "python port": ("--engine", "python"),
    "minginx-cffi App, threads 8": ("--app", "bench.hello_app:app", "--threads", "8"),
    "python port App, threads 8": ("--engine", "python", "--app", "bench.hello_app:app", "--threads", "8"),
    "minginx-cffi wsgi, threads 8": ("--wsgi", "bench.hello_plain:wsgi", "--threads", "8"),
    "python port wsgi, threads 8": (
        "--engine",
        "python",
        "--wsgi",
        "bench.hello_plain:wsgi",
        "--threads",
        "8",
    ),
    "minginx-cffi, keep-alive 75 s": ("--keepalive-timeout", "75"),
    "python port, keep-alive 75 s": ("--engine", "python", "--keepalive-timeout", "75"),
}


def make_root():
    """The document root every server serves: the demo site's 6 KiB index.html and a 1 MiB file."""
    root = tempfile.mkdtemp(prefix="bench-root-")
    shutil.copy(os.path.join(default_root(), "index.html"), os.path.join(root, "index.html"))
    with open(os.path.join(root, "1mib.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    return root


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


def process_tree(pid):
    """pid and its children (nginx's and lighttpd's workers, say)."""
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(x) for x in out.split()]
    except OSError:
        pass
    return pids


def cpu_seconds(pid):
    """utime + stime of a process and its children, in seconds."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in process_tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def rss_kib(pid):
    """RSS of a process and its children, in KiB."""
    total = 0
    for p in process_tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ------------------------------------------------------------------ servers


# `minginx-cffi serve` options given to this harness, for every minginx-cffi server (main())
SERVER_FLAGS = []


def start_minginx(root, port, workers, pin, policy, *extra, env=None, python=sys.executable):
    """This tree's minginx-cffi (run from the repository root, as bench.* apps need)."""
    extra = tuple(extra) + tuple(SERVER_FLAGS)
    cmd = [
        python,
        "-m",
        "minginx_cffi",
        "serve",
        "--root",
        root,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--policy",
        policy,
        "--no-stats",
    ] + list(extra)
    if "--workers" in extra:  # a server that fixes its own worker count
        i = cmd.index("--workers")
        del cmd[i : i + 2]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(
        cmd,
        cwd=os.path.dirname(HERE),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, **(env or {})),
    )


H2O_CONF = """
user: root
listen:
  host: 127.0.0.1
  port: {port}
num-threads: {workers}
pid-file: {tmp}/h2o.pid
error-log: {tmp}/error.log
max-connections: 16384
hosts:
  default:
    paths:
      /:
        file.dir: {root}
"""

LIGHTTPD_CONF = """
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.max-worker = {max_worker}
server.event-handler = "linux-sysepoll"
server.network-backend = "sendfile"
server.max-fds = 65536
server.max-connections = 16384
server.max-keep-alive-requests = 10000000
server.max-keep-alive-idle = 65
server.errorlog = "{tmp}/error.log"
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html", ".css" => "text/css", ".bin" => "application/octet-stream")
"""


# Every server runs in its own session: lighttpd's master, for one, signals its whole
# process group when it stops, which would otherwise include this harness.
def start_conf_server(kind, root, port, workers, pin):
    tmp = tempfile.mkdtemp(prefix="bench-%s-" % kind)
    conf = os.path.join(tmp, "server.conf")
    if kind == "h2o":
        text = H2O_CONF.format(port=port, workers=workers, tmp=tmp, root=root)
        cmd = [shutil.which("h2o"), "-c", conf]
    else:
        text = LIGHTTPD_CONF.format(port=port, root=root, tmp=tmp, max_worker=0 if workers == 1 else workers)
        cmd = [shutil.which("lighttpd"), "-D", "-f", conf]
    with open(conf, "w") as f:
        f.write(text)
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_bare_loop(root, port, workers, pin):
    """bench/bare_loop.c: one epoll loop answering every request from memory, the ceiling."""
    exe = os.path.join(tempfile.gettempdir(), "minginx-bare-loop")
    src = os.path.join(HERE, "bare_loop.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    cmd = [exe, str(port), os.path.join(root, "index.html")]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


NGINX_CONF = """
user root;
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
worker_rlimit_nofile 65536;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;{extra_http}
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
        listen 127.0.0.1:{port}{listen_opts};
        root {root};
        location / {{ }}
    }}
}}
"""


def start_nginx(root, port, workers, pin, deferred=False, file_cache=False):
    tmp = tempfile.mkdtemp(prefix="bench-nginx-")
    conf = os.path.join(tmp, "nginx.conf")
    # file_cache: nginx's open_file_cache, the counterpart of minginx-cffi's (on by default
    # there, off in nginx's defaults and in the reference figures)
    extra = (
        "\n    open_file_cache max=1024 inactive=60s;\n    open_file_cache_valid 1s;" if file_cache else ""
    )
    with open(conf, "w") as f:
        f.write(
            NGINX_CONF.format(
                workers=workers,
                tmp=tmp,
                port=port,
                root=root,
                listen_opts=" deferred" if deferred else "",
                extra_http=extra,
            )
        )
    cmd = [shutil.which("nginx"), "-c", conf, "-p", tmp]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_py(argv, port, pin):
    """A Python baseline from bench/.venv, run from the repository root (bench.hello_app)."""
    cmd = [os.path.join(BENCH_VENV, argv[0])] + argv[1:]
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    return subprocess.Popen(
        cmd,
        cwd=os.path.dirname(HERE),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def pypy_rows(pypy):
    """INTERP's rows as "<name> (pypy)", run by the PyPy at pypy; the C engine's rows
    only where that PyPy imports this tree's engine (built for it by _build.py)."""
    if not pypy or not os.path.exists(pypy):
        print(
            "bench: no PyPy (--pypy, MINGINX_BENCH_PYPY or %s); skipping the (pypy) rows"
            % os.path.relpath(PYPY_DEFAULT)
        )
        return {}

    def imports(module):
        r = subprocess.run([pypy, "-c", "import " + module], cwd=os.path.dirname(HERE), capture_output=True)
        return r.returncode == 0

    if not imports("minginx_cffi.server"):
        print(
            "bench: %s cannot import minginx_cffi (pip install cffi click); skipping the (pypy) rows" % pypy
        )
        return {}
    engine = imports("minginx_cffi._minginx")
    if not engine:
        print("bench: %s has no C engine (%s minginx_cffi/_build.py); skipping its C rows" % (pypy, pypy))
    out = {}
    for name, extra in INTERP.items():
        if engine or "--engine" in extra:
            out[name + " (pypy)"] = (
                lambda e: lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo", *e, python=pypy)
            )(extra)
    return out


def servers_available(pypy=None):
    out = {
        "minginx-cffi lifo": lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo"),
        "minginx-cffi fifo": lambda r, p, w, pin: start_minginx(r, p, w, pin, "fifo"),
        "minginx-cffi lifo, no caches": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--open-file-cache", "0", "--small-file-cache", "0"
        ),
        "python port": lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo", "--engine", "python"),
        # idle*: nginx's keepalive_timeout (75 s), as opening thousands of connections can take
        # longer than our default 15 s before the next round of requests
        "minginx-cffi, keep-alive 75 s": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--keepalive-timeout", "75"
        ),
        "python port, keep-alive 75 s": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--engine", "python", "--keepalive-timeout", "75"
        ),
        "minginx-cffi lifo, 3 processes": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--processes", "3", "--keepalive-timeout", "75"
        ),
        "python port, 2 workers": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--engine", "python", "--workers", "2"
        ),
        "python port, no caches": lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--engine", "python", "--open-file-cache", "0", "--small-file-cache", "0"
        ),
    }
    # Python handlers with the handler pool (--threads 8, the default) and inline (--threads 0)
    for threads in ("8", "0"):
        out.update(
            {
                "minginx-cffi App, threads " + threads: (
                    lambda t: (
                        lambda r, p, w, pin: start_minginx(
                            r, p, w, pin, "lifo", "--app", "bench.hello_app:app", "--threads", t
                        )
                    )
                )(threads),
                "minginx-cffi wsgi, threads " + threads: (
                    lambda t: (
                        lambda r, p, w, pin: start_minginx(
                            r, p, w, pin, "lifo", "--wsgi", "bench.hello_plain:wsgi", "--threads", t
                        )
                    )
                )(threads),
                "minginx-cffi slow app, threads " + threads: (
                    lambda t: (
                        lambda r, p, w, pin: start_minginx(
                            r, p, w, pin, "lifo", "--app", "bench.slow_app:app", "--threads", t
                        )
                    )
                )(threads),
            }
        )
    out.update(
        {
            # the default is --switch ucontext (the seed's swapcontext): every other row runs it
            "minginx-cffi fast": lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo", "--switch", "fast"),
            "minginx-cffi reuseport": lambda r, p, w, pin: start_minginx(
                r, p, w, pin, "lifo", "--accept", "reuseport"
            ),
            "minginx-cffi no defer-accept": lambda r, p, w, pin: start_minginx(
                r, p, w, pin, "lifo", "--no-defer-accept"
            ),
            "minginx-cffi no small-file cache": lambda r, p, w, pin: start_minginx(
                r, p, w, pin, "lifo", "--small-file-cache", "0"
            ),
            "minginx-cffi no stack pool": lambda r, p, w, pin: start_minginx(
                r, p, w, pin, "lifo", env={"MINGINX_NO_STACK_POOL": "1"}
            ),
            "minginx-cffi no buffer pool": lambda r, p, w, pin: start_minginx(
                r, p, w, pin, "lifo", env={"MINGINX_NO_BUFFER_POOL": "1"}
            ),
            "minginx-cffi fd_batch 1": lambda r, p, w, pin: start_minginx(
                r, p, w, pin, "lifo", env={"MINGINX_FD_BATCH": "1"}
            ),
            "bare C loop": start_bare_loop,
        }
    )
    # --io uring next to the epoll rows (issue 16), where this kernel lets us have a ring
    try:
        from minginx_cffi import _native

        _native.uring_probe()
        out["minginx-cffi uring"] = lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo", "--io", "uring")
        out["minginx-cffi uring fast"] = lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--io", "uring", "--switch", "fast"
        )
        out["minginx-cffi uring, keep-alive 75 s"] = lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--io", "uring", "--keepalive-timeout", "75"
        )
    except OSError as e:
        print("bench: no --io uring rows: %s" % e.strerror)
    for name, binary in (("nginx", "nginx"), ("h2o", "h2o"), ("lighttpd", "lighttpd")):
        if shutil.which(binary):
            if name == "nginx":  # nginx with TCP_DEFER_ACCEPT, as minginx-cffi and h2o by default
                out["nginx deferred"] = lambda r, p, w, pin: start_nginx(r, p, w, pin, deferred=True)
                out["nginx open_file_cache"] = lambda r, p, w, pin: start_nginx(r, p, w, pin, file_cache=True)
                out["nginx, 3 processes"] = lambda r, p, w, pin: start_nginx(r, p, 3, pin)
            out[name] = (
                start_nginx
                if name == "nginx"
                else (lambda kind: lambda r, p, w, pin: start_conf_server(kind, r, p, w, pin))(name)
            )
        else:
            print(
                "bench: %s not installed; skipping it (apt-get install %s)"
                % (name, "nginx-light" if name == "nginx" else name)
            )
    py = {
        "granian rsgi": lambda r, p, w, pin: start_py(
            [
                "granian",
                "--interface",
                "rsgi",
                "--workers",
                str(w),
                "--runtime-threads",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--no-ws",
                "--log-level",
                "error",
                "bench.hello_plain:rsgi",
            ],
            p,
            pin,
        ),
        "uvicorn asgi": lambda r, p, w, pin: start_py(
            [
                "uvicorn",
                "bench.hello_plain:asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--workers",
                str(w),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            p,
            pin,
        ),
        "gunicorn gevent": lambda r, p, w, pin: start_py(
            [
                "gunicorn",
                "-k",
                "gevent",
                "-w",
                str(w),
                "-b",
                "127.0.0.1:%d" % p,
                "--worker-connections",
                "1000",
                "--log-level",
                "warning",
                "bench.hello_plain:wsgi",
            ],
            p,
            pin,
        ),
        "uvicorn fastapi": lambda r, p, w, pin: start_py(
            [
                "uvicorn",
                "bench.fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--workers",
                str(w),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            p,
            pin,
        ),
        "granian fastapi": lambda r, p, w, pin: start_py(
            [
                "granian",
                "--interface",
                "asgi",
                "--workers",
                str(w),
                "--runtime-threads",
                "1",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--no-ws",
                "--log-level",
                "error",
                "bench.fastapi_app:app",
            ],
            p,
            pin,
        ),
    }
    for name, start in py.items():
        if os.path.exists(os.path.join(BENCH_VENV, name.split()[0])):
            out[name] = start
        else:
            print("bench: %s not in bench/.venv; skipping it (make bench installs it)" % name)
    # FastAPI under minginx-cffi from bench/.venv's Python, as its baselines: the same FastAPI
    # and uvloop (requirements.txt has minginx-cffi's own cffi and click for it)
    venv_py = os.path.join(BENCH_VENV, "python")
    if os.path.exists(venv_py):
        out["minginx-cffi asgi fastapi"] = lambda r, p, w, pin: start_minginx(
            r, p, w, pin, "lifo", "--asgi", "bench.fastapi_app:app", python=venv_py
        )
    else:
        print("bench: no bench/.venv; skipping minginx-cffi asgi fastapi (make bench creates it)")
    for name, extra in INTERP.items():  # the CPython half of the interpreter axis
        out.setdefault(name, (lambda e: lambda r, p, w, pin: start_minginx(r, p, w, pin, "lifo", *e))(extra))
    out.update(pypy_rows(pypy))
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


def run_ab(port, spec, pin):
    cmd = ["ab", "-q"] + spec["ab"] + ["http://127.0.0.1:%d%s" % (port, spec["path"])]
    if pin:
        cmd = ["taskset", "-c", "1"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout

    def num(pattern):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else 0.0

    return {
        "rps": num(r"Requests per second:\s+([\d.]+)"),
        "transfer": "%.1fMB" % (num(r"Transfer rate:\s+([\d.]+)") / 1024),
        "lat_avg_ms": num(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)"),
        "lat_max_ms": num(r"100%\s+(\d+)"),
        "errors": [0, 0, 0, int(num(r"Failed requests:\s+(\d+)"))],
        "non2xx": int(num(r"Non-2xx responses:\s+(\d+)")),
    }, out


IDLE_PER_CLIENT = 15000  # connections one client process holds (its fd limit is 20,000)


def _idle_client(port, path, n, conn, source):
    """One client process of run_idle: n keep-alive connections from the source address
    (its own loopback address: one address has ~28,000 ephemeral ports to a server's
    port), one request each, held; on "next", one more request on each, timed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    req = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode()

    def answered(t):
        try:
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = t.recv(65536)
                if not chunk:
                    return False
                got += chunk
            return True
        except OSError:
            return False

    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
            s.sendall(req)
            socks.append(s)
        except OSError:
            failed += 1
        if len(socks) % 500 == 0:
            failed += sum(not answered(t) for t in socks[-500:])
    failed += sum(not answered(t) for t in socks[len(socks) // 500 * 500 :])
    conn.send(failed)
    conn.recv()  # "next": the server's RSS has been read
    t0 = time.perf_counter()
    for t in socks:
        try:
            t.sendall(req)
        except OSError:
            pass
    again = sum(not answered(t) for t in socks)
    conn.send((again + (n - len(socks)), time.perf_counter() - t0))
    for t in socks:
        t.close()


def run_idle(port, spec, proc):
    """Open spec["conns"] keep-alive connections (one request each; IDLE_PER_CLIENT per
    client process), hold them and read the server's RSS, then send one more request on
    every connection: RSS, and how long that round took."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    before = rss_kib(proc.pid)
    clients = []
    left = spec["conns"]
    while left > 0:
        n = min(left, IDLE_PER_CLIENT)
        left -= n
        mine, theirs = ctx.Pipe()
        source = "127.0.0.%d" % (len(clients) + 1)
        c = ctx.Process(target=_idle_client, args=(port, spec["path"], n, theirs, source), daemon=True)
        c.start()
        clients.append((c, mine))
    failed = sum(conn.recv() for _, conn in clients)
    time.sleep(1.0)
    rss = rss_kib(proc.pid)
    t0 = time.perf_counter()
    for _, conn in clients:
        conn.send("next")
    replies = [conn.recv() for _, conn in clients]
    next_s = time.perf_counter() - t0
    for c, _ in clients:
        c.join(30)
    return {
        "rps": 0.0,
        "transfer": "-",
        "lat_avg_ms": 0.0,
        "lat_max_ms": 0.0,
        "errors": [0, 0, 0, failed],
        "non2xx": 0,
        "idle_rss_kib": rss,
        "rss_before_kib": before,
        "next_round_s": next_s,
        "next_failed": sum(r[0] for r in replies),
    }, ""


def run_burst(port, spec, proc):
    """spec["conns"] connections at once, each sending half a request head (the server holds
    a coroutine and a request buffer for each, as for requests in flight), RSS sampled over
    a second for the peak; then all closed, and the RSS read spec["after"] seconds later."""
    half = b"GET %s HTTP/1.1\r\nHost: bench\r\nX-Pad: %s" % (spec["path"].encode(), b"x" * 6000)
    http_get(port, spec["path"])  # warm: the file is in the server's caches
    before = rss_kib(proc.pid)
    socks, failed = [], 0
    for _ in range(spec["conns"]):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(half)
            socks.append(s)
        except OSError:
            failed += 1
    peak = before
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # (a bench, not a test: sampled, as any server may be run)
        peak = max(peak, rss_kib(proc.pid))
        time.sleep(0.05)
    for s in socks:
        s.close()
    t0 = time.monotonic()
    after = []
    for sec in spec["after"]:
        time.sleep(max(0.0, t0 + sec - time.monotonic()))
        after.append(rss_kib(proc.pid))
    status, _ = http_get(port, spec["path"])
    return {
        "rps": 0.0,
        "transfer": "-",
        "lat_avg_ms": 0.0,
        "lat_max_ms": 0.0,
        "errors": [0, 0, 0, failed],
        "non2xx": int(status != 200),
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "rss_after_kib": after,
        "rss_kib": peak,
    }, ""


def http_get(port, path, timeout=30):
    """One GET on a connection of its own: (status, seconds until the whole response is in)."""
    t0 = time.perf_counter()
    got = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path.encode())
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    except OSError:
        pass
    status = int(got[9:12]) if got[:9] == b"HTTP/1.1 " and got[9:12].isdigit() else 0
    return status, time.perf_counter() - t0


def run_slow(port, spec):
    """spec["slow"] requests to /slow (2 s each) in flight, then spec["samples"] requests for
    the static file and as many for the fast route, spread over the next 1.5 s, each started
    on its own connection at its time: every latency in ms, and the slow requests' seconds.
    The client threads run on CPU 1 (the server is on CPU 0), as wrk does."""
    import threading

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1} if os.cpu_count() > 1 else before)  # this thread, so its children
    try:
        slow, samples, lock = [], [], threading.Lock()

        def one(path, at, into):
            time.sleep(max(0.0, at - time.monotonic()))
            start = time.monotonic()
            status, took = http_get(port, path)
            with lock:
                into.append((path, status, took, start))

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=("/slow", t0, slow)) for _ in range(spec["slow"])]
        n = 2 * spec["samples"]
        # the slow handlers are 0.3 s into their 2 s when the first sample starts
        threads += [
            threading.Thread(
                target=one,
                args=(spec["static"] if i % 2 == 0 else spec["path"], t0 + 0.3 + 1.5 * i / n, samples),
            )
            for i in range(n)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.sched_setaffinity(0, before)
    slow_end = min(start + took for _, _, took, start in slow)
    static = [took * 1000 for path, _, took, _ in samples if path == spec["static"]]
    fast = [took * 1000 for path, _, took, _ in samples if path == spec["path"]]
    bad = sum(status != 200 for _, status, _, _ in slow + samples)
    return {
        "rps": 0.0,
        "transfer": "-",
        "lat_avg_ms": statistics.median(static + fast),
        "lat_max_ms": max(static + fast),
        "errors": [0, 0, 0, 0],
        "non2xx": bad,
        "static_ms": static,
        "fast_ms": fast,
        "slow_s": [took for _, _, took, _ in slow],
        "samples_during_slow": sum(start < slow_end for _, _, _, start in samples),
    }, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--root", default=None, help="default: a copy of the demo index.html + 1 MiB file")
    ap.add_argument(
        "--readme", action="store_true", help="git add -f the results and render the docs' figures from them"
    )
    ap.add_argument("--only", action="append", help="server names to run (substring match)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"), help="directory for the results")
    ap.add_argument(
        "--pypy",
        default=os.environ.get("MINGINX_BENCH_PYPY", PYPY_DEFAULT),
        help="a PyPy interpreter for the (pypy) rows (default: $MINGINX_BENCH_PYPY, else bench/.venv-pypy)",
    )
    args, rest = ap.parse_known_args()
    args.server_flags = serve_flags(ap, rest)
    SERVER_FLAGS[:] = args.server_flags
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (apt-get install wrk)")

    servers = servers_available(args.pypy)
    if args.only:
        servers = {k: v for k, v in servers.items() if any(o in k for o in args.only)}
    workloads = args.workload or list(WORKLOADS)
    root = os.path.abspath(args.root) if args.root else make_root()
    results = []
    for wl in workloads:
        spec = WORKLOADS[wl]
        for rnd in range(1 if spec.get("kind") in ("idle", "burst") else args.rounds):
            for name, start in servers.items():
                if name not in spec["servers"]:
                    continue
                port = free_port()
                proc = start(root, port, spec["workers"], spec["pin"])
                try:
                    if not wait_port(port):
                        print("bench: %s did not start" % name)
                        continue
                    kind = spec.get("kind", "wrk")
                    if kind == "slow":
                        for path in (spec["static"], spec["path"]) * 3:  # warm-up
                            http_get(port, path)
                    elif kind not in ("idle", "burst") and name.endswith("(pypy)"):
                        # PyPy's JIT traces and compiles the hot paths first: under the load
                        # measured, for PYPY_WARMUP (a 1 s warm-up left a WSGI hello's
                        # compiling in the measured window: 10x the CPU per request)
                        run_wrk(port, spec, PYPY_WARMUP, spec["pin"])
                    elif kind not in ("idle", "burst"):
                        run_wrk(port, dict(spec, wrk=["-t1", "-c10"]), 1, spec["pin"])  # warm-up
                    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                    try:
                        if kind == "ab":
                            r, raw = run_ab(port, spec, spec["pin"])
                        elif kind == "idle":
                            r, raw = run_idle(port, spec, proc)
                        elif kind == "slow":
                            r, raw = run_slow(port, spec)
                        elif kind == "burst":
                            r, raw = run_burst(port, spec, proc)
                        else:
                            r, raw = run_wrk(port, spec, args.duration, spec["pin"])
                    except (OSError, subprocess.SubprocessError) as e:
                        print("bench: %s on %s failed: %s" % (name, wl, e), flush=True)
                        continue
                    r.update(
                        server=name,
                        workload=wl,
                        round=rnd,
                        rss_kib=r.get("idle_rss_kib") or rss_kib(proc.pid),
                    )
                    # the server's CPU per request: what the client-bound req/s cannot show
                    answered = r["rps"] * (time.monotonic() - t0)
                    r["cpu_us_per_req"] = (cpu_seconds(proc.pid) - cpu0) * 1e6 / answered if answered else 0.0
                    results.append(r)
                    if kind == "idle":
                        print(
                            "%-8s round %d  %-32s RSS %7.1f MiB with %d idle connections"
                            % (wl, rnd + 1, name, r["rss_kib"] / 1024, spec["conns"]),
                            flush=True,
                        )
                    elif kind == "burst":
                        print(
                            "%-8s round %d  %-32s RSS MiB before %.1f  peak %.1f  after %s"
                            % (
                                wl,
                                rnd + 1,
                                name,
                                r["rss_before_kib"] / 1024,
                                r["rss_peak_kib"] / 1024,
                                " ".join("%.1f" % (k / 1024) for k in r["rss_after_kib"]),
                            ),
                            flush=True,
                        )
                    elif kind == "slow":
                        print(
                            "%-8s round %d  %-32s static %s ms  fast %s ms  slow %s s  not 200: %d"
                            % (
                                wl,
                                rnd + 1,
                                name,
                                med_max(r["static_ms"]),
                                med_max(r["fast_ms"]),
                                med_max(r["slow_s"], "%.2f"),
                                r["non2xx"],
                            ),
                            flush=True,
                        )
                    else:
                        print(
                            "%-8s round %d  %-32s %10.0f req/s  %9s/s  max %7.1f ms  errors %s"
                            % (wl, rnd + 1, name, r["rps"], r["transfer"], r["lat_max_ms"] or 0, r["errors"]),
                            flush=True,
                        )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
    report(results, workloads, servers, args)


def serve_flags(ap, rest):
    """The unknown options, if they are all `minginx-cffi serve` options (else ap.error, exit 2).

    Checked by click itself: `serve OPTIONS --help` fails on an option serve does not have
    (the values are checked when each server starts: a bad one is "did not start")."""
    if not rest:
        return []
    if not rest[0].startswith("-"):
        ap.error("unrecognized arguments: %s" % " ".join(rest))
    p = subprocess.run(
        [sys.executable, "-m", "minginx_cffi", "serve"] + rest + ["--help"],
        cwd=os.path.dirname(HERE),
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["?"])[-1]
        ap.error("unrecognized arguments: %s (not minginx-cffi serve options: %s)" % (" ".join(rest), err))
    return rest


def med_max(values, fmt="%.1f"):
    return (fmt + " / " + fmt) % (statistics.median(values), max(values)) if values else "-"


def report(results, workloads, servers, args):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = args.results
    os.makedirs(outdir, exist_ok=True)
    base = os.path.join(outdir, stamp)
    with open(base + ".json", "w") as f:
        json.dump({"machine": machine(), "date": stamp, "args": vars(args), "runs": results}, f, indent=1)
    lines = [
        "Measured %s on %s, with `python3 bench/run.py%s`."
        % (
            datetime.date.today().isoformat(),
            machine(),
            "".join(" --workload " + w for w in (args.workload or []))
            + " --rounds %d --duration %d" % (args.rounds, args.duration)
            + "".join(" " + shlex.quote(f) for f in args.server_flags),
        ),
        "",
    ]
    for wl in workloads:
        spec = WORKLOADS[wl]
        rows = [r for r in results if r["workload"] == wl]
        if not rows:
            continue
        kind = spec.get("kind", "wrk")
        base_name = spec.get("baseline", "nginx")
        if kind == "idle":
            lines += [
                "### %s: %d idle keep-alive connections (one request each), server RSS, "
                "%d worker%s" % (wl, spec["conns"], spec["workers"], "s" if spec["workers"] > 1 else ""),
                "",
                "| server | RSS MiB | per connection KiB | connections not answered | "
                "next request on every connection: s (not answered) |",
                "|---|---|---|---|---|",
            ]
            for name in spec["servers"]:
                rs = [r for r in rows if r["server"] == name]
                if rs:
                    kib = rs[0]["rss_kib"]
                    lines.append(
                        "| %s | %.1f | %.2f | %d | %s |"
                        % (
                            name,
                            kib / 1024,
                            (kib - rs[0]["rss_before_kib"]) / spec["conns"],
                            rs[0]["errors"][3],
                            "%.2f (%d)" % (rs[0]["next_round_s"], rs[0]["next_failed"])
                            if "next_round_s" in rs[0]
                            else "-",
                        )
                    )
            lines.append("")
            continue
        if kind == "burst":
            lines += [
                "### %s: %d connections at once, each with half a request head in flight, "
                "then closed; server RSS, %d worker" % (wl, spec["conns"], spec["workers"]),
                "",
                "| server | before MiB | peak MiB | %s | connections failed | next request |"
                % " | ".join("%d s after MiB" % sec for sec in spec["after"]),
                "|---|---|---|" + "---|" * len(spec["after"]) + "---|---|",
            ]
            for name in spec["servers"]:
                rs = [r for r in rows if r["server"] == name]
                if rs:
                    lines.append(
                        "| %s | %.1f | %.1f | %s | %d | %s |"
                        % (
                            name,
                            rs[0]["rss_before_kib"] / 1024,
                            rs[0]["rss_peak_kib"] / 1024,
                            " | ".join("%.1f" % (k / 1024) for k in rs[0]["rss_after_kib"]),
                            rs[0]["errors"][3],
                            "200" if not rs[0]["non2xx"] else "failed",
                        )
                    )
            lines.append("")
            continue
        if kind == "slow":
            lines += [
                "### %s: %d requests to a handler sleeping 2 s in flight, meanwhile %d static "
                "(%s) and %d fast-route (%s) requests, each on its own connection, spread "
                "over 1.5 s; pinned (server CPU 0, client CPU 1), %d worker; %d rounds"
                % (
                    wl,
                    spec["slow"],
                    spec["samples"],
                    spec["static"],
                    spec["samples"],
                    spec["path"],
                    spec["workers"],
                    args.rounds,
                ),
                "",
                "| server | static median / max ms | fast route median / max ms | "
                "samples started while the slow ones ran | slow requests median / max s | "
                "not 200 |",
                "|---|---|---|---|---|---|",
            ]
            for name in spec["servers"]:
                rs = [r for r in rows if r["server"] == name]
                if rs:
                    lines.append(
                        "| %s | %s | %s | %d of %d | %s | %d |"
                        % (
                            name,
                            med_max([x for r in rs for x in r["static_ms"]]),
                            med_max([x for r in rs for x in r["fast_ms"]]),
                            sum(r["samples_during_slow"] for r in rs),
                            sum(len(r["static_ms"]) + len(r["fast_ms"]) for r in rs),
                            med_max([x for r in rs for x in r["slow_s"]], "%.2f"),
                            sum(r["non2xx"] for r in rs),
                        )
                    )
            lines.append("")
            continue
        baseline = None
        if any(r["server"] == base_name for r in rows):
            baseline = statistics.median(r["rps"] for r in rows if r["server"] == base_name)
        also = {}  # more baselines, a column each (hello-native: uvicorn beside granian)
        for other in spec.get("also_vs", []):
            if any(r["server"] == other for r in rows):
                also[other] = statistics.median(r["rps"] for r in rows if r["server"] == other)
        how = (
            ("ab %s (no keep-alive)" % " ".join(spec["ab"]))
            if kind == "ab"
            else "wrk %s -d%ds" % (" ".join(spec["wrk"]), args.duration)
        )
        lines += [
            "### %s: %s %s%s, %d worker%s"
            % (
                wl,
                how,
                spec["path"],
                ", pinned (server CPU 0, client CPU 1)" if spec["pin"] else ", unpinned",
                spec["workers"],
                "s" if spec["workers"] > 1 else "",
            ),
            "",
            "| server | median req/s | min-max | vs %s |%s transfer/s | avg / max latency ms | "
            "errors c/r/w/timeout | RSS MiB | server CPU us/req |"
            % (base_name, "".join(" vs %s |" % o for o in also)),
            "|---|---|---|---|" + "---|" * len(also) + "---|---|---|---|---|",
        ]
        for name in spec["servers"]:
            rs = [r for r in rows if r["server"] == name]
            if not rs:
                continue
            med = statistics.median(r["rps"] for r in rs)
            lines.append(
                "| %s | %.0f | %.0f-%.0f | %s |%s %s | %.2f / %.1f | %s | %.1f | %.2f |"
                % (
                    name,
                    med,
                    min(r["rps"] for r in rs),
                    max(r["rps"] for r in rs),
                    "%.2fx" % (med / baseline) if baseline else "-",
                    "".join(" %.2fx |" % (med / v) for v in also.values()),
                    sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]["transfer"],
                    statistics.median(r["lat_avg_ms"] or 0 for r in rs),
                    max(r["lat_max_ms"] or 0 for r in rs),
                    "/".join(str(sum(r["errors"][i] for r in rs)) for i in range(4)),
                    max(r["rss_kib"] for r in rs) / 1024,
                    statistics.median(r.get("cpu_us_per_req", 0.0) for r in rs),
                )
            )
        lines.append("")
    text = "\n".join(lines)
    with open(base + ".md", "w") as f:
        f.write(text + "\n")
    chart(base, results, workloads)
    if args.readme:
        # the docs' figures come from the newest committed results of each workload
        # (tools/render_figures.py): these become them once committed; git add -f, as
        # bench/results is ignored
        tree = os.path.dirname(HERE)
        subprocess.run(["git", "add", "-f", base + ".md", base + ".json"], cwd=tree, check=False)
        subprocess.run(
            [sys.executable, os.path.join(tree, "tools", "render_figures.py")], cwd=tree, check=False
        )
        if os.path.exists(base + ".png"):  # the chart README shows
            shutil.copyfile(base + ".png", os.path.join(os.path.dirname(HERE), "docs", "bench-chart.png"))
    print()
    print(text)
    print(
        "bench: wrote %s.json, %s.md%s"
        % (base, base, ", %s.png" % base if os.path.exists(base + ".png") else "")
    )


def chart(base, results, workloads):
    """A PNG of the medians per workload, drawn by bench/chart.py in bench/.venv (matplotlib)."""
    py = os.path.join(BENCH_VENV, "python")
    if not os.path.exists(py):
        print("bench: no bench/.venv; skipping the chart")
        return
    r = subprocess.run(
        [py, os.path.join(HERE, "chart.py"), base + ".json", base + ".png"], capture_output=True, text=True
    )
    if r.returncode != 0:
        print("bench: chart failed: %s" % r.stderr.strip().splitlines()[-1:])


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%d cores, %s, Linux %s" % (os.cpu_count(), cpu, platform.release())


if __name__ == "__main__":
    main()
