"""atk1: attacks on the one response writer (issue 12, defects 2-5), each a failing test.

Every test here states the behaviour the RFCs / PEP 3333 / nginx ask for and
is marked xfail(strict=True) because main does not do it yet; the reason
names the cause in the code.  Both engines run each end-to-end test (the
``engine`` fixture), unless the test compares the two.
"""

import asyncio
import re
import socket
import sys

import pytest

from minginx_cffi import App, Response, Server

from test_hostile_handlers import Wire


def _gen(*pieces):
    for p in pieces:
        yield p


def _cancelled_after_first():
    yield b"first"
    raise asyncio.CancelledError()   # a BaseException, not an Exception (Python 3.8+)


class _AlwaysCancelled:
    """An iterator whose __next__ raises a BaseException every time after its first piece."""

    def __init__(self):
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.n += 1
        if self.n == 1:
            return b"first"
        raise asyncio.CancelledError()


class _Bytes(bytes):
    pass


def _handler_cancelled(environ, start_response):
    raise asyncio.CancelledError()


def _exc_info_after_head(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first"
        try:
            raise ValueError("the handler broke mid-stream")
        except ValueError:
            # PEP 3333: the head is sent, so this call must re-raise exc_info
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        yield b"ERRORPAGE"
    return body()


WSGI = {
    "/cancelled": _handler_cancelled,
    "/cancelled-mid-stream": lambda e, sr: (sr("200 OK", []), _cancelled_after_first())[1],
    "/always-cancelled": lambda e, sr: (sr("200 OK", []), _AlwaysCancelled())[1],
    "/exc-info-late": _exc_info_after_head,
    "/bytes-subclass": lambda e, sr: (sr("200 OK", []), _gen(b"a", _Bytes(b"b")))[1],
    "/bytearray-name": lambda e, sr: (sr("200 OK", [(bytearray(b"X-A"), "v")]), [b"x"])[1],
}


def wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/good":
        start_response("200 OK", [("Content-Length", "4")])
        return [b"good"]
    return WSGI[path](environ, start_response)


app = App()


@app.route("/good")
def _good(request):
    return b"good"


@app.route("/bytes-headers")
def _bytes_headers(request):
    return Response(b"x", headers={b"X-A": b"v"})


@app.route("/created")
def _created(request):
    return ("made", 201)


def _talk(port, data, timeout=5.0):
    """Send data, read until the server closes; '<<TIMEOUT>>' appended if it never does."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        out += b"<<TIMEOUT>>"
    except ConnectionResetError:
        pass
    finally:
        s.close()
    return out


def _get(path, then_good=True):
    req = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()
    if then_good:
        req += b"GET /good HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    return req


@pytest.fixture
def wsgi_srv(make_server):
    return make_server(wsgi=wsgi_app, root=None, workers=1)


@pytest.fixture
def app_srv(make_server):
    return make_server(app=app, root=None, workers=1)


# ------------------------------------------- BaseException from a handler

@pytest.mark.xfail(strict=True, reason="atk1: a BaseException (asyncio.CancelledError, SystemExit) "
                   "escapes the per-call 'except Exception' in _bridge.mg_py_batch / Bridge.start: "
                   "cffi's onerror drops the rest of the batch (good neighbours get C's 500); "
                   "pyport conn._python_request lets it kill the worker thread")
def test_base_exception_from_a_handler_fails_alone_in_a_batch(wsgi_srv):
    port = wsgi_srv.port
    paths = ["/cancelled" if i % 4 == 0 else "/good" for i in range(24)]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in paths]
    try:
        assert b"good" in _talk(port, _get("/good", then_good=False).replace(
            b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))   # all accepted by now
        for s, path in zip(socks, paths):
            s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        for s, path in zip(socks, paths):
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                data += b"<<TIMEOUT>>"
            (status, _, body, complete), = Wire(data).responses()
            if path == "/good":
                assert (status, body, complete) == (200, b"good", True), data
            else:
                assert status == 500, data
    finally:
        for s in socks:
            s.close()


@pytest.mark.xfail(strict=True, reason="atk1: a BaseException from a response iterator mid-stream "
                   "escapes Bridge.next's 'except Exception'; the spent generator then reads as "
                   "ended, so C sends the terminating 0-chunk and keeps the connection (cffi); "
                   "the port's worker thread dies")
def test_base_exception_mid_stream_cuts_the_connection(wsgi_srv):
    data = _talk(wsgi_srv.port, _get("/cancelled-mid-stream"))
    assert not data.endswith(b"<<TIMEOUT>>"), data
    resps = Wire(data).responses()
    assert len(resps) == 1, resps                       # no following response
    assert resps[0][2] == b"first" and not resps[0][3]   # no terminating chunk: visibly cut


@pytest.mark.xfail(strict=True, reason="atk1: an iterator raising a BaseException on every "
                   "__next__: Bridge.next never sets c.more = 0, pycall.c python_request loops "
                   "MG_PY_NEXT forever (100% CPU, a log line per round, the client hangs); "
                   "the port's worker thread dies")
def test_iterator_raising_base_exception_every_time_ends_the_stream(wsgi_srv):
    data = _talk(wsgi_srv.port, _get("/always-cancelled"))
    assert not data.endswith(b"<<TIMEOUT>>"), data[-200:]
    resps = Wire(data).responses()
    assert len(resps) == 1 and resps[0][2] == b"first" and not resps[0][3], resps


# ------------------------------------------------------------------ WSGI

@pytest.mark.xfail(strict=True, reason="atk1: wsgi._StartResponse re-raises exc_info only when "
                   "write() was used (self.written); after the head went out (the dispatcher "
                   "returned) it silently takes the new status, and the error page is appended "
                   "to the 200 body as if whole (PEP 3333 'the start_response callable')")
def test_start_response_with_exc_info_after_the_head_raises(wsgi_srv):
    data = _talk(wsgi_srv.port, _get("/exc-info-late"))
    resps = Wire(data).responses()
    assert len(resps) == 1, resps
    status, _, body, complete = resps[0]
    assert status == 200 and b"ERRORPAGE" not in body and not complete, resps


@pytest.mark.xfail(strict=True, reason="atk1: _dispatch.next_piece tests piece.__class__ is bytes "
                   "then isinstance(bytearray, memoryview): a bytes subclass is refused mid-stream "
                   "(the stream is cut) though a single bytes-subclass body is accepted "
                   "(Bridge.start / _python_request use isinstance(body, bytes))")
def test_bytes_subclass_pieces_are_bytes(wsgi_srv):
    resps = Wire(_talk(wsgi_srv.port, _get("/bytes-subclass"))).responses()
    assert resps[0][2] == b"ab" and resps[0][3], resps
    assert len(resps) == 2 and resps[1][2] == b"good", resps


@pytest.mark.xfail(strict=True, reason="atk1: a bytearray header name or value: _dispatch."
                   "flatten_fields' b'\\0'.join takes it (cffi sends 200), pyport/response.py "
                   "handler_fields refuses anything whose __class__ is not bytes (500)")
def test_engines_agree_on_a_bytearray_header_name():
    got = {}
    for eng in ("cffi", "python"):
        srv = Server(engine=eng, wsgi=wsgi_app, root=None, port=0, workers=1, grace=2.0).start()
        try:
            got[eng] = Wire(_talk(srv.port, _get("/bytearray-name"))).responses()[0][0]
        finally:
            srv.shutdown()
    assert got["cffi"] == got["python"], got


# ------------------------------------------------------------------- App

@pytest.mark.xfail(strict=True, reason="atk1: app.Headers.__init__ turns every name and value "
                   "into str(k), str(v): bytes become their repr, b'X-A': b'v' goes on the wire "
                   "(quote and b are tchars, so the writer cannot refuse it); encode_headers "
                   "expects bytes to pass through")
def test_app_bytes_headers_are_sent_as_bytes(app_srv):
    data = _talk(app_srv.port, _get("/bytes-headers"))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-A: v\r\n" in head, head


@pytest.mark.xfail(strict=True, reason="atk1: http.c http_reason / pyport http.REASONS know 21 "
                   "codes; an App's ('made', 201) goes out as '201 Unknown' (nginx: '201 Created'; "
                   "RFC 9110 15 names them)")
def test_app_status_gets_its_standard_reason(app_srv):
    data = _talk(app_srv.port, _get("/created"))
    assert re.match(rb"HTTP/1\.1 201 Created\r\n", data), data[:40]
