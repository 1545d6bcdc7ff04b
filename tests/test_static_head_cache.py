"""The kept 200 head (csrc/h1.c exchange_respond_memo): later responses equal a fresh one.

The C engine keeps each cached file's 200 keep-alive head and copies it, writing the
current Date line over the old one once a second; these tests would fail if a kept head
went stale (Date, --header, Connection, Content-Length of the other representation) or
leaked into a response it does not belong to.  The port builds every head afresh: the
same tests pin it to the same bytes.
"""

import email.utils
import gzip
import time

import pytest

from conftest import INDEX, Conn


def head_without_date(resp):
    return [(k, v) for k, v in resp.headers if k.lower() != "date"]


def test_the_second_response_repeats_the_first_head(make_server):
    srv = make_server(header=("X-Frame-Options: DENY",))
    c = Conn(srv.port)
    first = c.request("GET", "/index.html")
    for _ in range(3):
        again = c.request("GET", "/index.html")
        assert again.body == INDEX
        assert head_without_date(again) == head_without_date(first)
    assert again.header("x-frame-options") == "DENY"
    assert again.header("connection") == "keep-alive"
    assert again.header("content-length") == str(len(INDEX))


def test_the_kept_head_takes_the_new_date_each_second(make_server):
    srv = make_server()
    c = Conn(srv.port)
    first = c.request("GET", "/hello.txt").header("date")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the clock's next second, not a fixed sleep
        resp = c.request("GET", "/hello.txt")
        if resp.header("date") != first:
            break
    else:
        pytest.fail("Date stayed %r for 5 s" % first)
    said = email.utils.parsedate_to_datetime(resp.header("date")).timestamp()
    assert abs(said - time.time()) <= 2
    assert resp.body == b"hello world\n"


def test_head_then_get_and_a_closing_request_after_kept_ones(make_server):
    srv = make_server()
    c = Conn(srv.port)
    get = c.request("GET", "/style.css")
    head = c.request("HEAD", "/style.css")
    assert head_without_date(head) == head_without_date(get) and head.body == b""
    again = c.request("GET", "/style.css")
    assert again.body == b"body{color:red}\n"
    last = c.request("GET", "/style.css", headers={"Connection": "close"})
    assert last.header("connection") == "close" and last.body == b"body{color:red}\n"
    assert c.closed_by_peer()


def test_ranges_and_gzip_do_not_take_the_plain_head(make_server, site_root):
    (site_root / "kept.txt").write_bytes(b"0123456789" * 20)
    packed = gzip.compress(b"0123456789" * 20)
    (site_root / "kept.txt.gz").write_bytes(packed)
    srv = make_server(workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/kept.txt").status == 200
    part = c.request("GET", "/kept.txt", headers={"Range": "bytes=0-9"})
    assert part.status == 206 and part.body == b"0123456789"
    assert part.header("content-range") == "bytes 0-9/200"
    whole = c.request("GET", "/kept.txt")
    assert whole.status == 200 and whole.header("content-length") == "200"
    assert whole.header("content-range") is None
    for _ in range(2):
        gz = c.request("GET", "/kept.txt", headers={"Accept-Encoding": "gzip"})
        assert gz.header("content-encoding") == "gzip" and gz.body == packed
        assert gz.header("content-length") == str(len(packed))
    plain = c.request("GET", "/kept.txt")
    assert plain.header("content-encoding") is None and plain.header("content-length") == "200"


def test_a_send_parked_across_a_second_keeps_its_bytes(make_server):
    """A full socket parks a response sent straight from the kept head and body
    (head_busy); meanwhile the second changes and another connection is answered.
    Every parked response must still arrive whole, each with a well-formed Date."""
    srv = make_server(workers=1)
    slow = Conn(srv.port)
    n = 400  # 400 x 6 KiB pipelined, unread: more than the socket buffers hold
    slow.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n" * n)
    other = Conn(srv.port)
    first = other.request("GET", "/index.html").header("date")
    deadline = time.monotonic() + 5
    while other.request("GET", "/index.html").header("date") == first:
        assert time.monotonic() < deadline, "the Date did not move on"
    fresh = other.request("GET", "/index.html")
    assert fresh.body == INDEX and fresh.header("date") != first
    for _ in range(n):
        r = slow.read_response()
        assert r.status == 200 and r.body == INDEX
        assert email.utils.parsedate_to_datetime(r.header("date")) is not None
