"""--threads: handlers that block never stall the server; --handler-timeout: 504 and close (both engines).

The point of each timing assertion is "not stalled behind a 2 s handler", not a benchmark:
the bounds are generous.  Handlers wait on events the test sets, never on a guessed sleep,
wherever the test can know when they are done.
"""

import socket
import threading
import time

import pytest

from conftest import Conn
from minginx_cffi import App


def _slow_app(release, entered, closed):
    app = App()

    @app.route("/slow")
    def slow(request):
        entered.release()
        release.wait(10)
        return "slow"

    @app.route("/fast")
    def fast(request):
        return "fast"

    @app.route("/sleep")
    def sleep(request):
        time.sleep(2)
        return "slept"

    @app.route("/stream")
    def stream(request):
        def pieces():
            try:
                yield b"first,"
                release.wait(10)  # the iterator blocks between pieces
                yield b"second"
            finally:
                closed.set()

        return pieces()

    return app


@pytest.fixture
def slow_server(make_server):
    release, entered, closed = threading.Event(), threading.Semaphore(0), threading.Event()

    def make(**kw):
        kw.setdefault("workers", 1)
        kw.setdefault("threads", 8)
        srv = make_server(app=_slow_app(release, entered, closed), **kw)
        srv.release, srv.entered, srv.closed = release, entered, closed
        return srv

    yield make
    release.set()


def _get(port, path):
    c = Conn(port)
    try:
        return c.request("GET", path)
    finally:
        c.sock.close()


def test_blocking_handlers_do_not_stall_static_files_or_fast_routes(slow_server, site_root):
    srv = slow_server(root=str(site_root))
    results = []
    threads = [threading.Thread(target=lambda: results.append(_get(srv.port, "/sleep"))) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let the four reach their handlers (they sleep 2 s)
    for path, body in (
        ("/style.css", b"body{color:red}\n"),
        ("/fast", b"fast"),
        ("/hello.txt", b"hello world\n"),
    ):
        t0 = time.monotonic()
        r = _get(srv.port, path)
        took = time.monotonic() - t0
        assert (r.status, r.body) == (200, body)
        assert took < 0.5, "%s waited %.2f s behind the sleeping handlers" % (path, took)
    for t in threads:
        t.join()
    assert [r.body for r in results] == [b"slept"] * 4


def test_handler_timeout_answers_504_and_closes(slow_server):
    srv = slow_server(handler_timeout=0.5)
    c = Conn(srv.port)
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 504 and r.reason == "Gateway Timeout"
    assert r.header("connection") == "close"
    assert c.closed_by_peer()
    assert srv.entered.acquire(timeout=5)
    # other connections still work, and the late answer is dropped once it comes
    assert _get(srv.port, "/fast").body == b"fast"
    srv.release.set()
    assert _get(srv.port, "/fast").body == b"fast"
    assert sum(st["handler_timeouts"] for st in srv.stats()) == 1


def test_head_of_a_timed_out_handler_has_no_body(slow_server):
    srv = slow_server(handler_timeout=0.3)
    c = Conn(srv.port)
    r = c.request("HEAD", "/slow")
    assert r.status == 504 and c.buf == b""
    assert c.closed_by_peer()


def test_a_stream_whose_iterator_blocks_between_pieces(slow_server):
    srv = slow_server()
    c = Conn(srv.port)
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    while b"first," not in c.buf:  # the first piece is out while the iterator blocks
        c._fill()
    t0 = time.monotonic()
    assert _get(srv.port, "/fast").body == b"fast"
    assert time.monotonic() - t0 < 0.5
    srv.release.set()
    r = c.read_response()
    assert r.body == b"first,second"
    assert srv.closed.wait(5)


def test_a_stream_timing_out_mid_body_closes_and_its_iterator_is_closed(slow_server):
    srv = slow_server(handler_timeout=0.5)
    c = Conn(srv.port)
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.closed_by_peer(5)  # the head and first piece went out; then the close
    assert b"first," in c.buf and b"second" not in c.buf
    srv.release.set()  # the late piece is dropped, the iterator closed
    assert srv.closed.wait(5)
    assert _get(srv.port, "/fast").body == b"fast"


def test_a_client_leaving_while_its_handler_sleeps(slow_server):
    srv = slow_server()
    c = Conn(srv.port)
    c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    while b"first," not in c.buf:
        c._fill()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.sock.close()  # RST: the next send fails
    srv.release.set()
    assert srv.closed.wait(5)  # the iterator is closed, in the pool
    assert _get(srv.port, "/fast").body == b"fast"


def test_shutdown_with_handlers_in_flight(slow_server):
    srv = slow_server(grace=5.0)
    got = []
    t = threading.Thread(target=lambda: got.append(_get(srv.port, "/slow")))
    t.start()
    assert srv.entered.acquire(timeout=5)
    threading.Timer(0.3, srv.release.set).start()
    srv.shutdown()  # waits for the round in flight, then frees
    t.join()
    assert got and got[0].body == b"slow"


def test_shutdown_past_the_grace_with_a_stuck_handler(slow_server, caplog):
    srv = slow_server(grace=0.3)
    c = Conn(srv.port)
    c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert srv.entered.acquire(timeout=5)
    srv.shutdown()  # the handler still runs: the engine is left unfreed
    # a warning of the "minginx_cffi" logger (an embedded Server logs as a library does)
    assert "still running after the grace period" in caplog.text
    srv.release.set()  # its late post goes to memory that was never freed
    time.sleep(0.2)


@pytest.mark.parametrize("threads", [0, 3])
def test_threads_setting_serves_handlers(make_server, threads):
    srv = make_server(
        app=_slow_app(threading.Event(), threading.Semaphore(0), threading.Event()), threads=threads
    )
    for _ in range(5):
        assert _get(srv.port, "/fast").body == b"fast"


def test_a_handler_threads_answer_has_the_workers_head(make_server):
    """The head of an answer a handler thread gives is written on the worker (the exchange,
    csrc/h1.c), as an inline one's: same fields in the same order, and the worker's Date
    of this second.  The C engine's handler threads used to write heads themselves, with a
    whole mg_worker calloc'd per thread to hold a Date line (pycall.c thread_clock)."""
    import email.utils

    app = App()

    @app.route("/t")
    def t(request):
        return "threaded"

    heads = []
    for threads in (0, 4):
        srv = make_server(app=app, root=None, threads=threads, workers=1)
        c = Conn(srv.port)
        for _ in range(8):
            r = c.request("GET", "/t")
            assert (r.status, r.body) == (200, b"threaded")
            date = email.utils.parsedate_to_datetime(r.header("date")).timestamp()
            assert abs(date - time.time()) < 3
            heads.append([k.lower() for k, _ in r.headers])
    assert all(h == heads[0] for h in heads), heads
