"""The command line, run as users run it: a subprocess, real signals, real exit codes."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import Conn, wait_for

CLI = [sys.executable, "-m", "minginx_cffi"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(*args):
    port = free_port()
    p = subprocess.Popen(CLI + ["serve", "--port", str(port)] + list(args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    return p, port, line


def test_serve_default_demo_site():
    p, port, banner = start("--workers", "1")
    try:
        assert "http://127.0.0.1:%d" % port in banner
        assert "workers 1" in banner and "policy lifo" in banner and "site" in banner
        r = Conn(port).request("GET", "/")
        assert r.status == 200 and b"minginx-cffi" in r.body
        assert Conn(port).request("GET", "/style.css").header("content-type").startswith("text/css")
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


def test_sigterm_shuts_down_cleanly_exit_0(site_root):
    p, port, _ = start("--root", str(site_root), "--policy", "fifo")
    assert Conn(port).request("GET", "/hello.txt").status == 200
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_sigterm_lets_an_inflight_transfer_finish(site_root):
    p, port, _ = start("--root", str(site_root), "--grace", "20")
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    got = len(s.recv(65536))
    p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    assert got > 50 * (1 << 20) and got < 50 * (1 << 20) + 1024
    assert p.wait(20) == 0


def test_second_sigint_exits_at_once(site_root):
    p, port, _ = start("--root", str(site_root), "--grace", "60")
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(1000)   # in flight, and we stop reading
    p.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert p.poll() is None          # still finishing the transfer
    p.send_signal(signal.SIGINT)
    assert p.wait(5) == 0
    s.close()


@pytest.mark.parametrize("args,needle", [
    (["--root", "/nonexistent/dir"], "not a directory"),
    (["--workers", "0"], "workers"),
    (["--policy", "random"], "policy"),
    (["--port", "99999"], "port"),
    (["--bogus"], "bogus"),
])
def test_bad_flags_one_line_nonzero(args, needle):
    p = subprocess.run(CLI + ["serve"] + args, capture_output=True, timeout=30)
    assert p.returncode != 0
    err = p.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_port_in_use_one_line_nonzero():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        p = subprocess.run(CLI + ["serve", "--port", str(port)], capture_output=True, timeout=30)
        assert p.returncode == 1
        err = p.stderr.decode().strip()
        assert len(err.splitlines()) == 1 and "in use" in err
    finally:
        s.close()


def test_root_is_a_file_one_line_nonzero(site_root):
    p = subprocess.run(CLI + ["serve", "--root", str(site_root / "hello.txt")], capture_output=True,
                       timeout=30)
    assert p.returncode != 0 and len(p.stderr.decode().strip().splitlines()) == 1
