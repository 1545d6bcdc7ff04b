"""The error log (minginx_cffi/log.py, csrc/log.c): every stderr line has a time and a level."""

import calendar
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import Conn, free_port
from minginx_cffi import log

CLI = [sys.executable, "-m", "minginx_cffi"]
TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=TREE + os.pathsep + os.environ.get("PYTHONPATH", ""))

#: README, "Error log": the layout of every line
PREFIX = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})([+-]\d{4}) "
    r"\[(debug|info|warning|error|critical)\] \[(\d+)\] "
)

APP_SRC = """
import time, warnings
from minginx_cffi import App
app = App()

@app.route("/ok")
def ok(request):
    return "ok"

@app.route("/boom")
def boom(request):
    raise RuntimeError("kaboom")

@app.route("/warn")
def warn(request):
    warnings.warn("careful now", UserWarning)
    return "warned"

@app.route("/slow")
def slow(request):
    time.sleep(1.0)
    return "late"
"""


def level_of(line):
    return PREFIX.match(line).group(9)


# -- the layout ----------------------------------------------------------------


def test_prefix_is_local_time_with_ms_offset_level_and_pid():
    now = 1795000000.1234
    line = log.format_record(log.LEVELS["warning"], "minginx-cffi: hello", now)
    m = PREFIX.match(line)
    assert m, line
    t = time.localtime(now)
    assert m.group(1, 2, 3) == (time.strftime("%Y", t), time.strftime("%m", t), time.strftime("%d", t))
    assert m.group(7) == "123" and m.group(8) == time.strftime("%z", t)
    assert m.group(9) == "warning" and int(m.group(10)) == os.getpid()
    assert line.endswith("] minginx-cffi: hello\n")


def test_a_multi_line_record_has_the_prefix_on_every_line():
    text = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: kaboom\n'
    out = log.format_record(log.LEVELS["error"], text)
    lines = out.splitlines()
    assert len(lines) == 3 and all(PREFIX.match(l) for l in lines)
    assert [PREFIX.sub("", l) for l in lines] == text.splitlines()


def test_one_record_is_one_write(monkeypatch):
    r, w = os.pipe()
    writes = []
    real_write = os.write

    class Err:
        def fileno(self):
            return w

        def flush(self):
            pass

    def spy(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(sys, "stderr", Err())
    monkeypatch.setattr(os, "write", spy)
    log.write_record(log.LEVELS["error"], "first line\nsecond line\nthird line")
    os.close(w)
    got = os.read(r, 65536).decode()
    os.close(r)
    assert len(writes) == 1 and len(got.splitlines()) == 3
    assert all(PREFIX.match(l) for l in got.splitlines())


def test_level_names_and_bad_ones():
    assert [log.level_number(n) for n in ("debug", "info", "warning", "error", "critical")] == [
        10,
        20,
        30,
        40,
        50,
    ]
    with pytest.raises(ValueError):
        log.level_number("loud")


def test_the_cli_does_not_touch_the_root_logger_or_other_loggers():
    code = textwrap.dedent("""
        import logging
        from minginx_cffi import log
        root = logging.getLogger()
        before = (list(root.handlers), root.level, logging.getLogger("app").handlers)
        log.configure("warning")
        assert (list(root.handlers), root.level, logging.getLogger("app").handlers) == before
        assert log.logger.propagate is False and len(log.logger.handlers) == 1
        log.configure("info")   # idempotent
        assert len(log.logger.handlers) == 1 and log.logger.level == logging.INFO
        print("ok")
    """)
    p = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=30)
    assert p.stdout.strip() == "ok", p.stderr


# -- a whole run, both engines ----------------------------------------------------


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "logapp.py").write_text(APP_SRC)
    return tmp_path


