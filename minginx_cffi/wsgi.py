"""WSGI (PEP 3333): run any WSGI application, ``minginx-cffi serve --wsgi module:app``.

The environ is built from the C parse; ``wsgi.input`` reads the body the
coroutine already received (Content-Length or chunked, up to --max-body).
A result whose length is known from Content-Length and arrives in its first
piece is answered in one round; any other iterable is streamed, one piece
per scheduler round (chunked transfer coding when there is no
Content-Length), and its ``close()`` is always called, also when the client
goes away mid-stream.
"""

import io
import sys

from . import _dispatch
from .app import encode_headers

__all__ = ["make_dispatch"]

_END = object()  # an iterator's end: a None piece is not one (the writer refuses it)


class _StartResponse:
    """start_response, and what it was given.  ``sent`` is set when the dispatcher
    hands the head over (the engine sends it then); from that moment a call with
    exc_info re-raises it and one without is an error (PEP 3333, "The
    start_response() Callable").  ``written`` holds write()'s data until the
    response iterator (_Prefixed) sends it, in the order it came."""

    __slots__ = ("status", "headers", "written", "sent")

    def __init__(self):
        self.status = None
        self.headers = None
        self.written = []
        self.sent = False

    def __call__(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.written.append  # the legacy write() callable


class _Prefixed:
    """The body as the engine pulls it: write()'s data first, then the application's
    iterable.  write() may be called while the iterable runs (wsgiref sends such data
    at once): what it wrote during a next() goes out before the piece that next()
    returns.  close() passes through, once."""

    def __init__(self, written, result, it=None):
        self.written = written  # _StartResponse.written itself, not a copy
        self.result = result
        self.it = it

    def __iter__(self):
        return self

    def __next__(self):
        written = self.written
        if written:
            return written.pop(0)
        if self.it is None:
            self.it = iter(self.result)
        try:
            piece = next(self.it)
        except StopIteration:
            if written:  # written by the last next(), after the last piece
                return written.pop(0)
            raise
        if written:
            written.append(piece)
            return written.pop(0)
        return piece

    def close(self):
        result, self.result = self.result, None
        if result is not None:
            _close(result)


def make_dispatch(app, multithread=True, multiprocess=False, server_name="127.0.0.1"):
    errors = sys.stderr

    def dispatch(view):
        raw = view.raw_path
        environ = {
            "REQUEST_METHOD": view.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": _unquote_latin1(raw),
            "QUERY_STRING": view.query.decode("latin-1"),
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(view.server_port),
            "SERVER_PROTOCOL": "HTTP/1.%d" % view.minor_version,
            "REMOTE_ADDR": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": view.scheme,
            "wsgi.input": io.BytesIO(view.body),
            "wsgi.errors": errors,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "RAW_URI": raw.decode("latin-1"),
        }
        addr, port = view.client
        environ["REMOTE_ADDR"] = addr
        environ["REMOTE_PORT"] = str(port)
        for name, value in view.header_pairs():
            key = name.decode("latin-1").upper()
            if "_" in key:
                continue  # an underscore would be indistinguishable from '-' (header spoofing)
            key = key.replace("-", "_")
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = value.decode("latin-1")
                continue
            key = "HTTP_" + key
            v = value.decode("latin-1")
            if key in environ:
                environ[key] += (";" if key == "HTTP_COOKIE" else ",") + v
            else:
                environ[key] = v
        if view.body and "CONTENT_LENGTH" not in environ:
            environ["CONTENT_LENGTH"] = str(len(view.body))  # it came chunked

        sr = _StartResponse()
        result = app(environ, sr)
        single = None
        try:
            if sr.status is None:
                # the application may call start_response on its first iteration
                it = iter(result)
                first = next(it, _END)
                if sr.status is None:
                    raise RuntimeError("WSGI application did not call start_response")
                if first is not _END:
                    sr.written.append(first)
                body = _Prefixed(sr.written, result, it)
            elif isinstance(result, (list, tuple)) and not sr.written:
                body = None
                single = result[0] if len(result) == 1 else b"".join(result)
            else:
                body = _Prefixed(sr.written, result)
        except BaseException:
            _close(result)
            raise
        if body is None:
            _close(result)  # once: if it raises, the application failed (a 500)
            return _answer(sr, single, None)
        try:
            return _answer(sr, None, body)
        except BaseException:
            body.close()
            raise

    return dispatch


def _close(result):
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _status(status):
    """PEP 3333's status string as (code, reason bytes); ValueError unless it starts with
    three ASCII digits ("+200", "2_00" and " 200" are not statuses, though int() takes
    them).  The range and the reason's bytes are the response writer's to check."""
    code, _, reason = status.partition(" ")
    if not (len(code) == 3 and code.isascii() and code.isdigit()):
        raise ValueError('WSGI status %r is not "NNN reason"' % (status,))
    return int(code), reason.encode("latin-1")


def _declared_length(fields):
    for name, value in fields:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


def _answer(sr, single, body):
    """The dispatcher's answer for a single body (bytes) or a _Prefixed stream; the
    head counts as sent from here on (_StartResponse.sent)."""
    fields = encode_headers(sr.headers)
    if body is None:
        sr.sent = True
        status, reason = _status(sr.status)
        return (status, reason, fields, single, 0)
    length = _declared_length(fields)
    if length >= 0:
        # A known length that arrives whole in the first piece needs no stream.
        headers = sr.headers
        first = next(body, _END)
        if sr.headers is not headers:  # start_response(..., exc_info) in that next()
            fields = encode_headers(sr.headers)
            length = _declared_length(fields)
        sr.sent = True
        status, reason = _status(sr.status)
        if first is _END:
            body.close()
            return (status, reason, fields, b"", 0)
        if first.__class__ is bytes and len(first) == length:
            body.close()
            return (status, reason, fields, first, 0)
        body.written.insert(0, first)
    sr.sent = True
    status, reason = _status(sr.status)
    return (status, reason, fields, body, _dispatch.RESP_STREAM)


def _unquote_latin1(raw):
    """PEP 3333: PATH_INFO is the percent-decoded path, as latin-1 text."""
    if b"%" not in raw:
        return raw.decode("latin-1")
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(raw).decode("latin-1")
