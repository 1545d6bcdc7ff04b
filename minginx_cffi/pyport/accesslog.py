"""accesslog.py - the access log: a line per response, from per-worker buffers through
one writer thread (csrc/accesslog.c).

A worker appends each line to its own list (no lock per line) and hands the
list to the writer thread once it holds MG_ALOG_BUF bytes, or at the end of
a loop iteration once its first line is MG_ALOG_FLUSH_MS old.  The writer
writes what is queued; the queue is bounded (MG_ALOG_MAX_QUEUED bytes) and a
hand-over past the bound is dropped and counted (stats["log_dropped"]).
Lines a write refuses (a full disk) are dropped, said once per failing spell,
and counted in `unclaimed` until a worker adds them to its log_dropped
(alog_tick); a write cut inside a line has the next write start with a
newline.  reopen() has the writer write what is queued to the old fd, then
open the path again and swap.  The lines are the C engine's, byte for byte: nginx's
combined with its escaping, or JSON (see csrc/accesslog.c).
"""

import logging
import os
import select
import stat
import threading
import time

from .front import conn_client

MG_ALOG_BUF = 64 * 1024
MG_ALOG_FLUSH_MS = 150
MG_ALOG_MAX_QUEUED = 4 << 20
STUCK = 1.0  # seconds: at shutdown, an fd that takes nothing this long
PIPE_BUF = select.PIPE_BUF
MG_MAX_REQUEST_LINE = 8192

FORMATS = ("combined", "json")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def log_error(msg):
    """A record of the error log at level error, as the C engine's mg_log writes it
    (the "minginx_cffi" logger: under ``serve``, log.py's layout on stderr)."""
    logging.getLogger("minginx_cffi").error("%s", msg)


def _escape_table():
    """nginx's ngx_http_log_escape: '"', '\\', and bytes outside 0x20..0x7e as \\xHH."""
    t = {}
    for c in range(256):
        if c < 0x20 or c >= 0x7F or c in (0x22, 0x5C):
            t[c] = b"\\x%02X" % c
    return t


_ESC = _escape_table()
_ESC_BYTES = bytes(_ESC)


def escape(s):
    """Combined's escaping of the bytes s."""
    if not s.translate(None, _ESC_BYTES) == s:
        return b"".join(_ESC.get(c) or bytes((c,)) for c in s)
    return s


def escape_json(s):
    """A JSON string's contents from bytes: '"' and '\\' escaped, controls and 0x7f as
    \\u00hh, valid UTF-8 kept, any other byte as \\u00hh (what C's put_json writes)."""
    text = s.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        o = ord(ch)
        if 0x20 <= o < 0x7F:
            out.append("\\" + ch if ch in '"\\' else ch)
        elif o < 0x20 or o == 0x7F:
            out.append("\\u%04x" % o)
        elif 0xDC80 <= o <= 0xDCFF:
            out.append("\\u00%02x" % (o - 0xDC00))
        else:
            out.append(ch)
    return "".join(out).encode("utf-8")


def time_local(sec):
    """$time_local: "28/Nov/2026:03:01:59 +0000"."""
    tm = time.localtime(sec)
    off = (tm.tm_gmtoff or 0) // 60
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return (
        "%02d/%s/%04d:%02d:%02d:%02d %s%02d%02d"
        % (
            tm.tm_mday,
            _MONTHS[tm.tm_mon - 1],
            tm.tm_year,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            sign,
            off // 60,
            off % 60,
        )
    ).encode("ascii")


def request_line(data):
    """The request line as received: the bytes before the first CR or LF (at most 8 KiB)."""
    data = bytes(data[:MG_MAX_REQUEST_LINE])
    cut = len(data)
    for sep in (b"\r", b"\n"):
        i = data.find(sep)
        if 0 <= i < cut:
            cut = i
    return data[:cut] or None


