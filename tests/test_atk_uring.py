"""Attacks on --io uring (csrc/uring.c): what an in-flight SQE names must outlive it, and a
socket the engine closed must really close (a POLL_ADD holds its file open until cancelled).

Each test runs on both C backends where the behaviour is the backend's business, so a
difference between epoll and uring shows as a failure of the uring case."""

import socket
import struct
import threading
import time

import pytest

from conftest import wait_for
from minginx_cffi import App, Server

IOS = ["epoll", "uring"]


def rst(s):
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def get(path, close=False):
    return (
        "GET %s HTTP/1.1\r\nHost: a\r\n%s\r\n" % (path, "Connection: close\r\n" if close else "")
    ).encode()


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def parked(srv):
    return sum(w["parked"] for w in srv.stats())


@pytest.mark.parametrize("io", IOS)
def test_a_parked_connection_closed_at_a_graceful_stop_gets_its_fin(site_root, io):
    """A parked keep-alive connection is closed at the stop's drain deadline (park_close:
    close(fd)), and its worker's loop ends right there.  Under uring its POLL_ADD holds the
    socket's file: the cancel that park_close queues must reach the kernel, or the client
    sees no FIN until the ring is freed -- and when a handler thread outlives the grace
    period the engine (ring included) is never freed, so the connection stays open for the
    process's life."""
    release = threading.Event()
    app = App()

    @app.route("/stuck")
    def stuck(request):
        release.wait(20)
        return "late"

    srv = Server(
        root=str(site_root), port=0, io=io, workers=2, app=app, threads=1, handler_timeout=0.2, grace=1.0
    ).start()
    try:
        idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        idle.sendall(get("/hello.txt"))
        assert read_head(idle).startswith(b"HTTP/1.1 200")
        busy = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        busy.sendall(get("/stuck"))
        assert read_head(busy).startswith(b"HTTP/1.1 504")  # its thread still runs
        assert wait_for(lambda: parked(srv) == 1)
        # on the other worker (dispatch takes turns): the parked one's loop ends at once
        assert [w["parked"] + 2 * w["handler_timeouts"] for w in srv.stats()] in ([1, 2], [2, 1])
        srv.shutdown()  # the stuck thread keeps the engine (and its rings) unfreed
        idle.settimeout(3)
        assert idle.recv(100) == b""  # the FIN, not a timeout
        busy.close()
        idle.close()
    finally:
        release.set()


@pytest.mark.parametrize("io", IOS)
def test_a_stopped_reuseport_listener_takes_no_more_connections(site_root, io):
    """--accept reuseport: each worker polls its own listener.  A worker with nothing to
    finish ends its loop at the stop command itself, before control_polls cancels that
    poll; the poll then keeps the closed listener in the port's SO_REUSEPORT group,
    completing handshakes nobody will accept (until the ring is freed: never, here, a
    handler thread outlives the grace period).  After the stop a connect must be
    refused, as under epoll."""
    release = threading.Event()
    app = App()

    @app.route("/stuck")
    def stuck(request):
        release.wait(20)
        return "late"

    srv = Server(
        root=str(site_root),
        port=0,
        io=io,
        workers=2,
        app=app,
        threads=1,
        handler_timeout=0.2,
        grace=0.5,
        accept="reuseport",
    ).start()
    port = srv.port
    try:
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        busy.sendall(get("/stuck"))
        assert read_head(busy).startswith(b"HTTP/1.1 504")
        srv.shutdown()
        refused = 0
        for _ in range(20):  # the kernel hashes each new connection to one listener
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=3)
            except ConnectionRefusedError:
                refused += 1
                continue
            s.close()
        assert refused == 20
        busy.close()
    finally:
        release.set()


def big_app():
    app = App()

    @app.route("/big")
    def big(request):
        return b"x" * (4 << 20)

    @app.route("/stream")
    def stream(request):
        return (b"y" * 65536 for _ in range(64))

    return app


def answers(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(get("/hello.txt", close=True))
    return read_head(s).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("io", IOS)
def test_resets_in_the_middle_of_every_kind_of_wait(site_root, io):
    """RSTs while a SEND/SENDMSG of a handler's body is in flight, while sendfile waits on a
    POLL_ADD for room, and while idle on both sides of the 100 ms park (poll in flight,
    cancelled by the idle sweep, or parked).  Each op ends with its own CQE before the
    coroutine's stack goes back to the pool (make test-asan runs this under ASan); the
    server answers afterwards and stops within its grace."""
    srv = Server(root=str(site_root), port=0, io=io, workers=1, app=big_app(), grace=1.0).start()
    try:
        for i, path in enumerate(["/50mib.bin", "/big", "/stream"] * 6):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(get(path) * 2)
            s.recv((1, 1000, 60000)[i % 3])
            rst(s)
        socks = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(get("/hello.txt"))
            assert read_head(s).startswith(b"HTTP/1.1 200")
            socks.append(s)
        start = time.monotonic()
        for i, s in enumerate(socks):  # 60 .. 138 ms idle: before, at and after the park
            while time.monotonic() < start + 0.06 + i * 0.002:
                time.sleep(0.0005)
            rst(s)
        assert answers(srv.port)
    finally:
        t0 = time.monotonic()
        srv.shutdown()
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("io", IOS)
def test_more_connections_than_the_submission_queue(site_root, io):
    """600 connections (the SQ holds 256) each pipelining 3 requests: one schedule() round
    queues more SQEs than fit, and sqe_get flushes a full ring.  Then all of them, parked
    by now, wake at once (600 POLL_ADD completions in one reap, 512 events a round)."""
    srv = Server(root=str(site_root), port=0, io=io, workers=1).start()
    socks = []
    try:
        for _ in range(600):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        for s in socks:
            s.sendall(get("/hello.txt") * 3)
        for s in socks:
            data = b""
            while data.count(b"hello world\n") < 3:
                chunk = s.recv(65536)
                assert chunk
                data += chunk
            assert data.count(b"HTTP/1.1 200") == 3
        assert wait_for(lambda: parked(srv) == 600)
        for s in socks:
            s.sendall(get("/hello.txt"))
        for s in socks:
            assert read_head(s).startswith(b"HTTP/1.1 200")
    finally:
        for s in socks:
            s.close()
        srv.shutdown()
