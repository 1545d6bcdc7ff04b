"""conn.py - a connection's life: conn_entry, the coroutine that reads, parses and answers (csrc/conn.c).

    for each request on the connection:
        read until parse_http() has a whole head      (recv_async yields on EAGAIN)
        read the body: kept for a handler, else discarded (never parsed as a request)
        a Python handler, if any, then the static files answer
        the bytes after this request are the next one (pipelining)

A Python handler is called right here with --threads 0: a generator's
frame runs on the worker thread's own stack, so the C engine's detour
through the scheduler is not needed; with --threads N it goes to a handler
thread (worker.call_python, MG_YIELD_PYTHON).  The handler protocol is the
same (minginx_cffi/_dispatch.py).  An ASGI app's rounds go to the event loop
(asgiport.py), the coroutine parked meanwhile.
"""

import contextvars
import socket
import time
import traceback

from .. import _dispatch
from ..trace import (
    EV_ACCEPT,
    EV_DISPATCH,
    EV_ENTRY,
    EV_FD_BATCH,
    EV_HANDLER_DONE,
    EV_PARSE_HTTP,
    EV_RECV_ASYNC,
    EVENTS,
    json_fields,
    request_text,
)
from .accesslog import alog_request
from .asgiport import asgi_request
from .coroutine import (
    MG_DRAIN_IDLE,
    MG_TIMER_DRAIN,
    MG_TIMER_HEADER,
    MG_TIMER_KEEPALIVE,
    MG_TIMER_LINGER,
    MG_YIELD_READ,
)
from .front import conn_client, conn_peer, request_client
from .h1 import Exchange
from .http import MG_FORM_ASTERISK, MG_FORM_AUTHORITY, Chunked, http_find_head_end, parse_http
from .io import RECV_SIZE, io_park, recv_async, recv_now, trace_errno
from .response import Refused, body_length, check_status, handler_fields
from .static import send_error, send_gateway_timeout, static_serve, static_try
from .worker import HandlerTimedOut, call_python, close_later, handler_raised


class ConnView:
    """What a dispatcher sees (the C engine's CallView), valid during the call."""

    __slots__ = ("_req", "_co", "method", "raw_path", "query", "body", "minor_version")

    def __init__(self, co, req, body):
        self._co = co
        self._req = req
        self.method = req.method.decode("ascii")
        self.raw_path = req.path
        self.query = req.query
        self.body = body
        self.minor_version = req.minor_version

    def header_pairs(self, lower=False):
        if lower:
            return [(n.lower(), v) for n, v, _ in self._req.headers]
        return [(n, v) for n, v, _ in self._req.headers]

    @property
    def client(self):
        """(address, port): the peer, or with --proxy-headers the forwarded client (port 0)."""
        return conn_client(self._co)[:2]

    @property
    def scheme(self):
        return conn_client(self._co)[2]

    @property
    def server_port(self):
        if self._co.sock.family == socket.AF_UNIX:
            return 0
        return self._co.sock.getsockname()[1]

    @property
    def worker(self):
        return self._co.worker.index

    def close(self):
        pass


def _lingering_close(co, buf):
    """Stop sending, then read and drop for a moment so no RST destroys our response."""
    try:
        co.sock.shutdown(socket.SHUT_WR)
        co.worker.timer_set(co, MG_TIMER_LINGER)
        total = 0
        while total < (1 << 20):
            data = yield from recv_async(co, RECV_SIZE)
            if not data:
                break
            total += len(data)
    except OSError:
        pass


def _body_recv(co, size):
    """One read of a body under its own timeout (C: body_recv): the header
    timeout armed afresh per read; raises TimeoutError, ConnectionResetError."""
    co.worker.timer_set(co, MG_TIMER_HEADER)
    data = yield from recv_async(co, size)
    if not data:
        raise ConnectionResetError
    return data


def _read_body(x, req, buf, head, keep, max_body):
    """The body after the head: (status, body).  buf keeps what follows it.
    A body that stops arriving for header_timeout is (408, b"")."""
    co = x.co
    try:
        return (yield from _read_body_timed(x, req, buf, head, keep, max_body))
    except TimeoutError:
        return 408, b""
    finally:
        co.worker.timer_clear(co)


