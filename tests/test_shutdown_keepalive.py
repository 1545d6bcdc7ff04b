"""A keep-alive connection busy with a response when a graceful stop begins (SIGTERM,
or SIGHUP: the old processes of a reload stop gracefully) closes soon after that
response is complete: not after its whole keep-alive timeout.  Its response went
out, complete, with the "Connection" its head was written with ("close" if the stop
came first: the connection's last response says so, RFC 9112 9.6); once stopping, the
connection waits only the drain an idle one gets at the stop (csrc/worker.c
begin_graceful_stop: one second for a next request, answered with "Connection:
close"), then closes.  Each test uses --keepalive-timeout 30 and --grace 60, and
wants EOF within 10 s of the response's end, and the server gone within 10 s
more: a connection kept for its keep-alive timeout fails it."""

import contextlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import free_port

CLI = [sys.executable, "-m", "minginx_cffi"]
BIG = 50 * (1 << 20)  # site_root's 50mib.bin
PROMPT = 10.0  # seconds: well below the keep-alive timeout (30) and the grace (60)

HELD_APP = """\
import os, time

DIR = os.path.dirname(os.path.abspath(__file__))


def wsgi(environ, start_response):
    open(os.path.join(DIR, "entered"), "w").close()
    for _ in range(400):  # until the test releases it (20 s at most)
        if os.path.exists(os.path.join(DIR, "release")):
            break
        time.sleep(0.05)
    body = b"held\\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


@contextlib.contextmanager
def serving(engine, *args, cwd=None):
    """A serve process listening: (process, port); killed on the way out if still there."""
    port = free_port()
    p = subprocess.Popen(
        CLI
        + ["serve", "--port", str(port), "--engine", engine, "--workers", "1"]
        + ["--keepalive-timeout", "30", "--grace", "60"]
        + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
    )
    try:
        assert p.stdout.readline()  # the banner: listening
        yield p, port
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def stop(p):
    """The server's exit status; it must come well before the keep-alive timeout."""
    return p.wait(PROMPT)


def read_response(s, buf):
    """One response with a Content-Length from s (buf: bytes already read); returns
    (head, body length, the bytes after it)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "EOF inside a response head: %r" % buf[:200]
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    assert length is not None, head
    got = len(rest)
    while got < length:
        chunk = s.recv(1 << 20)
        assert chunk, "EOF after %d of %d body bytes: the response was cut" % (got, length)
        got += len(chunk)
        rest = chunk
    extra = rest[len(rest) - (got - length) :] if got > length else b""
    return head, length, extra


def assert_eof_promptly(s, extra=b""):
    """The connection ends, with nothing more, within PROMPT seconds."""
    s.settimeout(PROMPT)
    try:
        more = s.recv(65536)
    except socket.timeout:
        pytest.fail("the connection stayed open %.0f s after its response (keep-alive)" % PROMPT)
    except ConnectionResetError:
        more = b""  # an end all the same, and the response was read whole before it
    assert extra + more == b"", extra + more


def start_download(port, request):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(request)
    first = s.recv(65536)  # under way, and held back by our small window
    assert first.startswith(b"HTTP/1.1 200"), first[:100]
    return s, first


GET_BIG = b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n"


def enter_held_handler(tmp_path, port):
    """GET /x of HELD_APP (in tmp_path), once its handler runs and holds: the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    for _ in range(400):
        if (tmp_path / "entered").exists():
            break
        time.sleep(0.05)
    assert (tmp_path / "entered").exists(), "the handler never ran"
    return s


def release_held_handler(tmp_path, s):
    """Let the handler go: its response comes whole, then the connection ends (the stop).
    Returns the response's head."""
    (tmp_path / "release").write_text("")
    head, length, extra = read_response(s, b"")
    assert head.startswith(b"HTTP/1.1 200") and length == len(b"held\n")
    assert_eof_promptly(s, extra)
    return head


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_download_in_flight_at_a_stop_closes_when_it_is_done(site_root, engine, sig):
    with serving(engine, "--root", str(site_root)) as (p, port):
        s, first = start_download(port, GET_BIG)
        p.send_signal(sig)
        time.sleep(0.3)  # the stop begins while the transfer waits on our window
        head, length, extra = read_response(s, first)
        assert length == BIG
        # begun before the stop: its "Connection" is not changed after the fact
        assert b"connection: close" not in head.lower()
        assert_eof_promptly(s, extra)
        s.close()
        assert stop(p) == 0


def test_a_pipelined_request_behind_it_is_answered_with_close(site_root, engine):
    """A request already received behind the one in flight is answered (its client
    sent it; "Connection: close" says there will be no other), then the end."""
    with serving(engine, "--root", str(site_root)) as (p, port):
        s, first = start_download(port, GET_BIG + b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        head, length, extra = read_response(s, first)
        assert length == BIG
        head, length, extra = read_response(s, extra)
        assert head.startswith(b"HTTP/1.1 200") and length == len(b"hello world\n")
        assert b"\r\nconnection: close" in head.lower()
        assert_eof_promptly(s, extra)
        s.close()
        assert stop(p) == 0


def test_a_handler_in_flight_at_a_stop_closes_when_it_is_done(tmp_path, engine):
    (tmp_path / "heldapp.py").write_text(HELD_APP)
    with serving(engine, "--wsgi", "heldapp:wsgi", "--threads", "2", cwd=str(tmp_path)) as (p, port):
        s = enter_held_handler(tmp_path, port)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the stop begins with the handler in flight
        head = release_held_handler(tmp_path, s)
        # its head is written after the stop began: the connection's last response says so
        # (RFC 9112 9.6); it said keep-alive, and the drain then closed it
        assert b"\r\nconnection: close" in head.lower(), head
        s.close()
        assert stop(p) == 0


def test_a_connection_accepted_with_the_stop_gets_the_drain_not_its_header_timeout(tmp_path, engine):
    """A connection whose fd reaches its worker in the same batch as the stop: its coroutine
    is made and queued but has not begun, so begin_graceful_stop (which sees coroutines
    that wait) passed it by, and its first wait was the whole header timeout (30 s here),
    holding the stop that long.  The worker is held in a handler (--threads 0: handlers
    run on its thread) while the connection is accepted (--no-defer-accept) and the stop
    sent, so both wait in its pipe together."""
    (tmp_path / "heldapp.py").write_text(HELD_APP)
    with serving(
        engine,
        "--wsgi",
        "heldapp:wsgi",
        "--threads",
        "0",
        "--no-defer-accept",
        "--header-timeout",
        "30",
        cwd=str(tmp_path),
    ) as (p, port):
        s = enter_held_handler(tmp_path, port)
        silent = socket.create_connection(("127.0.0.1", port), timeout=20)
        time.sleep(0.3)  # accepted by the main thread, its fd down the held worker's pipe
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the stop behind it
        release_held_handler(tmp_path, s)
        assert_eof_promptly(silent)
        s.close()
        silent.close()
        assert stop(p) == 0


def test_a_download_in_flight_at_a_reload_closes_when_it_is_done(site_root, engine):
    """SIGHUP: the old process stops gracefully, the new one serves."""
    with serving(engine, "--root", str(site_root)) as (p, port):
        s, first = start_download(port, GET_BIG)
        p.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        head, length, extra = read_response(s, first)
        assert length == BIG
        assert_eof_promptly(s, extra)
        s.close()
        p.send_signal(signal.SIGTERM)
        assert stop(p) == 0
