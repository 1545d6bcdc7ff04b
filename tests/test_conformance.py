"""HTTP/1.1 conformance over raw sockets: one named case per rule, each run whole and one byte per send.

Each case sends bytes on a fresh connection and reads until the server closes
it; the expected statuses, in order, are checked, and "close" cases must end
with the server closing (and answering nothing after the bad request).
"""

import pytest

from conftest import ENGINES, engine_options, raw, split_responses

H = b"Host: a\r\n"
CLOSE = b"Connection: close\r\n"

CASES = [
    # name, request bytes, expected statuses in order, whether the last says Connection: close
    ("get", b"GET /hello.txt HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200]),
    ("head", b"HEAD /hello.txt HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200]),
    ("http10 closes by default", b"GET /hello.txt HTTP/1.0\r\n\r\n", [200]),
    ("absolute-form target", b"GET http://a/hello.txt HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200]),
    ("leading empty line ignored", b"\r\nGET /hello.txt HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [200]),
    ("request line over 8 KiB: 414", b"GET /" + b"a" * 8300 + b" HTTP/1.1\r\n" + H + b"\r\n", [414]),
    (
        "header section over 32 KiB: 431",
        b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * 33000 + b"\r\n\r\n",
        [431],
    ),
    (
        "more than 100 fields: 431",
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
        [431],
    ),
    ("1.1 without Host: 400", b"GET / HTTP/1.1\r\n\r\n", [400]),
    ("two Host fields: 400", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [400]),
    (
        "Content-Length with Transfer-Encoding: 400, nothing smuggled",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\n" + H + b"\r\n",
        [400],
    ),
    (
        "TE.CL smuggling shape: 400",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
        [400],
    ),
    ("invalid Content-Length: 400", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1x\r\n\r\n", [400]),
    (
        "conflicting Content-Length: 400",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        [400],
    ),
    ("obs-fold: 400", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n  2\r\n\r\n", [400]),
    ("bare CR in a field: 400", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r2\r\n\r\n", [400]),
    ("NUL in a field: 400", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\x002\r\n\r\n", [400]),
    ("control byte in a field: 400", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\x1b2\r\n\r\n", [400]),
    ("whitespace before the colon: 400", b"GET / HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n", [400]),
    # gzip alone: chunked is not final, RFC 9112 6.3 p4's MUST 400 before 6.1's SHOULD 501
    (
        "Transfer-Encoding without chunked: 400",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
        [400],
    ),
    (
        "unknown coding before chunked: 501",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        [501],
    ),
    ("HTTP/2.0 request line: 505", b"GET / HTTP/2.0\r\n" + H + b"\r\n", [505]),
    ("HTTP/3.0 request line: 505", b"GET / HTTP/3.0\r\n" + H + b"\r\n", [505]),
    ("garbage version: 400", b"GET / HTTX/1.1\r\n" + H + b"\r\n", [400]),
    ("unknown Expect: 417", b"GET / HTTP/1.1\r\n" + H + b"Expect: tea\r\n\r\n", [417]),
    (
        "body to a static file is discarded, next request answered",
        b"GET /hello.txt HTTP/1.1\r\n"
        + H
        + b"Content-Length: 31\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /style.css HTTP/1.1\r\n" + H + CLOSE + b"\r\n",
        [200, 200],
    ),
    (
        "chunked body to a static file is discarded",
        b"POST /hello.txt HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nGET /\r\n0\r\nTrailer: x\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\n" + H + CLOSE + b"\r\n",
        [405, 200],
    ),
    ("bad chunk size: 400", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", [400]),
    (
        "Expect: 100-continue gets 100 then the answer",
        b"POST /hello.txt HTTP/1.1\r\n"
        + H
        + b"Content-Length: 3\r\nExpect: 100-continue\r\n"
        + CLOSE
        + b"\r\nabc",
        [100, 405],
    ),
    (
        "pipelined pair",
        b"GET /hello.txt HTTP/1.1\r\n" + H + b"\r\nGET /style.css HTTP/1.1\r\n" + H + CLOSE + b"\r\n",
        [200, 200],
    ),
    ("unknown method: 501", b"BREW /pot HTTP/1.1\r\n" + H + CLOSE + b"\r\n", [501]),
    (
        "POST to a file: 405",
        b"POST /hello.txt HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n" + CLOSE + b"\r\n",
        [405],
    ),
]


@pytest.fixture(scope="module", params=ENGINES)
def conf_server(site_root, request):
    from minginx_cffi import Server

    srv = Server(root=str(site_root), port=0, workers=1, grace=1, **engine_options(request.param)).start()
    yield srv
    srv.shutdown()


def run_case(port, data, expected, per_byte):
    out = raw(port, data, timeout=5, per_byte=per_byte)
    responses = split_responses(out)
    got = [st for st, _, _ in responses]
    # a 100 Continue may be skipped when the body had already arrived
    if expected[0] == 100 and got and got[0] != 100:
        expected = expected[1:]
    assert got == expected, out[:300]
    last = responses[-1][1]
    assert last.get("connection") == "close"
    if expected[-1] >= 400:
        assert b"<html>" in responses[-1][2]  # a small body says what went wrong


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_whole(conf_server, name, data, expected):
    run_case(conf_server.port, data, expected, per_byte=False)


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_one_byte_per_send(conf_server, name, data, expected):
    run_case(conf_server.port, data, expected, per_byte=True)