def _read_body_timed(x, req, buf, head, keep, max_body):
    co = x.co
    if not req.chunked and req.content_length <= 0:
        return 0, b""
    if not req.chunked and req.content_length > max_body:
        return 413, b""
    # never a 1xx to HTTP/1.0 (RFC 9110 sections 10.1.1 and 15.2)
    if req.expect_continue and req.minor_version >= 1 and len(buf) == head:
        yield from x.continue_()
    parts = []
    if not req.chunked:
        left = req.content_length
        while True:
            take = min(len(buf) - head, left)
            if keep and take:
                parts.append(bytes(buf[head : head + take]))
            del buf[head : head + take]
            left -= take
            if left == 0:
                return 0, b"".join(parts)
            buf += yield from _body_recv(co, min(RECV_SIZE, left))
    dec = Chunked(max_body)
    while True:
        st, out, consumed = dec.decode(bytes(buf[head:]))
        if st > 1:
            return st, b""
        if keep and out:
            parts.append(out)
        del buf[head : head + consumed]
        if st == 1:
            return 0, b"".join(parts)
        buf += yield from _body_recv(co, RECV_SIZE)


_ERROR_500_FIELDS = handler_fields(_dispatch.ERROR_500_FIELDS)[0]


def _python_request(x, req, body, dispatch):
    """Run the handler; returns 1 (fall through), 0 (answered: x.keep_alive cleared when the
    connection must close).

    The head is checked and framed by response.py as csrc/pycall.c +
    csrc/response.c do: a refused head is a 500, a body longer than its
    Content-Length is cut to it, a short one or a stream that raises closes
    the connection (no terminating chunk), and the iterator is always closed."""
    co = x.co
    w = co.worker
    view = ConnView(co, req, body)
    w.stats["py_calls"] += 1
    w.stats["py_batches"] += 1
    log = _dispatch.log
    head_only = req.method == b"HEAD"
    # the rounds may run on different handler threads: one context for the request
    run = contextvars.Context().run if w.pool is not None else _run_inline
    try:
        result = yield from call_python(co, run, dispatch, view, late=_close_result)
    except HandlerTimedOut:
        yield from send_gateway_timeout(x)
        raise  # conn_entry closes the connection
    except GeneratorExit:
        raise  # destroyed while the round ran (shutdown)
    except BaseException:  # a handler's own raise, whatever its class (see _bridge.Bridge)
        log.exception("minginx-cffi: handler for %s %s raised", view.method, view.raw_path.decode("latin-1"))
        result = (500, b"", _dispatch.ERROR_500_FIELDS, _dispatch.ERROR_500_BODY, 0)
    if result is _dispatch.FALLTHROUGH:
        return 1
    it = first = None
    try:
        status, reason, fields, body, flags = result
        check_status(status, reason)
        lines, length, close = handler_fields(fields)
        if isinstance(body, (bytes, bytearray, memoryview)):
            body = bytes(body)
            stream = False
        else:
            it = iter(body)
            stream = True
            first = None if head_only else (yield from call_python(co, run, _dispatch.next_piece, it))
            if first is None and not head_only:
                stream = False  # an empty iterable: no stream after all
                body = b""
    except HandlerTimedOut as e:  # the first piece of a stream took too long
        close_later(co, it, e.job, run)
        yield from send_gateway_timeout(x)
        raise
    except GeneratorExit:
        raise
    except BaseException as e:
        why = str(e) if isinstance(e, Refused) else traceback.format_exc().rstrip()
        log.error(
            "minginx-cffi: handler for %s %s: response refused: %s",
            view.method,
            view.raw_path.decode("latin-1"),
            why,
        )
        if it is not None:
            _dispatch.close_iter(it)
        it = None
        status, reason, lines, length, close = 500, b"", _ERROR_500_FIELDS, -1, False
        body, flags, stream = _dispatch.ERROR_500_BODY, 0, False
    try:
        if flags & _dispatch.RESP_CLOSE or close:
            x.keep_alive = False
        first_len = (len(first) if first is not None else 0) if stream else len(body)
        length, skip, must_close = body_length(status, length, stream, first_len, head_only)
        if must_close:
            x.keep_alive = False
        x.respond(status, lines, length, reason)
        where = None
        if skip:
            yield from x.end()
            return 0
        sent = 0
        piece = body if not stream else first
        while piece is not None:
            if length >= 0 and sent + len(piece) > length:
                piece = piece[: length - sent]
                where = "the body is longer than its Content-Length: cut to it, connection closed"
            sent += len(piece)
            yield from x.body(piece, False)
            if where or not stream:
                break
            try:
                piece = yield from call_python(co, run, _dispatch.next_piece, it)
            except (HandlerTimedOut, GeneratorExit):
                raise
            except BaseException:
                log.error(
                    "minginx-cffi: response iterator of %s %s raised mid-stream; closing the connection:\n%s",
                    view.method,
                    view.raw_path.decode("latin-1"),
                    traceback.format_exc().rstrip(),
                )
                x.keep_alive = False
                return 0
        if where is None and length >= 0 and sent < length:
            where = "the body is shorter than its Content-Length: connection closed"
        if where is not None:
            log.error(
                "minginx-cffi: handler for %s %s: %s", view.method, view.raw_path.decode("latin-1"), where
            )
            x.keep_alive = False
            return 0
        yield from x.end()
        return 0
    finally:
        if it is not None:
            close_later(co, it, co.py_job or _timed_out_job(), run)


