"""Exercise 12, break the parser: csrc/http.c differs from git HEAD (a rule removed), and
the test docs/exercises/parser.txt names catches it: it fails on the tree as it is and
passes with csrc/http.c as committed (built in a temporary copy), on the C engine."""

import os
import shutil
import subprocess
import sys

from exhelp import TREE, answers

COPIED = ["csrc", "minginx_cffi", "tests", "docs", "tools", "README.md", "pyproject.toml"]


def run_test(tree, node):
    env = dict(os.environ, PYTHONPATH=str(tree), MINGINX_ENGINES="cffi")
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
    )
    return p.returncode, p.stdout.decode("utf-8", "replace")[-2000:]


def test_the_test_that_catches_it(tmp_path):
    line = [a for a in answers("parser.txt") if a.replace(" ", "").startswith("test=")]
    node = line[0].split("=", 1)[1].strip() if line else ""
    assert node.startswith("tests/"), "parser.txt: write test = tests/...::test_name[id]"
    head = subprocess.run(
        ["git", "show", "HEAD:csrc/http.c"], cwd=TREE, stdout=subprocess.PIPE, check=True
    ).stdout
    assert (TREE / "csrc" / "http.c").read_bytes() != head, "csrc/http.c is as committed: remove a rule first"
    rc, out = run_test(TREE, node)
    assert rc == 1, "%s does not fail with your change (exit %d):\n%s" % (node, rc, out)
    for name in COPIED:
        src = TREE / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("*.so", "*.o", "__pycache__"))
        else:
            shutil.copy2(src, tmp_path / name)
    (tmp_path / "csrc" / "http.c").write_bytes(head)
    b = subprocess.run(
        [sys.executable, "minginx_cffi/_build.py"],
        cwd=tmp_path,
        env=dict(os.environ, MINGINX_WERROR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert b.returncode == 0, b.stdout.decode()[-3000:]
    rc, out = run_test(tmp_path, node)
    assert rc == 0, "%s fails without your change too (exit %d):\n%s" % (node, rc, out)