def run_server(cwd, engine, *extra):
    """A run: start (banner on stdout), a 200, a handler traceback (500), a warning, a
    handler past --handler-timeout (504, the engine's own message), SIGTERM; stderr."""
    port = free_port()
    p = subprocess.Popen(
        CLI
        + [
            "serve",
            "--port",
            str(port),
            "--app",
            "logapp:app",
            "--engine",
            engine,
            "--workers",
            "1",
            "--stats",
            "--handler-timeout",
            "0.2",
            "--grace",
            "3",
        ]
        + list(extra),
        cwd=str(cwd),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        banner = p.stdout.readline().decode()
        assert banner.startswith("minginx-cffi: serving "), banner  # stdout as before
        assert Conn(port).request("GET", "/ok").status == 200
        assert Conn(port).request("GET", "/boom").status == 500
        assert Conn(port).request("GET", "/warn").status == 200
        assert Conn(port).request("GET", "/slow").status == 504
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    return err.decode()


def test_every_stderr_line_of_a_run_has_time_and_level(app_dir, engine):
    err = run_server(app_dir, engine)
    lines = err.splitlines()
    assert lines
    bad = [l for l in lines if not PREFIX.match(l)]
    assert not bad, err
    text = [PREFIX.sub("", l) for l in lines]
    levels = {level_of(l) for l in lines}
    assert {"info", "warning", "error"} <= levels, err
    assert any(t.startswith("minginx-cffi: serving ") for t in text)  # the start
    assert "RuntimeError: kaboom" in text and "Traceback (most recent call last):" in text
    assert any("UserWarning: careful now" in t for t in text)  # a Python warning
    assert any("still running after" in t for t in text), err  # C's mg_log / port
    assert any("SIGTERM, finishing in-flight responses" in t for t in text)  # shutdown
    assert any("reqs" in t and "switches" in t for t in text)  # the table
    # a traceback is one record: all its lines carry the same level and time
    tb = [l for l in lines if "Traceback" in l or "kaboom" in l]
    assert len({PREFIX.match(l).group(0) for l in tb}) == 1, tb


def test_log_level_warning_hides_info_lines(app_dir, engine):
    err = run_server(app_dir, engine, "--log-level", "warning")
    lines = err.splitlines()
    assert all(PREFIX.match(l) for l in lines), err
    levels = {level_of(l) for l in lines}
    assert "info" not in levels and "warning" in levels and "error" in levels, err
    assert "reqs" not in err and "serving" not in err


def test_log_level_error_hides_warnings(app_dir, engine):
    err = run_server(app_dir, engine, "--log-level", "error")
    levels = {level_of(l) for l in err.splitlines()}
    assert levels == {"error"}, err
    assert "kaboom" in err and "careful now" not in err


def test_a_bad_log_level_is_one_line_exit_2():
    p = subprocess.run(
        CLI + ["serve", "--log-level", "loud"], env=ENV, capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 2
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and "log-level" in err and "Traceback" not in err, err


def test_a_start_up_failure_is_one_record():
    s = __import__("socket").socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        p = subprocess.run(
            CLI + ["serve", "--port", str(s.getsockname()[1])],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        s.close()
    err = p.stderr.strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1, err
    assert PREFIX.match(err) and level_of(err) == "error" and "in use" in err


def test_server_log_level_keyword_is_checked():
    from minginx_cffi import Server, ServerError

    with pytest.raises(ServerError, match="log-level"):
        Server(log_level="loud")


# -- C's lines -------------------------------------------------------------------


def test_c_signal_handler_line_has_the_prefix_in_local_time():
    # The guard-page report is written from a SIGSEGV handler (no localtime there):
    # its time must still be the local time, with the zone's offset.
    code = textwrap.dedent("""
        import sys
        from minginx_cffi import _native
        from minginx_cffi._native import RuntimeWorker
        _native.set_log_level(20)
        w = RuntimeWorker("fifo", stack_size=32 * 1024)
        w.spawn_deep(256 * 1024)
        w.run()
    """)
    env = dict(ENV, TZ="Asia/Kolkata")
    before = time.time()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    line = [l for l in p.stderr.splitlines() if "overflowed its stack" in l]
    assert line, p.stderr
    m = PREFIX.match(line[0])
    assert m and m.group(8) == "+0530" and m.group(9) == "critical", line
    fields = [int(x) for x in m.group(1, 2, 3, 4, 5, 6)]
    utc = calendar.timegm(tuple(fields) + (0, 0, 0)) - (5 * 3600 + 1800)  # Kolkata: +05:30
    assert before - 5 <= utc <= time.time() + 5, (line, before)
