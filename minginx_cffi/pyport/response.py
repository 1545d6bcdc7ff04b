"""response.py - the one writer of response heads (csrc/response.c).

Same shape as the C: ``head_start()`` writes the status line, Server and
Date; ``head_finish()`` the framing (decided by the caller from the
response's state) and Connection.  Between them the server's own code puts
trusted fields; a handler's go through ``handler_fields()``, which checks
every byte, strips the whitespace around a value and keeps the framing
fields for the writer (RFC 9110 5.1, 5.5, 5.6.2, 7.6.1, 8.6).  Tested by tests/test_hostile_handlers.py.
"""

import re

from .._dispatch import as_bytes
from .http import http_reason

SERVER = b"Server: minginx-cffi\r\n"
FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE = range(4)  # csrc/response.h mg_framing

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # no CTL but HTAB (CR, LF, NUL among them)
# Connection options are split at commas and at whitespace too, as csrc/response.c
# lists_close does: "foo close" is no valid list (RFC 9110 7.6.1), and the safe reading
# of it is the one that closes.
_OPTION_SEP = re.compile(rb"[ \t,]+")
# the fields the server owns: connection management (RFC 9110 7.6.1), Date and Server
_DROPPED = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"date",
    b"server",
}


class Refused(ValueError):
    """A handler's head the writer will not send; the message says why."""


def head_start(w, status, reason=None):
    """b"HTTP/1.1 S R\\r\\n" + Server + Date; reason None or empty: the standard phrase."""
    return b"HTTP/1.1 %d %s\r\n%s%s" % (
        status,
        reason or http_reason(status).encode("latin-1"),
        SERVER,
        w.date_header(),
    )


def head_finish(framing, length, keep_alive):
    if framing == FRAME_LENGTH:
        out = b"Content-Length: %d\r\n" % length
    elif framing == FRAME_CHUNKED:
        out = b"Transfer-Encoding: chunked\r\n"
    else:
        out = b""
    if keep_alive and framing != FRAME_CLOSE:
        return out + b"Connection: keep-alive\r\n\r\n"
    return out + b"Connection: close\r\n\r\n"


def check_status(status, reason):
    """A handler's final status is 200..599 (see csrc/response.c head_check_status).
    The types are those the C engine's cffi call takes: an int subclass (an IntEnum
    such as http.HTTPStatus, which an ASGI app may send) and a bytes subclass too
    (tests/test_response_writer.py)."""
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise Refused("the status is not a final HTTP status (200..599)")
    if not isinstance(reason, bytes) or _CTL.search(reason):
        raise Refused("the reason phrase holds a control character (CR, LF, NUL ...)")


def _parse_length(v):
    v = v.strip(b" \t")
    if not (0 < len(v) <= 18 and v.isdigit()):
        raise Refused("Content-Length is not a number")
    return int(v)


def handler_fields(fields):
    """(header lines bytes, Content-Length or -1, "Connection: close" given) for a handler's
    [(name bytes, value bytes)]; Refused when one may not be sent."""
    out = []
    length = -1
    close = False
    for name, value in fields:
        if name.__class__ is not bytes:
            name = as_bytes(name, "a header name")  # the C engine's rule: _dispatch
        if value.__class__ is not bytes:
            value = as_bytes(value, "a header value")
        if not name:
            raise Refused("a header name is empty")  # csrc/response.c says the same
        if not _TOKEN.match(name):
            raise Refused("a header name is not a token (CR, LF, NUL, ':', space ...)")
        if _CTL.search(value):
            raise Refused("a header value holds a control character (CR, LF, NUL ...)")
        value = value.strip(b" \t")  # RFC 9110 5.5, as csrc/response.c head_fields
        lname = name.lower()
        if lname == b"content-length":
            v = _parse_length(value)
            if length >= 0 and v != length:
                raise Refused("two different Content-Length values")
            length = v
            continue
        if lname == b"transfer-encoding":
            raise Refused("Transfer-Encoding from a handler (the server frames the body)")
        if lname in _DROPPED:
            if lname == b"connection":
                close |= any(t.lower() == b"close" for t in _OPTION_SEP.split(value))
            continue
        out.append(b"%s: %s\r\n" % (name, value))
    return b"".join(out), length, close


def framing_for(status, length, stream, first_len, head_only, minor_version):
    """How a handler's body is framed (C: pycall.c mg_call_start), for App, WSGI and ASGI
    alike: (framing, length, skip the body, the connection must close).  length is the
    handler's Content-Length or -1; first_len the whole body's length, or a stream's first
    piece's."""
    no_body = 100 <= status < 200 or status in (204, 304)
    skip = no_body or head_only
    close = False
    if no_body:
        framing, length = FRAME_NONE, -1
    elif length >= 0:
        framing = FRAME_LENGTH
    elif not stream:
        framing, length = FRAME_LENGTH, first_len
    elif head_only:
        framing = FRAME_NONE  # a HEAD of a stream: its length is not known
    elif minor_version >= 1:
        framing = FRAME_CHUNKED
    else:
        framing, close = FRAME_CLOSE, True
    if not skip and (length != first_len if not stream else 0 <= length < first_len):
        close = True  # a wrong length known now (csrc/pycall.c): say close
    return framing, length, skip, close