def _run_inline(fn, *args):
    try:
        return fn(*args)
    except GeneratorExit as e:  # the handler's own, not our coroutine being closed
        raise handler_raised(e) from e


def _timed_out_job():
    """The orphaned job of the HandlerTimedOut being handled, if that is what ends us."""
    import sys

    e = sys.exc_info()[1]
    return e.job if isinstance(e, HandlerTimedOut) else None


def _close_result(result):
    """An orphaned dispatch's late result: close its body iterator, if it has one."""
    if (
        isinstance(result, tuple)
        and len(result) == 5
        and not isinstance(result[3], (bytes, bytearray, memoryview))
    ):
        _dispatch.close_iter(result[3])


TRACE_JSON_MAX = 200
TRACE_JSON_HEAD = 12


def _find_dispatch(ring, fd, worker, before_us):
    """The acceptor's accept and dispatch of fd to worker, the latest no later than
    before_us, among its last 1024 records (csrc/trace.c trace_find_dispatch): [] or both."""
    found = []
    for r in reversed(ring.snapshot()[-1024:]):
        if r[3] != fd or r[0] > before_us:
            continue
        if not found and r[4] == EV_DISPATCH and r[5] == worker:
            found.append(r)
        elif not found and r[4] == EV_ACCEPT:
            break  # accepted and not dispatched to us: not our connection
        elif found and r[4] == EV_ACCEPT:
            return [r] + found
    return []


_STATS_FIELDS = [
    (b"Content-Type", b"application/json"),
    (b"Cache-Control", b"no-store"),
    (b"X-Content-Type-Options", b"nosniff"),
]


def stats_serve(x, req):
    """GET /_minginx/stats and /_minginx/trace (csrc/stats.c); 1 if not one of them."""
    co = x.co
    w = co.worker
    if req.path not in (b"/_minginx/stats", b"/_minginx/trace"):
        return 1
    if req.method not in (b"GET", b"HEAD"):
        yield from send_error(x, 405)
        return 0
    import json

    if req.path == b"/_minginx/stats":
        eng = w.engine
        workers = [h.stats() for h in eng.workers]
        data = {
            "engine": "python",
            "io": "epoll",
            "uptime_ms": int((w.now - eng.started) * 1000),
            "policy": w.cfg["policy"],
            "workers": [dict(st, worker=i) for i, st in enumerate(workers)],
        }
        # as csrc/stats.c: the total, and with --processes every process's (ours live)
        from .. import procstats

        if eng.shared is not None:
            shared, slot = eng.shared
            snap = shared.snapshot(live=(slot, workers))
            data["process"] = slot
            # as csrc/stats.c: a slot no process has counted in is not listed
            data["processes"] = [
                dict(st, process=s)
                for s, st in enumerate(snap["processes"])
                if s == slot or any(procstats.flatten(st))
            ]
            data["retired"] = snap["retired"]
            data["total"] = snap["total"]
        else:
            total = procstats.zero()
            for st in workers:
                total = procstats.add(total, st)
            data["total"] = total
    else:
        ring = w.ring.snapshot()
        mine = [i for i, r in enumerate(ring) if r[2] == co.id]
        recs = [ring[i] for i in mine]
        if mine and mine[0] > 0 and ring[mine[0] - 1][4] == EV_FD_BATCH and ring[mine[0] - 1][3] == co.fd:
            recs.insert(0, ring[mine[0] - 1])  # the fd_batch step just before coroutine_create
            recs[:0] = _find_dispatch(w.engine.acceptor_ring(), co.fd, w.index, recs[0][0])
        # as csrc/stats.c: at most TRACE_JSON_MAX, the first TRACE_JSON_HEAD and the latest
        skipped = max(0, len(recs) - TRACE_JSON_MAX)
        if skipped:
            recs = recs[:TRACE_JSON_HEAD] + recs[TRACE_JSON_HEAD + skipped :]
        events = [
            dict(
                {"t_us": r[0], "event": EVENTS[r[4]], "fd": r[3], "arg": r[5]},
                **json_fields(r[4], r[5], r[6]),
            )
            for r in recs
        ]
        data = {
            "engine": "python",
            "enabled": bool(w.trace),
            "worker": w.index,
            "coroutine": co.id,
            "fd": co.fd,
            "events": events,
            "skipped": skipped,
        }
    body = (json.dumps(data, separators=(",", ":")) + "\n").encode()
    x.respond(200, _STATS_FIELDS, len(body))  # counts the request: after the numbers
    yield from x.body(body)
    return 0


