"""The handler protocol shared by both engines: what a dispatcher returns and how it is framed.

A dispatcher is ``dispatch(view) -> FALLTHROUGH | (status, reason, header_block, body, flags)``
(minginx_cffi/app.py and wsgi.py make them).  The C engine runs it through
_bridge.Bridge; the pure-Python port (pyport/) calls it directly.  The flag
values are csrc/minginx.h's MG_RESP_*; _bridge checks that they agree.
"""

import logging

log = logging.getLogger("minginx_cffi")

FALLTHROUGH = object()   # "not mine": the static files answer (or 404 without --root)
RESP_STREAM = 1          # the body is an iterable, sent piece by piece
RESP_HAS_LENGTH = 2      # the header block carries Content-Length
RESP_CLOSE = 4           # close the connection after this response

# What a dispatcher that raised is answered with (its traceback goes to the log).
ERROR_500_HEADERS = b"Content-Type: text/plain; charset=utf-8\r\n"
ERROR_500_BODY = b"Internal Server Error\n"


def close_iter(it):
    """Call a response iterator's close(), as PEP 3333 asks, whatever happened."""
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("minginx: closing a response iterator raised")
