"""Connections end to end: keep-alive, pipelining, byte-by-byte, bodies, big files,
concurrency, early closes."""

import fcntl
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from conftest import INDEX, Conn, alive, raw, status_of, wait_for


def test_keep_alive_many_requests_one_socket(server, connect):
    c = connect(server.port)
    for i in range(200):
        r = c.request("GET", "/hello.txt" if i % 2 else "/index.html")
        assert r.status == 200
        assert r.body == (b"hello world\n" if i % 2 else INDEX)
    st = server.stats()
    assert sum(w["connections"] for w in st) == 1
    assert sum(w["requests"] for w in st) == 200


def test_pipelining_20_requests_in_one_send(server, connect):
    c = connect(server.port)
    paths = ["/hello.txt", "/index.html", "/style.css", "/nope"] * 5
    c.send(b"".join(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % p.encode() for p in paths))
    for p in paths:
        r = c.read_response()
        assert r.status == (404 if p == "/nope" else 200), p
    assert c.request("GET", "/hello.txt").body == b"hello world\n"


def test_pipelined_heads_after_bodies(server, connect):
    c = connect(server.port)
    c.send(
        b"POST /hello.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET /"
        b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nGET \r\n0\r\n\r\n"
        b"GET /style.css HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert c.read_response().status == 405
    assert c.read_response().body == b"hello world\n"
    assert c.read_response().status == 405
    assert c.read_response().body == b"body{color:red}\n"


def test_one_byte_per_send(server):
    req = b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    out = raw(server.port, req, per_byte=True)
    assert status_of(out) == 200 and out.endswith(b"hello world\n")


def test_http10_closes_unless_keep_alive(server):
    out = raw(server.port, b"GET /hello.txt HTTP/1.0\r\n\r\n", timeout=3)
    assert status_of(out) == 200 and b"Connection: close" in out
    c = Conn(server.port)
    c.send(b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = c.read_response()
    assert r.header("connection") == "keep-alive"
    c.send(b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert c.read_response().body == b"hello world\n"
    assert c.closed_by_peer()
    c.close()


def test_connection_close_is_honoured(server, connect):
    c = connect(server.port)
    r = c.request("GET", "/hello.txt", {"Connection": "close"})
    assert r.header("connection") == "close"
    assert c.closed_by_peer()


def test_expect_100_continue(server, connect):
    c = connect(server.port)
    c.send(b"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    c.sock.settimeout(5)
    interim = c.sock.recv(100)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    c.buf = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
    c.send(b"data")
    assert c.read_response().status == 405
    assert c.request("GET", "/hello.txt").status == 200


def test_body_over_limit_is_413_and_closes(make_server):
    srv = make_server(max_body=1000)
    out = raw(srv.port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
    assert status_of(out) == 413 and b"Connection: close" in out


def test_smuggling_cl_te_never_answers_second_request(server):
    out = raw(
        server.port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    assert status_of(out) == 400
    assert out.count(b"HTTP/1.1") == 1 and b"hello world" not in out


def sha256_of_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % path.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(
        [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1]
    )
    h = hashlib.sha256(body)
    got = len(body)
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
    s.close()
    return length, got, h.hexdigest()


@pytest.mark.parametrize("name", ["1mib.bin", "50mib.bin"])
def test_large_files_exact(server, site_root, name):
    want = hashlib.sha256((site_root / name).read_bytes()).hexdigest()
    size = (site_root / name).stat().st_size
    assert sha256_of_get(server.port, "/" + name) == (size, size, want)


def test_500_concurrent_connections(server):
    n = 500
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(n)]
    for s in socks:
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    for s in socks:
        buf = b""
        while not buf.endswith(b"hello world\n"):
            chunk = s.recv(4096)
            assert chunk
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 200 OK")
    assert wait_for(lambda: alive(server) == n)
    for s in socks:
        s.close()
    assert wait_for(lambda: alive(server) == 0)


def test_early_close_and_reset_mid_transfer(server):
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        s.recv(65536)
        if i % 2:
            # RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # a client that closes before sending anything, and one mid-head
    socket.create_connection(("127.0.0.1", server.port)).close()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"GET /hello.txt HTT")
    s.close()
    assert wait_for(lambda: alive(server) == 0, timeout=10), server.stats()
    assert Conn(server.port).request("GET", "/hello.txt").body == b"hello world\n"


def test_peer_that_never_reads_is_dropped_by_send_timeout(make_server):
    srv = make_server(send_timeout=0.5)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert wait_for(lambda: alive(srv) == 1)
    assert wait_for(lambda: alive(srv) == 0, timeout=10)
    s.close()


def test_idle_keepalive_timeout_closes(make_server, connect):
    srv = make_server(keepalive_timeout=0.3)
    c = connect(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    assert c.closed_by_peer(timeout=5)
    assert wait_for(lambda: alive(srv) == 0)


def test_keepalive_timeout_0_is_keepalive_off(make_server, connect):
    """--keepalive-timeout 0 turns keep-alive off, as nginx's keepalive_timeout 0: every
    response says "Connection: close" and the connection closes after it (it meant "idle
    connections are never timed out", which held any number of them open for ever)."""
    srv = make_server(keepalive_timeout=0)
    for path in ("/hello.txt", "/nope"):
        c = connect(srv.port)
        r = c.request("GET", path)
        assert r.status in (200, 404) and r.header("connection") == "close", path
        assert c.closed_by_peer(timeout=5)
    assert wait_for(lambda: alive(srv) == 0)


def test_idle_keepalive_connection_never_holds_up_its_worker(make_server, connect):
    """One worker; a keep-alive connection idle after its response, and a second client is
    answered all the same.  On PyPy, socket(fileno=) made the port's accepted sockets
    blocking, and the worker slept in recv(2) on the idle one (pyport/worker.py
    _accept_from_pipe): the second client waited for the first to speak."""
    srv = make_server(workers=1)
    idle = connect(srv.port)
    assert idle.request("GET", "/hello.txt").status == 200
    other = connect(srv.port, timeout=5)
    assert other.request("GET", "/hello.txt").status == 200
    assert idle.request("GET", "/hello.txt").status == 200


def test_slow_header_gets_408(make_server):
    srv = make_server(header_timeout=0.3)
    out = raw(srv.port, b"GET / HTTP/1.1\r\nHost: a\r\n", timeout=5)
    assert status_of(out) == 408


def test_concurrent_clients_on_both_workers(server):
    errors = []

    def client():
        try:
            c = Conn(server.port)
            for _ in range(100):
                assert c.request("GET", "/index.html").body == INDEX
            c.close()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    st = server.stats()
    assert all(w["connections"] > 0 for w in st)  # round-robin dispatch reached both
    assert sum(w["requests"] for w in st) == 800


@pytest.mark.parametrize("switch", ["ucontext", "fast"])
def test_both_context_switches_serve(make_server, engine, switch):
    if engine != "cffi":
        pytest.skip("a C engine setting")
    srv = make_server(switch=switch, workers=2)
    c = Conn(srv.port)
    for _ in range(50):
        assert c.request("GET", "/index.html").body == INDEX
    assert sha256_of_get(srv.port, "/1mib.bin")[1] == 1 << 20


def test_accept_reuseport(make_server, engine):
    if engine != "cffi":
        pytest.skip("the python engine accepts through dispatch pipes only")
    srv = make_server(accept="reuseport", workers=2)
    conns = [Conn(srv.port) for _ in range(40)]
    for c in conns:
        assert c.request("GET", "/hello.txt").body == b"hello world\n"
    st = srv.stats()
    assert sum(w["connections"] for w in st) == 40
    assert all(w["connections"] > 0 for w in st)  # the kernel spread them over both listeners
    for c in conns:
        c.close()
    assert wait_for(lambda: alive(srv) == 0)


# ------------------------------------------------- what connections inherit


def _server_side(client):
    """The server's own socket for client's connection (the server runs in this process)."""
    want = client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        finally:
            # PyPy's socket(fileno=) makes the fd blocking, and the dup shares the server's
            # file description: its O_NONBLOCK is put back (unless the server closed it)
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass
        try:
            if s.type == socket.SOCK_STREAM and s.getpeername() == want:
                return s
        except OSError:
            pass
        s.close()
    return None


@pytest.mark.parametrize("accept", ["dispatch", "reuseport"])
def test_connections_have_tcp_nodelay(make_server, engine, accept):
    """Set once on the listener, inherited by every accepted socket."""
    if engine != "cffi" and accept == "reuseport":
        pytest.skip("the python engine accepts through dispatch pipes only")
    srv = make_server(accept=accept, workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    s = _server_side(c.sock)
    assert s is not None
    try:
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        s.close()
        c.close()


@pytest.mark.parametrize("defer", [True, False])
def test_defer_accept(make_server, defer):
    """With TCP_DEFER_ACCEPT a connect that sends nothing is not accepted yet; its request is served."""
    srv = make_server(defer_accept=defer, workers=1)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        time.sleep(0.3)
        accepted = srv.stats()[0]["connections"]
        assert accepted == (0 if defer else 1)
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert status_of(data) == 200 and data.endswith(b"hello world\n")
        assert srv.stats()[0]["connections"] == 1
    finally:
        s.close()
