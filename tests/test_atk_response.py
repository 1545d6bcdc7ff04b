"""atk1: attacks on the one response writer (issue 12, defects 2-5), each a failing test.

Every test here states the behaviour the RFCs / PEP 3333 / nginx ask for; the
first ones were strict xfails until fix1 made them pass (the commit that
removed each mark names the cause), the rest hunt the same classes.  Both
engines run each end-to-end test (the ``engine`` fixture), unless the test
compares the two.
"""

import asyncio
import re
import socket
import sys

import pytest
from test_hostile_handlers import Wire

from minginx_cffi import App, Response, Server


def _gen(*pieces):
    yield from pieces


def _cancelled_after_first():
    yield b"first"
    raise asyncio.CancelledError()  # a BaseException, not an Exception (Python 3.8+)


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
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"ERRORPAGE"

    return body()


class _Closes:
    """A one-piece list result whose close() raises, counting its calls."""

    calls = 0

    def __init__(self):
        self.items = [b"x"]

    def __iter__(self):
        return iter(self.items)

    def close(self):
        type(self).calls += 1
        raise RuntimeError("close() broke")


class _ClosesList(list):
    calls = 0

    def close(self):
        type(self).calls += 1
        raise RuntimeError("close() broke")


def _write_inside(environ, start_response):
    write = start_response("200 OK", [])

    def body():
        yield b"1"
        write(b"2")
        yield b"3"
        write(b"4")

    return body()


def _empty_forever():
    yield b"first"
    while True:
        yield b""


def _raising(exc):
    def handler(environ, start_response):
        raise exc()

    return handler


WSGI = {
    "/cancelled": _handler_cancelled,
    "/cancelled-mid-stream": lambda e, sr: (sr("200 OK", []), _cancelled_after_first())[1],
    "/always-cancelled": lambda e, sr: (sr("200 OK", []), _AlwaysCancelled())[1],
    "/exc-info-late": _exc_info_after_head,
    "/bytes-subclass": lambda e, sr: (sr("200 OK", []), _gen(b"a", _Bytes(b"b")))[1],
    "/bytearray-name": lambda e, sr: (sr("200 OK", [(bytearray(b"X-A"), "v")]), [b"x"])[1],
    "/bytes-like-fields": lambda e, sr: (
        sr("200 OK", [(bytearray(b"X-A"), memoryview(b"v1")), (b"X-B", bytearray(b"v2"))]),
        [b"x"],
    )[1],
    "/none-value": lambda e, sr: (sr("200 OK", [("X-A", None)]), [b"x"])[1],
    "/system-exit": _raising(SystemExit),
    "/keyboard-interrupt": _raising(KeyboardInterrupt),
    "/bytes-like-pieces": lambda e, sr: (
        sr("200 OK", []),
        _gen(bytearray(b"a"), memoryview(b"b"), _Bytes(b"c")),
    )[1],
    "/str-first": lambda e, sr: (sr("200 OK", []), _gen("text"))[1],
    "/str-later": lambda e, sr: (sr("200 OK", []), _gen(b"first", "text"))[1],
    "/none-later": lambda e, sr: (sr("200 OK", []), _gen(b"first", None, b"more"))[1],
    "/empty-forever": lambda e, sr: (sr("200 OK", []), _empty_forever())[1],
    "/length-0-generator": lambda e, sr: (sr("200 OK", [("Content-Length", "0")]), _gen(b"surplus"))[1],
    "/length-2-generator": lambda e, sr: (sr("200 OK", [("Content-Length", "2")]), _gen(b"abc", b"d"))[1],
    "/padded-value": lambda e, sr: (sr("200 OK", [("X-A", " \tv  w\t "), ("X-B", "   ")]), [b"x"])[1],
    "/write-inside": _write_inside,
    "/close-raises": lambda e, sr: (sr("200 OK", []), _ClosesList([b"x"]))[1],
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


@app.route("/status/{code:int}")
def _status(request, code):
    return ("s", code)


@app.route("/none-header")
def _none_header(request):
    return Response(b"x", headers={"X-A": None})


@app.route("/int-header")
def _int_header(request):
    return Response(b"x", headers={"X-Count": 5})


@app.route("/cancelled")
def _app_cancelled(request):
    raise asyncio.CancelledError()


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


def test_base_exception_from_a_handler_fails_alone_in_a_batch(wsgi_srv):
    port = wsgi_srv.port
    paths = ["/cancelled" if i % 4 == 0 else "/good" for i in range(24)]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in paths]
    try:
        assert b"good" in _talk(
            port, _get("/good", then_good=False).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        )  # all accepted by now
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
            ((status, _, body, complete),) = Wire(data).responses()
            if path == "/good":
                assert (status, body, complete) == (200, b"good", True), data
            else:
                assert status == 500, data
    finally:
        for s in socks:
            s.close()


