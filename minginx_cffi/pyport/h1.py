"""h1.py - the exchange over HTTP/1.1 (csrc/exchange.h, csrc/h1.c): the port's only writer of HTTP/1.1.

Same shape as the C.  Every answer (static files, stats, error pages, the 503, the 504,
App/WSGI and ASGI handlers) goes through an Exchange: ``respond(status, fields,
length)`` with fields as (name, value) pairs (the server's own, or a handler's as
response.handler_fields checked them), then ``body(piece, last)`` pieces, ``file(fd,
off, length)``, or ``end()``.  respond() keeps the status, the head's bytes and the
request count (the access log's fields) in one place; this module writes the status
line, Server, Date, the field lines, the framing (decided here from the status, the
length, HEAD and the client's version, never from the fields) and Connection, and the
chunk framing of a stream.  The head leaves with the first piece (one send).
"""

import time

from .http import http_date, http_reason
from .io import MG_CORK_BYTES, send_async, sendfile_async, set_cork

SERVER = b"Server: minginx-cffi\r\n"
FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE = range(4)  # csrc/h1.c mg_framing
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def date_line(w):
    """The Date field of the current second, cached on the worker (C: mg_date_cache)."""
    sec = int(time.time())
    if sec != w.date_sec:
        w.date_sec = sec
        w.date_hdr = b"Date: %s\r\n" % http_date(sec).encode()
    return w.date_hdr


def status_line(status, reason=None):
    """b"HTTP/1.1 S R\\r\\n"; reason None or empty: the standard phrase."""
    return b"HTTP/1.1 %d %s\r\n" % (status, reason or http_reason(status).encode("latin-1"))


def field_lines(fields):
    """(name, value) pairs as HTTP/1.1 field lines."""
    return b"".join([b"%s: %s\r\n" % f for f in fields])


def head_text(status, reason, fields):
    """What the C test hook mg_test_head writes: the status line and the field lines
    (tests/fuzz_response.py compares them)."""
    return status_line(status, reason) + field_lines(fields)


def parse_lines(lines):
    """--header's text as the server hands both engines (config.header_lines: b"Name:
    value\r\n" lines, checked there) as (name, value) pairs (C: front.c added_fields)."""
    out = []
    for line in lines.split(b"\n"):
        line = line.rstrip(b"\r")
        if line:
            name, _, value = line.partition(b":")
            out.append((name, value.lstrip(b" \t")))
    return out


class Exchange:
    """One request's answer (C: mg_exchange).  co None: detached (worker.py's 503): the
    bytes gather in out instead of being sent."""

    __slots__ = (
        "co",
        "w",
        "keep_alive",
        "head_only",
        "minor_version",
        "status",
        "head_bytes",
        "_framing",
        "_head",
        "out",
    )

    def __init__(self, co, keep_alive=False, head_only=False, minor_version=1, w=None):
        self.co = co
        self.w = co.worker if co is not None else w
        self.keep_alive = keep_alive
        self.head_only = head_only
        self.minor_version = minor_version
        self.status = 0
        self.head_bytes = 0
        self._framing = FRAME_NONE
        self._head = None
        self.out = b""

    def respond(self, status, fields=(), length=-1, reason=None, added=()):
        """The head: status, the server's own fields (or a handler's checked ones), then
        --header's (added); length -1: not known before the end (a stream)."""
        if self.w is not None and self.w.stopping:
            self.keep_alive = False  # a graceful stop began: this is the last (C: h1.c respond)
        if 100 <= status < 200 or status in (204, 304):
            framing = FRAME_NONE
        elif length >= 0:
            framing = FRAME_LENGTH
        elif self.head_only:
            framing = FRAME_NONE  # a HEAD of a stream: its length is not known
        elif self.minor_version >= 1:
            framing = FRAME_CHUNKED
        else:
            framing = FRAME_CLOSE  # HTTP/1.0: the close ends the body
            self.keep_alive = False
        out = [status_line(status, reason), SERVER, date_line(self.w)]
        out += [b"%s: %s\r\n" % f for f in fields]
        out += [b"%s: %s\r\n" % f for f in added]
        if framing == FRAME_LENGTH:
            out.append(b"Content-Length: %d\r\n" % length)
        elif framing == FRAME_CHUNKED:
            out.append(b"Transfer-Encoding: chunked\r\n")
        out.append(b"Connection: keep-alive\r\n\r\n" if self.keep_alive else b"Connection: close\r\n\r\n")
        head = b"".join(out)
        self._framing = framing
        self._head = head
        self.status = status
        self.head_bytes = len(head)
        co = self.co
        if co is not None:  # the access log's fields, and the count: here once
            co.status = status
            co.head_bytes = len(head)
            self.w.stats["requests"] += 1

    def body(self, piece=b"", last=True):
        """A piece of the body (none for a HEAD, 204, 304); last: it ends the body."""
        if self.head_only or self._framing == FRAME_NONE:
            piece = b""
        out = self._head or b""
        self._head = None
        if self._framing == FRAME_CHUNKED:
            if piece:
                out += b"%x\r\n%s\r\n" % (len(piece), piece)
            if last:
                out += b"0\r\n\r\n"
        elif piece:
            out += piece
        if self.co is None:
            self.out += out
        elif out:  # a send of nothing would wait for a writability that never comes
            yield from send_async(self.co, out)

    def end(self):
        return self.body(b"", True)

    def file(self, fd, off, length):
        """[off, off + length) of an open file as the whole body; False if the file gave
        fewer bytes (the length was promised: the connection must close)."""
        if self.head_only or length == 0:
            yield from self.end()
            return True
        co = self.co
        head, self._head = self._head or b"", None
        # cork the head and the first piece only (csrc/h1.c exchange_file says why)
        first = min(length, MG_CORK_BYTES - len(head))
        set_cork(co, True)
        if head:
            yield from send_async(co, head)
        n = yield from sendfile_async(co, fd, off, first)
        set_cork(co, False)
        if n == first and first < length:
            n += yield from sendfile_async(co, fd, off + first, length - first)
        return n == length

    def continue_(self):
        """100 Continue before a request body is read (never to HTTP/1.0: the caller)."""
        co = self.co
        yield from send_async(co, CONTINUE)
        co.log_sent0 = co.sent  # an interim response: not this response's bytes
