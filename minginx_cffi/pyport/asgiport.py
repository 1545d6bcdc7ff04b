"""asgiport.py - ASGI on the port: deferred rounds to the event loop, answered through the wake fd.

The port's side of what _bridge.AsgiBridge does for the C engine.  asgi.py's
Cycle is the one state machine; this file is its second thin adapter:

    coroutine (worker thread)     builds the scope, opens a START round on the loop
                                  (call_soon_threadsafe) and yields MG_YIELD_PYTHON
    loop thread                   Cycle.run -> app(scope, receive, send); each answer
                                  (head, piece, error_500, cut) goes through PortReply,
                                  which turns it into the bytes to send and post()s the
                                  round back: the worker's wake fd, as a handler thread's
    coroutine (resumed by         sends those bytes, then opens a NEXT round while the
      drain_posts)                engine takes more; a send that fails is an ABORT

So a slow endpoint parks its own coroutine only: the worker serves the
others meanwhile (tests/test_asgi.py: test_slow_requests_do_not_stall_the_worker).
A hang-up the worker sees (EPOLLRDHUP/HUP/ERR, worker.wake_fd) while the app
holds the request, or saw before the round opened, reaches the app as
http.disconnect (Cycle.client_left), as mg_py_gone does for the C engine.
So does a START round unanswered after --handler-timeout: its client gets
conn.py's 504 and the close, the late answer is dropped (the job is an
orphan); NEXT rounds are not timed, as C's handler_timeout_head.

Heads are checked and framed with response.py's one writer, as
conn._python_request does for App and WSGI handlers; the status line and the
Date are written on the worker thread (they touch the worker's state).
"""

import traceback

from .. import _dispatch
from ..trace import EV_RUN_PYTHON
from .coroutine import MG_TIMER_PYTHON, MG_YIELD_PYTHON
from .response import Refused, body_length, check_status, handler_fields
from .static import send_gateway_timeout
from .worker import HandlerTimedOut, Job, give_up

log = _dispatch.log
_ERROR_500_FIELDS = handler_fields(_dispatch.ERROR_500_FIELDS)[0]


class PortReply:
    """asgi.py's reply for one port request.  Its methods run on the loop thread, each
    while a round is open; the coroutine reads what they left (status, fields, out,
    more, last, keep_alive) only after the round is posted back (the post lock orders it):
    the validated status, fields and body pieces, never wire bytes; the coroutine
    answers them through its exchange (h1.py)."""

    __slots__ = (
        "loop",
        "job",
        "cycle",
        "where",
        "head_only",
        "keep_alive",
        "length",
        "sent",
        "status",
        "fields",
        "out",
        "more",
        "last",
    )

    def __init__(self, loop, where, head_only, keep_alive):
        self.loop = loop
        self.job = None  # the open round, posted back by the answer
        self.cycle = None  # asgi.Cycle, set on the loop by begin()
        self.where = where
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.length, self.sent = -1, 0
        self.status = 0  # nonzero: the exchange responds with it before out
        self.fields = None  # the head's checked fields, once there is a head
        self.out = b""  # this round's body bytes
        self.more = False  # the engine takes more pieces (a NEXT round follows)
        self.last = False  # the body ended whole (a chunked one gets its last chunk)

    def _post(self, out, more):
        self.out, self.more = out, more
        job, self.job = self.job, None
        if job is not None:  # None: answered on the worker thread itself (a scope that failed)
            job.worker.post(job)
        return more

    # -- the engine's side, on the loop thread ----------------------------

    def on_loop(self, fn, *args):
        """A round's work on the loop; if it fails, the round is answered all the same
        (a 500, or a cut once the head went), or its coroutine would wait forever."""
        try:
            fn(*args)
        except Exception:
            log.error(
                "minginx-cffi: ASGI call for %s failed:\n%s", self.where, traceback.format_exc().rstrip()
            )
            if self.job is not None:
                self.keep_alive = False
                if self.fields is not None:
                    self.cut()
                else:
                    self.error_500()

    def begin(self, runner, scope, body):
        self.cycle = runner.begin(scope, body, self, self.where)

    def want_next(self):
        self.cycle.want_next()

    def client_left(self):
        self.cycle.client_left()

    def abort(self):
        self.cycle.abort()

    # -- the reply asgi.Cycle answers through -------------------------------

    def head(self, status, fields, body, more):
        try:
            check_status(status, b"")
            lines, length, close = handler_fields(fields)
            body = bytes(body)
        except Exception as e:
            why = str(e) if isinstance(e, Refused) else traceback.format_exc().rstrip()
            log.error("minginx-cffi: ASGI app for %s: response refused: %s", self.where, why)
            self.error_500()
            return False
        if close:
            self.keep_alive = False
        length, skip, must_close = body_length(status, length, more, len(body), self.head_only)
        if must_close:
            self.keep_alive = False
        self.length = length
        self.status = status
        self.fields = lines
        if skip:
            self.last = True
            return self._post(b"", False)
        out, over = self._frame(body, not more)
        return self._post(out, more and not over)

    def piece(self, data, last):
        self.status = 0
        out, over = self._frame(bytes(data), last)
        return self._post(out, not last and not over)

    def error_500(self):
        body = _dispatch.ERROR_500_BODY
        self.status = 500
        self.fields = _ERROR_500_FIELDS
        self.length = len(body)
        self.last = True
        self._post(body, False)

    def cut(self):
        """The stream ends without its end: the connection closes (no last chunk)."""
        self.status = 0
        self.keep_alive = False
        self.last = False
        self._post(b"", False)

    def _frame(self, data, last):
        """(the piece to send, True when the body is over early: cut to its Content-Length)."""
        over = False
        length = self.length
        if length >= 0 and self.sent + len(data) > length:
            data = data[: length - self.sent]
            log.error(
                "minginx-cffi: ASGI app for %s: the body is longer than its Content-Length: cut "
                "to it, connection closed",
                self.where,
            )
            self.keep_alive = False
            over = True
        self.sent += len(data)
        self.last = last and not over
        if last and not over and 0 <= length and self.sent < length:
            log.error(
                "minginx-cffi: ASGI app for %s: the body is shorter than its Content-Length: "
                "connection closed",
                self.where,
            )
            self.keep_alive = False
        return data, over