def test_base_exception_mid_stream_cuts_the_connection(wsgi_srv):
    data = _talk(wsgi_srv.port, _get("/cancelled-mid-stream"))
    assert not data.endswith(b"<<TIMEOUT>>"), data
    resps = Wire(data).responses()
    assert len(resps) == 1, resps  # no following response
    assert resps[0][2] == b"first" and not resps[0][3]  # no terminating chunk: visibly cut


def test_iterator_raising_base_exception_every_time_ends_the_stream(wsgi_srv):
    data = _talk(wsgi_srv.port, _get("/always-cancelled"))
    assert not data.endswith(b"<<TIMEOUT>>"), data[-200:]
    resps = Wire(data).responses()
    assert len(resps) == 1 and resps[0][2] == b"first" and not resps[0][3], resps


# ------------------------------------------------------------------ WSGI


def test_start_response_with_exc_info_after_the_head_raises(wsgi_srv):
    data = _talk(wsgi_srv.port, _get("/exc-info-late"))
    resps = Wire(data).responses()
    assert len(resps) == 1, resps
    status, _, body, complete = resps[0]
    assert status == 200 and b"ERRORPAGE" not in body and not complete, resps


def test_bytes_subclass_pieces_are_bytes(wsgi_srv):
    resps = Wire(_talk(wsgi_srv.port, _get("/bytes-subclass"))).responses()
    assert resps[0][2] == b"ab" and resps[0][3], resps
    assert len(resps) == 2 and resps[1][2] == b"good", resps


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


def test_app_bytes_headers_are_sent_as_bytes(app_srv):
    data = _talk(app_srv.port, _get("/bytes-headers"))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-A: v\r\n" in head, head


def test_app_status_gets_its_standard_reason(app_srv):
    data = _talk(app_srv.port, _get("/created"))
    assert re.match(rb"HTTP/1\.1 201 Created\r\n", data), data[:40]


# ----------------------------------------------------- fix1: the classes hunted


@pytest.mark.parametrize("path", ["/system-exit", "/keyboard-interrupt"])
def test_system_exit_and_keyboard_interrupt_from_a_handler_are_its_500(wsgi_srv, path, caplog):
    """Handlers run on worker threads, where no signal is delivered: such a raise is the
    handler's own, and fails its request alone; the server goes on."""
    resps = Wire(_talk(wsgi_srv.port, _get(path))).responses()
    assert [r[0] for r in resps] == [500, 200], resps
    assert "minginx-cffi: handler for GET %s" % path in caplog.text


def test_app_handler_cancelled_is_its_500(app_srv):
    resps = Wire(_talk(app_srv.port, _get("/cancelled"))).responses()
    assert [r[0] for r in resps] == [500, 200], resps


def test_iterator_of_empty_pieces_forever_is_cut(wsgi_srv, caplog):
    """Each round of a stream must make progress: an iterator that only yields b"" ends
    (cut, closed) instead of holding its worker or spinning forever."""
    data = _talk(wsgi_srv.port, _get("/empty-forever"))
    assert not data.endswith(b"<<TIMEOUT>>"), data[-200:]
    resps = Wire(data).responses()
    assert len(resps) == 1 and resps[0][2] == b"first" and not resps[0][3], resps
    assert "empty pieces in a row" in caplog.text


def test_c_cuts_a_stream_round_that_makes_no_progress(make_server, monkeypatch):
    """pycall.c's own guard: a NEXT that produced nothing yet leaves more set (a
    bridge that breaks the contract) cuts the stream; it never asks again."""
    from minginx_cffi import _bridge

    monkeypatch.setattr(_bridge.Bridge, "next", lambda self, c: None)
    srv = make_server(engine="cffi", wsgi=wsgi_app, root=None, workers=1)
    data = _talk(srv.port, _get("/cancelled-mid-stream"))
    assert not data.endswith(b"<<TIMEOUT>>"), data[-200:]
    resps = Wire(data).responses()
    assert len(resps) == 1 and resps[0][2] == b"first" and not resps[0][3], resps


def test_bytes_like_pieces_are_bytes(wsgi_srv):
    resps = Wire(_talk(wsgi_srv.port, _get("/bytes-like-pieces"))).responses()
    assert [(r[0], r[2], r[3]) for r in resps] == [(200, b"abc", True), (200, b"good", True)]


def test_str_piece_is_500_before_the_head_and_a_cut_after(wsgi_srv):
    resps = Wire(_talk(wsgi_srv.port, _get("/str-first"))).responses()
    assert [r[0] for r in resps] == [500, 200], resps
    resps = Wire(_talk(wsgi_srv.port, _get("/str-later"))).responses()
    assert len(resps) == 1 and resps[0][2] == b"first" and not resps[0][3], resps


