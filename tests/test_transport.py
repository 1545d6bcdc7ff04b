"""The transport seam (csrc/internal.h: struct mg_transport; csrc/transport.c, the plain socket's).

A connection's bytes move only through its transport (recv, sendv, sendfile or NULL, cork,
shutdown, pending), and the waiting only through the worker's backend (epoll.c, uring.c):
so a TLS transport can come in as a second table without the HTTP code changing.  What
that promises is checked here: no C file but the transport and the io_uring backend makes
a socket call on a connection, and a transport without sendfile (the shape a TLS one will
have; MINGINX_TEST_NO_SENDFILE=1 gives new connections one) still serves every file, whole
or in ranges, from a buffer read with pread, on both backends.
"""

import hashlib
import pathlib
import re

import pytest

from conftest import Conn, wait_for

CSRC = pathlib.Path(__file__).resolve().parent.parent / "csrc"

#: the files allowed to move a connection's bytes: the transport, and the io_uring
#: backend's RECV / SEND / SENDMSG SQEs (a raw transport's bytes, moved by the ring)
TRANSPORT_FILES = {"transport.c"}
#: a call of the C library's (not a transport's op through co->conn->tp->...)
SOCKET_CALL = re.compile(
    r"(?<!->)(?<!\.)\b(recv|recvfrom|recvmsg|send|sendto|sendmsg|sendfile|shutdown)\s*\("
)
BACKEND_STATE = re.compile(
    r"->(uring|epfd)\b|\buring_(new|free|wait|drain|recv|sendv|poll|park|unpark|\w*hangup)\("
)


def code_lines(path):
    """(line number, text) of a C file with its comments and string literals blanked."""
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    return enumerate(text.splitlines(), 1)


def test_only_the_transport_calls_recv_send_sendfile_or_shutdown():
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in sorted(CSRC.glob("*.c"))
        if p.name not in TRANSPORT_FILES
        for n, line in code_lines(p)
        if SOCKET_CALL.search(line)
    ]
    assert offenders == []


def test_only_the_backends_know_which_backend_runs():
    """The backend is chosen once (worker_alloc): no 'if (w->uring)' anywhere else."""
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in sorted(CSRC.glob("*.c"))
        if p.name not in {"uring.c", "epoll.c"}
        for n, line in code_lines(p)
        if BACKEND_STATE.search(line)
    ]
    assert offenders == []


@pytest.fixture
def nosendfile_server(make_server, engine, monkeypatch):
    if engine != "cffi":
        pytest.skip("a C engine hook (the port's transport is its socket)")
    monkeypatch.setenv("MINGINX_TEST_NO_SENDFILE", "1")
    return make_server(workers=1, open_file_cache=0)


def test_a_transport_without_sendfile_serves_whole_files_from_a_buffer(nosendfile_server, site_root):
    c = Conn(nosendfile_server.port)
    for name in ("1mib.bin", "index.html", "50mib.bin"):
        r = c.request("GET", "/" + name)
        assert r.status == 200
        assert hashlib.sha256(r.body).digest() == hashlib.sha256((site_root / name).read_bytes()).digest()
    r = c.request("HEAD", "/1mib.bin")
    assert r.status == 200 and r.body == b""


def test_a_transport_without_sendfile_serves_ranges(nosendfile_server, site_root):
    data = (site_root / "1mib.bin").read_bytes()
    c = Conn(nosendfile_server.port)
    for first, last in ((0, 0), (100, 70000), (300000, (1 << 20) - 1)):
        r = c.request("GET", "/1mib.bin", headers={"Range": f"bytes={first}-{last}"})
        assert r.status == 206
        assert r.body == data[first : last + 1]


def test_bytes_out_counts_the_connections_bytes(nosendfile_server, site_root):
    """co->conn->sent and bytes_out count what the transport took (under TLS: plaintext)."""
    srv = nosendfile_server
    before = sum(w["bytes_out"] for w in srv.stats())
    c = Conn(srv.port)
    r = c.request("GET", "/1mib.bin")
    assert r.status == 200
    # (the client may have read the last piece before the worker counted it: io_uring's
    # completion comes at the worker's next wait)
    assert wait_for(lambda: sum(w["bytes_out"] for w in srv.stats()) - before > 1 << 20)
    after = sum(w["bytes_out"] for w in srv.stats())
    assert after - before < (1 << 20) + 1024  # the body and one head
