"""response.py - the one checker of a handler's status and fields (csrc/response.c).

Same shape as the C: a handler's fields go through ``handler_fields()``, which checks
every byte, strips the whitespace around a value and keeps the framing fields for the
exchange (RFC 9110 5.1, 5.5, 5.6.2, 7.6.1, 8.6); what stays is a list of (name, value)
pairs, which the exchange's protocol module writes (h1.py for HTTP/1.1).  Tested by
tests/test_hostile_handlers.py.
"""

import re

from .._dispatch import as_bytes

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
    """(the fields that stay, as (name, value) pairs; Content-Length or -1; "Connection:
    close" given) for a handler's [(name bytes, value bytes)]; Refused when one may not
    be sent."""
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
        value = value.strip(b" \t")  # RFC 9110 5.5, as csrc/response.c fields_check
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
        out.append((name, value))
    return out, length, close


def body_length(status, length, stream, first_len, head_only):
    """The length an exchange frames a handler's body with (C: pycall.c mg_call_start),
    for App, WSGI and ASGI alike: (length, or -1 for a stream whose end is its framing's;
    no body bytes go out; the connection must close).  length is the handler's
    Content-Length or -1; first_len the whole body's length, or a stream's first piece's.
    The framing itself (Content-Length, chunked, close-delimited) is h1.py's."""
    no_body = 100 <= status < 200 or status in (204, 304)
    skip = no_body or head_only
    if no_body:
        length = -1
    elif length < 0 and not stream:
        length = first_len
    # a wrong length known now (csrc/pycall.c): say close
    close = not skip and (length != first_len if not stream else 0 <= length < first_len)
    return length, skip, close
