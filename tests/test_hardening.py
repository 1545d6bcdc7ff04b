"""Hardening: slow clients, floods, resets, fd exhaustion, garbage, limits, memory, on both engines."""

import os
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import ENGINES, INDEX, Conn, alive, engine_args, free_port, get, raw, status_of, wait_for


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def test_slowloris_does_not_delay_others(make_server):
    srv = make_server(workers=2)
    slow = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow-%d: " % i)  # never finished
            slow.append(s)
        t0 = time.monotonic()
        r = Conn(srv.port, timeout=5).request("GET", "/index.html")
        assert r.status == 200 and r.body == INDEX
        assert time.monotonic() - t0 < 1.0
    finally:
        for s in slow:
            s.close()


def test_slowloris_is_cut_off_by_the_header_timeout(make_server):
    srv = make_server(header_timeout=0.5)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\n")
    for _ in range(4):  # a byte every 0.2 s: progress, but the whole head is late
        time.sleep(0.2)
        try:
            s.sendall(b"X")
        except OSError:
            break
    out = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    assert status_of(out) == 408
    assert wait_for(lambda: alive(srv) == 0)


@pytest.mark.parametrize(
    "first, status",
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello on the plain port
        (b"\x80\x2e\x01\x00\x02\x00\x15", 400),  # SSLv2's
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n", 400),  # a PROXY protocol preamble
        (b"GET / HTTP/5.6\r\n", 505),
        (b"GET /\r HTTP/1.1\r\n", 400),  # a bare CR in the request line
    ],
    ids=["tls", "sslv2", "proxy", "http-5.6", "bare-cr"],
)
def test_a_head_no_bytes_can_mend_is_answered_at_once(make_server, first, status):
    """Bytes that can begin no request, or a whole request line that is none, get their
    answer and a close at once, as nginx's (a TLS ClientHello: 400 at once, not a 408
    after --header-timeout): each connection waiting for the rest holds a slot."""
    srv = make_server(header_timeout=30)
    t0 = time.monotonic()
    out = raw(srv.port, first, timeout=5)  # until the server closes (or 5 s of quiet)
    took = time.monotonic() - t0
    assert status_of(out) == status and b"Connection: close" in out, out
    assert took < 4, took  # far from the 30 s header timeout (a bound, not a speed claim)
    assert wait_for(lambda: alive(srv) == 0)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def connections(srv):
    return sum(w["connections"] for w in srv.stats())


def test_flood_of_connect_and_close(make_server):
    srv = make_server()
    # get(): a connection closed here, not when a refcount drops (PyPy frees it at a GC).
    # Each worker's open-file cache keeps hello.txt open: fds are counted from after
    # every worker has it
    assert wait_for(
        lambda: get(srv.port, "/hello.txt").status == 200 and all(w["cache_entries"] for w in srv.stats())
    )
    assert wait_for(lambda: alive(srv) == 0)
    base, before = open_fds(), connections(srv)
    for _ in range(2000):
        socket.create_connection(("127.0.0.1", srv.port)).close()
    assert get(srv.port, "/hello.txt").status == 200
    # Every connect completed, so the kernel hands every connection to the server, but
    # not all by now: with TCP_DEFER_ACCEPT one is queued for accept on the client's FIN,
    # and a FIN the loaded loopback dropped comes again only when resent, after the GET;
    # and an fd the acceptor dispatched counts (and is alive) once its worker reads it.
    # So: wait until the server has taken each of them, then until each is closed.
    assert wait_for(lambda: connections(srv) >= before + 2001, timeout=30)
    assert connections(srv) == before + 2001
    assert wait_for(lambda: alive(srv) == 0 and open_fds() <= base, timeout=10), (open_fds(), base)


def test_resets_mid_transfer(make_server):
    srv = make_server()
    for batch in range(5):
        socks = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.recv(65536)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST mid-sendfile
    assert wait_for(lambda: alive(srv) == 0, timeout=15), srv.stats()
    assert Conn(srv.port).request("GET", "/hello.txt").body == b"hello world\n"


def test_half_closed_request_is_still_answered(make_server):
    srv = make_server()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    s.shutdown(socket.SHUT_WR)  # request, then FIN
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    assert status_of(out) == 200 and out.endswith(b"hello world\n")
    s.close()
    assert wait_for(lambda: alive(srv) == 0)