def _recv_or_park(co):
    """Between requests (csrc/conn.c recv_more): one read; if there is nothing to read,
    wait as a coroutine on the worker's idle list, and once idle past MG_PARK_DELAY
    (worker.idle_sweep sets park_due and resumes it) read once more and, still
    nothing, park (the coroutine ends, worker.park keeps the socket): return None."""
    w = co.worker
    while True:
        try:
            data = recv_now(co, RECV_SIZE)
        except BlockingIOError:
            pass
        except OSError as e:
            if w.trace:
                w.trace_push(EV_RECV_ASYNC, co, co.fd, trace_errno(e))
            raise
        else:
            if w.trace:
                w.trace_push(EV_RECV_ASYNC, co, co.fd, len(data))
            co.park_due = False  # input after all: the delay starts afresh at the next wait
            return data
        if co.timed_out:  # (timed out: the deadline came with the sweep)
            return (yield from recv_async(co, RECV_SIZE))
        # unparked and still no request (a blank line woke it): parked again at once,
        # its old deadline kept (C: recv_more)
        if (co.park_due or co.park_deadline) and w.park(co):
            return None
        w.idle_link(co)
        try:
            yield from io_park(co, MG_YIELD_READ)
        finally:
            w.idle_unlink(co)


def conn_entry(co):
    """The coroutine's entry (the seed's `entry`); an unparked connection's too
    (co.requests > 0: it goes on between requests)."""
    w = co.worker
    cfg = w.cfg
    dispatch = w.engine.dispatch
    proxy_headers = cfg["proxy_headers"]
    max_body = cfg["max_body"]
    buf = bytearray()
    first = co.requests == 0
    if w.trace:
        w.trace_push(EV_ENTRY, co, co.fd)
    if w.alog is not None:
        conn_peer(co)  # the log's address, before a reset can make getpeername fail
    try:
        while True:
            # -- a request head --
            co.idle = True
            co.client = None  # a new request: its client is the peer until request_client
            # stopping: the drain an idle connection gets at the stop, not the keep-alive
            # timeout (a shorter one stays), then the close (RFC 9112 sections 9.3.1
            # and 9.6: csrc/conn.c)
            wait = MG_TIMER_HEADER if first else MG_TIMER_KEEPALIVE
            # a first wait too: a connection whose coroutine began after the stop (csrc/conn.c)
            if w.stopping and not 0 < w.durations[wait] <= MG_DRAIN_IDLE:
                wait = MG_TIMER_DRAIN
            w.timer_set(co, wait)
            scanned = 0
            header_timer_due = False  # armed only if the head is not whole at once (csrc/conn.c)
            while True:
                if buf:
                    if co.idle:
                        skip = len(buf) - len(buf.lstrip(b"\r\n"))
                        if skip:
                            del buf[:skip]
                        if buf:
                            co.idle = False
                            co.status, co.head_bytes, co.log_sent0 = 0, None, co.sent
                            if w.alog is not None:
                                co.log_start = time.monotonic()
                            header_timer_due = not first or wait == MG_TIMER_DRAIN
                    if buf:
                        head = http_find_head_end(buf, max(0, scanned - 3))
                        if head:
                            break
                        scanned = len(buf)
                if header_timer_due:
                    w.timer_set(co, MG_TIMER_HEADER)
                    header_timer_due = False
                try:
                    if co.idle and not buf and not first:
                        data = yield from _recv_or_park(co)
                        if data is None:
                            return  # parked: the socket waits in the worker's tables
                    else:
                        data = yield from recv_async(co, RECV_SIZE)
                except TimeoutError:
                    if not co.idle:
                        yield from send_error(Exchange(co), 408)
                        if w.trace:  # no text: no request line parsed (csrc/conn.c)
                            w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, "")
                        if w.alog is not None:
                            alog_request(co, None, buf, co.status)
                        yield from _lingering_close(co, buf)
                    return
                except ConnectionResetError:
                    data = b""
                if not data:
                    # closed between requests: nothing to log; mid-head: nginx's line,
                    # 400 with what came of the request line (csrc/conn.c)
                    if not co.idle:
                        co.status = 400
                        if w.trace:
                            w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, "")
                        if w.alog is not None:
                            alog_request(co, None, buf, co.status)
                    return
                buf += data
            first = False
            co.requests += 1
            co.park_deadline = 0.0  # a request: a keep-alive wait after it starts afresh
            w.timer_clear(co)
            if head < 0:
                status, req = -head, None
            else:
                status, req = parse_http(bytes(buf[:head]), head)
            if w.trace:  # C: trace_parse
                co.trace_req = "" if status else request_text(req.method, req.path or req.target)
                w.trace_push(EV_PARSE_HTTP, co, co.fd, status, co.trace_req)
            if status:
                yield from send_error(Exchange(co), status)
                if w.trace:
                    w.trace_push(EV_HANDLER_DONE, co, co.fd, status, co.trace_req)
                if w.alog is not None:
                    alog_request(co, None, buf, co.status)
                yield from _lingering_close(co, buf)
                return

            # THE CLIENT, once per request (csrc/conn.c; front.py)
            if proxy_headers:
                request_client(co, req)

            # --keepalive-timeout 0 is keep-alive off, as nginx's keepalive_timeout 0
            keep_alive = req.keep_alive and not w.stopping and w.durations[MG_TIMER_KEEPALIVE] > 0
            x = Exchange(co, keep_alive, req.method == b"HEAD", req.minor_version)  # its answer (h1.py)
            try:
                st, body = yield from _read_body(x, req, buf, head, dispatch is not None, max_body)
            except OSError as e:
                if isinstance(e, ConnectionResetError):
                    co.status = 400  # a client gone mid-body: nginx logs 400, not 499
                if w.trace:  # the request's last step, as C's (tests/test_atk_trace.py)
                    w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, co.trace_req)
                if w.alog is not None:
                    alog_request(co, req, buf, co.status)
                raise
            if st:
                x.keep_alive = False
                yield from send_error(x, st)
                if w.trace:
                    w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, co.trace_req)
                if w.alog is not None:
                    alog_request(co, req, buf, co.status)
                yield from _lingering_close(co, buf)
                return
            try:
                keep_alive = yield from _answer(x, req, body)
            except HandlerTimedOut:
                # the 504 sent, or a response broken off: the request's last step all
                # the same (C: conn_entry traces it whatever the middleware returned)
                if w.trace:
                    w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, co.trace_req)
                # the C engine's request buffer went with the handler (pycall_orphan):
                # its line says "-" for the request, here too
                if w.alog is not None:
                    alog_request(co, None, None, co.status)
                raise
            except (TimeoutError, OSError):
                if w.trace:
                    w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, co.trace_req)
                if w.alog is not None:
                    alog_request(co, req, buf, co.status)
                raise
            if w.trace:
                w.trace_push(EV_HANDLER_DONE, co, co.fd, co.status, co.trace_req)
            if w.alog is not None:
                alog_request(co, req, buf, co.status)
            if keep_alive is None:
                return  # the response broke off
            if not keep_alive:
                if len(buf) > head:
                    yield from _lingering_close(co, buf)
                return
            del buf[:head]  # pipelining: what follows is the next request
    except (TimeoutError, OSError):
        return


