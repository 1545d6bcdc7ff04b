"""Idle keep-alive connections parked without a coroutine (csrc/worker.c worker_park,
pyport/worker.py).

Between requests a connection whose socket has had nothing to read for
PARK_DELAY (lazy parking) keeps only its fd and a few bytes in the worker's tables; its
coroutine goes back to the pool ("parked" gauge up, coroutines_alive down).  Input
unparks it: a coroutine from the pool goes on where the old one stopped.  Both engines.
"""

import json
import os
import re
import socket
import threading
import time

from conftest import Conn, alive, wait_for

GET = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"


def parked(srv):
    return sum(w["parked"] for w in srv.stats())


def coroutines(srv):
    return sum(w["coroutines_alive"] for w in srv.stats())


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_idle_connections_park_and_each_answers_its_next_request(make_server):
    srv = make_server(workers=2)
    conns = [Conn(srv.port) for _ in range(60)]
    for c in conns:
        assert c.request("GET", "/hello.txt").body == b"hello world\n"
    assert wait_for(lambda: parked(srv) == 60 and coroutines(srv) == 0)
    assert alive(srv) == 60  # parked connections are still open
    for round_ in range(2):
        for c in conns:
            r = c.request("GET", "/hello.txt")
            assert r.status == 200 and r.body == b"hello world\n"
            assert r.header("connection") != "close"
        assert wait_for(lambda: parked(srv) == 60 and coroutines(srv) == 0)
    st = srv.stats()
    assert sum(w["requests"] for w in st) == 180
    assert sum(w["connections"] for w in st) == 60  # one connection each, kept alive


def test_a_parked_connection_times_out_at_the_keepalive_timeout(make_server):
    srv = make_server(workers=1, keepalive_timeout=1.0)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 1)
    t0 = time.monotonic()
    assert c.closed_by_peer(timeout=5.0)
    elapsed = time.monotonic() - t0
    assert 0.5 < elapsed < 3.0, elapsed
    assert wait_for(lambda: parked(srv) == 0 and coroutines(srv) == 0)
    assert srv.stats()[0]["timeouts"] >= 1


def test_the_keepalive_timeout_is_not_restarted_by_an_unpark_without_a_request(make_server):
    """A blank line between requests (RFC 9112 section 2.2: ignored) wakes the
    connection, but it is still idle: it parks again with its old deadline."""
    srv = make_server(workers=1, keepalive_timeout=1.5)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    t0 = time.monotonic()
    assert wait_for(lambda: parked(srv) == 1)
    time.sleep(0.8)  # most of the keep-alive timeout, then a wake-up that is no request
    c.send(b"\r\n")
    assert c.closed_by_peer(timeout=5.0)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.2, elapsed  # restarted, it would have closed after 0.8 + 1.5 s


def test_pipelined_requests_are_never_parked_mid_stream(make_server):
    seen = []
    srv = make_server(workers=1, trace=seen.extend)
    c = Conn(srv.port)
    c.send(GET * 3)
    for _ in range(3):
        assert c.read_response().body == b"hello world\n"
    assert wait_for(lambda: parked(srv) == 1)
    # half a request: the connection is not idle any more, so it stays a coroutine
    c.send(GET[:20])
    assert wait_for(lambda: coroutines(srv) == 1 and parked(srv) == 0)
    c.send(GET[20:])
    assert c.read_response().body == b"hello world\n"
    assert wait_for(lambda: parked(srv) == 1)
    srv.shutdown()
    from minginx_cffi.trace import EV_HANDLER_DONE, EV_PARK, EV_UNPARK

    steps = [r[4] for r in seen if r[4] in (EV_HANDLER_DONE, EV_PARK, EV_UNPARK)]
    # three answers before the first park; then one unpark for the split request, one answer
    assert steps[:5] == [EV_HANDLER_DONE] * 3 + [EV_PARK, EV_UNPARK], steps
    assert steps[5:7] == [EV_HANDLER_DONE, EV_PARK], steps


