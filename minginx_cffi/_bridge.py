"""The handler bridge: C's extern "Python" entry (mg_py_batch) and what a dispatcher sees of a request.

C calls mg_py_batch() from a worker loop, on the worker thread's own stack,
holding the GIL for the whole batch (cffi takes it on entry).  Each call is
an mg_pycall: op START runs the app's dispatcher for a new request, NEXT
pulls the next piece of a streamed body, ABORT closes a stream whose client
went away.  Responses are copied into C by mg_call_start()/mg_call_chunk(),
so no Python object has to outlive the call.

With a handler pool (``--threads N``, N > 0) mg_py_batch only marks each call
deferred and puts it on the pool's queue (the GIL held for a list append per
call); a pool thread runs the same Bridge code and then mg_call_post(c) hands
the round back to its worker (csrc/pycall.c: deferred rounds).  The worker
loops never wait for a handler.  ``--threads 0``: everything inline, as above.
"""

import contextvars
import queue
import threading
import time
import traceback

from ._dispatch import (
    ERROR_500_BODY,
    ERROR_500_FIELDS,
    FALLTHROUGH,
    RESP_CLOSE,
    RESP_STREAM,
    close_iter,
    flatten_fields,
    log,
    next_piece,
)
from ._minginx import ffi, lib
from .asgi import Cycle, http_scope

assert (RESP_STREAM, RESP_CLOSE) == (lib.MG_RESP_STREAM, lib.MG_RESP_CLOSE), (
    "minginx.h and _dispatch.py disagree"
)
_OP_START, _OP_NEXT, _OP_ABORT = lib.MG_PY_START, lib.MG_PY_NEXT, lib.MG_PY_ABORT
_BRIDGES: dict = {}
_next_app_id = [0]
_unpack = ffi.unpack
_buffer = ffi.buffer
_string = ffi.string
_ERROR_500_BLOCK, _ERROR_500_N = flatten_fields(ERROR_500_FIELDS)


_tls = threading.local()


def _headers_buf():
    """This thread's buffer for mg_call_headers (handlers run on worker, pool and loop
    threads): allocated once per thread, not per request."""
    try:
        return _tls.buf
    except AttributeError:
        buf = _tls.buf = ffi.new("char[]", lib.MG_HEADERS_CAP)
        return buf


class CallView:
    """What a dispatcher sees of one request: read-only, valid only during the call."""

    __slots__ = ("_c", "method", "raw_path", "query", "body", "minor_version", "_headers")

    def __init__(self, c):
        self._c = c
        self.method = _unpack(c.method, c.method_len).decode("ascii")
        self.raw_path = _unpack(c.path, c.path_len)
        self.query = _unpack(c.query, c.query_len) if c.query_len else b""
        self.body = _buffer(c.body, c.body_len)[:] if c.body_len else b""
        self.minor_version = c.minor_version
        self._headers = None

    def header_pairs(self, lower=False):
        """[(name bytes, value bytes)] in the order sent (names lower-cased if lower, as
        ASGI wants them); read from the C parse in one call (mg_call_headers)."""
        if self._headers is None or lower:
            c = self._c
            if c is None:
                raise RuntimeError("request headers read after the handler returned")
            buf = _headers_buf()
            n = lib.mg_call_headers(c, buf, lib.MG_HEADERS_CAP, 1 if lower else 0)
            parts = _unpack(buf, n).split(b"\0")
            pairs = list(zip(parts[0:-1:2], parts[1::2]))
            if lower:
                return pairs
            self._headers = pairs
        return self._headers

    @property
    def client(self):
        """(address, port): the peer, or with --proxy-headers the forwarded client (port 0)."""
        return (ffi.string(self._c.peer).decode("ascii"), self._c.peer_port)

    @property
    def scheme(self):
        """ "http", or "https" when a trusted proxy said so (--proxy-headers)."""
        return "https" if self._c.https else "http"

    @property
    def server_port(self):
        return self._c.server_port

    @property
    def worker(self):
        return self._c.worker

    def close(self):
        self._c = None