def format_line(json, addr, tl, request, status, body_bytes, referer, ua, time_us):
    """One line, as csrc/accesslog.c emit() writes it."""
    if not json:
        return b'%s - - [%s] "%s" %d %d "%s" "%s"\n' % (
            escape(addr),
            tl,
            escape(request) if request is not None else b"-",
            status,
            body_bytes,
            escape(referer) if referer is not None else b"-",
            escape(ua) if ua is not None else b"-",
        )
    ms = max(0, time_us) // 1000
    return (
        b'{"remote_addr":"%s","remote_user":"","time_local":"%s","request":"%s",'
        b'"status":%d,"body_bytes_sent":%d,"http_referer":"%s","http_user_agent":"%s",'
        b'"request_time":%d.%03d}\n'
    ) % (
        escape_json(addr),
        tl,
        escape_json(request) if request is not None else b"",
        status,
        body_bytes,
        escape_json(referer) if referer is not None else b"",
        escape_json(ua) if ua is not None else b"",
        ms // 1000,
        ms % 1000,
    )


class AccessLog:
    """The writer thread and its bounded queue: one per engine."""

    def __init__(self, fd, path, fmt):
        if fmt not in FORMATS:
            raise ValueError("access log format must be one of: %s" % ", ".join(FORMATS))
        self.json = fmt == "json"
        self.fd = os.dup(fd)
        os.set_inheritable(self.fd, False)
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        self.path = path
        self.cond = threading.Condition()
        self.queue = []  # [(data, lines)] under cond
        self.queued = 0  # bytes queued or being written
        self.reopen_asked = False
        self.stop_asked = False
        self.dropped_late = 0
        self.write_error = False
        self.torn = False  # writer only: a failed write left part of a line
        self.unclaimed = 0  # lines a write refused, not yet in a log_dropped
        self.gave_up = False  # stuck at shutdown: the rest is dropped at once
        self.thread = threading.Thread(target=self._run, name="minginx-access-log", daemon=True)
        self.thread.start()

    # -- the workers' side ---------------------------------------------------

    def claim_dropped(self, w):
        """The lines the writer could not write, into worker w's log_dropped."""
        if self.unclaimed:
            with self.cond:
                n, self.unclaimed = self.unclaimed, 0
            w.stats["log_dropped"] += n

    def hand_over(self, w):
        """Queue worker w's lines (or drop them past the bound)."""
        lines = w.alog_lines
        if not lines:
            return
        data = b"".join(lines)
        w.alog_lines = []
        w.alog_bytes = 0
        with self.cond:
            if self.queued + len(data) > MG_ALOG_MAX_QUEUED:
                w.stats["log_dropped"] += len(lines)
                return
            self.queue.append((data, len(lines)))
            self.queued += len(data)
            self.cond.notify()

    # -- the writer ----------------------------------------------------------

    def reopen(self):
        with self.cond:
            self.reopen_asked = True
            self.cond.notify()

    def _stopping(self):
        with self.cond:
            return self.stop_asked

    def _write(self, data):
        """Write data whole; returns the lines not written (dropped)."""
        view = memoryview(data)
        idle_since = None
        while view:
            if self.gave_up:
                return bytes(view).count(b"\n")
            n = len(view)
            if not self.regular:
                try:
                    ready = select.select([], [self.fd], [], 0.2)[1]
                except InterruptedError:
                    ready = []
                if not ready:
                    if self._stopping():
                        now = time.monotonic()
                        if idle_since is None:
                            idle_since = now
                        elif now - idle_since >= STUCK:
                            self.gave_up = True
                    continue
                n = min(n, PIPE_BUF)
            try:
                if self.torn:  # the end of the line a failed write cut
                    self.torn = os.write(self.fd, b"\n") != 1
                    continue
                k = os.write(self.fd, view[:n])
            except (InterruptedError, BlockingIOError):
                continue
            except OSError as e:
                if not self.write_error:
                    self.write_error = True
                    log_error(
                        "minginx-cffi: access log: write: %s; lines are dropped while it fails" % e.strerror
                    )
                if len(view) < len(data) and data[len(data) - len(view) - 1] != 0x0A:
                    self.torn = True  # the cut line is dropped (counted); its start stays
                return bytes(view).count(b"\n")
            view = view[k:]
            idle_since = None
        self.write_error = False
        return 0

    def _reopen_file(self):
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            log_error(
                "minginx-cffi: access log: open(%s): %s; still writing to the old file"
                % (self.path, e.strerror)
            )
            return
        os.close(self.fd)
        self.fd = fd
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        self.torn = False  # a cut line stays in the old file

    def _run(self):
        cond = self.cond
        while True:
            with cond:
                while not self.queue and not self.reopen_asked and not self.stop_asked:
                    cond.wait()
                batch, self.queue = self.queue, []
                reopen, self.reopen_asked = self.reopen_asked, False
            for data, _ in batch:
                lost = self._write(data)
                with cond:
                    self.queued -= len(data)
                    if self.gave_up:
                        self.dropped_late += lost
                    else:
                        self.unclaimed += lost
            if reopen and self.path:
                self._reopen_file()
            with cond:
                if self.stop_asked and not self.queue:
                    return

    def close(self):
        """Write every queued line, then stop the writer (after the workers handed over)."""
        with self.cond:
            self.stop_asked = True
            self.cond.notify()
        self.thread.join()
        if self.dropped_late:
            log_error(
                "minginx-cffi: access log: %d lines dropped at shutdown: the log took nothing "
                "for %d ms" % (self.dropped_late, STUCK * 1000)
            )
        if self.unclaimed:  # the workers have stopped: no stats will count these
            log_error(
                "minginx-cffi: access log: %d lines dropped at shutdown: the writes failed" % self.unclaimed
            )
        os.close(self.fd)


