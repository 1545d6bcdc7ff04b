"""README's first set-up line, as a reader runs it on a fresh Debian or Ubuntu machine:
Debian's own python3 (whose pip refuses to install outside a venv, PEP 668), in a copy of
the tree, then the server it installed serving the demo site.  (.ci/run runs the second
line, the tests, as written, with the same python3.)"""

import os
import re
import shlex
import signal
import subprocess

import pytest

from conftest import SYSTEM_PYTHON, TREE, Conn, free_port, system_install, system_python_missing, tool_env


def setup_lines():
    """README's two set-up lines: the indented lines that make .venv."""
    with open(os.path.join(TREE, "README.md")) as f:
        text = f.read()
    return re.findall(r"^    (python3 -m venv \.venv && .*)$", text, re.M)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(TREE, ".ci", "run")),
    reason="a copy of the tree without .ci/ (make test-asan's): the check runs on the tree itself",
)
def test_readme_has_the_two_setup_lines_and_ci_runs_the_second():
    lines = setup_lines()
    assert len(lines) == 2, lines
    serve, tests = lines
    assert serve.endswith("&& .venv/bin/minginx-cffi serve") and "pip install ." in serve, serve
    assert tests.endswith("&& .venv/bin/python -m pytest -n auto") and "-e '.[test]'" in tests, tests
    with open(os.path.join(TREE, ".ci", "run")) as f:
        ci = f.read()
    # .ci/run takes the line from README itself and runs it with Debian's python3 first on PATH
    assert "python3 -m venv \\.venv && " in ci and SYSTEM_PYTHON.rsplit("/", 1)[0] in ci, ci


def test_the_first_setup_line_installs_and_serves_with_debians_python():
    why = system_python_missing()
    if why:
        pytest.skip(why)
    parts = [p.strip() for p in setup_lines()[0].split("&&")]
    assert parts[-1] == ".venv/bin/minginx-cffi serve"
    install = [shlex.split(p.replace(".venv", "{venv}")) for p in parts[:-1]]
    assert install[0][:3] == ["python3", "-m", "venv"]
    venv = system_install(install, ".venv")
    # the same pip outside a venv refuses, as on the reader's machine: the marker is there
    r = subprocess.run(
        [SYSTEM_PYTHON, "-m", "pip", "install", "--dry-run", "cffi"], capture_output=True, text=True
    )
    assert r.returncode != 0 and "externally-managed-environment" in r.stderr + r.stdout, r
    port = free_port()
    argv = shlex.split(parts[-1].replace(".venv", venv)) + ["--port", str(port), "--workers", "1"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tool_env())
    try:
        banner = p.stdout.readline().decode()
        assert "serving files under %s" % os.path.join(venv, "lib") in banner, banner
        r = Conn(port).request("GET", "/")
        assert r.status == 200 and b"minginx-cffi" in r.body
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(15) == 0