def _answer_500(c):
    """Start a 500 for a call whose own answer failed (its reason is logged by the caller)."""
    lib.mg_call_start(
        c,
        500,
        b"",
        0,
        _ERROR_500_BLOCK,
        len(_ERROR_500_BLOCK),
        _ERROR_500_N,
        ERROR_500_BODY,
        len(ERROR_500_BODY),
        0,
    )


def _c_error(c):
    return ffi.string(c.error).decode("ascii") if c.error != ffi.NULL else "unknown"


class Bridge:
    """Runs a dispatcher for C: dispatch(CallView) -> FALLTHROUGH or
    (status, reason bytes, [(name, value) bytes], body bytes or iterable, flags).

    Every call fails alone: whatever goes wrong in one (the handler raising,
    a body of the wrong type, a head the C writer refuses) answers that
    request with 500 or closes its connection, and mg_py_batch goes on with
    the others.  "Whatever" includes BaseException (asyncio.CancelledError,
    SystemExit, KeyboardInterrupt): handlers run on worker threads, where
    Python never delivers a signal, so such an exception is the handler's own
    raise, not the operator's; let out, it would drop the rest of the batch.
    The operator stops the server from the main thread (server.py).  A response iterator
    is closed exactly once, whatever happened.
    Tested by tests/test_hostile_handlers.py."""

    def __init__(self, dispatch, threads=0):
        self.dispatch = dispatch
        self.pool = HandlerPool(self, threads) if threads > 0 else None
        self.streams = {}  # (worker, request id) -> (iterator, "METHOD path" for the log)
        self.app_id = _next_app_id[0]
        _next_app_id[0] += 1
        _BRIDGES[self.app_id] = self

    def unregister(self):
        _BRIDGES.pop(self.app_id, None)
        for it, _ in self.streams.values():
            close_iter(it)
        self.streams.clear()

    def start(self, c):
        view = CallView(c)
        try:
            result = self.dispatch(view)
        except BaseException:
            log.error(
                "minginx-cffi: handler for %s %s raised:\n%s",
                view.method,
                view.raw_path.decode("latin-1"),
                traceback.format_exc().rstrip(),
            )
            _answer_500(c)
            return
        finally:
            view.close()
        if result is FALLTHROUGH:
            c.fallthrough = 1
            return
        it = None
        try:
            status, reason, fields, body, flags = result
            block, n = flatten_fields(fields)
            if body.__class__ is bytes or isinstance(body, (bytes, bytearray, memoryview)):
                body = bytes(body)
                flags &= ~RESP_STREAM
            else:
                it = iter(body)
                flags |= RESP_STREAM  # HEAD too: C then knows the length is not known
                body = None if c._head_only else next_piece(it)
                if body is None:
                    body = b""
                    if not c._head_only:  # an empty iterable: no stream after all
                        flags &= ~RESP_STREAM
            r = lib.mg_call_start(
                c, status, reason, len(reason), block, len(block), n, body, len(body), flags
            )
        except BaseException:
            log.error(
                "minginx-cffi: handler for %s %s gave an unusable response:\n%s",
                view.method,
                view.raw_path.decode("latin-1"),
                traceback.format_exc().rstrip(),
            )
            r = None
        if r is None or r < 0:
            if r is not None:
                log.error(
                    "minginx-cffi: handler for %s %s: response refused: %s",
                    view.method,
                    view.raw_path.decode("latin-1"),
                    _c_error(c),
                )
            if it is not None:
                close_iter(it)
            if not c._started:
                _answer_500(c)
            return
        if r == 1:
            log.error(
                "minginx-cffi: handler for %s %s: %s",
                view.method,
                view.raw_path.decode("latin-1"),
                _c_error(c),
            )
        if it is not None:
            if c.more:
                self.streams[(c.worker, c.id)] = (
                    it,
                    "%s %s" % (view.method, view.raw_path.decode("latin-1")),
                )
            else:  # ended, cut, or C turned streaming off (204, 304, HEAD)
                close_iter(it)

    def next(self, c):
        key = (c.worker, c.id)
        entry = self.streams.get(key)
        if entry is None:
            c.more = 0
            return
        it, where = entry
        try:
            chunk = next_piece(it)
            r = (
                lib.mg_call_chunk(c, b"", 0, 1)
                if chunk is None
                else lib.mg_call_chunk(c, chunk, len(chunk), 0)
            )
        except BaseException:
            log.error(
                "minginx-cffi: response iterator of %s raised mid-stream; closing the connection:\n%s",
                where,
                traceback.format_exc().rstrip(),
            )
            self.cut(c)
            return
        if r == 1:
            log.error("minginx-cffi: handler for %s: %s", where, _c_error(c))
        if r < 0:
            log.error("minginx-cffi: handler for %s: %s; closing the connection", where, _c_error(c))
            self.cut(c)
        elif not c.more:
            del self.streams[key]
            close_iter(it)

    def cut(self, c):
        """End a stream early: no terminating chunk, and the connection closes, so the
        client can tell the body is not whole."""
        c.more = 0
        c._keep_alive = 0
        self.abort(c)

    def abort(self, c):
        entry = self.streams.pop((c.worker, c.id), None)
        if entry is not None:
            close_iter(entry[0])


