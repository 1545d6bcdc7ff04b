"""--trace and --stats: the exact order of the happy path's steps, and counters that
agree with what was sent."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import CHROMIUM, Conn, Sink, chromium_args, free_port, wait_for
from minginx_cffi.trace import EV_HANDLER_DONE, EV_PARSE_HTTP, EV_RECV_ASYNC


def steps(records, co):
    """Names of the steps for coroutine co, accept/dispatch/fd_batch matched by its fd;
    with what they say that does not vary from run to run: a yield's reason, the bytes a
    recv_async read or its error ("EAGAIN": it waits), the request of parse_http and
    handler_done (and the status), a send's error (not its bytes: the head's date)."""
    from minginx_cffi.trace import EVENTS, YIELD_REASONS, errno_name

    mine = [r for r in records if r[2] == co]
    fd = mine[0][3]
    first_t = mine[0][0]
    pre = [r for r in records if r[2] == 0 and r[3] == fd and r[0] <= first_t]
    pre = pre[-3:]  # the latest accept, dispatch, fd_batch for that fd
    out = []
    for t, worker, c, f, ev, arg, text in pre + mine:
        name = EVENTS[ev]
        if name == "yield":
            name = "yield " + YIELD_REASONS[arg]
        elif name == "handler_done":
            name = "handler_done %s %d" % (text, arg)
        elif name == "parse_http":
            name = "parse_http " + text
        elif name == "recv_async":
            name += " %s" % (arg if arg >= 0 else errno_name(-arg))
        elif name in ("send_async", "sendfile_async") and arg <= 0:
            name += " %s" % (arg if arg >= 0 else errno_name(-arg))
        out.append(name)
    return out


def run(srv, sink, script):
    """Connect, wait until the coroutine parks on its first read, then run script(sock)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    time.sleep(0.15)
    script(s)
    s.close()
    # the connection's last coroutine_destroy (a parked one has had one before)
    assert wait_for(lambda: any(r[4] == 12 and r[3] >= 0 for r in sink.records), timeout=5)
    co = next(r[2] for r in sink.records if r[4] == 12)
    return steps(sink.records, co)


def read_response(s):
    c = Conn.__new__(Conn)
    c.sock, c.buf = s, b""
    return c.read_response()


START = [
    "accept",
    "dispatch",
    "fd_batch",
    "coroutine_create",
    "add_to_ready",
    "schedule",
    "trampoline_start",
    "entry",
    "recv_async EAGAIN",  # the seed's step 5: recv_async finds no data, calls yield
]
WOKEN = ["wake_fd", "add_to_ready", "schedule"]
END = ["finished", "coroutine_destroy"]
HELLO = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def answer(req, status):
    """A request's steps once its head is read: parse_http, the static files, the send."""
    method, path = req.split(b" ")[:2]
    return [
        "parse_http %s %s" % (method.decode(), path.decode()),
        "static_serve",
        "send_async",
        "handler_done %s %s %d" % (method.decode(), path.decode(), status),
    ]


def expect(srv, seq):
    """The steps under srv's I/O backend.  --io uring: an idle read's wait is a poll
    submitted (an SQE) and a CQE that completes it (the counterpart of wake_fd), and the
    response is sent by an SQE too, so a send yields (write) until its completion."""
    if srv.io != "uring":
        return seq
    out = []
    for step in seq:
        if step in ("yield read", "recv_async EAGAIN"):
            out += ["submit", step]
        elif step == "wake_fd":
            out.append("complete")
        elif step == "send_async":
            out += ["submit", "yield write", "complete", "add_to_ready", "schedule", step]
        else:
            out.append(step)
    return out


def test_trace_one_request(make_server):
    sink = Sink()
    srv = make_server(trace=sink, workers=1, defer_accept=False)  # the seed's path, step by step

    def script(s):
        s.sendall(HELLO)
        assert read_response(s).status == 200

    assert run(srv, sink, script) == expect(
        srv, START + WOKEN + ["recv_async %d" % len(HELLO)] + answer(HELLO, 200) + END
    )