def _round(co, reply, timed, fn, *args):
    """Open a round on the loop (fn(*args) there) and park until its answer is posted.
    The hang-up seen while parked, or before (co.hup), is passed on as client_left.
    timed (the START round): --handler-timeout runs until the answer; past it the
    worker's timer tells the app the client left and wakes us, and the round is given
    up: HandlerTimedOut, the job an orphan whose late answer is dropped (C: pycall.c,
    handler_timeout_head).  Tested by tests/test_atk_handlers.py."""
    w = co.worker
    loop = reply.loop
    job = Job(co, w, None, ())
    job.gone = _Gone(reply)
    reply.job = job
    w.inflight += 1
    co.py_job = job
    try:
        loop.call_soon_threadsafe(reply.on_loop, fn, *args)
    except RuntimeError:  # the loop is closed (a stop that could not wait): close
        w.inflight -= 1
        co.py_job = None
        raise ConnectionAbortedError("the ASGI event loop is closed") from None
    if co.hup:  # the client left before the round opened (sent its request and closed)
        job.gone()
    if timed:
        w.timer_set(co, MG_TIMER_PYTHON)  # clears co.timed_out
    co.trace_yield = EV_RUN_PYTHON  # traced after its first yield, as C's run_python
    try:
        while not job.posted:
            if timed and co.timed_out:  # worker._expire_timers: job.gone() was told, we are woken
                raise give_up(job, "ASGI app for %s" % reply.where)
            yield MG_YIELD_PYTHON
        if co.trace_yield == EV_RUN_PYTHON:  # answered before any yield: traced here
            co.trace_yield = 0
            if w.trace:
                w.trace_push(EV_RUN_PYTHON, co, co.fd, 1)
    except GeneratorExit:  # destroyed while the app runs (shutdown): its answer is dropped
        job.orphan = True
        _tell(loop, reply.abort)
        raise
    finally:
        co.py_job = None
    if timed:
        w.timer_clear(co)


class _Gone:
    """worker.wake_fd's notice for a parked round: once per round is enough."""

    __slots__ = ("reply", "told")

    def __init__(self, reply):
        self.reply = reply
        self.told = False

    def __call__(self):
        if not self.told:
            self.told = True
            _tell(self.reply.loop, self.reply.client_left)


def _tell(loop, fn):
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop is closed (shutdown): nobody left to tell
        pass


def asgi_request(x, view, runner):
    """Serve one request with the ASGI app through its exchange; returns 0 (answered:
    x.keep_alive cleared when the connection must close)."""
    co = x.co
    w = co.worker
    w.stats["py_calls"] += 1
    w.stats["py_batches"] += 1
    where = "%s %s" % (view.method, view.raw_path.decode("latin-1"))
    reply = PortReply(runner.loop, where, view.method == "HEAD", x.keep_alive)
    try:
        scope = runner.scope(view)
    except Exception:
        log.error("minginx-cffi: ASGI scope for %s:\n%s", where, traceback.format_exc().rstrip())
        reply.error_500()
    else:
        try:
            yield from _round(co, reply, True, reply.begin, runner, scope, view.body)
        except HandlerTimedOut:
            yield from send_gateway_timeout(x)
            raise  # conn_entry closes the connection
    while True:
        try:
            if not reply.keep_alive:
                x.keep_alive = False
            if reply.status:
                x.respond(reply.status, reply.fields, reply.length)
                reply.status = 0
            yield from x.body(reply.out, not reply.more and reply.last)
        except BaseException:
            if reply.more:  # the client is gone mid-stream: the app hears it (ABORT)
                _tell(reply.loop, reply.abort)
            raise
        if not reply.more:
            if not reply.keep_alive:
                x.keep_alive = False
            return 0
        yield from _round(co, reply, False, reply.want_next)  # not timed: SSE waits for events
