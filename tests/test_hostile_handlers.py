"""Hostile handlers: every wrong thing a WSGI or App handler can return, each contained to its own request.

Invariant, on both engines: whatever a handler hands back, the bytes on the
wire are an honest HTTP/1.1 stream: no header line the handler forged (CR,
LF or NUL never reach the head), framing that says exactly what follows
(a body cut short ends with a close, never with a complete-looking
response), and the other requests on the same worker (--workers 1, 30 good
ones at the same time) are answered normally.  The one response writer is
csrc/response.c (C) and minginx_cffi/pyport/response.py (the port).
"""

import re
import socket
import threading

import pytest

from minginx_cffi import App, Response

GOOD = 30
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
CLOSED = {}  # iterator name -> threading.Event set by its close()


def _closed(name):
    return CLOSED.setdefault(name, threading.Event())


class Tracked:
    """An iterable whose close() is recorded; yields pieces, then raises or runs forever."""

    def __init__(self, name, pieces, then=None):
        self.name = name
        self.pieces = list(pieces)
        self.then = then  # None: end; "raise"; "forever"
        _closed(name).clear()

    def __iter__(self):
        return self

    def __next__(self):
        if self.pieces:
            return self.pieces.pop(0)
        if self.then == "raise":
            raise RuntimeError("iterator %s broke" % self.name)
        if self.then == "forever":
            return b"x" * 4096
        raise StopIteration

    def close(self):
        _closed(self.name).set()


# ------------------------------------------------------------------ WSGI


