"""io.py - the coroutine's system calls: recv_async, send_async, sendfile_async, TCP_CORK.

Generators used with ``yield from``: try the call (sockets are non-blocking);
on EAGAIN park on the fd (``yield MG_YIELD_READ`` / ``MG_YIELD_WRITE``, back
to schedule()) until wake_fd() or a timer resumes us.  Errors are raised:
TimeoutError when the coroutine's timer fired, and the socket's own
OSError otherwise (csrc/io.c returns -errno instead).
"""

import errno
import os
import socket

from ..trace import EV_RECV_ASYNC, EV_SEND_ASYNC, EV_SENDFILE_ASYNC
from .coroutine import MG_TIMER_SEND, MG_YIELD_READ, MG_YIELD_READY, MG_YIELD_WRITE

MG_SEND_SLICE = 1 << 20
RECV_SIZE = 65536  # bytes one read asks for at most: a request head, a body's slice
MG_CORK_BYTES = 256 * 1024  # head + file bytes sent under TCP_CORK (static.py)
MG_SENDFILE_CHUNK = 256 * 1024  # bytes per os.sendfile() call, as lighttpd


def io_park(co, reason):
    if co.timed_out:
        raise TimeoutError
    co.trace_yield = EV_RECV_ASYNC  # a read's wait: "recv_async -> EAGAIN, yield (read)"
    yield reason


def trace_errno(e):
    """The -errno csrc/io.c returns where the port raises e."""
    if isinstance(e, TimeoutError) and not e.errno:
        return -errno.ETIMEDOUT  # the coroutine's timer (io_park), as io.c's -ETIMEDOUT
    return -(e.errno or errno.EIO)


def recv_now(co, n):
    """One recv(2) of at most n bytes (b"" when the peer closed; BlockingIOError on EAGAIN),
    through the worker's scratch buffer (worker.recv_view).  socket.recv(n) allocates its n
    bytes before the call, answered or not: on PyPy in the GC's nursery, so at 64 KiB a read
    a minor collection came every 15 reads and major ones after them (docs/side-by-side.md,
    "On PyPy"); recv_into allocates only the bytes that came."""
    view = co.worker.recv_view
    got = co.sock.recv_into(view, min(n, RECV_SIZE))
    return view[:got].tobytes()


def recv_async(co, n):
    """Bytes read (b"" when the peer closed)."""
    while True:
        try:
            data = recv_now(co, n)
        except BlockingIOError:
            yield from io_park(co, MG_YIELD_READ)
            continue
        except OSError as e:
            if co.worker.trace:
                co.worker.trace_push(EV_RECV_ASYNC, co, co.fd, trace_errno(e))
            raise
        if co.worker.trace:
            co.worker.trace_push(EV_RECV_ASYNC, co, co.fd, len(data))
        return data


def send_async(co, data):
    """Send all of data; returns its length."""
    w = co.worker
    send = co.sock.send
    view = memoryview(data)
    total = len(data)
    progressed = True
    try:
        while view:
            try:
                n = send(view)
            except BlockingIOError:
                if progressed:
                    w.timer_set(co, MG_TIMER_SEND)
                progressed = False
                yield from io_park(co, MG_YIELD_WRITE)
                continue
            view = view[n:]
            w.stats["bytes_out"] += n
            co.sent += n
            progressed = True
    except OSError as e:
        if w.trace:
            w.trace_push(EV_SEND_ASYNC, co, co.fd, trace_errno(e))
        raise
    if co.timer_class == MG_TIMER_SEND:
        w.timer_clear(co)
    if w.trace:
        w.trace_push(EV_SEND_ASYNC, co, co.fd, total)
    return total


def sendfile_async(co, file_fd, offset, count):
    """Send count bytes of file_fd from offset with os.sendfile; returns the bytes sent."""
    w = co.worker
    fd = co.fd
    left = count
    since_yield = 0
    progressed = True
    try:
        while left > 0:
            try:
                n = os.sendfile(fd, file_fd, offset, min(left, MG_SENDFILE_CHUNK))
            except BlockingIOError:
                since_yield = 0
                if progressed:
                    w.timer_set(co, MG_TIMER_SEND)
                progressed = False
                yield from io_park(co, MG_YIELD_WRITE)
                continue
            if n == 0:
                break  # the file got shorter under us
            offset += n
            left -= n
            since_yield += n
            w.stats["bytes_out"] += n
            co.sent += n
            progressed = True
            if since_yield >= MG_SEND_SLICE and w.ready:
                since_yield = 0
                yield MG_YIELD_READY
    except OSError as e:
        if w.trace:
            w.trace_push(EV_SENDFILE_ASYNC, co, co.fd, trace_errno(e))
        raise
    if co.timer_class == MG_TIMER_SEND:
        w.timer_clear(co)
    if w.trace:
        w.trace_push(EV_SENDFILE_ASYNC, co, co.fd, min(count - left, 0x7FFFFFFF))
    return count - left


def set_cork(co, on):
    if co.sock.family != socket.AF_UNIX:  # --uds: no TCP, nothing to cork (io.c ignores it)
        co.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)


def send_early(fd, data):
    """A connection turned away before it has a coroutine (the 503 of --max-connections),
    as C's transport send_early: what the client sent is read first (a close with unread
    input is a RST, which can make its TCP drop the answer), then one non-blocking send,
    then our FIN.  Bytes sent; OSError if the send failed."""
    s = socket.socket(fileno=os.dup(fd))
    try:
        for _ in range(16):
            try:
                if len(s.recv(4096, socket.MSG_DONTWAIT)) < 4096:
                    break
            except OSError:
                break
        # PyPy's socket module has no MSG_NOSIGNAL; Python ignores SIGPIPE anyway
        n = s.send(data, socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0))
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return n
    finally:
        s.close()
