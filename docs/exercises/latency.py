"""Exercise 9 (docs/walkthrough.md, section 6): FIFO against LIFO latency under -c400.

    python3 docs/exercises/latency.py            # 5 s of wrk per policy (wrk must be installed)

For each policy it starts `minginx-cffi serve --workers 2 --policy P` on the demo site,
runs `wrk -t2 -c400 -d5s --latency` against /index.html, and prints the median, the 99th
percentile and the maximum latency, and the requests per second.  Your part is
parse_wrk(): `make exercise N=9` checks it on a known output, then on two short real runs.
"""

import os
import socket
import subprocess
import sys
import time

TREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_wrk(text):
    """wrk --latency's report -> {"p50": ms, "p99": ms, "max": ms, "rps": requests/s}.

    The latencies come as 850.00us, 4.12ms or 1.02s; give them all in milliseconds (floats).
    "max" is the Max column of the Latency line; "rps" the Requests/sec line."""
    raise NotImplementedError("exercise 9: parse wrk's report")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def measure(policy, seconds=5, connections=400):
    """One policy: (parse_wrk's dict, wrk's raw report)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=TREE)
    srv = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minginx_cffi",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--policy",
            policy,
            "--root",
            os.path.join(TREE, "minginx_cffi", "site"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c%d" % connections,
                "-d%ds" % seconds,
                "--latency",
                "http://127.0.0.1:%d/index.html" % port,
            ],
            stdout=subprocess.PIPE,
            check=True,
            timeout=seconds + 30,
        ).stdout.decode()
    finally:
        srv.terminate()
        srv.wait(timeout=20)
    return parse_wrk(out), out


def main():
    for policy in ("fifo", "lifo"):
        r, _ = measure(policy)
        print(
            "%-5s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  %10.0f req/s"
            % (policy, r["p50"], r["p99"], r["max"], r["rps"])
        )


if __name__ == "__main__":
    main()