def _wsgi_cases():
    ok = [("Content-Type", "text/plain")]
    return {
        # bodies of the wrong type
        "/str-list": lambda sr: (sr("200 OK", ok), ["text"])[1],
        "/str-body": lambda sr: (sr("200 OK", ok), "text")[1],
        "/str-pieces": lambda sr: (sr("200 OK", ok), Tracked("str-pieces", ["a", "b"]))[1],
        "/int-body": lambda sr: (sr("200 OK", ok), 42)[1],
        # bad statuses
        "/status-abc": lambda sr: (sr("abc", ok), [b"x"])[1],
        "/status-99": lambda sr: (sr("99 Low", ok), [b"x"])[1],
        "/status-1000": lambda sr: (sr("1000 X", ok), [b"x"])[1],
        "/status-600": lambda sr: (sr("600 X", ok), [b"x"])[1],
        "/status-101": lambda sr: (sr("101 Switching Protocols", ok), [b"x"])[1],
        "/status-plus": lambda sr: (sr("+20 OK", ok), [b"x"])[1],
        "/reason-crlf": lambda sr: (sr("200 OK\r\nSet-Cookie: pwned=1", ok), [b"x"])[1],
        "/reason-lf": lambda sr: (sr("200 OK\nSet-Cookie: pwned=1", ok), [b"x"])[1],
        "/reason-nul": lambda sr: (sr("200 OK\x00pwned", ok), [b"x"])[1],
        # bad header names and values
        "/name-crlf": lambda sr: (sr("200 OK", [("X-A\r\nSet-Cookie", "pwned=1")]), [b"x"])[1],
        "/name-colon": lambda sr: (sr("200 OK", [("Set-Cookie: pwned=1\r\nX", "y")]), [b"x"])[1],
        "/name-space": lambda sr: (sr("200 OK", [("X A", "pwned")]), [b"x"])[1],
        "/name-nul": lambda sr: (sr("200 OK", [("X\x00Set-Cookie", "pwned=1")]), [b"x"])[1],
        "/name-empty": lambda sr: (sr("200 OK", [("", "pwned")]), [b"x"])[1],
        "/value-crlf": lambda sr: (sr("200 OK", [("X-A", "1\r\nSet-Cookie: pwned=1")]), [b"x"])[1],
        "/value-lf": lambda sr: (sr("200 OK", [("X-A", "1\nSet-Cookie: pwned=1")]), [b"x"])[1],
        "/value-cr": lambda sr: (sr("200 OK", [("X-A", "1\rSet-Cookie: pwned=1")]), [b"x"])[1],
        "/value-nul": lambda sr: (sr("200 OK", [("X-A", "1\x00Set-Cookie\x00pwned=1")]), [b"x"])[1],
        "/value-int": lambda sr: (sr("200 OK", [("X-A", 1)]), [b"x"])[1],
        # framing of the handler's own
        "/cl-differ": lambda sr: (
            sr("200 OK", [("Content-Length", "5"), ("Content-Length", "6")]),
            [b"12345"],
        )[1],
        "/cl-same": lambda sr: (sr("200 OK", [("Content-Length", "5"), ("content-length", "5")]), [b"12345"])[
            1
        ],
        "/cl-te": lambda sr: (
            sr("200 OK", [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
            [b"12345"],
        )[1],
        "/te": lambda sr: (sr("200 OK", [("Transfer-Encoding", "chunked")]), [b"5\r\n12345\r\n0\r\n\r\n"])[1],
        "/cl-junk": lambda sr: (sr("200 OK", [("Content-Length", "5x")]), [b"12345"])[1],
        # wrong lengths, both ways, single body and streamed
        "/cl-long": lambda sr: (sr("200 OK", [("Content-Length", "5")]), [b"12345SURPLUS"])[1],
        "/cl-short": lambda sr: (sr("200 OK", [("Content-Length", "10")]), [b"12345"])[1],
        "/cl-long-stream": lambda sr: (
            sr("200 OK", [("Content-Length", "5")]),
            Tracked("cl-long-stream", [b"123", b"45SURPLUS", b"more"]),
        )[1],
        "/cl-short-stream": lambda sr: (
            sr("200 OK", [("Content-Length", "10")]),
            Tracked("cl-short-stream", [b"123", b"45"]),
        )[1],
        # raising before and after the first piece
        "/raise-first": lambda sr: (sr("200 OK", ok), Tracked("raise-first", [], "raise"))[1],
        "/raise-later": lambda sr: (sr("200 OK", ok), Tracked("raise-later", [b"part"], "raise"))[1],
        "/raise-later-cl": lambda sr: (
            sr("200 OK", [("Content-Length", "100")]),
            Tracked("raise-later-cl", [b"part"], "raise"),
        )[1],
        "/forever": lambda sr: (sr("200 OK", ok), Tracked("forever", [], "forever"))[1],
        # bodies where none may go
        "/body-204": lambda sr: (sr("204 No Content", []), Tracked("body-204", [b"BODY"]))[1],
        "/body-304": lambda sr: (sr("304 Not Modified", []), Tracked("body-304", [b"BODY"]))[1],
        "/body-204-list": lambda sr: (sr("204 No Content", [("Content-Length", "4")]), [b"BODY"])[1],
        "/no-start": lambda sr: [b"x"],
        "/hop": lambda sr: (
            sr(
                "200 OK",
                [
                    ("Connection", "keep-alive, Upgrade"),
                    ("Upgrade", "h2c"),
                    ("Keep-Alive", "timeout=5"),
                    ("Date", "yesterday"),
                    ("Server", "other"),
                ],
            ),
            [b"hop"],
        )[1],
    }


WSGI_CASES = _wsgi_cases()


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/good":
        body = b"good " + environ["QUERY_STRING"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return WSGI_CASES[path](start_response)


# ------------------------------------------------------------------- App

app = App()


@app.route("/good")
def good(request):
    return "good " + request.query


def _route(path, fn):
    app.route(path, methods=["GET", "HEAD"])(fn)


_route("/str-pieces", lambda r: Response(Tracked("app-str-pieces", ["a", "b"])))
_route("/wrong-tuple", lambda r: ("a", "b", "c", "d"))
_route("/none", lambda r: None)
_route("/int", lambda r: 42)
_route("/status-99", lambda r: ("x", 99))
_route("/status-1000", lambda r: ("x", 1000))
_route("/status-str", lambda r: ("x", "200"))
_route("/name-crlf", lambda r: Response("x", headers=[("X-A\r\nSet-Cookie", "pwned=1")]))
_route("/name-colon", lambda r: Response("x", headers=[("Set-Cookie: pwned=1\r\nX", "y")]))
_route("/value-crlf", lambda r: Response("x", headers={"X-A": "1\r\nSet-Cookie: pwned=1"}))
_route("/value-nul", lambda r: Response("x", headers={"X-A": "1\x00Set-Cookie\x00pwned=1"}))
_route("/value-latin1", lambda r: Response("x", headers={"X-A": "\u2603"}))
_route("/content-type-crlf", lambda r: Response("x", content_type="text/plain\r\nSet-Cookie: pwned=1"))
_route("/cl-long", lambda r: Response(b"12345SURPLUS", headers={"Content-Length": "5"}))
_route("/cl-short", lambda r: Response(b"12345", headers={"Content-Length": "10"}))
_route("/cl-differ", lambda r: Response(b"12345", headers=[("Content-Length", "5"), ("Content-Length", "6")]))
_route(
    "/cl-te",
    lambda r: Response(b"12345", headers=[("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
)
_route("/raise-later", lambda r: Response(Tracked("app-raise-later", [b"part"], "raise")))
_route("/forever", lambda r: Response(Tracked("app-forever", [], "forever")))
_route("/body-204", lambda r: Response(Tracked("app-body-204", [b"BODY"]), 204))
_route("/stream-head", lambda r: Response(Tracked("app-stream-head", [b"BODY"], "forever")))


# ---------------------------------------------------------- the raw client


class Wire:
    """Everything the server sent on one connection, parsed strictly."""

    def __init__(self, data):
        self.data = data

    def responses(self, head_request=False):
        """[(status, [(name, value)], body, complete)]; complete False for a body cut short."""
        out = []
        data = self.data
        while data:
            head, sep, rest = data.partition(b"\r\n\r\n")
            assert sep, "a partial head on the wire: %r" % data
            lines = head.split(b"\r\n")
            m = re.match(rb"^HTTP/1\.1 ([2-5][0-9][0-9]) [\t -~\x80-\xff]*$", lines[0])
            assert m, "bad status line %r" % lines[0]
            status = int(m.group(1))
            fields = []
            for line in lines[1:]:
                name, colon, value = line.partition(b": ")
                assert colon and _TOKEN.match(name), "bad field line %r" % line
                assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value), line
                fields.append((name.lower(), value))
            names = [n for n, _ in fields]
            assert names.count(b"content-length") <= 1 and names.count(b"date") == 1
            assert names.count(b"server") == 1
            assert not (b"content-length" in names and b"transfer-encoding" in names)
            framing = dict(fields)
            if head_request or status in (204, 304):
                assert b"transfer-encoding" not in names
                if status in (204, 304):
                    assert b"content-length" not in names
                out.append((status, fields, b"", True))
                data = rest
                head_request = False
                continue
            if framing.get(b"transfer-encoding") == b"chunked":
                body, complete = b"", False
                while True:
                    line, sep, after = rest.partition(b"\r\n")
                    if not sep:
                        break
                    n = int(line, 16)
                    if n == 0:
                        assert after.startswith(b"\r\n")
                        rest, complete = after[2:], True
                        break
                    if len(after) < n + 2:
                        body += after[:n]
                        rest = b""
                        break
                    assert after[n : n + 2] == b"\r\n"
                    body, rest = body + after[:n], after[n + 2 :]
                out.append((status, fields, body, complete))
                data = rest if complete else b""
                continue
            n = int(framing[b"content-length"]) if b"content-length" in framing else None
            if n is None:  # close-delimited
                assert framing.get(b"connection") == b"close"
                out.append((status, fields, rest, True))
                break
            out.append((status, fields, rest[:n], len(rest) >= n))
            data = rest[n:]
        return out


def exchange(port, path, method="GET", follow=True):
    """Send one request, then (pipelined) GET /good?after, and read until the server closes.

    A server that keeps the connection answers both (the second asks to close);
    one that closes after the first must send nothing more."""
    req = b"%s %s HTTP/1.1\r\nHost: t\r\n\r\n" % (method.encode(), path.encode())
    if follow:
        req += b"GET /good?after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert b"pwned" not in data.split(b"\r\n\r\n", 1)[0]
    return Wire(data).responses(head_request=method == "HEAD")


def fetch_good(port, tag, results):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"GET /good?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % tag.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        results[tag] = Wire(data).responses()
    except Exception as e:  # recorded, asserted by the caller
        results[tag] = e


def beside_good(port, fn):
    """Run fn() while GOOD good requests go to the same worker; all of them must succeed."""
    results = {}
    threads = [threading.Thread(target=fetch_good, args=(port, "g%d" % i, results)) for i in range(GOOD)]
    for t in threads:
        t.start()
    try:
        return fn()
    finally:
        for t in threads:
            t.join(30)
        for i in range(GOOD):
            r = results.get("g%d" % i)
            assert isinstance(r, list) and len(r) == 1, r
            status, _, body, complete = r[0]
            assert (status, body, complete) == (200, b"good g%d" % i, True), r


def _status_500(resps):
    assert resps[0][0] == 500 and resps[0][2] == b"Internal Server Error\n", resps
    assert len(resps) == 2 and resps[1][0] == 200 and resps[1][2] == b"good after", resps


# ------------------------------------------------------------------- tests


@pytest.fixture
def wsgi_srv(make_server):
    return make_server(wsgi=wsgi_app, root=None, workers=1)


@pytest.fixture
def app_srv(make_server):
    return make_server(app=app, root=None, workers=1)


@pytest.fixture
def serve(make_server):
    """serve("wsgi_srv" | "app_srv"): one of the two servers, for tests parametrized over both."""

    def make(kind):
        return make_server(
            **{"wsgi" if kind == "wsgi_srv" else "app": wsgi_app if kind == "wsgi_srv" else app},
            root=None,
            workers=1,
        )

    return make


REFUSED_WSGI = [
    "/str-list",
    "/str-body",
    "/str-pieces",
    "/int-body",
    "/status-abc",
    "/status-99",
    "/status-1000",
    "/status-600",
    "/status-101",
    "/status-plus",
    "/reason-crlf",
    "/reason-lf",
    "/reason-nul",
    "/name-crlf",
    "/name-colon",
    "/name-space",
    "/name-nul",
    "/name-empty",
    "/value-crlf",
    "/value-lf",
    "/value-cr",
    "/value-nul",
    "/value-int",
    "/cl-differ",
    "/cl-te",
    "/te",
    "/cl-junk",
    "/raise-first",
    "/no-start",
]


@pytest.mark.parametrize("path", REFUSED_WSGI)
def test_wsgi_bad_answer_is_500_beside_good_requests(wsgi_srv, path, caplog):
    resps = beside_good(wsgi_srv.port, lambda: exchange(wsgi_srv.port, path))
    _status_500(resps)
    assert "minginx-cffi: handler for GET %s" % path in caplog.text


REFUSED_APP = [
    "/str-pieces",
    "/wrong-tuple",
    "/none",
    "/int",
    "/status-99",
    "/status-1000",
    "/status-str",
    "/name-crlf",
    "/name-colon",
    "/value-crlf",
    "/value-nul",
    "/value-latin1",
    "/content-type-crlf",
    "/cl-differ",
    "/cl-te",
]


@pytest.mark.parametrize("path", REFUSED_APP)
def test_app_bad_answer_is_500_beside_good_requests(app_srv, path, caplog):
    resps = beside_good(app_srv.port, lambda: exchange(app_srv.port, path))
    _status_500(resps)
    assert "minginx" in caplog.text


@pytest.mark.parametrize("path,iterator", [("/str-pieces", "str-pieces"), ("/raise-first", "raise-first")])
def test_wsgi_refused_stream_is_closed(wsgi_srv, path, iterator):
    exchange(wsgi_srv.port, path)
    assert _closed(iterator).wait(5)


def test_identical_content_lengths_are_sent_once(wsgi_srv):
    resps = exchange(wsgi_srv.port, "/cl-same")
    assert resps[0][0] == 200 and resps[0][2] == b"12345" and resps[0][3]
    assert resps[1][2] == b"good after"


@pytest.mark.parametrize(
    "srv_name,path", [("wsgi_srv", "/cl-long"), ("wsgi_srv", "/cl-long-stream"), ("app_srv", "/cl-long")]
)
def test_longer_body_is_cut_to_content_length_and_closed(serve, srv_name, path, caplog):
    srv = serve(srv_name)
    resps = beside_good(srv.port, lambda: exchange(srv.port, path))
    assert len(resps) == 1, resps  # the surplus never reads as a next response
    status, fields, body, complete = resps[0]
    assert (status, body, complete) == (200, b"12345", True)
    assert b"SURPLUS" not in body
    assert "longer than its Content-Length" in caplog.text
    if path == "/cl-long-stream":
        assert _closed("cl-long-stream").wait(5)


@pytest.mark.parametrize(
    "srv_name,path", [("wsgi_srv", "/cl-short"), ("wsgi_srv", "/cl-short-stream"), ("app_srv", "/cl-short")]
)
def test_shorter_body_closes_the_connection(serve, srv_name, path, caplog):
    srv = serve(srv_name)
    resps = beside_good(srv.port, lambda: exchange(srv.port, path))
    assert len(resps) == 1, resps  # a close, not a following response
    status, fields, body, complete = resps[0]
    assert status == 200 and body == b"12345" and not complete
    assert "shorter than its Content-Length" in caplog.text


@pytest.mark.parametrize(
    "srv_name,path,iterator",
    [("wsgi_srv", "/raise-later", "raise-later"), ("app_srv", "/raise-later", "app-raise-later")],
)
def test_iterator_raising_mid_stream_ends_without_the_last_chunk(serve, srv_name, path, iterator):
    srv = serve(srv_name)
    resps = beside_good(srv.port, lambda: exchange(srv.port, path))
    assert len(resps) == 1, resps
    status, fields, body, complete = resps[0]
    assert (b"transfer-encoding", b"chunked") in fields
    assert status == 200 and body == b"part" and not complete  # no terminating 0-chunk
    assert _closed(iterator).wait(5)


def test_iterator_raising_under_content_length_is_short_and_closed(wsgi_srv):
    resps = exchange(wsgi_srv.port, "/raise-later-cl")
    assert len(resps) == 1 and resps[0][2] == b"part" and not resps[0][3]
    assert _closed("raise-later-cl").wait(5)


@pytest.mark.parametrize(
    "srv_name,path,iterator", [("wsgi_srv", "/forever", "forever"), ("app_srv", "/forever", "app-forever")]
)
def test_endless_iterator_is_closed_when_its_client_leaves(serve, srv_name, path, iterator):
    srv = serve(srv_name)

    def leave():
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        got = b""
        while len(got) < 100000:
            got += s.recv(65536)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset: the server's next send fails
        return got

    got = beside_good(srv.port, leave)
    assert got.startswith(b"HTTP/1.1 200 ")
    assert _closed(iterator).wait(10)


@pytest.mark.parametrize(
    "srv_name,path,iterator",
    [
        ("wsgi_srv", "/body-204", "body-204"),
        ("wsgi_srv", "/body-304", "body-304"),
        ("app_srv", "/body-204", "app-body-204"),
    ],
)
def test_no_body_statuses_send_no_body_and_close_the_iterator(serve, srv_name, path, iterator):
    srv = serve(srv_name)
    resps = beside_good(srv.port, lambda: exchange(srv.port, path))
    assert resps[0][0] in (204, 304) and resps[1][2] == b"good after", resps
    assert _closed(iterator).wait(5)


def test_no_body_status_drops_a_handler_content_length(wsgi_srv):
    resps = exchange(wsgi_srv.port, "/body-204-list")
    assert resps[0][0] == 204 and resps[1][2] == b"good after", resps


@pytest.mark.parametrize(
    "srv_name,path,iterator",
    [("wsgi_srv", "/forever", "forever"), ("app_srv", "/stream-head", "app-stream-head")],
)
def test_head_of_a_stream_sends_no_body_and_closes_the_iterator(serve, srv_name, path, iterator):
    srv = serve(srv_name)
    _closed(iterator).clear()
    resps = beside_good(srv.port, lambda: exchange(srv.port, path, method="HEAD"))
    assert resps[0][0] == 200 and resps[1][2] == b"good after", resps
    assert _closed(iterator).wait(5)


def test_hop_by_hop_date_and_server_of_a_handler_are_the_servers(wsgi_srv):
    resps = exchange(wsgi_srv.port, "/hop")
    fields = resps[0][1]
    names = [n for n, _ in fields]
    assert b"upgrade" not in names and b"keep-alive" not in names
    assert dict(fields)[b"server"] == b"minginx-cffi" and dict(fields)[b"date"] != b"yesterday"
    assert dict(fields)[b"connection"] == b"keep-alive" and resps[1][2] == b"good after"


def _read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_bad_calls_fail_alone_in_a_batch(wsgi_srv):
    """Issue 12 defect 5: bad calls in the same mg_py_batch as good ones fail alone.

    Every connection is open (and parked in recv) before any request is sent,
    so one epoll_wait wakes many of them and their calls share a batch."""
    paths = ["/str-pieces" if i % 4 == 0 else "/good?g%d" % i for i in range(4 * GOOD // 3)]
    socks = [socket.create_connection(("127.0.0.1", wsgi_srv.port), timeout=20) for _ in paths]
    try:
        probe = socket.create_connection(("127.0.0.1", wsgi_srv.port), timeout=20)
        probe.sendall(b"GET /good?probe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert Wire(_read_all(probe)).responses()[0][2] == b"good probe"  # all accepted by now
        probe.close()
        for s, path in zip(socks, paths):
            s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        for s, path in zip(socks, paths):
            ((status, _, body, complete),) = Wire(_read_all(s)).responses()
            if path == "/str-pieces":
                assert status == 500
            else:
                assert (status, body, complete) == (200, b"good " + path.split("?")[1].encode(), True), path
    finally:
        for s in socks:
            s.close()
