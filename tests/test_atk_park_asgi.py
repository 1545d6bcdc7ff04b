"""Attacks on lazy parking (csrc/worker.c idle list, pyport/worker.py) and the ASGI glue (_bridge.AsgiBridge).

Hostile timings around MG_PARK_DELAY (100 ms) over real sockets, on both engines:
every connection ends answered or closed at its timeout, never hangs, and the
gauges (parked, coroutines_alive) come back to zero.
"""

import asyncio
import socket
import threading
import time

import pytest

from conftest import Conn, alive, readable, wait_for

GET = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"


def parked(srv):
    return sum(w["parked"] for w in srv.stats())


def coroutines(srv):
    return sum(w["coroutines_alive"] for w in srv.stats())


def read_until_close(sock, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


@pytest.mark.parametrize("gap", [0.03, 0.09, 0.11])
def test_a_head_trickling_in_around_the_park_gets_408_at_the_header_timeout(make_server, gap):
    srv = make_server(workers=1, header_timeout=0.5, keepalive_timeout=10.0)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    t0 = time.monotonic()
    c.sock.settimeout(5.0)
    data = b""
    for b in b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"x" * 100:
        try:
            c.sock.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            break
        # the attack's pace; an answer ends it
        if readable(c.sock, gap) or time.monotonic() - t0 > 3.0:
            break
    data = read_until_close(c.sock)
    elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408"), data[:80]
    assert elapsed < 2.5, elapsed
    assert wait_for(lambda: alive(srv) == 0)


@pytest.mark.parametrize("when", ["lazy", "parked"])
def test_a_request_then_half_close_on_an_idle_connection_is_answered(make_server, when):
    srv = make_server(workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    if when == "parked":
        assert wait_for(lambda: parked(srv) == 1)
    c.send(GET)
    c.sock.shutdown(socket.SHUT_WR)
    data = read_until_close(c.sock)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello world\n"), data
    assert wait_for(lambda: alive(srv) == 0)


@pytest.mark.parametrize("when", ["lazy", "parked"])
def test_a_reset_while_idle_leaves_nothing_behind(make_server, when):
    import struct

    srv = make_server(workers=1)
    conns = []
    for _ in range(20):
        c = Conn(srv.port)
        assert c.request("GET", "/hello.txt").status == 200
        conns.append(c)
    if when == "parked":
        assert wait_for(lambda: parked(srv) == 20)
    for c in conns:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
    assert wait_for(lambda: alive(srv) == 0 and parked(srv) == 0)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200


def test_pipelined_requests_paced_at_the_park_delay_are_all_answered(make_server):
    srv = make_server(workers=1)
    c = Conn(srv.port)
    for i in range(12):
        c.send(GET)
        assert c.read_response().body == b"hello world\n"
        time.sleep(0.095 + 0.002 * i)  # the attack's pace: right around the park
    assert srv.stats()[0]["requests"] == 12


def test_a_graceful_stop_closes_lazy_idle_connections_within_the_drain(make_server):
    srv = make_server(workers=1, keepalive_timeout=30.0, grace=20.0)
    conns = [Conn(srv.port) for _ in range(10)]
    for c in conns:
        assert c.request("GET", "/hello.txt").status == 200
    t0 = time.monotonic()
    srv.shutdown()
    elapsed = time.monotonic() - t0
    assert elapsed < 5.0, elapsed
    for c in conns:
        assert c.closed_by_peer(timeout=1.0)


def test_max_connections_counts_lazy_idle_and_parked_alike(make_server):
    srv = make_server(workers=1, max_connections=2)
    a, b = Conn(srv.port), Conn(srv.port)
    assert a.request("GET", "/hello.txt").status == 200
    assert b.request("GET", "/hello.txt").status == 200
    third = Conn(srv.port)
    third.send(GET)
    assert third.read_response().status == 503
    assert wait_for(lambda: parked(srv) == 2)
    fourth = Conn(srv.port)
    fourth.send(GET)
    assert fourth.read_response().status == 503
    a.sock.close()
    assert wait_for(lambda: alive(srv) == 1)
    fifth = Conn(srv.port)
    assert fifth.request("GET", "/hello.txt").status == 200


def drip_until_closed(c, gap, limit):
    """Send a blank line (RFC 9112 section 2.2: ignored) every gap seconds until the
    server closes the connection; the seconds that took (or limit)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            c.sock.send(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
        # the attack's pace; the server's close ends it
        if readable(c.sock, gap):
            try:
                if not c.sock.recv(4096):
                    break
            except ConnectionResetError:
                break
    return time.monotonic() - t0


def test_blank_lines_dripped_on_an_unparked_connection_do_not_extend_the_keepalive(make_server):
    """Unparked by a blank line, a connection is still idle: its old deadline holds
    even while blank lines keep coming faster than the park delay (before the fix
    the unparked coroutine took a fresh keep-alive timeout and never parked again)."""
    srv = make_server(workers=1, keepalive_timeout=1.0)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    t0 = time.monotonic()
    assert wait_for(lambda: parked(srv) == 1)
    while time.monotonic() - t0 < 0.6:  # most of the keep-alive timeout, parked
        time.sleep(0.05)
    drip_until_closed(c, 0.03, 5.0)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.45, elapsed  # a fresh timeout would close at 0.6 + 1.0 s
    assert wait_for(lambda: alive(srv) == 0)


def test_blank_lines_dripped_during_a_graceful_stop_do_not_hold_it(make_server):
    srv = make_server(workers=1, keepalive_timeout=30.0, grace=20.0)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 1)
    stopper = threading.Thread(target=srv.shutdown)
    t0 = time.monotonic()
    stopper.start()
    drip_until_closed(c, 0.03, 10.0)
    stopper.join(25.0)
    elapsed = time.monotonic() - t0
    assert elapsed < 4.0, elapsed  # the drain (1 s), not the keep-alive (30 s) or grace (20 s)


# ---------------------------------------------------------------- ASGI glue

kept_scopes = []


async def keeper_app(scope, receive, send):
    """Keeps every scope (and its header list) after the response; echoes what it read."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    kept_scopes.append((scope, list(scope["headers"]), scope["path"], scope["query_string"]))
    out = (
        repr((scope["method"], scope["path"], scope["query_string"], scope["headers"])).encode() + b"|" + body
    )
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": out})


def test_a_kept_scope_never_changes_under_later_requests(make_server):
    kept_scopes.clear()
    srv = make_server(asgi=keeper_app, root=None, workers=1)
    c = Conn(srv.port)
    for i in range(30):
        hdrs = {"X-N": str(i) * (1 + i * 37), "X-Odd": "\x80\xff\t tab", "Empty": ""}
        body = b"b%d" % i if i % 2 else b""
        hdrs["Content-Length"] = str(len(body))
        r = c.request("POST" if i % 2 else "GET", "/p%d?q=%d" % (i, i), hdrs, body=body)
        assert r.body.endswith(b"|" + body)
        assert r.status == 200
    assert len(kept_scopes) == 30
    for i, (scope, headers_then, path, qs) in enumerate(kept_scopes):
        assert scope["headers"] == headers_then
        assert scope["path"] == "/p%d" % i and path == scope["path"]
        assert scope["query_string"] == b"q=%d" % i == qs
        d = dict(scope["headers"])
        assert d[b"x-n"] == (b"%d" % i) * (1 + i * 37)
        assert d[b"x-odd"] == b"\x80\xff\t tab"
        assert d[b"empty"] == b""


def test_the_most_headers_and_the_biggest_head_reach_the_app_whole(make_server):
    kept_scopes.clear()
    srv = make_server(asgi=keeper_app, root=None, workers=1)
    c = Conn(srv.port)
    many = {"X-H%02d" % i: "v%d" % i for i in range(98)}  # + Host: 99 fields
    assert c.request("GET", "/m", many).status == 200
    names = [n for n, _ in kept_scopes[-1][0]["headers"]]
    assert len(names) == 99 and names[-1] == b"x-h97"
    big = None
    for size in (4096, 7000, 7900, 16000, 30000, 40000):
        c = Conn(srv.port)
        r = c.request("GET", "/b", {"X-Big": "y" * size})
        if r.status != 200:
            assert r.status in (400, 431), r.status
            break
        big = size
        assert dict(kept_scopes[-1][0]["headers"])[b"x-big"] == b"y" * size
    assert big is not None


def test_concurrent_requests_with_bodies_each_get_their_own(make_server):
    srv = make_server(asgi=keeper_app, root=None, workers=2)
    errors = []

    def client(k):
        try:
            c = Conn(srv.port)
            for j in range(5):
                body = (b"%d-%d:" % (k, j)) * (1 + (k * 131 + j) % 3000)
                r = c.request(
                    "POST", "/c%d/%d" % (k, j), {"X-K": str(k), "Content-Length": str(len(body))}, body=body
                )
                assert r.status == 200
                head, _, got = r.body.partition(b"|")
                assert got == body and (b"/c%d/%d" % (k, j)) in head, (k, j)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


gate = threading.Event()
arrived = []


async def gated_app(scope, receive, send):
    if scope["type"] != "http":
        return
    arrived.append(scope["path"])
    while not gate.is_set():
        await asyncio.sleep(0.005)
    if scope["path"] == "/raise":
        raise RuntimeError("the app fails")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_a_burst_of_replies_with_some_clients_gone_answers_the_rest(make_server):
    """The replies leave in one mg_call_post_many burst (the gate opens them all at
    once); a third of their connections were reset before it, one app raises."""
    import struct

    gate.clear()
    arrived.clear()
    srv = make_server(asgi=gated_app, root=None, workers=1)
    conns = []
    for k in range(30):
        c = Conn(srv.port)
        c.send(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % (b"raise" if k == 7 else b"k%d" % k))
        conns.append(c)
    assert wait_for(lambda: len(arrived) == 30)
    for k in range(0, 30, 3):
        conns[k].sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conns[k].sock.close()
    gate.set()
    for k, c in enumerate(conns):
        if k % 3 == 0:
            continue
        r = c.read_response()
        if k == 7:
            assert r.status == 500
        else:
            assert r.status == 200 and r.body == b"/k%d" % k
    # the reset ones are closed, the answered ones kept alive (lazy-idle or parked)
    assert wait_for(lambda: alive(srv) == 20), srv.stats()
    c = Conn(srv.port)
    c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.read_response().body == b"/after"


@pytest.mark.parametrize("timeout", [0.05, 0.1, 0.15])
def test_a_keepalive_timeout_around_the_park_delay_closes_on_time(make_server, timeout):
    srv = make_server(workers=1, keepalive_timeout=timeout)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    t0 = time.monotonic()
    assert c.closed_by_peer(timeout=5.0)
    assert time.monotonic() - t0 < timeout + 0.5
    assert wait_for(lambda: alive(srv) == 0 and parked(srv) == 0)
    assert srv.stats()[0]["timeouts"] >= 1


@pytest.mark.parametrize("when", ["lazy", "parked"])
def test_a_half_close_between_requests_closes_the_connection(make_server, when):
    srv = make_server(workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    if when == "parked":
        assert wait_for(lambda: parked(srv) == 1)
    c.sock.shutdown(socket.SHUT_WR)
    assert read_until_close(c.sock) == b""
    assert wait_for(lambda: alive(srv) == 0 and parked(srv) == 0)


def test_many_half_heads_after_a_park_all_get_408_at_the_header_timeout(make_server):
    srv = make_server(workers=2, header_timeout=0.5, keepalive_timeout=30.0)
    conns = [Conn(srv.port) for _ in range(40)]
    for c in conns:
        assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 40)
    t0 = time.monotonic()
    for i, c in enumerate(conns):
        c.send(b"GET /hello.txt HTTP/1.1\r\nHo" if i % 2 else b"G")
    for c in conns:
        assert read_until_close(c.sock).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t0 < 2.0
    assert wait_for(lambda: alive(srv) == 0 and parked(srv) == 0)


def test_pipelined_asgi_requests_around_the_park_are_answered_in_order(make_server):
    kept_scopes.clear()
    srv = make_server(asgi=keeper_app, root=None, workers=1)
    c = Conn(srv.port)
    for i in range(8):
        c.send(b"".join(b"GET /r%d/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i, k) for k in range(3)))
        for k in range(3):
            r = c.read_response()
            assert r.status == 200 and (b"'/r%d/%d'" % (i, k)) in r.body
        time.sleep(0.09 + 0.005 * i)  # the attack's pace: right around the park
    assert [s[2] for s in kept_scopes] == ["/r%d/%d" % (i, k) for i in range(8) for k in range(3)]


slow_started = threading.Event()


async def slow_app(scope, receive, send):
    if scope["type"] != "http":
        return
    slow_started.set()
    await asyncio.sleep(3.0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def test_a_stop_past_the_grace_with_asgi_calls_in_flight_then_a_new_server(make_server):
    """The calls outlive their worker (cut at --grace); their late replies must not
    touch freed memory (run under ASan by make test-asan), and the process serves on."""
    slow_started.clear()
    srv = make_server(asgi=slow_app, root=None, workers=1, grace=0.3)
    conns = [Conn(srv.port) for _ in range(5)]
    for c in conns:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert slow_started.wait(5)
    t0 = time.monotonic()
    srv.shutdown()
    assert time.monotonic() - t0 < 2.5
    for c in conns:
        assert c.closed_by_peer(timeout=5.0)
    srv2 = make_server(asgi=keeper_app, root=None, workers=1)
    assert Conn(srv2.port).request("GET", "/x").status == 200
