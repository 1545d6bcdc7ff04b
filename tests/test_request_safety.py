"""The request side off the happy path, on both engines: every parsed field defined, path-less
targets answered before any handler, chunked framing as strict as the head, safe redirects,
body timeouts, the absolute-form's authority, dates for any mtime (issue 12)."""

import email.utils
import json
import os
import re
import shutil
import socket
import tempfile
import time

import pytest

from conftest import raw, readable, split_responses, status_of


def echo_app(seen):
    """A WSGI app that records what it saw and echoes it back as JSON."""

    def app(environ, start_response):
        got = {k: environ.get(k, "") for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "HTTP_HOST")}
        got["body"] = environ["wsgi.input"].read().decode("latin-1")
        seen.append(got)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(got).encode()]

    return app


def body_of(resp):
    return json.loads(split_responses(resp)[0][2])


# ------------------------------------------------ 1. path-less targets (defect 1)


def test_connect_never_sees_another_clients_request(make_server):
    """One worker, so the request buffer is reused: a CONNECT right after another client's
    request once echoed that client's PATH_INFO and QUERY_STRING."""
    seen = []
    srv = make_server(wsgi=echo_app(seen), root=None, workers=1)
    secret = b"s3cr3t-" + os.urandom(6).hex().encode()
    for target in (b"a:1", b"[::1]:1", b"example.com:443"):
        resp = raw(
            srv.port,
            b"GET /private/"
            + secret
            + b"?token="
            + secret
            + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        assert status_of(resp) == 200 and body_of(resp)["QUERY_STRING"] == "token=" + secret.decode()
        resp = raw(srv.port, b"CONNECT " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_of(resp) == 501, resp
        assert secret not in resp
    assert [s["REQUEST_METHOD"] for s in seen] == ["GET"] * 3


PATHLESS = [
    (b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    (b"CONNECT [::1]:1 HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    # how a proxy forwards "OPTIONS *" in absolute-form (RFC 9112 section 3.2.4)
    (b"OPTIONS http://a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 200),
]


@pytest.mark.parametrize(
    "req,status", PATHLESS, ids=["connect", "connect-ipv6", "options-star", "options-absolute-no-path"]
)
def test_no_handler_sees_a_pathless_request(make_server, req, status):
    """CONNECT: 501 (RFC 9110 9.3.6, 15.6.2); OPTIONS *: the server's OPTIONS answer with Allow
    (9.3.7).  Neither reaches a handler, and the connection goes on with the next request."""
    seen = []
    srv = make_server(wsgi=echo_app(seen), root=None, workers=1, stats=True)
    resp = raw(srv.port, req + b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    got = split_responses(resp)
    assert [g[0] for g in got][:1] == [status], resp
    if req.startswith(b"OPTIONS"):
        # 200, not 204: RFC 9110 9.3.7 asks for Content-Length: 0, which 8.6 forbids on a 204
        assert "GET" in got[0][1].get("allow", "") and got[0][2] == b""
        assert got[0][1].get("content-length") == "0"
    assert [s["PATH_INFO"] for s in seen] == ["/after"]
    assert len(got) == 2 and got[1][0] == 200


@pytest.mark.parametrize(
    "req",
    [
        b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",  # CONNECT takes authority-form only
        b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n",  # its port is required
        b"CONNECT a: HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT u@a:1 HTTP/1.1\r\nHost: a\r\n\r\n",  # no userinfo (RFC 9110 4.2.4)
        b"CONNECT http://a:1/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET a:1 HTTP/1.1\r\nHost: a\r\n\r\n",  # authority-form is CONNECT's
        b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",  # an http URI needs a host (9110 4.2.1)
        b"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n",  # port = *DIGIT
        b"GET http://[]/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a%zz/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n",  # Host is uri-host [ ":" port ]
        b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a%\r\n\r\n",
    ],
)
def test_authority_grammar(make_server, req):
    seen = []
    srv = make_server(wsgi=echo_app(seen), root=None)
    assert status_of(raw(srv.port, req)) == 400
    assert seen == []


# ------------------------------------------------------- 2. chunked framing (defect 6)

CHUNKED_OK = [
    ("plain", b"2\r\nxx\r\n0\r\n\r\n", "xx"),
    ("ext token", b"2;a=b\r\nxx\r\n0\r\n\r\n", "xx"),
    ("ext quoted", b'2;a="b;c\\"d"\r\nxx\r\n0\r\n\r\n', "xx"),
    ("ext names", b"2;a;b=c\r\nxx\r\n0;z\r\n\r\n", "xx"),
    ("ext BWS", b"2 ; a = b ;c\r\nxx\r\n0\r\n\r\n", "xx"),
    ("trailer", b"2\r\nxx\r\n0\r\nX-T: v\r\nY:\r\n\r\n", "xx"),
    ("16 hex digits", b"0000000000000002\r\nxx\r\n0\r\n\r\n", "xx"),
    ("upper hex", b"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"),
    ("ext limit exact", b"1;" + b"a" * 4095 + b"\r\nx\r\n0\r\n\r\n", "x"),
    ("trailer limit exact", b"1\r\nx\r\n0\r\nX:" + b"v" * 4094 + b"\r\n\r\n", "x"),
]

CHUNKED_BAD = [
    # every line of the coding ends in CRLF, as every line of the head (csrc/http.c)
    ("lone LF lines, no ext", b"2\nxx\n0\n\n"),
    ("lone LF after the data", b"2\r\nxx\n0\r\n\r\n"),
    ("trailer lone LF", b"2\r\nxx\r\n0\r\nX-T: v\n\n"),
    ("last line lone LF", b"2\r\nxx\r\n0\r\n\n"),
    ("LF right after ;", b"2;\nxx\r\n0\r\n\r\n"),
    ("LF ends ext name", b"2;a\nxx\r\n0\r\n\r\n"),
    ("LF ends ext value", b"2;a=b\nxx\r\n0\r\n\r\n"),
    ("LF ends quoted value", b'2;a="b"\nxx\r\n0\r\n\r\n'),
    ("empty ext name", b"2;=b\r\nxx\r\n0\r\n\r\n"),
    ("ext value missing", b"2;a=\r\nxx\r\n0\r\n\r\n"),
    ("bad byte in ext name", b"2;a@b\r\nxx\r\n0\r\n\r\n"),
    ("bad byte in ext token", b"2;a=b@\r\nxx\r\n0\r\n\r\n"),
    ("two values", b"2;a=b c\r\nxx\r\n0\r\n\r\n"),
    ("unterminated quote", b'2;a="b\r\nxx\r\n0\r\n\r\n'),
    ("CTL in quoted", b'2;a="\x01"\r\nxx\r\n0\r\n\r\n'),
    ("whitespace then CRLF", b"2 \r\nxx\r\n0\r\n\r\n"),
    ("whitespace after ext", b"2;a=b \r\nxx\r\n0\r\n\r\n"),
    ("bare CR in size line", b"2\rxx\r\n0\r\n\r\n"),
    ("bare CR after data", b"2\r\nxx\rX0\r\n\r\n"),
    ("data longer than size", b"2\r\nxxx\r\n0\r\n\r\n"),
    ("no size", b"\r\nxx\r\n0\r\n\r\n"),
    ("size sign", b"+2\r\nxx\r\n0\r\n\r\n"),
    ("17 hex digits", b"00000000000000002\r\nxx\r\n0\r\n\r\n"),
    ("size over int64", b"ffffffffffffffff\r\nxx\r\n0\r\n\r\n"),
    ("obs-fold in trailer", b"0\r\nX: a\r\n b\r\n\r\n"),
    ("space before trailer colon", b"0\r\nX : a\r\n\r\n"),
    ("trailer without colon", b"0\r\nXa\r\n\r\n"),
    ("bad trailer name", b"0\r\nX(: a\r\n\r\n"),
    ("bare CR in trailer value", b"0\r\nX: a\rb\r\n\r\n"),
    ("CR CR LF in trailer", b"0\r\nX: a\r\r\n\r\n"),
    ("NUL in trailer", b"0\r\nX: a\x00\r\n\r\n"),
    ("bare CR ends trailers", b"0\r\n\rX\r\n"),
    ("ext over limit", b"1;" + b"a" * 4096 + b"\r\nx\r\n0\r\n\r\n"),
    ("trailer over limit", b"1\r\nx\r\n0\r\nX:" + b"v" * 4095 + b"\r\n\r\n"),
    ("ext and trailer over limit", b"1;" + b"a" * 2047 + b"\r\nx\r\n0\r\nX:" + b"v" * 2047 + b"\r\n\r\n"),
]

CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
AFTER = b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


@pytest.fixture
def echo_srv(make_server):
    seen = []
    srv = make_server(wsgi=echo_app(seen), root=None, header_timeout=3.0)
    srv.seen = seen
    return srv


@pytest.mark.parametrize("per_byte", [False, True], ids=["whole", "per-byte"])
@pytest.mark.parametrize("name,body,decoded", CHUNKED_OK, ids=[c[0] for c in CHUNKED_OK])
def test_chunked_accepted(echo_srv, name, body, decoded, per_byte):
    resp = raw(echo_srv.port, CHUNKED_HEAD + body + AFTER, per_byte=per_byte)
    got = split_responses(resp)
    assert [g[0] for g in got] == [200, 200], resp
    assert json.loads(got[0][2])["body"] == decoded
    assert json.loads(got[1][2])["PATH_INFO"] == "/after"


@pytest.mark.parametrize("per_byte", [False, True], ids=["whole", "per-byte"])
@pytest.mark.parametrize("name,body", CHUNKED_BAD, ids=[c[0] for c in CHUNKED_BAD])
def test_chunked_rejected(echo_srv, name, body, per_byte):
    """400 and close, whole or one byte per send; nothing after it is read as a request."""
    resp = raw(echo_srv.port, CHUNKED_HEAD + body + AFTER, per_byte=per_byte)
    assert [g[0] for g in split_responses(resp)] == [400], resp
    assert echo_srv.seen == []


def test_chunk_larger_than_max_body_is_413_at_once(make_server):
    """A chunk announced beyond --max-body is refused when its size line ends, not after
    its bytes were read (the client here never sends them)."""
    srv = make_server(wsgi=echo_app([]), root=None, max_body=1000, header_timeout=5.0)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=4.0)
    try:
        s.sendall(CHUNKED_HEAD + b"3e9\r\n")  # 1001 bytes
        assert status_of(s.recv(65536)) == 413
    finally:
        s.close()


# ---------------------------------------------------------- 3. redirects (defect 7)


@pytest.fixture(scope="module")
def redirect_root():
    root = tempfile.mkdtemp(prefix="minginx-redirect-")
    for d in ("docs", "sp ace", "pct%41", "evil.example"):
        os.mkdir(os.path.join(root, d))
        with open(os.path.join(root, d, "index.html"), "wb") as f:
            f.write(b"dir\n")
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize(
    "target,location",
    [
        (b"//evil.example/../docs", b"/docs/"),
        (b"//evil.example/..//docs?x=1", b"/docs/?x=1"),
        (b"/\\evil.example/../docs", b"/docs/"),
        (b"/%2F%2Fevil.example/../docs", b"/docs/"),
        (b"/%5Cevil.example/../docs", b"/docs/"),
        (b"//docs", b"/docs/"),
        (b"///evil.example", b"/evil.example/"),
        (b"/./evil.example", b"/evil.example/"),
        (b"/sp%20ace", b"/sp%20ace/"),
        (b"/pct%2541", b"/pct%2541/"),
        (b'/docs?a=%0d%0aX:1&b="<>\\', b"/docs/?a=%0d%0aX:1&b=%22%3C%3E%5C"),
        (b"http://evil.example//evil.example/../docs", b"/docs/"),
    ],
)
def test_slash_redirect_stays_on_this_host(make_server, redirect_root, target, location):
    srv = make_server(root=redirect_root)
    resp = raw(srv.port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    status, headers, _ = split_responses(resp)[0]
    assert status == 301, resp
    assert headers["location"].encode() == location
    assert not headers["location"].startswith(("//", "/\\"))


# -------------------------------------------- 4. Expect and body timeouts (defect 8)


def test_no_100_continue_to_http10(make_server):
    """RFC 9110 15.2: never a 1xx to an HTTP/1.0 client (10.1.1: it ignores the expectation)."""
    srv = make_server(wsgi=echo_app([]), root=None)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
    try:
        s.sendall(b"POST /x HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        # an HTTP/1.1 client would get its 100 now; wait as long as it would for it
        early = s.recv(65536) if readable(s, 1.0) else b""
        s.sendall(b"data")
        out = early
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    finally:
        s.close()
    assert b"100 Continue" not in out and status_of(out) == 200
    assert json.loads(out.partition(b"\r\n\r\n")[2])["body"] == "data"


def test_100_continue_to_http11(make_server):
    srv = make_server(wsgi=echo_app([]), root=None)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5.0)
    try:
        s.sendall(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    finally:
        s.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_that_stops_is_408(make_server, chunked):
    """A body that stops arriving for header_timeout gets 408 and a close, not a silent close."""
    srv = make_server(wsgi=echo_app([]), root=None, header_timeout=1.0)
    head = (
        CHUNKED_HEAD + b"a\r\nxxxxx"
        if chunked
        else b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nxxxxx"
    )
    t0 = time.monotonic()
    resp = raw(srv.port, head, timeout=6.0)
    assert status_of(resp) == 408, resp
    assert time.monotonic() - t0 < 5.0


def test_body_timeout_is_per_read(make_server):
    """The timeout is between reads, not for the whole body (as nginx's client_body_timeout):
    a body sent slowly, in pieces closer together than header_timeout, is read whole."""
    srv = make_server(wsgi=echo_app([]), root=None, header_timeout=1.0)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=6.0)
    try:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
        for _ in range(8):  # 8 x 0.3 s: well past one header_timeout in all
            time.sleep(0.3)  # pacing the client, not waiting for the server
            s.sendall(b"y")
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    finally:
        s.close()
    assert status_of(out) == 200, out
    assert json.loads(out.partition(b"\r\n\r\n")[2])["body"] == "yyyyyyyy"


# ------------------------------------------------ 5. absolute-form wins (defect 9)


@pytest.mark.parametrize(
    "req,host,path,query",
    [
        (
            b"GET http://target.example:81/p/q?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
            "target.example:81",
            "/p/q",
            "x=1",
        ),
        (
            b"GET HTTPS://Target.example?x=2 HTTP/1.1\r\nHost: other.example\r\n\r\n",
            "Target.example",
            "/",
            "x=2",
        ),
        (b"GET http://[::1]:8/ HTTP/1.1\r\nHost: other.example\r\n\r\n", "[::1]:8", "/", ""),
        (b"GET http://t.example/p HTTP/1.0\r\n\r\n", "t.example", "/p", ""),
    ],
    ids=["port-and-query", "no-path", "ipv6", "http10-no-host"],
)
def test_absolute_form_authority_replaces_host(make_server, req, host, path, query):
    """RFC 9112 3.2.2: the server MUST ignore Host and use the target's authority."""
    seen = []
    srv = make_server(wsgi=echo_app(seen), root=None)
    resp = raw(srv.port, req[:-2] + b"Connection: close\r\n\r\n")
    assert status_of(resp) == 200, resp
    assert (seen[0]["HTTP_HOST"], seen[0]["PATH_INFO"], seen[0]["QUERY_STRING"]) == (host, path, query)


def test_absolute_form_host_in_app_headers(make_server):
    from minginx_cffi import App

    app = App()

    @app.route("/h")
    def h(request):
        return request.headers.get("host") + "|" + ",".join(request.headers.get_all("host"))

    srv = make_server(app=app, root=None)
    resp = raw(srv.port, b"GET http://t.example:9/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert split_responses(resp)[0][2] == b"t.example:9|t.example:9"


# ------------------------------------------- 6. dates for any mtime (issue 12, item 12)

IMF = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT\Z"
)


@pytest.fixture(scope="module")
def far_mtime_root():
    """tmpfs keeps 64-bit mtimes (ext4 clamps them to 2446)."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm: no file system here keeps a mtime past year 2446")
    root = tempfile.mkdtemp(prefix="minginx-mtime-", dir="/dev/shm")
    times = {
        "y10000.txt": 253402300800,
        "two40.txt": 2**40,
        "two62.txt": 2**62,
        "neg40.txt": -(2**40),
        "y9999.txt": 253402300799,
    }
    for name, t in times.items():
        p = os.path.join(root, name)
        with open(p, "wb") as f:
            f.write(b"x\n")
        os.utime(p, (t, t))
        if os.stat(p).st_mtime != t:
            shutil.rmtree(root)
            pytest.skip("/dev/shm does not keep a mtime of %d" % t)
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("y10000.txt", "date"),
        ("two40.txt", "date"),
        ("two62.txt", "date"),
        ("neg40.txt", "Mon, 01 Jan 0001 00:00:00 GMT"),
        ("y9999.txt", "date"),
    ],
)
def test_far_mtime_dates(make_server, far_mtime_root, name, expected):
    """Last-Modified is always a valid 29-byte IMF-fixdate (years outside 1..9999 clamped),
    never later than Date (RFC 9110 8.8.2.1: a future mtime is replaced by the Date), and
    the connection goes on."""
    srv = make_server(root=far_mtime_root)
    resp = raw(
        srv.port,
        b"GET /"
        + name.encode()
        + b" HTTP/1.1\r\nHost: a\r\n\r\n"
        + b"GET /"
        + name.encode()
        + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    got = split_responses(resp)
    assert [g[0] for g in got] == [200, 200], resp
    lm = got[0][1]["last-modified"]
    assert IMF.match(lm) and len(lm) == 29, lm
    if expected == "date":
        date = email.utils.parsedate_to_datetime(got[0][1]["date"])
        assert 0 <= (date - email.utils.parsedate_to_datetime(lm)).total_seconds() <= 2, (lm, date)
    else:
        assert lm == expected
