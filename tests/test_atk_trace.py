"""The trace attacked: hostile request targets and methods in its text, the JSON of GET
/_minginx/trace and the --trace lines they reach, another connection's steps kept out of
it, and the two engines saying the same for the same bytes."""

import json
import re
import socket
import struct
import threading

from conftest import Conn, Sink, wait_for
from minginx_cffi.trace import EV_HANDLER_DONE, EV_PARSE_HTTP, EV_RECV_ASYNC


def drain_response(sock):
    """Read one response with a Content-Length to its end: (status, body length), the
    body counted, not kept."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    got = len(body)
    while got < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed after %d of %d bytes" % (got, length)
        got += len(chunk)
    return int(head[9:12]), got


def trace_of(c):
    r = c.request("GET", "/_minginx/trace")
    assert r.status == 200
    return json.loads(r.body)  # valid JSON, whatever the requests before it held


def test_trace_endpoint_keeps_what_the_printer_drained(make_server):
    """--trace and --stats together: the printer drains the rings every 50 ms, and GET
    /_minginx/trace still shows the connection from its accept.  The C ring keeps its
    records after a drain (the reader only moves its tail); the port popped them from
    its deque, so the endpoint showed only what came after the last drain (an unpark
    on), and neither the acceptor's accept and dispatch."""
    sink = Sink()
    srv = make_server(stats=True, trace=sink, workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    # the printer has had this request's steps, acceptor's included
    assert wait_for(lambda: any(r[4] == EV_HANDLER_DONE for r in sink.records))
    data = trace_of(c)
    names = [e["event"] for e in data["events"]]
    assert names[:4] == ["accept", "dispatch", "fd_batch", "coroutine_create"], names
    done = [e for e in data["events"] if e["event"] == "handler_done"]
    assert [(e["method"], e["path"], e["status"]) for e in done] == [("GET", "/hello.txt", 200)]
    # and the printer still had every record once: nothing doubled by the endpoint's copy
    texts = [r[6] for r in sink.records if r[4] == EV_PARSE_HTTP]
    assert texts.count("GET /hello.txt") == 1
    c.close()


# Request lines broken somewhere, the line longer than the 8192 bytes of
# MG_MAX_REQUEST_LINE but the head whole in one read (so no -414 before the parse):
# csrc/http.c parse_http reads the line from its start, and answers for the first
# thing that breaks it: a method that is not a token is 400 wherever the line ends; a
# target byte that is not one is 400 if it sits inside the limit, 414 past it; a line
# whole and too long is 414; a header section too long is 431 before a version not
# 1.x is 505.  The port answered 414 for any line over the limit it could not match,
# and 505 before 431.
LONG = b"y" * 9000
BROKEN_LINES = [
    ("bad method, long target", b"G\x1bT /" + LONG + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ('method with a "', b'GE"T /' + LONG + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("control early in a long target", b"GET /a\x01" + LONG + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("control late in a long target", b"GET /" + LONG + b"\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("bad version after a long target", b"GET /" + LONG + b" HTTX/1.1\r\nHost: a\r\n\r\n", 400),
    ("long target, no version", b"GET /" + LONG + b"\r\nHost: a\r\n\r\n", 414),
    ("long and whole", b"GET /" + LONG + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("long and HTTP/2.0", b"GET /" + LONG + b" HTTP/2.0\r\nHost: a\r\n\r\n", 414),
    ("big headers, HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n" + b"X: " + b"v" * 33000 + b"\r\n\r\n", 431),
    ("big headers, HTTP/1.1", b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: " + b"v" * 33000 + b"\r\n\r\n", 431),
]


def test_a_broken_request_line_has_the_same_status_in_both_parsers():
    """The C parser and the port's, on the whole head (tests/test_http_parse.py's
    test_port_agrees for lines past the limit)."""
    from minginx_cffi._native import parse_request
    from minginx_cffi.pyport import http as pyhttp

    for name, data, status in BROKEN_LINES:
        end = data.index(b"\r\n\r\n") + 4
        assert parse_request(data)["status"] == status, name
        assert pyhttp.parse_http(data[:end], end)[0] == status, name


def test_a_broken_request_line_is_traced_with_its_status(make_server):
    """The same heads over a socket, each in one send (one read: the head is whole when
    parse_http sees it): the answer and the trace's parse_http -> status agree with C."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1)
    for name, data, status in BROKEN_LINES[:3]:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(data)
        got = s.recv(12)
        s.close()
        assert got == b"HTTP/1.1 %d" % status, name
    assert wait_for(lambda: sum(r[4] == EV_HANDLER_DONE for r in sink.records) == 3)
    parsed = [(r[5], r[6]) for r in sink.records if r[4] == EV_PARSE_HTTP]
    assert parsed == [(400, ""), (400, ""), (400, "")]


def test_a_request_refused_for_its_body_has_its_handler_done(make_server):
    """A good head whose body is refused (413 past max_body, 400 for a bad chunk) is
    answered, and logged, by conn_entry's body step: its trace ended at parse_http, with
    no handler done for the response sent (the seed's last step of a request, the one
    the demo page and a reader of --trace look for)."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1, max_body=1000)
    heads = [
        (b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"PUT /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n", 413),
    ]
    for data, status in heads:
        c = Conn(srv.port)
        c.send(data)
        assert c.read_response().status == status
        c.close()
    # and a client gone mid-body: no response, but the access log's 400 (nginx's)
    c = Conn(srv.port)
    c.send(b"POST /gone HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\nab")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.closed_by_peer()
    c.close()
    assert wait_for(lambda: sum(r[4] == EV_HANDLER_DONE for r in sink.records) >= 4)
    texts = [(r[4], r[5], r[6]) for r in sink.records if r[4] in (EV_PARSE_HTTP, EV_HANDLER_DONE)]
    parsed, done = EV_PARSE_HTTP, EV_HANDLER_DONE
    assert texts == [
        (parsed, 0, "POST /up"),
        (done, 413, "POST /up"),
        (parsed, 0, "POST /up"),
        (done, 400, "POST /up"),
        (parsed, 0, "PUT /big"),
        (done, 413, "PUT /big"),
        (parsed, 0, "POST /gone"),
        (done, 400, "POST /gone"),
    ]


def test_handler_done_has_its_own_responses_status(make_server, site_root):
    """A long response's handler done comes after other connections' responses were
    begun on the same worker: its status is its own (C: co->status).  The port took
    it from the worker's last head written (Worker.last_status), so a 404 sent to
    another connection while the 50 MiB file was on its way was printed as the file's."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1)
    a = Conn(srv.port)  # not read yet: the socket's buffers hold a few MiB of the 50
    a.send(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    # the file's sender waits on a full socket; another connection's 404 goes out meanwhile
    assert wait_for(lambda: any(r[4] == EV_PARSE_HTTP and r[6] == "GET /50mib.bin" for r in sink.records))
    b = Conn(srv.port)
    assert b.request("GET", "/nope").status == 404
    assert wait_for(lambda: any(r[4] == EV_HANDLER_DONE for r in sink.records))
    assert drain_response(a.sock) == (200, 50 << 20)
    assert wait_for(lambda: sum(r[4] == EV_HANDLER_DONE for r in sink.records) == 2)
    done = [(r[5], r[6]) for r in sink.records if r[4] == EV_HANDLER_DONE]
    assert done == [(404, "GET /nope"), (200, "GET /50mib.bin")]
    a.close()
    b.close()


def test_a_response_broken_off_has_its_handler_done(make_server):
    """A client that resets the connection while its 50 MiB file is being sent: the send
    fails, and the request's handler done is traced with the status begun (C: conn_entry
    traces it whatever the middleware returned).  The port's send raised past it."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert s.recv(12) == b"HTTP/1.1 200"  # begun
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    assert wait_for(lambda: any(r[4] == EV_HANDLER_DONE for r in sink.records))
    done = [(r[5], r[6]) for r in sink.records if r[4] == EV_HANDLER_DONE]
    assert done == [(200, "GET /50mib.bin")]


def test_a_head_that_never_ends_has_its_handler_done_without_the_last_requests_text(make_server):
    """A header timeout (408) and a client gone mid-head (nginx logs 400) end a request
    too: each has its handler done, on both engines, with no method and path, for none
    was parsed, and on a keep-alive connection the text kept is the previous request's."""
    sink = Sink()
    srv = make_server(trace=sink, workers=1, header_timeout=1.0)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    c.sock.sendall(b"GET /half HTTP/1.1\r\nHo")  # and nothing more: 408
    assert c.sock.recv(12) == b"HTTP/1.1 408"
    c.close()
    assert wait_for(lambda: sum(r[4] == EV_HANDLER_DONE for r in sink.records) == 2)
    half = b"GET /gone-away HTTP/1.1\r\nHo"
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(half)
    # read by the server (its recv_async step says so), then the client is gone mid-head
    assert wait_for(lambda: any(r[4] == EV_RECV_ASYNC and r[5] == len(half) for r in sink.records))
    s.close()
    assert wait_for(lambda: sum(r[4] == EV_HANDLER_DONE for r in sink.records) == 3)
    done = [(r[5], r[6]) for r in sink.records if r[4] == EV_HANDLER_DONE]
    assert done == [(200, "GET /hello.txt"), (408, ""), (400, "")]


def test_a_handler_past_its_timeout_has_its_handler_done(make_server):
    """--handler-timeout: the 504 sent for a handler still running is the request's
    status in its handler done (C: python_request returns after send_gateway_timeout);
    the port raised HandlerTimedOut past the step."""
    from minginx_cffi import App

    release = threading.Event()
    app = App()

    @app.get("/slow")
    def slow(req):
        release.wait(30)
        return "late"

    sink = Sink()
    srv = make_server(app=app, root=None, trace=sink, workers=1, handler_timeout=0.2)
    try:
        c = Conn(srv.port)
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 504
        assert wait_for(lambda: any(r[4] == EV_HANDLER_DONE for r in sink.records))
        done = [(r[5], r[6]) for r in sink.records if r[4] == EV_HANDLER_DONE]
        assert done == [(504, "GET /slow")]
        c.close()
    finally:
        release.set()


def test_the_printer_says_how_many_steps_it_never_printed(make_server, capsys):
    """A ring holds 16,384 records; when its writer laps the printer (4,000 requests of
    five steps or more each, and no drain between them: trace="record" runs no printer), the
    next lines do not follow on from the last printed, and the printer says how many steps
    are missing: the C reader's lapped count, the port's ring as its twin (pyport/ring.py,
    whose count was never kept)."""
    srv = make_server(trace="record", workers=1)
    c = Conn(srv.port)
    for _ in range(4000):  # the port traces about five steps a keep-alive request
        assert c.request("GET", "/hello.txt").status == 200
    srv._trace_flush()  # the printer's step, every 50 ms under --trace
    out = capsys.readouterr().out
    m = re.search(r"\((\d+) steps? not printed: the trace printer fell behind\)", out)
    assert m, out[:500]
    assert int(m.group(1)) == srv._engine.trace_dropped > 0
    srv._trace_flush()
    assert "not printed" not in capsys.readouterr().out  # counted once
