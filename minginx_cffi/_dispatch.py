"""The handler protocol shared by both engines: what a dispatcher returns and how it is framed.

A dispatcher is ``dispatch(view) -> FALLTHROUGH | (status, reason, fields, body, flags)``
(minginx_cffi/app.py and wsgi.py make them): status an int, reason bytes (b"": the
standard phrase), fields a list of (name bytes, value bytes), body bytes or an
iterable of bytes.  The dispatcher does not check them: each engine's one
response writer does (csrc/response.c for C, pyport/response.py for the port),
and frames the body itself, so a handler's Content-Length is a promise it
enforces, never a line it copies.  The C engine runs dispatchers through
_bridge.Bridge; the port calls them directly.  The flag values are
csrc/minginx.h's MG_RESP_*; _bridge checks that they agree.
"""

import logging

log = logging.getLogger("minginx_cffi")

FALLTHROUGH = object()  # "not mine": the static files answer (or 404 without --root)
RESP_STREAM = 1  # the body is an iterable, sent piece by piece
RESP_CLOSE = 4  # close the connection after this response

# What a dispatcher that raised, or whose answer the writer refused, is answered with
# (the reason goes to the log).
ERROR_500_FIELDS = [(b"Content-Type", b"text/plain; charset=utf-8")]
ERROR_500_BODY = b"Internal Server Error\n"


_BYTES_LIKE = (bytes, bytearray, memoryview)
_END = object()
MAX_EMPTY_PIECES = 4096  # empty pieces in a row before an iterator counts as stuck


def as_bytes(x, what):
    """x as bytes: bytes (a subclass too), bytearray or memoryview; TypeError for anything
    else (a str has no one right encoding, None is no value).  The one rule both engines
    apply to header names, values and body pieces."""
    if isinstance(x, _BYTES_LIKE):
        return bytes(x)
    raise TypeError("%s is %s, not bytes" % (what, type(x).__name__))


def flatten_fields(fields):
    """A field list as C's header block: b"name\\0value\\0" per field, and their count.

    A NUL inside a name or value makes more parts than 2 * count, which the C
    writer refuses, so the block cannot be misread (csrc/response.c head_fields).
    fields is any iterable of pairs, as the port's handler_fields takes it: the
    count is of the pairs read, not len(fields), which a generator has not
    (tests/test_response_writer.py)."""
    parts = []
    for name, value in fields:
        parts.append(name if name.__class__ is bytes else as_bytes(name, "a header name"))
        parts.append(value if value.__class__ is bytes else as_bytes(value, "a header value"))
    n = len(parts) // 2
    parts.append(b"")
    return b"\0".join(parts), n


def next_piece(it):
    """A response iterator's next non-empty piece of body (bytes), or None at its end.
    TypeError for a piece that is not bytes-like (as_bytes), RuntimeError for an
    iterator that yields MAX_EMPTY_PIECES empty pieces in a row: each call is one
    scheduler round, and one that never makes progress must end, not spin."""
    for _ in range(MAX_EMPTY_PIECES):
        piece = next(it, _END)
        if piece is _END:
            return None  # a None piece is not the end: as_bytes refuses it
        if piece.__class__ is not bytes:
            piece = as_bytes(piece, "a response iterator's piece")
        if piece:
            return piece
    raise RuntimeError("a response iterator yielded %d empty pieces in a row" % MAX_EMPTY_PIECES)


def close_iter(it):
    """Call a response iterator's close(), as PEP 3333 asks, whatever happened
    (a BaseException from close() too: it is logged, never let out)."""
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except BaseException:
            log.exception("minginx-cffi: closing a response iterator raised")
