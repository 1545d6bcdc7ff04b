"""Instructions and system calls per request: minginx-cffi against the bare loop.

Instruction counts (callgrind) are stable on a noisy machine where CPU time is not,
so they are the measure for "within 5% of the bare loop's CPU".  For each server:

  instructions  the server runs under `valgrind --tool=callgrind --trace-children=yes`
                (minginx-cffi's `serve` is a master process plus a server process: both
                are counted); wrk -c50 keep-alive warms it up, `callgrind_control -z`
                zeroes the counters, wrk runs again, `callgrind_control -d` dumps them,
                and the total Ir is divided by the requests wrk completed.
  syscalls      the server runs natively; after the warm-up `strace -c -f -p` attaches
                to every process of it for one wrk run; calls / requests, per call name.

    python3 bench/per_request.py [--servers fast,ucontext,bare] [--duration 5]

A server name is a --switch, with "-uring" for --io uring (fast-uring: the fast switch
on io_uring; fast alone is epoll).

The file is the 6 KiB index.html of bench/run.py's pinned workload; one worker.
"""

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.run import free_port, make_root, process_tree, wait_port  # noqa: E402

BARE_SRC = os.path.join(HERE, "bare_loop.c")


def server_cmd(name, root, port):
    if name == "bare":
        exe = os.path.join(tempfile.gettempdir(), "minginx-bare-loop")
        if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(BARE_SRC):
            subprocess.run(["cc", "-O2", "-o", exe, BARE_SRC], check=True)
        return [exe, str(port), os.path.join(root, "index.html")]
    switch, _, io = name.partition("-")  # SWITCH or SWITCH-uring: fast, fast-uring, ...
    return [
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
        "--no-stats",
        "--switch",
        switch,
        "--io",
        io or "epoll",
    ]


def wrk(port, duration):
    """Completed requests of one wrk -t1 -c50 run (keep-alive)."""
    out = subprocess.run(
        ["wrk", "-t1", "-c50", "-d%ds" % duration, "http://127.0.0.1:%d/index.html" % port],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m or "Non-2xx" in out:
        raise RuntimeError("wrk failed:\n" + out)
    return int(m.group(1))


def wait_served(port, timeout):
    """Until a request is answered: the master binds the port long before its server
    process (under valgrind, on a loaded machine, tens of seconds) takes requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server on port %d answered nothing in %d s" % (port, timeout))


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def instructions(name, root, duration, keep=None):
    port = free_port()
    out = tempfile.mkdtemp(prefix="callgrind-")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--callgrind-out-file=%s/cg.%%p" % out,
    ] + server_cmd(name, root, port)
    proc = subprocess.Popen(
        cmd,
        cwd=os.path.dirname(HERE),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=180)
        wait_served(port, 180)
        wrk(port, 3)
        pids = [str(p) for p in process_tree(proc.pid)]
        subprocess.run(["callgrind_control", "-z"] + pids, capture_output=True, check=True)
        n = wrk(port, duration)
        for f in glob.glob(out + "/cg.*"):
            os.unlink(f)
        subprocess.run(["callgrind_control", "-d"] + pids, capture_output=True, check=True)
        total = 0
        for f in glob.glob(out + "/cg.*"):
            with open(f) as fh:
                for line in fh:
                    if line.startswith("summary:") or line.startswith("totals:"):
                        total += int(line.split()[1])
                        break
        if keep:
            os.makedirs(keep, exist_ok=True)
            for f in glob.glob(out + "/cg.*"):
                shutil.copy(f, os.path.join(keep, "%s.%s" % (name, os.path.basename(f))))
        return total / n, n
    finally:
        stop(proc)
        shutil.rmtree(out, ignore_errors=True)


def syscalls(name, root, duration):
    port = free_port()
    proc = subprocess.Popen(
        server_cmd(name, root, port),
        cwd=os.path.dirname(HERE),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = tempfile.mktemp(prefix="strace-")
    try:
        wait_port(port, timeout=60)
        wait_served(port, 60)
        wrk(port, 2)
        argv = ["strace", "-c", "-f", "-o", log]
        for p in process_tree(proc.pid):
            argv += ["-p", str(p)]
        tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        time.sleep(1)  # strace has no "attached" event to wait for; it attaches in well under this
        n = wrk(port, duration)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
        calls = {}
        with open(log) as fh:
            for line in fh:
                f = line.split()
                if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                    calls[f[-1]] = int(f[3])
        return calls, n
    finally:
        stop(proc)
        if os.path.exists(log):
            os.unlink(log)


def cpu_time(pids):
    """User + system seconds the processes have used (/proc/PID/stat: utime, stime)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def cpu(name, root, duration):
    """Server CPU seconds (user + system, the kernel's side of io_uring included, which
    callgrind does not see) per request: noisy on a shared machine, so run it a few times."""
    port = free_port()
    proc = subprocess.Popen(
        server_cmd(name, root, port),
        cwd=os.path.dirname(HERE),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=60)
        wait_served(port, 60)
        wrk(port, 2)
        pids = process_tree(proc.pid)
        before = cpu_time(pids)
        n = wrk(port, duration)
        return (cpu_time(pids) - before) / n, n
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="fast,ucontext,bare")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument(
        "--no-callgrind",
        action="store_true",
        help="(valgrind 3.19 cannot run --io uring: its io_uring_enter holds the lock "
        "every thread needs, so the server hangs)",
    )
    ap.add_argument(
        "--cpu",
        type=int,
        default=0,
        metavar="N",
        help="also N rounds of server CPU time per request, the servers alternating",
    )
    ap.add_argument("--keep", metavar="DIR", help="copy the callgrind files here (for callgrind_annotate)")
    args = ap.parse_args()
    root = make_root()
    names = args.servers.split(",")
    insns = {}
    if not args.no_callgrind:
        for name in names:
            insns[name], n = instructions(name, root, args.duration, args.keep)
            print(
                "%-10s %8.0f instructions/request (%d requests under callgrind)" % (name, insns[name], n),
                flush=True,
            )
        if "bare" in insns:
            for name in names:
                print("%-10s %.3fx the bare loop's instructions" % (name, insns[name] / insns["bare"]))
    if args.cpu:
        per = {name: [] for name in names}
        for _ in range(args.cpu):
            for name in names:
                per[name].append(cpu(name, root, args.duration)[0])
        for name in names:
            best = min(per[name])
            print(
                "%-10s %.2f us CPU/request (best of %d; all: %s)%s"
                % (
                    name,
                    best * 1e6,
                    args.cpu,
                    ", ".join("%.2f" % (v * 1e6) for v in per[name]),
                    "" if name == names[0] else "  %.3fx %s" % (best / min(per[names[0]]), names[0]),
                ),
                flush=True,
            )
    if not args.no_strace:
        for name in names:
            calls, n = syscalls(name, root, args.duration)
            per = sum(calls.values()) / n
            detail = ", ".join(
                "%s %.3f" % (k, v / n)
                for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                if v / n >= 0.001
            )
            print("%-10s %.3f system calls/request (%d requests): %s" % (name, per, n, detail), flush=True)


if __name__ == "__main__":
    main()