# -- the worker's appenders (C: alog_request, alog_rejected, alog_tick) ----------


def _append(w, line):
    if w.alog_bytes + len(line) > MG_ALOG_BUF and w.alog_lines:
        w.alog.hand_over(w)
    if not w.alog_lines:
        w.alog_since = w.now
    w.alog_lines.append(line)
    w.alog_bytes += len(line)
    w.stats["log_lines"] += 1


def _time_local(w):
    sec = int(time.time())
    if sec != w.alog_sec:
        w.alog_sec = sec
        w.alog_time = time_local(sec)
    return w.alog_time


def alog_request(co, req, buf, status):
    """The line for the response just sent on co: req None when the head was not
    parsed; buf the connection's bytes (the request line leads them), or None."""
    w = co.worker
    lg = w.alog
    request = request_line(buf) if buf else None
    sent = co.sent - co.log_sent0
    head = co.head_bytes if co.head_bytes is not None else 0
    body = sent - head if status and sent > head else 0
    referer = ua = None
    if req is not None:
        for name, value, _ in req.headers:
            n = len(name)
            if n == 7 and referer is None and name.lower() == b"referer":
                referer = value
            elif n == 10 and ua is None and name.lower() == b"user-agent":
                ua = value
    time_us = int((time.monotonic() - co.log_start) * 1e6) if lg.json else 0
    _append(
        w,
        format_line(
            lg.json, conn_client_addr(co), _time_local(w), request, status or 499, body, referer, ua, time_us
        ),
    )


def alog_rejected(w, sock_fd, status, body_bytes):
    """The line for a connection turned away without a coroutine (503 busy)."""
    import socket

    addr = b"-"
    try:
        s = socket.socket(fileno=os.dup(sock_fd))
        try:
            addr = _addr_text(s)
        finally:
            s.close()
    except OSError:
        pass
    _append(w, format_line(w.alog.json, addr, _time_local(w), None, status, body_bytes, None, None, 0))


def alog_tick(w, force=False):
    """The loop's end of iteration: hand over lines MG_ALOG_FLUSH_MS old (force: any).
    Returns seconds until the pending lines are due, or None."""
    if w.alog is None:
        return None
    w.alog.claim_dropped(w)
    if not w.alog_lines:
        return None
    age = w.now - w.alog_since
    if force or age >= MG_ALOG_FLUSH_MS / 1000:
        w.alog.hand_over(w)
        return None
    return MG_ALOG_FLUSH_MS / 1000 - age


def _addr_text(sock):
    import socket

    if sock.family == socket.AF_UNIX:
        return b"unix:"  # as nginx writes a Unix-socket client's $remote_addr
    try:
        return sock.getpeername()[0].encode("ascii") or b"-"
    except OSError:
        return b"-"


def conn_client_addr(co):
    """The client address the log prints (C: conn_client_addr): THE CLIENT of the
    request, so with --proxy-headers a trusted peer's X-Forwarded-For / Forwarded
    (front.py), else the peer; "unix:" on a Unix socket, "-" if unknown."""
    addr = conn_client(co)[0]
    return addr.encode("ascii", "replace") if addr else b"-"