def test_garbage_inputs(make_server):
    srv = make_server(header_timeout=1.0)
    rng = random.Random(20261126)
    valid = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
    pieces = [
        b"GET",
        b"POST",
        b" ",
        b"/",
        b"HTTP/1.1",
        b"\r\n",
        b"\n",
        b"\r",
        b":",
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"chunked",
        b"0",
        b"-1",
        b"\x00",
        b"\xff",
        b"%",
        b"..",
        b"\t",
        b"999999999999999999999",
        b"Expect",
        b"100-continue",
    ]
    for i in range(200):
        kind = i % 4
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        elif kind == 1:
            data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 60)))
        elif kind == 2:
            b = bytearray(valid)
            for _ in range(rng.randrange(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        else:
            data = valid[: rng.randrange(len(valid))] + bytes(rng.randrange(256) for _ in range(20))
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
        out = b""
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # then EOF: the server must answer or close, not wait
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        finally:
            s.close()
        if out:
            assert out.startswith(b"HTTP/1.1 "), (data, out[:80])
    assert get(srv.port, "/hello.txt").body == b"hello world\n"
    assert wait_for(lambda: alive(srv) == 0, timeout=10)


def test_max_connections_answers_503_never_stalls(make_server):
    srv = make_server(workers=1, max_connections=10)
    held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(10)]
    assert wait_for(lambda: alive(srv) == 10)
    t0 = time.monotonic()
    out = raw(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)
    assert status_of(out) == 503 and time.monotonic() - t0 < 1.0
    for s in held[:5]:
        s.close()
    assert wait_for(lambda: alive(srv) <= 5)
    assert Conn(srv.port).request("GET", "/hello.txt").status == 200
    assert sum(w["rejected"] for w in srv.stats()) >= 1
    for s in held[5:]:
        s.close()


def test_max_connections_is_a_total_over_the_workers(make_server):
    """--max-connections 3 over 2 workers is 3 connections, whichever worker has them (it
    was a share per worker, rounded up: 2 each, so 4 got in), counting idle and parked ones."""
    srv = make_server(workers=2, max_connections=3)
    held = []
    try:
        for _ in range(3):
            c = Conn(srv.port)
            assert c.request("GET", "/hello.txt").status == 200  # kept alive: still open
            held.append(c)
        assert wait_for(lambda: alive(srv) + sum(w["parked"] for w in srv.stats()) == 3)
        for _ in range(4):  # dispatch goes round the workers: each of them must refuse
            assert status_of(raw(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)) == 503
        held.pop().close()
        assert wait_for(lambda: alive(srv) + sum(w["parked"] for w in srv.stats()) == 2)
        assert Conn(srv.port).request("GET", "/hello.txt").status == 200
    finally:
        for c in held:
            c.close()


def test_the_503_of_max_connections_ends_with_a_fin_not_a_reset(make_server):
    """The connection turned away had its request unread (TCP_DEFER_ACCEPT: it came with
    the accept); a close with unread input is a RST, which can make a client's TCP drop
    the 503 before it is read.  The server reads what was sent, answers, then closes."""
    srv = make_server(workers=1, max_connections=1)
    held = Conn(srv.port)
    try:
        assert held.request("GET", "/hello.txt").status == 200
        assert wait_for(lambda: alive(srv) + sum(w["parked"] for w in srv.stats()) == 1)
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nUser-Agent: " + b"x" * 3000 + b"\r\n\r\n")
            out = b""
            while True:
                chunk = s.recv(65536)  # ConnectionResetError here: the reset this is about
                if not chunk:
                    break
                out += chunk
            s.close()
            assert status_of(out) == 503 and out.endswith(b"Too many connections"), out
    finally:
        held.close()


def test_20000_requests_memory_and_coroutines(make_server):
    srv = make_server(workers=2)

    def burst(n_conns, n_req):
        for _ in range(n_conns):
            c = Conn(srv.port)
            req = b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"
            for _ in range(n_req // 50):
                c.send(req * 50)
                for _ in range(50):
                    assert c.read_response().status == 200
            c.close()

    burst(4, 500)  # warm the pools and caches
    before = rss_kib()
    burst(40, 500)  # 20,000 requests
    growth = (rss_kib() - before) / 1024
    if not os.environ.get("MINGINX_SANITIZED"):  # ASan's quarantine holds freed memory on purpose
        assert growth < 20, "RSS grew %.1f MiB" % growth
    assert wait_for(lambda: alive(srv) == 0, timeout=10)
    assert sum(w["requests"] for w in srv.stats()) >= 22000


def test_pid_file(tmp_path, site_root):
    pid_file = tmp_path / "m.pid"
    port = free_port()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minginx_cffi",
            "serve",
            "--root",
            str(site_root),
            "--port",
            str(port),
            "--pid-file",
            str(pid_file),
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdout.readline()
    assert pid_file.read_text().strip() == str(p.pid)
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    assert not pid_file.exists()


@pytest.mark.parametrize("engine_name", ENGINES)
def test_emfile_backs_off_without_spinning_and_recovers(site_root, engine_name):
    port = free_port()

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minginx_cffi",
            "serve",
            "--root",
            str(site_root),
            "--port",
            str(port),
            "--workers",
            "1",
            *engine_args(engine_name),
            "--keepalive-timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=low_limit,
    )
    try:
        banner = p.stdout.readline().decode()
        assert "fd limit 48" in banner
        held = []
        for _ in range(80):  # more than the server has fds for
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(c)
        time.sleep(0.5)

        def cpu():
            with open("/proc/%d/stat" % p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        c0 = cpu()
        time.sleep(1.0)
        assert cpu() - c0 < 0.3, "the acceptor spins while out of fds"
        for c in held:
            c.close()
        r = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                r = Conn(port, timeout=2).request("GET", "/hello.txt")
                break
            except (OSError, EOFError):
                time.sleep(0.1)
        assert r is not None and r.status == 200
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(15)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_idle_keep_alive_connection_costs_about_a_page(site_root, engine_name):
    """An idle keep-alive connection keeps its coroutine: the top page of its stack region
    (the struct and the frames parked in recv_async), not the pages a request touched."""
    n = 600
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = free_port()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minginx_cffi",
            "serve",
            "--port",
            str(port),
            "--root",
            str(site_root),
            "--workers",
            "1",
            *engine_args(engine_name),
            "--no-stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    conns = []
    try:
        p.stdout.readline()  # the banner: listening

        def server_rss_kib():
            with open("/proc/%d/status" % p.pid) as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

        def open_conns(k):
            for _ in range(k):
                c = Conn(port)
                assert c.request("GET", "/index.html").body == INDEX
                conns.append(c)

        open_conns(20)  # warm the caches
        before = server_rss_kib()
        open_conns(n)
        per_conn = (server_rss_kib() - before) / n
        if not os.environ.get("MINGINX_SANITIZED"):
            assert per_conn < 6.0, "%.1f KiB per idle connection" % per_conn
    finally:
        for c in conns:
            c.close()
        p.send_signal(signal.SIGINT)
        p.wait(10)


def test_port_dispatch_passes_a_full_pipe_on_then_sheds():
    """pyport/acceptor.py (as csrc/acceptor.c: dispatch_flush_one): a worker whose pipe is
    full hands its fds to the next worker's pipe; when every pipe is full they are closed."""
    import fcntl
    import types

    from minginx_cffi.pyport.acceptor import Acceptor

    pipes = [os.pipe2(os.O_NONBLOCK) for _ in range(2)]
    try:
        for r, w in pipes:
            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # 1031: Linux, Python < 3.10
        full = pipes[0][1]
        try:
            while True:
                os.write(full, b"x" * 512)
        except BlockingIOError:
            pass
        acc = Acceptor(types.SimpleNamespace(cfg={"trace": False}, pipes=[w for _, w in pipes]))
        acc.queues = [[], []]
        pairs = [socket.socketpair() for _ in range(2)]
        fds = [a.detach() for a, _ in pairs]
        acc.dispatch(fds[0])  # round-robin: worker 0, whose pipe is full
        acc.dispatch(fds[1])  # worker 1
        acc.dispatch_flush()
        got = os.read(pipes[1][0], 64)
        assert sorted(struct.unpack("%di" % (len(got) // 4), got)) == sorted(fds)
        for fd in fds:
            os.fstat(fd)  # both still open: they reached a worker
        # now both pipes full: the next fds are shed (closed), not leaked
        try:
            while True:
                os.write(pipes[1][1], b"x" * 512)
        except BlockingIOError:
            pass
        more = [socket.socketpair() for _ in range(2)]
        shed = [a.detach() for a, _ in more]
        for fd in shed:
            acc.dispatch(fd)
        acc.dispatch_flush()
        for fd in shed:
            with pytest.raises(OSError):
                os.fstat(fd)
        for fd in fds:
            os.close(fd)
        for _, b in pairs + more:
            b.close()
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


# -- Server() checks its numbers itself (the CLI is not the only caller) ----------------


@pytest.mark.parametrize(
    "option,value",
    [
        ("max_body", 1 << 31),
        ("max_body", -1),
        ("max_body", 1.5),
        ("header_timeout", float("nan")),
        ("keepalive_timeout", float("inf")),
        ("send_timeout", -1.0),
        ("send_timeout", 0.0004),
        ("grace", float("nan")),
        ("stack_size", 1 << 40),
        ("open_file_cache", 1 << 40),
        ("small_file_cache", -1),
        ("max_connections", 1 << 40),
        ("workers", 100000),
        ("processes", 0),
        ("port", 70000),
        ("port", True),
    ],
)
def test_server_refuses_numbers_the_engine_cannot_hold(option, value, site_root):
    from minginx_cffi.server import Server, ServerError

    with pytest.raises(ServerError, match=option.replace("_", "-")):
        Server(root=str(site_root), **{option: value})