PARK_DELAY = 0.1  # csrc/internal.h MG_PARK_DELAY_MS, pyport/coroutine.py MG_PARK_DELAY


def test_a_busy_keepalive_connection_is_never_parked(make_server):
    """Lazy parking: a connection whose next request comes within the delay keeps its
    coroutine (no park, unpark and coroutine_create per request)."""
    seen = []
    srv = make_server(workers=1, trace=seen.extend)
    c = Conn(srv.port)
    sent_at = []
    for _ in range(40):
        sent_at.append(time.monotonic())
        assert c.request("GET", "/hello.txt").status == 200
    srv.shutdown()  # (the last one idles on: it may park meanwhile)
    from minginx_cffi.trace import EV_COROUTINE_CREATE, EV_HANDLER_DONE, EV_PARK

    steps = [r[4] for r in seen]
    last = len(steps) - 1 - steps[::-1].index(EV_HANDLER_DONE)
    assert steps.count(EV_HANDLER_DONE) == 40
    # the server's idle wait before request i+1 is within the client's gap between sends;
    # only a gap past the delay (a stalled test machine) may have parked it
    slow_gaps = sum(1 for a, b in zip(sent_at, sent_at[1:]) if b - a >= PARK_DELAY * 0.9)
    assert steps[:last].count(EV_PARK) <= slow_gaps, (steps[:last].count(EV_PARK), slow_gaps)
    assert steps[:last].count(EV_COROUTINE_CREATE) <= 1 + slow_gaps


def test_an_idle_connection_is_parked_only_after_the_delay(make_server):
    seen = []
    srv = make_server(workers=1, trace=seen.extend)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 1 and coroutines(srv) == 0)
    assert c.request("GET", "/hello.txt").status == 200  # and it still answers
    srv.shutdown()
    from minginx_cffi.trace import EV_HANDLER_DONE, EV_PARK

    done = [r[0] for r in seen if r[4] == EV_HANDLER_DONE]
    park = [r[0] for r in seen if r[4] == EV_PARK]
    assert len(done) == 2 and len(park) >= 1, (done, park)
    # the coarse clock (jiffies) may take a few ms off the wait, never most of it
    assert (park[0] - done[0]) / 1e6 >= PARK_DELAY * 0.8, park[0] - done[0]


def test_a_keepalive_timeout_no_longer_than_the_park_delay_still_closes(make_server):
    """The keep-alive deadline and the park come due at the same sweep: the connection
    closes at its deadline, never parked without one."""
    srv = make_server(workers=1, keepalive_timeout=PARK_DELAY)
    conns = [Conn(srv.port) for _ in range(5)]
    for c in conns:
        assert c.request("GET", "/hello.txt").status == 200
    for c in conns:
        assert c.closed_by_peer(timeout=5.0)
    assert wait_for(lambda: parked(srv) == 0 and coroutines(srv) == 0)


def test_a_next_request_split_in_two_has_the_header_timeout_not_the_keepalive_one(make_server):
    """The header timer of a keep-alive connection's next request is armed only when its
    head does not come whole in one read (csrc/conn.c: header_timer_due): it must be."""
    srv = make_server(workers=1, header_timeout=0.5, keepalive_timeout=30.0)
    for wait_first in (False, True):
        c = Conn(srv.port)
        assert c.request("GET", "/hello.txt").status == 200
        if wait_first:
            assert wait_for(lambda: parked(srv) == 1)  # and from a parked connection
        t0 = time.monotonic()
        c.send(GET[:20])
        head = c.read_response()
        elapsed = time.monotonic() - t0
        assert head.status == 408, head.status
        assert elapsed < 5.0, elapsed  # the header timeout, not the keep-alive 30 s
        assert c.closed_by_peer(timeout=5.0)