class _CallReply:
    """asgi.py's reply for one C call, used on the loop thread: each answer fills the
    round as Bridge does inline, then mg_call_post() hands it back; after the round
    that ends the response the call is never touched again (self.c = None)."""

    __slots__ = ("c", "bridge", "key", "_where")

    def __init__(self, c, bridge, key, where):
        self.c = c
        self.bridge = bridge
        self.key = key
        self._where = where  # "METHOD path" for the log, or the scope it is made from

    @property
    def where(self):
        w = self._where
        if w.__class__ is dict:
            w = self._where = "%s %s" % (w["method"], w["raw_path"].decode("latin-1"))
        return w

    def _post(self):
        c = self.c
        if not c.more:  # the response is over: the call is C's again
            self.c = None
            self.bridge.cycles.pop(self.key, None)
        self.bridge.post(c)

    def head(self, status, fields, body, more):
        c = self.c
        try:
            block, n = flatten_fields(fields)
            body = bytes(body)
            r = lib.mg_call_start(
                c, status, b"", 0, block, len(block), n, body, len(body), RESP_STREAM if more else 0
            )
        except Exception:
            log.error(
                "minginx-cffi: ASGI app for %s gave an unusable response:\n%s",
                self.where,
                traceback.format_exc().rstrip(),
            )
            r = None
        if r is None or r < 0:
            if r is not None:
                log.error("minginx-cffi: ASGI app for %s: response refused: %s", self.where, _c_error(c))
            if not c._started:
                _answer_500(c)
            c.more = 0
        elif r == 1:
            log.error("minginx-cffi: ASGI app for %s: %s", self.where, _c_error(c))
        taking = bool(c.more)
        self._post()
        return taking

    def piece(self, data, last):
        c = self.c
        try:
            data = bytes(data)
            r = lib.mg_call_chunk(c, data, len(data), 1 if last else 0)
        except Exception:
            log.error(
                "minginx-cffi: ASGI app for %s sent an unusable piece; closing the connection:\n%s",
                self.where,
                traceback.format_exc().rstrip(),
            )
            r = -1
        if r == 1:
            log.error("minginx-cffi: ASGI app for %s: %s", self.where, _c_error(c))
        elif r < 0:
            c.more = 0
            c._keep_alive = 0
        taking = bool(c.more)
        self._post()
        return taking

    def error_500(self):
        c = self.c
        _answer_500(c)
        c.more = 0
        self._post()

    def cut(self):
        c = self.c
        c.more = 0
        c._keep_alive = 0
        self._post()


