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

FALLTHROUGH = object()   # "not mine": the static files answer (or 404 without --root)
RESP_STREAM = 1          # the body is an iterable, sent piece by piece
RESP_CLOSE = 4           # close the connection after this response

# What a dispatcher that raised, or whose answer the writer refused, is answered with
# (the reason goes to the log).
ERROR_500_FIELDS = [(b"Content-Type", b"text/plain; charset=utf-8")]
ERROR_500_BODY = b"Internal Server Error\n"


def flatten_fields(fields):
    """A field list as C's header block: b"name\\0value\\0" per field, and their count.

    A NUL inside a name or value makes more parts than 2 * count, which the C
    writer refuses, so the block cannot be misread (csrc/response.c head_fields)."""
    parts = []
    for name, value in fields:
        parts.append(name)
        parts.append(value)
    parts.append(b"")
    return b"\0".join(parts), len(fields)


def next_piece(it):
    """A response iterator's next non-empty piece of body (bytes), or None at its end;
    TypeError for a piece that is not bytes (a str has no one right encoding)."""
    piece = b""
    while not piece:
        piece = next(it, None)
        if piece is None:
            return None
        if piece.__class__ is not bytes:
            if not isinstance(piece, (bytearray, memoryview)):
                raise TypeError("a response iterator yielded %s, not bytes" % type(piece).__name__)
            piece = bytes(piece)
    return piece


def close_iter(it):
    """Call a response iterator's close(), as PEP 3333 asks, whatever happened."""
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("minginx: closing a response iterator raised")
