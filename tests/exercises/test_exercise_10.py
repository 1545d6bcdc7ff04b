"""Exercise 10, shrink the stack: docs/exercises/stack.txt names the deepest burn_stack
(K frames of 1 KiB) a 16 KiB coroutine stack holds; the check runs K (it must fit) and
K + 2 (it must hit the guard page, and the handler says so), each in a subprocess."""

import os
import subprocess
import sys

from exhelp import TREE, answers

RUN = """
from minginx_cffi._native import RuntimeWorker
w = RuntimeWorker(stack_size=16384)
w.spawn_deep(%d * 1024)
w.run()
print("fits")
"""


def deep(k):
    p = subprocess.run(
        [sys.executable, "-c", RUN % k],
        env=dict(os.environ, PYTHONPATH=str(TREE)),
        capture_output=True,
        timeout=60,
    )
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_the_deepest_that_fits():
    line = [a for a in answers("stack.txt") if a.replace(" ", "").startswith("deepest=")]
    assert line and line[0].split("=", 1)[1].strip().isdigit(), "stack.txt: write deepest = K"
    k = int(line[0].split("=", 1)[1])
    rc, out, err = deep(k)
    assert rc == 0 and out.strip() == "fits", "%d frames do not fit: %s" % (k, err[-500:])
    rc, out, err = deep(k + 2)
    assert rc != 0, "%d frames still fit: %d is not the deepest" % (k + 2, k)
    assert "overflowed its stack" in err, err[-500:]
