"""--reload: a saved file starts a new generation through the master's SIGHUP path (inotify,
no polling), with no failed request meanwhile; a file that does not import keeps the old
generation serving with one error; what --reload-include/--reload-exclude leave out changes
nothing.  Real processes, real files, real sockets."""

import os
import time

import pytest
from test_process import ClientLoop, Master, fetch

from conftest import wait_for

APP = """
def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
"""


@pytest.fixture
def reloading(tmp_path):
    (tmp_path / "app.py").write_text(APP % "one")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "notes.txt").write_text("x")
    started = []

    def start(*extra):
        m = Master("--wsgi", "app:wsgi", "--workers", "1", "--reload", *extra, cwd=str(tmp_path))
        started.append(m)
        return m.wait_banner()

    yield tmp_path, start
    for m in started:
        m.kill()


def save(path, text):
    """As an editor saves: a new file renamed over the old one."""
    tmp = str(path) + ".tmp~"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def body(m):
    try:
        return fetch(m.port).body
    except OSError:
        return None


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_saved_file_reloads_with_no_failed_request(reloading, processes):
    tmp, start = reloading
    m = start("--processes", processes)
    assert body(m) == b"one"
    loop = ClientLoop(m.port)
    loop.start()
    try:
        time.sleep(0.3)
        mark = len(m.lines)
        t0 = time.monotonic()
        save(tmp / "app.py", APP % "two")
        assert wait_for(lambda: body(m) == b"two", timeout=20)
        took = time.monotonic() - t0
        time.sleep(0.3)
    finally:
        loop.stop()
    assert not loop.errors, loop.errors[:5]
    line = m.wait_line("--reload: app.py changed", start=mark)
    assert "[info]" in line, line
    m.wait_line("reloaded", start=mark)
    print("--reload, --processes %s: the new code answered %.0f ms after the save" % (processes, took * 1000))
    assert m.stop() == 0


def test_a_file_that_does_not_import_keeps_the_old_one_serving(reloading):
    tmp, start = reloading
    m = start()
    mark = len(m.lines)
    save(tmp / "app.py", "def wsgi(environ, start_response:\n")
    line = m.wait_line("reload failed", start=mark)
    assert "SyntaxError" in line and "[error]" in line, line
    assert body(m) == b"one"
    assert not [x for x in m.lines[mark:] if "[critical]" in x], m.lines[mark:]
    mark = len(m.lines)
    save(tmp / "app.py", APP % "three")  # fixed: the next save reloads
    assert wait_for(lambda: body(m) == b"three", timeout=20)
    m.wait_line("reloaded", start=mark)
    assert m.stop() == 0


def test_new_packages_are_watched_and_excluded_files_are_not(reloading):
    tmp, start = reloading
    m = start("--reload-include", "*.py", "--reload-include", "*.cfg", "--reload-exclude", "skip_*.py")
    mark = len(m.lines)
    save(tmp / "skip_me.py", "x = 1\n")  # excluded
    save(tmp / "pkg" / "notes.txt", "y")  # not included
    time.sleep(1.0)
    assert not [x for x in m.lines[mark:] if "--reload:" in x], m.lines[mark:]
    (tmp / "newpkg").mkdir()  # a directory made after the start is watched too
    time.sleep(0.3)
    save(tmp / "newpkg" / "settings.cfg", "debug = 1\n")
    m.wait_line("--reload: newpkg/settings.cfg changed", start=mark)
    m.wait_line("reloaded", start=mark)
    assert body(m) == b"one"
    assert m.stop() == 0


def test_reload_options_without_reload_are_one_line(tmp_path):
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "minginx_cffi", "serve", "--reload-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1 and "go with --reload" in err, err
    p = subprocess.run(
        [sys.executable, "-m", "minginx_cffi", "serve", "--reload", "--reload-dir", str(tmp_path / "no")],
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1 and "is not a directory" in err, err
