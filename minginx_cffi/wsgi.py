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


class _StartResponse:
    __slots__ = ("status", "headers", "written")

    def __init__(self):
        self.status = None
        self.headers = None
        self.written = []

    def __call__(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.status is not None and self.written:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = status
        self.headers = headers
        return self.written.append   # the legacy write() callable


class _Prefixed:
    """Bytes from write() first, then the application's iterable; close() passes through."""

    def __init__(self, first, result):
        self.first = first
        self.result = result
        self.it = None

    def __iter__(self):
        return self

    def __next__(self):
        if self.first:
            return self.first.pop(0)
        if self.it is None:
            self.it = iter(self.result)
        return next(self.it)

    def close(self):
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


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
            "wsgi.url_scheme": "http",
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
                continue   # an underscore would be indistinguishable from '-' (header spoofing)
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
            environ["CONTENT_LENGTH"] = str(len(view.body))   # it came chunked

        sr = _StartResponse()
        result = app(environ, sr)
        try:
            if sr.status is None:
                # the application may call start_response on its first iteration
                it = iter(result)
                first = next(it, None)
                if sr.status is None:
                    raise RuntimeError("WSGI application did not call start_response")
                pieces = sr.written + ([first] if first is not None else [])
                body = _Prefixed(pieces, _Rest(it, result))
                return _answer(sr, body, single=False)
            if isinstance(result, (list, tuple)) and not sr.written:
                body = result[0] if len(result) == 1 else b"".join(result)
                _close(result)
                return _answer(sr, body, single=True)
            return _answer(sr, _Prefixed(list(sr.written), result), single=False)
        except BaseException:
            _close(result)
            raise

    return dispatch


class _Rest:
    def __init__(self, it, result):
        self.it = it
        self.result = result

    def __iter__(self):
        return self.it

    def close(self):
        _close(self.result)


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
        raise ValueError("WSGI status %r is not \"NNN reason\"" % (status,))
    return int(code), reason.encode("latin-1")


def _declared_length(fields):
    for name, value in fields:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


def _answer(sr, body, single):
    status, reason = _status(sr.status)
    fields = encode_headers(sr.headers)
    if single:
        return (status, reason, fields, body, 0)
    length = _declared_length(fields)
    if length >= 0:
        # A known length that arrives whole in the first piece needs no stream.
        try:
            first = next(body)
        except StopIteration:
            body.close()
            return (status, reason, fields, b"", 0)
        if first.__class__ is bytes and len(first) == length:
            body.close()
            return (status, reason, fields, first, 0)
        body.first.insert(0, first)
    return (status, reason, fields, body, _dispatch.RESP_STREAM)


def _unquote_latin1(raw):
    """PEP 3333: PATH_INFO is the percent-decoded path, as latin-1 text."""
    if b"%" not in raw:
        return raw.decode("latin-1")
    from urllib.parse import unquote_to_bytes
    return unquote_to_bytes(raw).decode("latin-1")
