"""The handler response path: C's head writer and the port's agree, and write well-formed heads.

tests/fuzz_response.py states the invariant and holds the comparison (check());
this runs it over fixed tricky cases and a few thousand seeded random ones, so
every test run checks what `make fuzz` checks, without atheris.  The C side is
the test hook mg_test_head (what csrc/pycall.c mg_call_start runs on a
handler's head, fed by _dispatch.flatten_fields); the port's is
pyport/response.py check_status and handler_fields.  The disagreements the
fuzzer found are the named cases at the end, end to end on both engines.
"""

import http
import random
import re

import fuzz_response
import pytest
from fuzz_response import Bytes, Int, check

from conftest import Conn, get
from minginx_cffi import App, Response
from minginx_cffi._dispatch import flatten_fields

CL, TE, CONN = b"Content-Length", b"Transfer-Encoding", b"Connection"

# (status, reason, fields, sent?): sent None means "whatever, as long as both agree"
TRICKY = [
    (200, b"", [], True),
    (200, b"OK", [(b"Content-Type", b"text/plain")], True),
    (199, b"", [], False),  # 1xx is the server's (RFC 9110 15.2)
    (600, b"", [], False),  # not an HTTP status (RFC 9110 15)
    (-1, b"", [], False),
    (2**31 - 1, b"", [], False),
    (200, b"OK\r\nSet-Cookie: x=1", [], False),  # issue 12 #2: a forged line
    (200, b"O\nK", [], False),
    (200, b"O\0K", [], False),
    (200, b"O\x7fK", [], False),
    (200, b"\tfine \xe9", [], True),  # HTAB, SP, obs-text (RFC 9112 4)
    (200, b"", [(b"X", b"a\r\nSet-Cookie: x=1")], False),
    (200, b"", [(b"X", b"a\nb")], False),
    (200, b"", [(b"X", b"a\rb")], False),
    (200, b"", [(b"X", b"a\0b")], False),  # an extra NUL in the C block
    (200, b"", [(b"X\0Y", b"v")], False),
    (200, b"", [(b"X", b"a\0"), (b"Y", b"b")], False),
    (200, b"", [(b"", b"v")], False),
    (200, b"", [(b"X Y", b"v")], False),
    (200, b"", [(b"X:", b"v")], False),
    (200, b"", [(b"Content-Length ", b"5")], False),  # whitespace before the colon
    (200, b"", [(b"X\xe9", b"v")], False),
    (200, b"", [(b"X", b"\t \t")], True),  # stripped to empty
    (200, b"", [(b"X", b"  a b  ")], True),
    (200, b"", [(b"X", b"\xff\x80")], True),
    (200, b"", [(CL, b"5")], True),
    (200, b"", [(CL, b" 5\t")], True),
    (200, b"", [(CL, b"5"), (b"content-length", b"05")], True),  # one number, sent once
    (200, b"", [(CL, b"5"), (CL, b"6")], False),
    (200, b"", [(CL, b"5, 5")], False),
    (200, b"", [(CL, b"+5")], False),
    (200, b"", [(CL, b"-1")], False),
    (200, b"", [(CL, b"")], False),
    (200, b"", [(CL, b"1" * 18)], True),
    (200, b"", [(CL, b"1" * 19)], False),
    (200, b"", [(CL, b"\xd9\xa5")], False),  # not an ASCII digit
    (200, b"", [(TE, b"chunked")], False),
    (200, b"", [(b"transfer-ENCODING", b"")], False),
    (200, b"", [(CL, b"5"), (TE, b"chunked")], False),
    (200, b"", [(CONN, b"close")], True),
    (200, b"", [(CONN, b"Keep-Alive, CLOSE")], True),
    (200, b"", [(CONN, b"closed")], True),
    (200, b"", [(CONN, b"close;x")], True),
    (200, b"", [(CONN, b"foo close")], True),
    (200, b"", [(CONN, b"\tclose\t")], True),
    (
        200,
        b"",
        [
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"x"),
            (b"TE", b"x"),
            (b"Trailer", b"x"),
            (b"Upgrade", b"h2c"),
            (b"Date", b"x"),
            (b"Server", b"x"),
        ],
        True,
    ),
    (204, b"", [(CL, b"5")], True),
    (Int(418), b"", [], True),
    (True, b"", [], False),
    (200, Bytes(b"OK"), [], True),
    (200, bytearray(b"OK"), [], False),  # cffi takes no bytearray for char *
    (200, "OK", [], False),
    (200, b"", [(b"X", "v")], False),  # a str has no one right encoding
    (200, b"", [("X", b"v")], False),
    (200, b"", [(b"X", None)], False),
    (200, b"", [(b"X", 5)], False),
    (200, b"", [(bytearray(b"X"), memoryview(b"v")), (Bytes(b"Y"), Bytes(b"w"))], True),
]