class AsgiBridge:
    """Runs an ASGI application (asgi.Runner) for C with deferred rounds.

    On the worker thread (mg_py_batch, GIL held) each START and NEXT is only
    marked deferred, and the whole batch goes to the event loop with one
    call_soon_threadsafe: the worker holds the GIL as briefly as it can, so
    the loop thread seldom waits for it.  On the loop, START builds the scope
    from the parse (the request buffer stays the call's until it is posted)
    and begins a Cycle; NEXT is its want_next().  Each is answered by
    _CallReply; its mg_call_post() waits in ``posts`` until the loop has run
    what is ready (``_flush``, once per loop iteration), so a burst of answers
    costs one wake-up of the worker and one GIL release each, not a GIL
    handoff between every two.  ABORT is answered inline (the coroutine is
    closing) and tells the cycle on the loop: http.disconnect."""

    def __init__(self, runner):
        self.pool = None  # the event loop is its executor, not a handler thread pool
        self.runner = runner
        self.loop = runner.loop
        self.cycles = {}  # (worker, request id) -> asgi.Cycle; loop thread only
        self.posts = []  # answered rounds not yet handed back (loop thread only)
        self._hbuf = None  # mg_call_headers' buffer (loop thread only)
        self.app_id = _next_app_id[0]
        _next_app_id[0] += 1
        _BRIDGES[self.app_id] = self

    def unregister(self):
        _BRIDGES.pop(self.app_id, None)

    def run_batch(self, calls, n):
        work = []
        for i in range(n):
            c = calls[i]
            op = c.op
            if op != _OP_ABORT:
                c.deferred = 1
            work.append((op, c, (c.worker, c.id)))
        self.loop.call_soon_threadsafe(self._on_loop, work)
        return 0

    def gone(self, worker, request_id):
        """mg_py_gone, on the worker thread: the client of a parked call hung up."""
        self.loop.call_soon_threadsafe(self._gone_on_loop, (worker, request_id))

    def _gone_on_loop(self, key):
        cycle = self.cycles.get(key)
        if cycle is not None:
            cycle.client_left()

    def post(self, c):
        """Hand a round back to its worker at the end of this loop iteration."""
        posts = self.posts
        if not posts:
            self.loop.call_soon(self._flush)
        posts.append(c)

    def _flush(self):
        # one C call for the whole burst: cffi releases the GIL around each call, and
        # each release while the worker waits for the GIL (its next batch) hands the
        # GIL over, a thread switch on a busy core; per round, that was the loop
        # thread's costliest step (cProfile: ~37 us per mg_call_post, pinned)
        posts, self.posts = self.posts, []
        if len(posts) == 1:
            lib.mg_call_post(posts[0])
        else:
            lib.mg_call_post_many(posts, len(posts))

    def _scope(self, c):
        """asgi.http_scope's scope, read straight from the call (no CallView, no
        properties: the loop thread runs this per request).  Both engines' scopes are
        compared field by field in tests/test_asgi.py."""
        runner = self.runner
        buf = self._hbuf
        if buf is None:
            buf = self._hbuf = ffi.new("char[]", lib.MG_HEADERS_CAP)
        parts = _unpack(buf, lib.mg_call_headers(c, buf, lib.MG_HEADERS_CAP, 1)).split(b"\0")
        headers = list(zip(parts[0:-1:2], parts[1::2]))
        if b"upgrade" in parts and not runner.warned_upgrade:
            runner.check_upgrade(headers)
        return http_scope(
            _unpack(c.method, c.method_len).decode("ascii"),
            c.minor_version,
            "https" if c.https else "http",
            _unpack(c.path, c.path_len),
            _unpack(c.query, c.query_len) if c.query_len else b"",
            headers,
            (_string(c.peer).decode("ascii"), c.peer_port),
            (runner.server, c.server_port),
            runner.root_path,
            runner.state,
        )

    def _on_loop(self, work):
        cycles = self.cycles
        runner = self.runner
        for op, c, key in work:
            try:
                if op == _OP_START:
                    scope = self._scope(c)
                    body = _buffer(c.body, c.body_len)[:] if c.body_len else b""
                    # in cycles before its first step: an app that never waits has answered
                    # (and _CallReply._post has removed it) when runner.run returns
                    cycle = cycles[key] = Cycle(_CallReply(c, self, key, scope), body)
                    runner.run(cycle, scope)
                elif op == _OP_NEXT:
                    cycle = cycles.get(key)
                    if cycle is not None:
                        cycle.want_next()
                    else:  # nothing left to stream: end it (a cut, the connection closes)
                        c.more = 0
                        c._keep_alive = 0
                        self.post(c)
                else:
                    cycle = cycles.pop(key, None)
                    if cycle is not None:
                        cycle.abort()
            except Exception:
                log.exception("minginx-cffi: ASGI call failed")
                if op != _OP_ABORT:  # answer the round all the same, or it waits for the timeout
                    cycles.pop(key, None)
                    if not c._started:
                        _answer_500(c)
                    c.more = 0
                    c._keep_alive = 0
                    self.post(c)