def test_trace_one_request_deferred_accept(make_server):
    """With TCP_DEFER_ACCEPT (the default) the request is in before accept: no first yield."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1)

    def script(s):
        s.sendall(HELLO)
        assert read_response(s).status == 200

    start = START[: START.index("recv_async EAGAIN")]
    assert run(srv, sink, script) == expect(
        srv, start + ["recv_async %d" % len(HELLO)] + answer(HELLO, 200) + END
    )


def test_trace_keep_alive_pair(make_server):
    sink = Sink()
    srv = make_server(trace=sink, workers=1, defer_accept=False)

    first = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
    second = b"GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"

    def script(s):
        s.sendall(first)
        assert read_response(s).status == 200
        # idle past the park delay: parked (the gauge says when)
        assert wait_for(lambda: sum(w["parked"] for w in srv.stats()) == 1)
        s.sendall(second)
        assert read_response(s).status == 404

    # between the two the connection waits as a coroutine (its recv_async found nothing:
    # it yields for read), and once idle past the park delay the sweep resumes it, its
    # read finds nothing again and it parks: its coroutine ends, and the second request's
    # input makes a new one with the same id (tests/test_park.py).
    # Under --io uring the wait is a poll in flight: resumed by the sweep, the coroutine
    # cancels it and waits for that poll's own completion before it parks (the kernel
    # must be done with an op before its coroutine goes).
    cancel = ["yield read", "complete", "add_to_ready", "schedule"] if srv.io == "uring" else []
    assert run(srv, sink, script) == (
        expect(
            srv,
            START
            + WOKEN
            + ["recv_async %d" % len(first)]
            + answer(first, 200)
            + ["recv_async EAGAIN", "add_to_ready", "schedule"],
        )
        + cancel
        + expect(
            srv,
            ["park"]
            + END
            + [
                "unpark",
                "coroutine_create",
                "add_to_ready",
                "schedule",
                "trampoline_start",
                "entry",
                "recv_async %d" % len(second),
            ]
            + answer(second, 404)
            + END,
        )
    )


def test_trace_pipelined_pair(make_server):
    sink = Sink()
    srv = make_server(trace=sink, workers=1, defer_accept=False)

    one = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
    two = b"GET /style.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"

    def script(s):
        s.sendall(one + two)
        assert read_response(s).status == 200

    # one read brings both: the second is parsed from the bytes the first left
    assert run(srv, sink, script) == expect(
        srv, START + WOKEN + ["recv_async %d" % len(one + two)] + answer(one, 200) + answer(two, 200) + END
    )


def test_trace_head_in_two_pieces(make_server):
    """A read that waits in the middle of a head is recv_async's too (the must-show of
    issue 17): the first piece is read, the next recv finds nothing and the coroutine
    yields for read until the rest comes.  Under --io uring that read is a RECV in
    flight: submitted, a yield (read) until its completion, then recv_async's bytes."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1, defer_accept=False)
    piece = HELLO[:25]

    def script(s):
        s.sendall(piece)
        # the first piece read (its step drained): the rest comes to a waiting read
        assert wait_for(
            lambda: any(r[4] == EV_RECV_ASYNC and r[5] == len(piece) for r in sink.records), timeout=5
        )
        s.sendall(HELLO[25:])
        assert read_response(s).status == 200

    rest = ["recv_async %d" % (len(HELLO) - 25)] + answer(HELLO, 200) + END
    if srv.io == "uring":
        wait = ["submit", "yield read", "complete", "add_to_ready", "schedule"]
        assert run(srv, sink, script) == expect(srv, START + WOKEN + ["recv_async 25"]) + wait + expect(
            srv, rest
        )
    else:
        assert run(srv, sink, script) == START + WOKEN + ["recv_async 25", "recv_async EAGAIN"] + WOKEN + rest