def _case_id(i, case):
    """A test id that is the same in every process: a memoryview's repr holds its address, and
    pytest-xdist's workers must collect the same ids."""
    return re.sub(r" at 0x[0-9a-f]+", "", "%d-%r" % (i, case[:3]))


@pytest.mark.parametrize(
    "status, reason, fields, sent", TRICKY, ids=[_case_id(i, c) for i, c in enumerate(TRICKY)]
)
@pytest.mark.parametrize("kind", [list, tuple, iter])
def test_tricky_heads_agree(status, reason, fields, sent, kind):
    got = check(status, reason, fields, kind)
    if sent is not None:
        assert (got is not None) == sent, got


def test_what_is_sent():
    """The lines themselves, for a few cases (the rest is agreement and well-formedness)."""
    head, length, close = check(
        200, b"", [(b"X", b"  a b\t"), (CL, b" 7 "), (CONN, b"Close"), (b"Date", b"x"), (b"Y", b"")]
    )
    assert (head, length, close) == (b"HTTP/1.1 200 OK\r\nX: a b\r\nY: \r\n", 7, True)
    assert check(404, b"", []) == (b"HTTP/1.1 404 Not Found\r\n", -1, False)


@pytest.mark.parametrize("seed", range(4))
def test_random_heads_agree(seed):
    rng = random.Random(seed)
    for _ in range(1000):
        check(*fuzz_response.random_case(rng))


# ------------------------------------- the disagreements the fuzzer found


def test_fields_from_a_generator_are_counted():
    """flatten_fields took len(fields): a one-shot iterable of fields (handler_fields in
    the port takes any iterable) raised TypeError, a 500 on the C engine only."""
    assert flatten_fields(iter([(b"A", b"1"), (b"B", b"2")])) == (b"A\x001\x00B\x002\x00", 2)
    assert check(200, b"", [(b"A", b"1")], iter) is not None


def test_an_option_list_with_spaces_closes_on_both():
    """ "foo close" is no valid Connection list (RFC 9110 7.6.1); C closed on it, the
    port kept the connection open.  Both read it as closing (the safe reading)."""
    assert check(200, b"", [(CONN, b"foo close")])[2] is True
    assert check(200, b"", [(CONN, b"keep-alive\tclose")])[2] is True


def test_int_and_bytes_subclasses_are_taken_by_both():
    """An IntEnum status (http.HTTPStatus) and a bytes-subclass reason: the C engine's
    cffi call takes them, the port refused them (__class__ is int / bytes) with a 500."""
    assert check(http.HTTPStatus.IM_A_TEAPOT, b"", []) == (b"HTTP/1.1 418 I'm a teapot\r\n", -1, False)
    assert check(200, Bytes(b"Fine"), [])[0] == b"HTTP/1.1 200 Fine\r\n"


def test_connection_foo_close_closes_on_both_engines(make_server):
    app = App()

    @app.route("/")
    def index(req):
        return Response(b"hi", headers={"Connection": "foo close"})

    srv = make_server(app=app, root=None, workers=1)
    c = Conn(srv.port)
    try:
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"hi"
        assert r.header("Connection") == "close"
        assert c.closed_by_peer()
    finally:
        c.close()


async def _teapot(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": http.HTTPStatus.IM_A_TEAPOT,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"short and stout"})


def test_an_asgi_httpstatus_is_answered_on_both_engines(make_server):
    srv = make_server(asgi=_teapot, root=None, workers=1)
    r = get(srv.port, "/")
    assert (r.status, r.body) == (418, b"short and stout")