def _answer(x, req, body):
    """The middleware chain (C: conn_entry's), through the request's exchange: returns
    keep_alive, or None when the response broke off and the connection is over."""
    co = x.co
    w = co.worker
    cfg = w.cfg
    dispatch = w.engine.dispatch
    asgi = getattr(dispatch, "asgi", None)  # an asgi.Runner: its rounds go to its loop
    # targets without a path, answered before any middleware (C: conn_entry):
    # CONNECT 501 (RFC 9110 9.3.6), "OPTIONS *" the server's OPTIONS answer (9.3.7)
    r = 1
    if req.target_form == MG_FORM_AUTHORITY:
        yield from send_error(x, 501)
        r = 0
    elif req.target_form == MG_FORM_ASTERISK:
        ok = yield from static_serve(x, req)
        if not ok:
            return None
        r = 0
    if r == 1 and cfg["stats"] and req.path.startswith(b"/_minginx/"):
        r = yield from stats_serve(x, req)
    # beside a handler: try_files $uri $uri/ @app (csrc/static.c static_try)
    if r == 1 and cfg["static_files"] and dispatch is not None:
        ok = yield from static_try(x, req)
        if ok is False:
            return None
        if ok:
            r = 0
    if r == 1 and asgi is not None:
        r = yield from asgi_request(x, ConnView(co, req, body), asgi)
    elif r == 1 and dispatch is not None:
        r = yield from _python_request(x, req, body, dispatch)
    if r == 1:
        if cfg["static_files"] and dispatch is None:
            ok = yield from static_serve(x, req)
            if not ok:
                return None
        else:
            yield from send_error(x, 404)
    return x.keep_alive
