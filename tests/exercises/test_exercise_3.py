"""Exercise 3, predict the trace: docs/exercises/trace.txt lists the steps of two
connections; the check runs both on each engine and compares."""

import socket

import pytest
from exhelp import ENGINES, Sink, root, sections, start, wait_for  # noqa: F401 (fixtures)

from conftest import Conn
from minginx_cffi.trace import EV_COROUTINE_DESTROY, EV_YIELD, EVENTS, YIELD_REASONS

#: the happy path's steps (section 1's table, and park/unpark); the I/O calls are not compared
COMPARED = {
    "accept",
    "dispatch",
    "fd_batch",
    "coroutine_create",
    "add_to_ready",
    "schedule",
    "trampoline_start",
    "entry",
    "yield",
    "wake_fd",
    "handler_done",
    "finished",
    "coroutine_destroy",
    "park",
    "unpark",
}


def steps(records, co, fd):
    """Coroutine co's steps, after the acceptor's and the pipe's for its fd."""
    pre = sorted((r for r in records if r[2] == 0 and r[3] == fd), key=lambda r: r[0])
    out = []
    for _t, _w, _c, _f, ev, arg in pre + [r for r in records if r[2] == co]:
        name = EVENTS[ev]
        if name not in COMPARED:
            continue
        if name == "yield":
            name = "yield " + (YIELD_REASONS[arg] if 0 <= arg < len(YIELD_REASONS) else str(arg))
        out.append(name)
    return out


def first_yield(sink):
    """(co, fd) of the coroutine that yielded on its first read."""
    assert wait_for(lambda: any(r[4] == EV_YIELD for r in sink.records)), "no coroutine yielded"
    r = next(r for r in sink.records if r[4] == EV_YIELD)
    return r[2], r[3]


def run(srv, sink, script):
    sink.records.clear()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        co, fd = first_yield(sink)
        script(s)
    finally:
        s.close()
    assert wait_for(lambda: any(r[4] == EV_COROUTINE_DESTROY and r[2] == co for r in sink.records))
    return steps(sink.records, co, fd)


def pipelined(s):
    s.sendall(
        b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /style.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    c = Conn.__new__(Conn)
    c.sock, c.buf = s, b""
    assert c.read_response().status == 200
    assert c.read_response().status == 200


def connect_close(s):
    pass


@pytest.mark.parametrize("engine", ENGINES)
def test_the_prediction(start, engine):
    predicted = sections("trace.txt")
    sink = Sink()
    srv = start(engine, trace=sink, defer_accept=False)
    for name, script in (("pipelined", pipelined), ("connect-close", connect_close)):
        real = run(srv, sink, script)
        assert predicted.get(name) == real, "[%s] on %s:\npredicted %s\nthe trace %s" % (
            name,
            engine,
            predicted.get(name),
            real,
        )