def test_none_piece_is_not_the_end_of_the_body(wsgi_srv):
    """A None yielded mid-stream is an error (cut), not a whole-looking end."""
    resps = Wire(_talk(wsgi_srv.port, _get("/none-later"))).responses()
    assert len(resps) == 1 and resps[0][2] == b"first" and not resps[0][3], resps


def test_bytes_like_header_names_and_values_are_sent(wsgi_srv):
    resps = Wire(_talk(wsgi_srv.port, _get("/bytes-like-fields"))).responses()
    assert resps[0][0] == 200
    assert (b"x-a", b"v1") in resps[0][1] and (b"x-b", b"v2") in resps[0][1], resps


def test_a_none_header_value_is_500_never_on_the_wire(wsgi_srv, app_srv, caplog):
    for srv, path in ((wsgi_srv, "/none-value"), (app_srv, "/none-header")):
        data = _talk(srv.port, _get(path))
        assert b"None" not in data, data
        assert [r[0] for r in Wire(data).responses()] == [500, 200], data
    assert "NoneType" in caplog.text


def test_app_int_header_value_is_its_decimal(app_srv):
    head = _talk(app_srv.port, _get("/int-header")).split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Count: 5\r\n" in head, head


def test_header_value_whitespace_is_stripped(wsgi_srv):
    """RFC 9110 5.5: a field value neither starts nor ends with SP or HTAB."""
    head = _talk(wsgi_srv.port, _get("/padded-value")).split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-A: v  w\r\n" in head and b"\r\nX-B: \r\n" in head, head


@pytest.mark.parametrize("path, body", [("/length-0-generator", b""), ("/length-2-generator", b"ab")])
def test_stream_longer_than_its_length_says_close_in_the_head(wsgi_srv, path, body):
    """The first piece is already longer than Content-Length: the surplus is cut and the
    connection closes, so the head says so rather than promising keep-alive."""
    data = _talk(wsgi_srv.port, _get(path))
    resps = Wire(data).responses()
    assert len(resps) == 1 and resps[0][2] == body, resps
    assert (b"connection", b"close") in resps[0][1], data


def test_write_inside_the_iterator_goes_out_in_order(wsgi_srv):
    resps = Wire(_talk(wsgi_srv.port, _get("/write-inside"))).responses()
    assert [(r[0], r[2], r[3]) for r in resps] == [(200, b"1234", True), (200, b"good", True)]


def test_close_that_raises_is_called_once(wsgi_srv):
    _ClosesList.calls = 0
    resps = Wire(_talk(wsgi_srv.port, _get("/close-raises"))).responses()
    assert [r[0] for r in resps] == [500, 200], resps
    assert _ClosesList.calls == 1


# ---------------------------------------------------------- reason phrases


def _c_reasons():
    import pathlib

    src = (pathlib.Path(__file__).parent.parent / "csrc" / "http_response.c").read_text()
    body = src[src.index("const char *http_reason(int status)") :]
    body = body[: body.index("\n}\n")]
    return {int(k): v for k, v in re.findall(r'case (\d+): return "([^"]*)";', body)}


def test_reason_tables_are_the_same_in_both_engines():
    from minginx_cffi.pyport.http import REASONS

    c = _c_reasons()
    assert c == REASONS
    # RFC 9110 section 15 and the IANA registry's extras, each named
    assert set(c) >= {
        100,
        101,
        102,
        103,
        200,
        201,
        202,
        203,
        204,
        205,
        206,
        207,
        208,
        226,
        300,
        301,
        302,
        303,
        304,
        305,
        307,
        308,
        400,
        401,
        402,
        403,
        404,
        405,
        406,
        407,
        408,
        409,
        410,
        411,
        412,
        413,
        414,
        415,
        416,
        417,
        418,
        421,
        422,
        423,
        424,
        425,
        426,
        428,
        429,
        431,
        451,
        500,
        501,
        502,
        503,
        504,
        505,
        506,
        507,
        508,
        510,
        511,
    }
    assert c[418] == "I'm a teapot" and c[422] == "Unprocessable Content"
    assert (
        'default: return "";'
        in (__import__("pathlib").Path(__file__).parent.parent / "csrc" / "http_response.c").read_text()
    )


@pytest.mark.parametrize(
    "code, line",
    [
        (201, b"201 Created"),
        (418, b"418 I'm a teapot"),
        (429, b"429 Too Many Requests"),
        (511, b"511 Network Authentication Required"),
        (599, b"599 "),
        (306, b"306 "),
    ],
)
def test_status_line_reason(app_srv, code, line):
    """An unknown code's reason phrase is empty; the SP before it stays (RFC 9112 4)."""
    data = _talk(
        app_srv.port,
        _get("/status/%d" % code, then_good=False).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
    )
    assert data.startswith(b"HTTP/1.1 " + line + b"\r\n"), data[:60]