def _batch_error(exc, value, tb):
    # Each call is contained in mg_py_batch's loop; this guards the loop itself.
    log.error("minginx-cffi: error in mg_py_batch:\n%s", "".join(traceback.format_exception(exc, value, tb)))
    return 0


def _contain(bridge, c, op):
    """A call whose op raised out of the Bridge: fail it alone."""
    log.error("minginx-cffi: handler call failed:\n%s", traceback.format_exc().rstrip())
    try:
        if op == _OP_START:
            if not c._started:
                _answer_500(c)  # if even this fails, C answers 500 itself (pycall.c)
            else:
                bridge.cut(c)
        else:
            bridge.cut(c)
    except BaseException:
        log.exception("minginx-cffi: containing a failed handler call failed")


def _run_one(bridge, c):
    """One round of one call, contained: inline in mg_py_batch, or on a pool thread."""
    op = c.op
    try:
        if op == _OP_START:
            bridge.start(c)
        elif op == _OP_NEXT:
            bridge.next(c)
        else:
            bridge.abort(c)
    except BaseException:  # a handler's own raise, whatever its class: it fails alone
        _contain(bridge, c, op)


class HandlerPool:
    """N Python threads running handler rounds off the worker loops.

    A round goes in with put(c) (c.deferred already set), is run by
    _run_one() on whichever thread is free, and goes back to its worker with
    mg_call_post(c), whatever happened: a round never posted would park its
    coroutine until --handler-timeout.  The threads are daemons: one stuck in
    a handler cannot keep the process from exiting (server.py then leaves the
    engine unfreed rather than free it under that thread)."""

    def __init__(self, bridge, threads):
        self.bridge = bridge
        self.queue = queue.SimpleQueue()
        self.put = self.queue.put
        self.contexts = {}  # (worker, request id) -> the Context a live stream runs in
        self.threads = [
            threading.Thread(target=self._run, name="minginx-handler-%d" % i, daemon=True)
            for i in range(threads)
        ]
        for t in self.threads:
            t.start()

    def _run(self):
        get, bridge, post, contexts = self.queue.get, self.bridge, lib.mg_call_post, self.contexts
        while True:
            c = get()
            if c is None:
                return
            try:
                # A stream's rounds may run on different threads: each request gets a
                # context of its own, so context variables set by the handler (Flask's
                # stream_with_context) are there in every round, as they are inline.
                key = (c.worker, c.id)
                ctx = contexts.pop(key, None) if c.op != _OP_START else contextvars.Context()
                if ctx is None:
                    ctx = contextvars.Context()
                ctx.run(_run_one, bridge, c)
                if key in bridge.streams:
                    contexts[key] = ctx
            except BaseException:  # (SystemExit, CancelledError...): the thread must live on
                log.error(
                    "minginx-cffi: handler thread: a round raised past its containment:\n%s",
                    traceback.format_exc().rstrip(),
                )
            finally:
                post(c)  # releases the GIL; c is the worker's again after this

    def stop(self, timeout=None):
        """Ask every thread to finish once the queue is empty; True when all have."""
        for _ in self.threads:
            self.put(None)
        return self.join(timeout)

    def join(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)


@ffi.def_extern(onerror=_batch_error)
def mg_py_gone(app_id, worker, request_id):
    bridge = _BRIDGES.get(app_id)
    if bridge.__class__ is AsgiBridge:  # a WSGI or App handler cannot be told
        bridge.gone(worker, request_id)


@ffi.def_extern(onerror=_batch_error)
def mg_py_batch(app_id, calls, n):
    bridge = _BRIDGES[app_id]
    if bridge.__class__ is AsgiBridge:
        return bridge.run_batch(calls, n)
    pool = bridge.pool
    if pool is not None:  # --threads N: each round goes to a handler thread
        put = pool.put
        for i in range(n):
            c = calls[i]
            c.deferred = 1
            put(c)
        return 0
    for i in range(n):
        _run_one(bridge, calls[i])
    return 0
