"""The handler bridge: C's extern "Python" entry (mg_py_batch) and what a dispatcher sees of a request.

C calls mg_py_batch() from a worker loop, on the worker thread's own stack,
holding the GIL for the whole batch (cffi takes it on entry).  Each call is
an mg_pycall: op START runs the app's dispatcher for a new request, NEXT
pulls the next piece of a streamed body, ABORT closes a stream whose client
went away.  Responses are copied into C by mg_call_start()/mg_call_chunk(),
so no Python object has to outlive the call.
"""

import traceback

from ._minginx import ffi, lib
from ._dispatch import (ERROR_500_BODY, ERROR_500_HEADERS, FALLTHROUGH, RESP_CLOSE,
                        RESP_HAS_LENGTH, RESP_STREAM, close_iter, log)

assert (RESP_STREAM, RESP_HAS_LENGTH, RESP_CLOSE) == (
    lib.MG_RESP_STREAM, lib.MG_RESP_HAS_LENGTH, lib.MG_RESP_CLOSE), "minginx.h and _dispatch.py disagree"
_OP_START, _OP_NEXT, _OP_ABORT = lib.MG_PY_START, lib.MG_PY_NEXT, lib.MG_PY_ABORT
_BRIDGES = {}
_next_app_id = [0]
_unpack = ffi.unpack
_buffer = ffi.buffer
_from_buffer = ffi.from_buffer


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

    def header_pairs(self):
        """[(name bytes, value bytes)] in the order sent; read from the C parse on first use."""
        if self._headers is None:
            c = self._c
            if c is None:
                raise RuntimeError("request headers read after the handler returned")
            name, nlen = ffi.new("const char **"), ffi.new("size_t *")
            value, vlen = ffi.new("const char **"), ffi.new("size_t *")
            pairs = []
            for i in range(c.num_headers):
                lib.mg_call_header(c, i, name, nlen, value, vlen)
                pairs.append((_unpack(name[0], nlen[0]), _unpack(value[0], vlen[0])))
            self._headers = pairs
        return self._headers

    @property
    def client(self):
        return (ffi.string(self._c.peer).decode("ascii"), self._c.peer_port)

    @property
    def server_port(self):
        return self._c.server_port

    @property
    def worker(self):
        return self._c.worker

    def close(self):
        self._c = None


def _next_piece(it):
    """The iterator's next non-empty piece of body, or None at its end."""
    piece = b""
    while not piece:
        piece = next(it, None)
        if piece is None:
            return None
    return piece


class Bridge:
    """Runs a dispatcher for C: dispatch(CallView) -> FALLTHROUGH or
    (status, reason bytes, header block bytes, body bytes or iterable, flags)."""

    def __init__(self, dispatch):
        self.dispatch = dispatch
        self.streams = {}
        self.app_id = _next_app_id[0]
        _next_app_id[0] += 1
        _BRIDGES[self.app_id] = self

    def unregister(self):
        _BRIDGES.pop(self.app_id, None)
        for it in self.streams.values():
            close_iter(it)
        self.streams.clear()

    def start(self, c):
        view = CallView(c)
        try:
            result = self.dispatch(view)
        except Exception:
            log.error("minginx: handler for %s %s raised:\n%s", view.method,
                      view.raw_path.decode("latin-1"), traceback.format_exc().rstrip())
            result = (500, b"", ERROR_500_HEADERS, ERROR_500_BODY, 0)
        finally:
            view.close()
        if result is FALLTHROUGH:
            c.fallthrough = 1
            return
        status, reason, headers, body, flags = result
        if body.__class__ is bytes or isinstance(body, (bytes, bytearray, memoryview)):
            lib.mg_call_start(c, status, reason, len(reason), headers, len(headers), body,
                              len(body), flags)
            return
        # an iterable body: send the head with the first non-empty piece
        it = iter(body)
        try:
            first = None if c._head_only else _next_piece(it)
        except Exception:
            log.error("minginx: response iterator raised:\n%s", traceback.format_exc().rstrip())
            close_iter(it)
            lib.mg_call_start(c, 500, b"", 0, ERROR_500_HEADERS, len(ERROR_500_HEADERS),
                              ERROR_500_BODY, len(ERROR_500_BODY), RESP_CLOSE)
            return
        if first is None:   # empty body (or HEAD): no stream after all
            close_iter(it)
            lib.mg_call_start(c, status, reason, len(reason), headers, len(headers), b"", 0,
                              flags if c._head_only else flags & ~RESP_STREAM)
            return
        lib.mg_call_start(c, status, reason, len(reason), headers, len(headers), first,
                          len(first), flags | RESP_STREAM)
        self.streams[(c.worker, c.id)] = it

    def next(self, c):
        key = (c.worker, c.id)
        it = self.streams.get(key)
        if it is None:
            c.more = 0
            return
        try:
            chunk = _next_piece(it)
        except Exception:
            log.error("minginx: response iterator raised mid-stream; closing the connection:\n%s",
                      traceback.format_exc().rstrip())
            del self.streams[key]
            close_iter(it)
            c.more = 0
            c._keep_alive = 0   # the body is cut short: the client must see the close
            return
        if chunk is None:
            del self.streams[key]
            close_iter(it)
            lib.mg_call_chunk(c, b"", 0, 1)
        else:
            lib.mg_call_chunk(c, chunk, len(chunk), 0)

    def abort(self, c):
        it = self.streams.pop((c.worker, c.id), None)
        if it is not None:
            close_iter(it)


def _batch_error(exc, value, tb):
    # Exceptions are handled per call in Bridge; this only guards the loop itself.
    log.error("minginx: error in mg_py_batch:\n%s", "".join(traceback.format_exception(exc, value, tb)))
    return 0


@ffi.def_extern(onerror=_batch_error)
def mg_py_batch(app_id, calls, n):
    bridge = _BRIDGES[app_id]
    for i in range(n):
        c = calls[i]
        op = c.op
        if op == _OP_START:
            bridge.start(c)
        elif op == _OP_NEXT:
            bridge.next(c)
        else:
            bridge.abort(c)
    return 0