def test_a_client_closing_while_parked_is_cleaned_up(make_server):
    srv = make_server(workers=1)
    # the open-file cache keeps hello.txt open: count from after it is in
    assert Conn(srv.port).request("GET", "/hello.txt", {"Connection": "close"}).status == 200
    assert wait_for(lambda: alive(srv) == 0)
    base = open_fds()
    conns = [Conn(srv.port) for _ in range(10)]
    for c in conns:
        assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 10)
    for c in conns:
        c.sock.close()
    # each unparks on the FIN, reads EOF and ends: its fd closed, the gauge down
    assert wait_for(lambda: parked(srv) == 0 and coroutines(srv) == 0)
    assert wait_for(lambda: open_fds() == base)


def test_shutdown_closes_parked_connections(make_server):
    srv = make_server(workers=2)
    conns = [Conn(srv.port) for _ in range(8)]
    for c in conns:
        assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 8)
    srv.shutdown()
    for c in conns:
        assert c.closed_by_peer(timeout=3.0)  # the server closed its end: none leaked
        c.sock.close()


def test_a_graceful_stop_drains_parked_connections(make_server):
    srv = make_server(workers=1, keepalive_timeout=30.0, grace=10.0)
    quiet, talker = Conn(srv.port), Conn(srv.port)
    for c in (quiet, talker):
        assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 2)
    stopper = threading.Thread(target=srv.shutdown)
    t0 = time.monotonic()
    stopper.start()
    # the listener closes first, then the worker hears "stop"; a request sent in
    # the drain second is answered, and told the connection closes
    assert wait_for(lambda: _refused(srv.port))
    time.sleep(0.3)
    r = talker.request("GET", "/hello.txt")
    assert r.status == 200 and r.header("connection") == "close"
    assert talker.closed_by_peer(timeout=3.0)
    assert quiet.closed_by_peer(timeout=5.0)
    closed_after = time.monotonic() - t0
    assert 0.8 < closed_after < 4.0, closed_after  # the drain second, not the keep-alive 30
    stopper.join(10)
    assert not stopper.is_alive()


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def test_max_connections_counts_parked_connections(make_server):
    srv = make_server(workers=1, max_connections=2)
    a, b = Conn(srv.port), Conn(srv.port)
    for c in (a, b):
        assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 2)
    assert Conn(srv.port).request("GET", "/hello.txt").status == 503
    assert a.request("GET", "/hello.txt").status == 200  # a parked one still answers


def test_the_trace_shows_park_and_unpark(make_server):
    srv = make_server(workers=1, stats=True, trace="record")
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    assert wait_for(lambda: parked(srv) == 1)
    data = json.loads(c.request("GET", "/_minginx/trace").body)
    names = [e["event"] for e in data["events"]]
    # one connection, one id: its first coroutine, the park, and the unparked one
    assert names[:4] == ["accept", "dispatch", "fd_batch", "coroutine_create"], names
    i = names.index("park")
    assert names[i : i + 5] == ["park", "finished", "coroutine_destroy", "unpark", "coroutine_create"], names
    assert names.count("coroutine_create") == 2
    assert data["coroutine"] == 1  # the connection keeps its id across the park


def test_cli_trace_prints_park_and_unpark_steps():
    from minginx_cffi.trace import EV_PARK, EV_UNPARK, describe

    assert describe(EV_PARK, 1).startswith("park")
    assert describe(EV_UNPARK, 1).startswith("unpark")


LINE = re.compile(rb'^(?P<addr>\S+) - - \[[^\]]+\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+)')


def test_the_access_log_keeps_right_lines_across_park_and_unpark(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(workers=1, access_log=str(log))
    c = Conn(srv.port)
    paths = ["/hello.txt", "/missing", "/index.html"]
    sizes = []
    for p in paths:
        r = c.request("GET", p)
        sizes.append(len(r.body))
        assert wait_for(lambda: parked(srv) == 1)  # each next request comes to a parked connection
    srv.shutdown()
    got = [LINE.match(line) for line in log.read_bytes().splitlines()]
    assert all(got)
    assert [(m["addr"], m["request"], int(m["status"]), int(m["bytes"])) for m in got] == [
        (b"127.0.0.1", b"GET %s HTTP/1.1" % p.encode(), s, n)
        for p, s, n in zip(paths, [200, 404, 200], sizes)
    ]
