"""Shared by the exercise checks (docs/walkthrough.md, section 6): a small document root,
servers on 127.0.0.1 port 0 on both engines, a trace sink, the answers files.

The checks are not part of the suite (tests/conftest.py: collect_ignore): a student runs
one with `make exercise N=3`; `make exercises-ci` runs each on the tree as it is (it must
fail where the exercise asks for something) and on the tree with docs/solutions/exercise-N.patch
applied (it must pass).
"""

import errno
import pathlib
import socket
import threading
import time

import pytest

from conftest import Conn, Sink  # noqa: F401 (Sink: the exercises' checks import it from here)
from conftest import wait_for as _wait_for
from minginx_cffi import App, Server
from minginx_cffi.trace import EV_RECV_ASYNC, EV_SCHEDULE, EV_YIELD, YIELD_REASONS

TREE = pathlib.Path(__file__).resolve().parents[2]
EXERCISES = TREE / "docs" / "exercises"
#: the C engine (epoll) and the pure-Python port: a change is made in both
ENGINES = ["cffi", "python"]


@pytest.fixture
def root(tmp_path):
    (tmp_path / "index.html").write_bytes(b"<!doctype html><title>t</title><p>exercise root</p>\n")
    (tmp_path / "hello.txt").write_bytes(b"hello world\n")
    (tmp_path / "style.css").write_bytes(b"body{color:red}\n")
    return tmp_path


@pytest.fixture
def start(root):
    """start(engine, **Server keywords): a started Server on port 0, shut down at the end."""
    servers = []

    def make(engine, **kw):
        kw.setdefault("root", str(root))
        kw.setdefault("port", 0)
        kw.setdefault("workers", 1)
        kw.setdefault("grace", 2.0)
        srv = Server(engine=engine, **kw).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.shutdown()


def read_response(sock):
    """One whole response from a raw socket (tests/conftest.py's reader)."""
    c = Conn.__new__(Conn)
    c.sock, c.buf = sock, b""
    return c.read_response()


def wait_for(pred, timeout=10.0):
    """conftest.wait_for with the exercises' longer deadline (a student's machine may be slow)."""
    return _wait_for(pred, timeout)


def answers(name):
    """The non-blank, non-comment lines of docs/exercises/NAME, stripped."""
    path = EXERCISES / name
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln]


def sections(name):
    """docs/exercises/NAME split at its '[title]' lines: {title: [lines]}."""
    out, cur = {}, None
    for ln in answers(name):
        if ln.startswith("[") and ln.endswith("]"):
            cur = out.setdefault(ln[1:-1], [])
        elif cur is not None:
            cur.append(ln)
    return out


def waiting_read(rec):
    """Whether a trace record is a coroutine's wait for input: the read that found nothing,
    "recv_async -> EAGAIN, yield (read)" (EV_RECV_ASYNC with -EAGAIN, as coroutine_yield_io
    traces it), or a plain "yield (read)" (EV_YIELD, MG_YIELD_READ)."""
    event, arg = rec[4], rec[5]
    if event == EV_RECV_ASYNC:
        return arg == -errno.EAGAIN
    return event == EV_YIELD and arg == YIELD_REASONS.index("read")


def waiting_cos(sink):
    """The coroutines that have waited for input so far."""
    return {r[2] for r in sink.records if waiting_read(r)}


def server_rx_queued(srv_port, client_port):
    """Bytes in the server-side socket's receive queue (/proc/net/tcp), or 0."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == srv_port and int(remote.split(":")[1], 16) == client_port:
                return int(queues.split(":")[1], 16)
    return 0


def scheduled_orders(start, engine, policy, names="ABC", rounds=1):
    """One worker, a keep-alive connection per name, each waiting for input (waiting_read).  A handler
    keeps the worker busy while every connection sends a request, in order, and the heads
    are in the server's socket buffers before it returns: the order in which the
    connections are scheduled then, per round (a list of "A B C" strings)."""
    entered, release = threading.Event(), threading.Event()
    app = App()

    @app.route("/block")
    def block(request):
        entered.set()
        release.wait(10)
        return "released"

    sink = Sink()
    srv = start(engine, app=app, policy=policy, trace=sink, defer_accept=False, threads=0)
    conns, cos, orders = {}, {}, []
    for name in names:
        seen = waiting_cos(sink)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        conns[name] = s
        assert wait_for(lambda: waiting_cos(sink) - seen), "connection %s: no coroutine waited" % name
        (cos[name],) = waiting_cos(sink) - seen
    d = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        for _ in range(rounds):
            entered.clear()
            release.clear()
            orders.append(" ".join(one_round(srv, sink, d, conns, cos, entered, release)))
    finally:
        release.set()
        d.close()
        for s in conns.values():
            s.close()
    return orders


def one_round(srv, sink, d, conns, cos, entered, release):
    d.sendall(b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
    assert entered.wait(10), "the handler did not run"
    for name in conns:
        conns[name].sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    for name in conns:
        port = conns[name].getsockname()[1]
        assert wait_for(lambda: server_rx_queued(srv.port, port) > 0)
    # the trace's clock is CLOCK_MONOTONIC in microseconds, as time.monotonic_ns()
    t_release = time.monotonic_ns() // 1000
    release.set()
    for name in conns:
        assert read_response(conns[name]).status == 200
    assert read_response(d).status == 200
    wanted = set(cos.values())
    assert wait_for(
        lambda: wanted <= {r[2] for r in sink.records if r[4] == EV_SCHEDULE and r[0] > t_release}
    )
    # the first schedule of each after the handler returned (one worker: one ring, in order)
    order, by_co = [], {v: k for k, v in cos.items()}
    for r in sink.records:
        if r[4] == EV_SCHEDULE and r[0] > t_release and r[2] in by_co and by_co[r[2]] not in order:
            order.append(by_co[r[2]])
    return order


def idle_close_trace(start, engine):
    """Exercises 6 and 7: a keep-alive connection left idle past --keepalive-timeout (the
    server closes it while it is parked) and one its client closes while parked.  The
    records of the trace point named "idle_close", as (record, its line), and the id of
    the connection the server closed."""
    from minginx_cffi import trace

    assert "idle_close" in trace.EVENTS, "minginx_cffi/trace.py has no event named idle_close"
    ev = trace.EVENTS.index("idle_close")
    sink = Sink()
    srv = start(engine, trace=sink, keepalive_timeout=1)

    def parked():
        return sum(w["parked"] for w in srv.stats())

    a = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        a.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(a).status == 200
        assert wait_for(lambda: parked() == 1), "the idle connection was not parked"
        assert a.recv(1) == b"", "the server did not close the idle connection"
    finally:
        a.close()
    assert wait_for(lambda: parked() == 0)
    b = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        b.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(b).status == 200
        assert wait_for(lambda: parked() == 1)
    finally:
        b.close()
    assert wait_for(lambda: parked() == 0 and sum(w["coroutines_alive"] for w in srv.stats()) == 0)
    parks = [r for r in sink.records if r[4] == trace.EV_PARK]
    srv.shutdown()  # the trace drained to its end
    closes = [(r, trace.format_record(r, r[0])) for r in sink.records if r[4] == ev]
    return closes, parks[0][2]