def test_trace_request_text_is_a_bounded_printable_copy(make_server):
    """parse_http and handler_done carry "METHOD /path" from the network: cut at 63
    bytes, each byte outside printable ASCII (and '"', '\\': it goes into JSON) as '?',
    the query left out; the same on both engines (csrc/trace.c trace_parse, trace.py
    request_text)."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1)
    for path in (b"/" + b"x" * 100, b'/caf\xc3\xa9"\\', b"/a?q=1"):
        c = Conn(srv.port)
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert c.read_response().status == 404
        c.close()
    assert wait_for(lambda: sum(r[4] == EV_HANDLER_DONE for r in sink.records) == 3)
    texts = [(r[4], r[5], r[6]) for r in sink.records if r[4] in (EV_HANDLER_DONE, EV_PARSE_HTTP)]
    long = "GET /" + "x" * 58
    parsed, done = EV_PARSE_HTTP, EV_HANDLER_DONE
    assert texts == [
        (parsed, 0, long),
        (done, 404, long),
        (parsed, 0, "GET /caf????"),
        (done, 404, "GET /caf????"),
        (parsed, 0, "GET /a"),
        (done, 404, "GET /a"),
    ]


def test_trace_python_handler(make_server):
    """A handler's request: the coroutine yields (python), the worker loop hands its call
    to Python (run_python -> mg_py_batch), a handler thread answers (wake_python)."""
    from minginx_cffi import App

    app = App()

    @app.get("/hi")
    def hi(req):
        return "hello"

    sink = Sink()
    srv = make_server(app=app, root=None, trace=sink, workers=1)
    req = b"GET /hi HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"

    def script(s):
        s.sendall(req)
        assert read_response(s).status == 200

    start = START[: START.index("recv_async EAGAIN")]
    assert run(srv, sink, script) == expect(
        srv,
        start
        + ["recv_async %d" % len(req), "parse_http GET /hi", "yield python", "run_python", "wake_python"]
        + ["add_to_ready", "schedule", "send_async", "handler_done GET /hi 200"]
        + END,
    )


def test_stats_endpoint_counters_agree(make_server):
    srv = make_server(stats=True, workers=2)
    sent = 0
    conns = 5
    for i in range(conns):
        c = Conn(srv.port)
        # Half a head first: the server reads it, finds no end, and must yield for read.
        # Wait until it has (a fast client could otherwise always be ahead of the server's
        # recv, and a read that finds data never yields), then send the rest.  The count is
        # the workers', not this connection's: the connection before may still be on its
        # way to its last wait (its response is out before its coroutine yields for the
        # next request, and the port is slow to get there), and that yield, landing after
        # `before`, used to pass for this one's (the rest then came in the same read: 3
        # read yields for 5 connections).  So `before` is taken once that one is gone.
        assert wait_for(lambda: all(w["coroutines_alive"] == 0 and w["parked"] == 0 for w in srv.stats()))
        before = sum(w["yields"]["read"] for w in srv.stats())
        c.send(b"GET /hello.txt HTTP/1.1\r\n")
        assert wait_for(lambda: sum(w["yields"]["read"] for w in srv.stats()) > before)
        c.send(b"Host: t\r\n\r\n")
        assert c.read_response().status == 200
        sent += 1
        for j in range(6 + i):
            assert c.request("GET", "/hello.txt" if j % 2 else "/nope").status in (200, 404)
            sent += 1
        c.close()
    assert wait_for(lambda: sum(w["coroutines_alive"] for w in srv.stats()) == 0)
    r = Conn(srv.port).request("GET", "/_minginx/stats")
    assert r.status == 200 and r.header("content-type") == "application/json"
    data = json.loads(r.body)
    workers = data["workers"]
    assert len(workers) == 2
    assert sum(w["requests"] for w in workers) == sent
    assert sum(w["connections"] for w in workers) == conns + 1  # and the one asking
    assert sum(w["coroutines_alive"] for w in workers) == 1
    assert all(w["connections"] >= 2 for w in workers)  # round-robin
    # one read yield per connection at least: each sent half a head first (above)
    assert sum(w["yields"]["read"] for w in workers) >= conns
    assert sum(w["switches"] for w in workers) >= conns
    assert sum(w["switches"] for w in workers) >= conns


def test_stats_endpoint_is_off_by_default(make_server):
    srv = make_server()
    assert Conn(srv.port).request("GET", "/_minginx/stats").status == 404


def test_trace_endpoint_shows_this_connection(make_server):
    srv = make_server(stats=True, trace="record", workers=1)
    c = Conn(srv.port)
    c.request("GET", "/hello.txt")
    data = json.loads(c.request("GET", "/_minginx/trace").body)
    names = [e["event"] for e in data["events"]]
    assert data["enabled"] is True
    # the acceptor's steps for this connection (its ring, matched by fd), then the worker's
    assert names[:7] == [
        "accept",
        "dispatch",
        "fd_batch",
        "coroutine_create",
        "add_to_ready",
        "schedule",
        "trampoline_start",
    ]
    assert data["events"][1]["arg"] == data["worker"] and {e["fd"] for e in data["events"][:3]} == {
        data["fd"]
    }
    assert names.count("handler_done") == 1  # the first request; this one is still being answered
    # every step has its name (--io uring's submit and complete were printed as "(null)")
    from minginx_cffi.trace import EVENTS

    assert set(names) <= set(EVENTS) and ("submit" in names) == (srv.io == "uring")
    stats = json.loads(c.request("GET", "/_minginx/stats").body)
    assert (stats["engine"], stats["io"]) == (srv.engine, srv.io)


def test_the_endpoints_json_is_never_sniffed(make_server):
    """The trace shows request paths, bytes a client chose ("/<script>..."): a browser must
    take both endpoints' answers as the JSON they say they are, never sniff them as HTML."""
    srv = make_server(stats=True, trace="record", workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/%3Cscript%3Ealert(1)%3C/script%3E").status == 404
    for path in ("/_minginx/trace", "/_minginx/stats"):
        r = c.request("GET", path)
        assert r.header("content-type") == "application/json", path
        assert r.header("x-content-type-options") == "nosniff", path
        assert r.header("cache-control") == "no-store", path


def test_trace_endpoint_keeps_a_long_connections_start_and_its_latest(make_server):
    srv = make_server(stats=True, trace="record", workers=1)
    c = Conn(srv.port)
    for _ in range(200):  # a step or more each: more than the 200 the endpoint lists
        t_us = time.monotonic_ns() // 1000  # the trace's clock (CLOCK_MONOTONIC)
        assert c.request("GET", "/hello.txt").status == 200
    data = json.loads(c.request("GET", "/_minginx/trace").body)
    names = [e["event"] for e in data["events"]]
    assert len(names) == 200 and data["skipped"] > 0
    assert names[:4] == ["accept", "dispatch", "fd_batch", "coroutine_create"]
    assert data["events"][-1]["t_us"] >= t_us  # the latest are kept: the last request's steps


def test_trace_endpoint_names_its_codes(make_server):
    """/_minginx/trace names what each record's number means: a yield's reason, the
    epoll events that woke it, a call's bytes or error, the request and its status.
    The C engine writes them (csrc/stats.c event_fields), the port takes them from
    minginx_cffi/trace.py json_fields: both must say the same for the same record."""
    from minginx_cffi.trace import EVENTS, json_fields

    srv = make_server(stats=True, trace="record", workers=1)
    c = Conn(srv.port)
    c.request("GET", "/hello.txt")
    # the second request comes to a waiting read: recv_async -> EAGAIN, then a wake-up
    assert wait_for(lambda: sum(w["yields"]["read"] for w in srv.stats()) >= 1)
    data = json.loads(c.request("GET", "/_minginx/trace").body)
    events = data["events"]
    by = {}
    for e in events:
        by.setdefault(e["event"], []).append(e)
        named = {k: v for k, v in e.items() if k not in ("t_us", "event", "fd", "arg")}
        text = "%s %s" % (e["method"], e["path"]) if "method" in e else ""
        assert named == json_fields(EVENTS.index(e["event"]), e["arg"], text), e
    assert by["handler_done"][0]["method"] == "GET" and by["handler_done"][0]["path"] == "/hello.txt"
    assert by["handler_done"][0]["status"] == 200
    assert [e["path"] for e in by["parse_http"]] == ["/hello.txt", "/_minginx/trace"]
    assert by["recv_async"][0]["bytes"] > 0
    waits = [e for e in by["recv_async"] if "error" in e]
    assert waits and waits[0]["error"] == "EAGAIN" and waits[0]["reason"] == "read"
    if srv.io == "uring":
        assert "POLL_ADD" in [e["op"] for e in by["submit"]] and "res" in by["complete"][0]
    else:
        assert "EPOLLIN" in by["wake_fd"][0]["events"].split("|")
    assert by["send_async"][0]["bytes"] > 0


def test_cli_trace_prints_steps_and_stats_table(site_root):
    port = free_port()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minginx_cffi",
            "serve",
            "--root",
            str(site_root),
            "--port",
            str(port),
            "--workers",
            "1",
            "--trace",
            "--stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.stdout.readline()
    Conn(port).request("GET", "/hello.txt", {"Connection": "close"})
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0
    for step in (
        "accept",
        "dispatch -> worker 0",
        "pipe read into fd_batch",
        "coroutine_create",
        "add_to_ready",
        "trampoline_start",
        "entry",
        "recv_async -> %d bytes"
        % len(b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        "parse_http GET /hello.txt",
        "static_serve",
        "send_async -> ",
        "handler done GET /hello.txt 200",
        "finished = 1",
        "coroutine_destroy",
    ):
        assert step in out, step
    assert "worker" in err and "reqs" in err and "switches" in err  # the summary table


@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed (apt-get install chromium)")
def test_demo_stats_page_in_a_real_browser(tmp_path):
    from minginx_cffi import Server

    srv = Server(port=0, workers=2, stats=True, trace="record").start()  # the demo site
    try:
        for _ in range(25):
            Conn(srv.port).request("GET", "/index.html")
        # MINGINX_SCREENSHOT=1 refreshes docs/stats-page.png; otherwise the shot stays in tmp
        if os.environ.get("MINGINX_SCREENSHOT"):
            shot = os.path.join(
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "stats-page.png"
            )
        else:
            shot = str(tmp_path / "stats-page.png")
        args = [
            *chromium_args(tmp_path / "profile"),
            "--virtual-time-budget=4000",
            "--window-size=1000,1400",
        ]
        url = "http://127.0.0.1:%d/stats.html" % srv.port
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # make test-asan's runtime
        dom = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=90, env=env)
        assert "worker 0" in dom.stdout and "worker 1" in dom.stdout
        assert 'data-worker="1"' in dom.stdout
        # the page's connection: its steps, by name (stats.js describe, from the fields
        # /_minginx/trace names), the request for this very list among them
        steps = [
            re.sub(r"<[^>]+>", "", li).replace("&gt;", ">")
            for li in re.findall(r'<li class="trace-step">(.*?)</li>', dom.stdout)
        ]
        assert any(" coroutine_create  (worker" in s for s in steps)
        assert any(re.search(r" recv_async -> \d+ bytes  \(worker", s) for s in steps)
        assert any(re.search(r" handler done GET /\S+ 200  \(worker", s) for s in steps)
        assert " parse_http GET /_minginx/trace  (worker" in steps[-1]  # the list is its answer
        total = dom.stdout.split('id="total">', 1)[1].split("<", 1)[0]
        assert int(total.replace(",", "")) >= 25
        subprocess.run(
            args + ["--screenshot=%s" % os.path.abspath(shot), url], capture_output=True, timeout=90, env=env
        )
        assert os.path.getsize(shot) > 10000
    finally:
        srv.shutdown()


def test_a_slot_being_rewritten_is_never_drained():
    # csrc/trace.c: with head h published, the writer may be half-way through
    # record h, in the slot record h - RING had; the drain used to return that
    # slot as record h - RING (first_valid off by one).
    from minginx_cffi._native import lib

    assert lib.mg_test_trace_torn() == 0
