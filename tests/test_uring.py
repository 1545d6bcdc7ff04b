"""--io uring (csrc/uring.c): choosing it, refusing it, and the paths where an op is in flight.

The end-to-end suite runs on io_uring as the "cffi-uring" engine (tests/conftest.py);
this file covers what only the backend has: the one-line refusal when the kernel has no
io_uring (simulated: MINGINX_TEST_NO_URING=1 makes io_uring_setup fail with ENOSYS), the
fallback ring without SINGLE_ISSUER|DEFER_TASKRUN, and timers and shutdowns that find a
recv or a send in flight (cancelled, then waited for: make test-asan runs these too).
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import Conn, free_port, wait_for
from minginx_cffi import Server, ServerError

CLI = [sys.executable, "-m", "minginx_cffi"]


def start(*args, env=None):
    port = free_port()
    p = subprocess.Popen(
        CLI + ["serve", "--port", str(port)] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, **(env or {})),
    )
    return p, port, p.stdout.readline().decode()


def stop(p):
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 0


# -- choosing the backend ------------------------------------------------------------------


def test_a_kernel_without_io_uring_gives_one_line_and_no_server(site_root):
    r = subprocess.run(
        CLI + ["serve", "--io", "uring", "--port", str(free_port()), "--root", str(site_root)],
        capture_output=True,
        timeout=30,
        env=dict(os.environ, MINGINX_TEST_NO_URING="1"),
    )
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and r.stdout == b""
    assert len(err.splitlines()) == 1, err
    assert "--io uring: io_uring is not available: io_uring_setup: Function not implemented" in err
    assert "seccomp" in err  # the two usual causes are named


def test_server_refuses_uring_the_same_way(site_root, monkeypatch):
    monkeypatch.setenv("MINGINX_TEST_NO_URING", "1")
    with pytest.raises(ServerError, match="io_uring is not available"):
        Server(root=str(site_root), port=0, io="uring")
    # epoll does not need it
    Server(root=str(site_root), port=0, io="epoll")


def test_the_port_is_epoll_only(site_root):
    with pytest.raises(ServerError, match="pure-Python port is epoll only"):
        Server(root=str(site_root), port=0, engine="python", io="uring")
    r = subprocess.run(
        CLI + ["serve", "--engine", "python", "--io", "uring", "--port", str(free_port())],
        capture_output=True,
        timeout=30,
    )
    assert r.returncode != 0 and len(r.stderr.decode().strip().splitlines()) == 1
    assert b"epoll only" in r.stderr


def test_io_must_name_a_backend(site_root):
    with pytest.raises(ServerError, match="io must be one of: epoll, uring"):
        Server(root=str(site_root), port=0, io="kqueue")
    r = subprocess.run(
        CLI + ["serve", "--io", "kqueue", "--port", str(free_port())], capture_output=True, timeout=30
    )
    assert r.returncode == 2 and b"'kqueue' is not one of 'epoll', 'uring'" in r.stderr


@pytest.mark.parametrize(
    "args, env, words",
    [
        ((), {}, "io epoll,"),
        (("--io", "uring"), {}, "io uring (SINGLE_ISSUER|DEFER_TASKRUN),"),
        (("--io", "uring"), {"MINGINX_TEST_URING_PLAIN": "1"}, "io uring (plain),"),
    ],
)
def test_the_banner_names_the_backend_and_its_ring(site_root, args, env, words):
    """The plain ring is the fallback for kernels before 6.1 (no DEFER_TASKRUN): it serves
    the same, keep-alive, a parked connection and a file sent with sendfile included."""
    env = dict(env, MINGINX_TEST_IO="")
    p, port, banner = start("--workers", "1", "--root", str(site_root), *args, env=env)
    try:
        assert words in banner, banner
        c = Conn(port)
        for _ in range(3):
            assert c.request("GET", "/hello.txt").body == b"hello world\n"
            time.sleep(0.05)  # idle: parked between requests
        assert c.request("GET", "/1mib.bin").body == (site_root / "1mib.bin").read_bytes()
    finally:
        stop(p)


# -- an op in flight when its timer fires or the server stops ------------------------------


def uring_server(site_root, **kw):
    kw.setdefault("workers", 1)
    return Server(root=str(site_root), port=0, io="uring", grace=1.0, **kw).start()


def timeouts(srv):
    return sum(w["timeouts"] for w in srv.stats())


def test_a_header_timeout_cancels_the_recv_in_flight(site_root):
    """Half a head: the rest is read by a RECV SQE naming the request buffer.  At the
    header timeout the coroutine cancels it and waits for its CQE before closing."""
    srv = uring_server(site_root, header_timeout=0.3)
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n")
        t0 = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert time.monotonic() - t0 < 3
        assert data == b"" or data.startswith(b"HTTP/1.1 408")
        assert timeouts(srv) >= 1
        assert Conn(srv.port).request("GET", "/hello.txt").status == 200
    finally:
        srv.shutdown()


def test_a_send_timeout_cancels_the_send_in_flight(site_root):
    """A client that pipelines requests and reads nothing: the socket fills, a SEND SQE
    waits in the kernel, the send timeout cancels it and the connection closes."""
    srv = uring_server(site_root, send_timeout=0.5)
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n" * 20000)
        assert wait_for(lambda: timeouts(srv) >= 1, timeout=10)
        with pytest.raises((ConnectionResetError, socket.timeout)):
            while s.recv(1 << 20):
                pass
            raise ConnectionResetError  # EOF: closed, as wanted
        assert Conn(srv.port).request("GET", "/hello.txt").status == 200
    finally:
        srv.shutdown()


def test_shutdown_drains_the_ops_in_flight(site_root):
    """At the end of the grace period coroutines still wait on a recv (half a head) and
    on a send (a client reading nothing): uring_drain cancels both and reaps their CQEs
    before the stacks, buffers and ring are freed (ASan: make test-asan)."""
    srv = uring_server(site_root, workers=2, header_timeout=30, send_timeout=30)
    srv.grace = 0.3
    socks = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n")
        socks.append(s)
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(
            b"GET /1mib.bin HTTP/1.1\r\nHost: a\r\n\r\n"
            + b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n" * 5000
        )
        socks.append(s)
    assert wait_for(lambda: sum(w["yields"]["write"] for w in srv.stats()) >= 2)
    t0 = time.monotonic()
    srv.shutdown()
    assert time.monotonic() - t0 < 5
    for s in socks:
        s.close()


@pytest.mark.parametrize("refused", [False, True], ids=["cancel-all", "refused"])
def test_a_stop_where_the_kernel_refuses_cancel_all_finishes(site_root, refused):
    """Kernels before 5.19 refuse IORING_ASYNC_CANCEL_ANY|ALL (-EINVAL, nothing
    cancelled); MINGINX_TEST_URING_NO_CANCEL_ALL=1 has this kernel refuse it too.  A stop
    past --grace with a client holding half a head (a RECV in flight) must then cancel
    op by op.  Before, uring_drain sent the refused cancel again and again at 100% CPU
    until the process was killed (5 s of CPU here; now about 0.2 s, start-up included)."""
    env = {"MINGINX_TEST_URING_NO_CANCEL_ALL": "1" if refused else "0"}
    p, port, _ = start("--root", str(site_root), "--io", "uring", "--workers", "1", "--grace", "0.3", env=env)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n")
        time.sleep(0.2)  # its coroutine reads the half head and waits on a RECV
        before = os.times()
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
        cpu = (os.times().children_user - before.children_user) + (
            os.times().children_system - before.children_system
        )
        assert cpu < 1.5, f"the stop took {cpu:.1f} s of CPU"
        assert s.recv(100) == b""  # closed
        s.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_many_servers_in_one_process_each_get_their_ring(site_root):
    """Rings are per worker and freed with it: start and stop a few in a row."""
    for _ in range(5):
        srv = uring_server(site_root, workers=2)
        try:
            assert Conn(srv.port).request("GET", "/hello.txt").status == 200
        finally:
            srv.shutdown()
