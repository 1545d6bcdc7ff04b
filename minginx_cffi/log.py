"""The server's error log: every line it writes to stderr, with a time and a level.

One layout for every line, from Python and from C (csrc/log.c: mg_log):

    2026-11-28T06:41:00.123+0100 [warning] [4242] minginx-cffi: ...

local time with milliseconds and the numeric UTC offset (ISO 8601, as
``date --iso-8601=ns`` but to the millisecond), the level in brackets, the pid
of the process in brackets (``--processes`` runs several), then the message.
A record of several lines (a traceback, the stats table) carries the prefix on
every line, so ``grep`` and ``sort`` keep it together, and goes out in ONE
write(2): lines of different threads or processes never run together (records
up to PIPE_BUF, 4 KiB, are atomic even on a pipe shared by several processes;
a longer traceback can interleave with another process's record there, line by
line whole only if the reader is a file opened with O_APPEND).

Records come from the "minginx_cffi" logger of the standard library (handler
tracebacks in _bridge.py and the port use it, as uvicorn's "uvicorn.error").
Used as a library (an embedded ``Server``), it is the host program's to
configure: nothing here touches it, and records propagate to the host's
handlers as any library's do.  ``minginx-cffi serve`` owns its process:
``configure()`` gives that one logger our handler and stops propagation, never
touching the root logger or any other (an app's own logging stays its own),
and shows Python warnings and uncaught exceptions in the same layout.
"""

import logging
import os
import re
import sys
import threading
import time
import warnings

__all__ = [
    "LEVELS",
    "logger",
    "prefix",
    "format_record",
    "write_record",
    "configure",
    "set_level",
    "level_number",
]

#: --log-level's choices, in order; the numbers are the logging module's (and csrc/log.c's)
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_NAMES = {n: name for name, n in LEVELS.items()}

#: the server's logger: messages of the server and tracebacks of the handlers it runs
logger = logging.getLogger("minginx_cffi")

_handler = None
_lock = threading.Lock()  # one writer at a time within a process (a partial write's rest)


def level_number(level):
    """A --log-level name (or a logging number) as the logging number; ValueError if neither."""
    if isinstance(level, str) and level.lower() in LEVELS:
        return LEVELS[level.lower()]
    if isinstance(level, int) and not isinstance(level, bool) and level in _NAMES:
        return level
    raise ValueError("log-level must be one of: %s, not %r" % (", ".join(LEVELS), level))


def _level_name(levelno):
    if levelno in _NAMES:
        return _NAMES[levelno]
    below = [n for n in _NAMES if n <= levelno]  # a custom level: the named one under it
    return _NAMES[max(below)] if below else "debug"


def prefix(levelno, now=None):
    """``2026-11-28T06:41:00.123+0100 [info] [4242] `` for a record at time now (seconds)."""
    if now is None:
        now = time.time()
    t = time.localtime(now)
    ms = int(now * 1000) % 1000
    return "%s.%03d%s [%s] [%d] " % (
        time.strftime("%Y-%m-%dT%H:%M:%S", t),
        ms,
        time.strftime("%z", t),
        _level_name(levelno),
        os.getpid(),
    )


#: what would end a line for some reader (a CR for a terminal, VT/FF/FS/GS/RS/NEL/LS/PS for
#: Python's str.splitlines) or drive a terminal (ESC...), written escaped: every line a
#: reader sees starts with the prefix, whatever a message holds (an exception's text may
#: carry a client's bytes)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def _escape_control(m):
    c = m.group()
    return "\\r" if c == "\r" else "\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c)


def format_record(levelno, text, now=None):
    """The record as it is written: the prefix on each of its lines, each line ended."""
    p = prefix(levelno, now)
    text = text.replace("\r\n", "\n")
    lines = _CONTROL.sub(_escape_control, text.rstrip("\n")).split("\n") if text else [""]
    return "".join(p + line + "\n" for line in lines)


def write_record(levelno, text):
    """Write one record to stderr in one write(2), whatever the logger's level."""
    data = format_record(levelno, text).encode("utf-8", "backslashreplace")
    stream = sys.stderr
    if stream is None:
        return
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a file-like object
        fd = None
    with _lock:
        if fd is None:
            stream.write(data.decode("utf-8"))
            stream.flush()
            return
        try:
            stream.flush()  # what print() left in the buffer goes first
        except (OSError, ValueError):
            pass
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # stderr is gone: nobody to tell
            view = view[n:]


class Handler(logging.Handler):
    """The "minginx_cffi" logger's handler under ``minginx-cffi serve``: one record, one write."""

    def emit(self, record):
        try:
            text = record.getMessage()
            if record.exc_info:
                text = text.rstrip("\n") + "\n" + logging.Formatter().formatException(record.exc_info)
            if record.stack_info:
                text = text.rstrip("\n") + "\n" + record.stack_info
            write_record(record.levelno, text)
        except Exception:
            self.handleError(record)


def set_level(level):
    """The server's log level, in Python and in C; returns the number."""
    n = level_number(level)
    logger.setLevel(n)
    # An app's logging.config.dictConfig (Django's LOGGING, disable_existing_loggers
    # true by default) disables every logger it does not name, ours included: the
    # server's own log is not the app's to silence.
    logger.disabled = False
    try:
        from . import _native
    except ImportError:  # the C extension is not built: the port alone logs
        return n
    _native.set_log_level(n)
    return n


def _showwarning(message, category, filename, lineno, file=None, line=None):
    if logger.isEnabledFor(logging.WARNING):
        write_record(logging.WARNING, warnings.formatwarning(message, category, filename, lineno, line))


def _excepthook(etype, value, tb):
    if issubclass(etype, KeyboardInterrupt):
        return sys.__excepthook__(etype, value, tb)
    logger.critical("minginx-cffi: uncaught exception", exc_info=(etype, value, tb))


def _thread_excepthook(args):
    if args.exc_type is SystemExit:
        return
    logger.error(
        "minginx-cffi: uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure(level="info"):
    """``minginx-cffi serve``'s log: our handler on our logger (and only there), at level;
    Python warnings and uncaught exceptions in the same layout.  Idempotent."""
    global _handler
    n = set_level(level)
    if _handler is None:
        _handler = Handler()
        logger.addHandler(_handler)
        logger.propagate = False
        warnings.showwarning = _showwarning
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook
    return n
