"""The trace of the happy path and the stats table, as text (both engines).

Each worker (and the acceptor) records one event per step of the seed's happy
path; ``Server(trace=True)`` (``minginx-cffi serve --trace``) drains the
records every 50 ms and prints one line each:

              ms  who      co    fd  step
           0.000  acc       -    12  accept
           0.017  acc       -    12  dispatch -> worker 0
           0.047  w0        -    12  pipe read into fd_batch
           ...
         200.301  w0        1    12  recv_async -> 60 bytes
         200.309  w0        1    12  parse_http GET /index.html
           ...

A record is (t_us, worker, coroutine, fd, event, arg, text): text is "METHOD /path"
for parse_http and handler_done (a copy, printable ASCII: csrc/trace.c trace_parse),
"" for the others.  The event numbers are csrc/minginx.h's mg_event (_native checks
they agree).  json_fields() names what arg means, for /_minginx/trace (csrc/stats.c
event_fields writes the same for the C engine).
"""

import errno

EVENTS = (
    "accept",
    "dispatch",
    "fd_batch",
    "coroutine_create",
    "add_to_ready",
    "schedule",
    "trampoline_start",
    "entry",
    "yield",
    "wake_fd",
    "handler_done",
    "finished",
    "coroutine_destroy",
    "wake_python",
    "park",
    "unpark",
    "submit",
    "complete",
    "recv_async",
    "send_async",
    "sendfile_async",
    "parse_http",
    "static_serve",
    "run_python",
)
(
    EV_ACCEPT,
    EV_DISPATCH,
    EV_FD_BATCH,
    EV_COROUTINE_CREATE,
    EV_ADD_TO_READY,
    EV_SCHEDULE,
    EV_TRAMPOLINE_START,
    EV_ENTRY,
    EV_YIELD,
    EV_WAKE_FD,
    EV_HANDLER_DONE,
    EV_FINISHED,
    EV_COROUTINE_DESTROY,
    EV_WAKE_PYTHON,
    EV_PARK,
    EV_UNPARK,
    EV_SUBMIT,
    EV_COMPLETE,
    EV_RECV_ASYNC,
    EV_SEND_ASYNC,
    EV_SENDFILE_ASYNC,
    EV_PARSE_HTTP,
    EV_STATIC_SERVE,
    EV_RUN_PYTHON,
) = range(len(EVENTS))
#: --io uring: the IORING_OP_* a coroutine submits (linux/io_uring.h)
URING_OPS = {6: "POLL_ADD", 9: "SENDMSG", 26: "SEND", 27: "RECV"}
YIELD_REASONS = ("ready", "read", "write", "python")
#: the errors the trace's calls return, by name (csrc/stats.c errno_name)
ERRNO_NAMES = {
    getattr(errno, n): n
    for n in (
        "EAGAIN",
        "EINTR",
        "EPIPE",
        "ECONNRESET",
        "ETIMEDOUT",
        "ECANCELED",
        "ENOMEM",
        "ENOBUFS",
        "ENOTCONN",
        "EBADF",
        "EINVAL",
        "EIO",
    )
}
#: epoll's event bits, in the order csrc/stats.c epoll_names writes them
EPOLL_BITS = (
    (0x001, "EPOLLIN"),
    (0x002, "EPOLLPRI"),
    (0x004, "EPOLLOUT"),
    (0x008, "EPOLLERR"),
    (0x010, "EPOLLHUP"),
    (0x2000, "EPOLLRDHUP"),
)
_IO_CALLS = (EV_RECV_ASYNC, EV_SEND_ASYNC, EV_SENDFILE_ASYNC)


def errno_name(e):
    return ERRNO_NAMES.get(e, "errno %d" % e)


def epoll_names(mask):
    """An epoll event mask as names: "EPOLLIN|EPOLLRDHUP"."""
    names = []
    for bit, name in EPOLL_BITS:
        if mask & bit:
            names.append(name)
            mask &= ~bit
    if mask or not names:
        names.append("0x%x" % mask)
    return "|".join(names)


def json_fields(event, arg, text=""):
    """The named fields of a record for /_minginx/trace, beside its numbers (event, fd,
    arg): the yield's reason, the epoll events, a call's bytes or error, the request's
    method, path and status.  csrc/stats.c event_fields writes the same."""
    if event == EV_DISPATCH:
        return {"worker": arg}
    if event == EV_YIELD:
        return {"reason": YIELD_REASONS[arg]} if 0 <= arg < 4 else {}
    if event in (EV_WAKE_FD, EV_UNPARK):
        return {"events": epoll_names(arg)}
    if event in _IO_CALLS:
        if arg >= 0:
            return {"bytes": arg}
        out = {"error": errno_name(-arg)}
        if arg == -errno.EAGAIN and event == EV_RECV_ASYNC:
            out["reason"] = "read"
        return out
    if event in (EV_PARSE_HTTP, EV_HANDLER_DONE):
        out = {}
        if " " in text:
            out["method"], out["path"] = text.split(" ", 1)
        if event == EV_HANDLER_DONE or arg:
            out["status"] = arg
        return out
    if event == EV_PARK:
        return {"requests": arg}
    if event == EV_RUN_PYTHON:
        return {"calls": arg}
    if event == EV_SUBMIT:
        return {"op": URING_OPS.get(arg, "op %d" % arg)}
    if event == EV_COMPLETE:
        return {"res": arg}
    return {}


def request_text(method, path):
    """parse_http's copy of the request's method and path (csrc/trace.c trace_parse):
    "METHOD /path" cut at 63 bytes, each byte outside printable ASCII, '"' and '\\'
    as '?' (the path comes from the network, and goes to a terminal and to JSON)."""

    def clean(b):
        return "".join(chr(c) if 0x20 < c < 0x7F and c not in (0x22, 0x5C) else "?" for c in b[:63])

    return (clean(bytes(method)) + " " + clean(bytes(path)))[:63]


def _call(name, arg):
    if arg >= 0:
        return "%s -> %d byte%s" % (name, arg, "" if arg == 1 else "s")
    if arg == -errno.EAGAIN and name == "recv_async":
        return "recv_async -> EAGAIN, yield (read)"
    return "%s -> %s" % (name, errno_name(-arg))


def describe(event, arg, text=""):
    """The step's words, as the seed names it."""
    if event in _IO_CALLS:
        return _call(EVENTS[event], arg)
    if event == EV_PARSE_HTTP:
        return "parse_http %s" % (text or "-") + (" -> %d" % arg if arg else "")
    if event == EV_STATIC_SERVE:
        return "static_serve"
    if event == EV_RUN_PYTHON:
        return "run_python -> mg_py_batch (%d call%s)" % (arg, "" if arg == 1 else "s")
    if event == EV_ACCEPT:
        return "accept"
    if event == EV_DISPATCH:
        return "dispatch -> worker %d" % arg
    if event == EV_FD_BATCH:
        return "pipe read into fd_batch"
    if event == EV_SCHEDULE:
        return "schedule -> the coroutine runs"
    if event == EV_YIELD:
        return "yield (%s)" % YIELD_REASONS[arg] if 0 <= arg < 4 else "yield (%d)" % arg
    if event == EV_WAKE_FD:
        return "wake_fd (%s)" % epoll_names(arg)
    if event == EV_WAKE_PYTHON:
        return "wake_python (a handler thread answered)"
    if event == EV_HANDLER_DONE:
        return "handler done %s %d" % (text or "-", arg)
    if event == EV_FINISHED:
        return "finished = 1"
    if event == EV_PARK:
        return "park (idle after %d request%s: fd kept, coroutine to the pool)" % (
            arg,
            "" if arg == 1 else "s",
        )
    if event == EV_UNPARK:
        return "unpark (%s on a parked fd) -> coroutine_create" % epoll_names(arg)
    if event == EV_SUBMIT:
        return "submit (io_uring SQE: %s)" % URING_OPS.get(arg, "op %d" % arg)
    if event == EV_COMPLETE:
        return "complete (io_uring CQE: res %d) -> the counterpart of wake_fd" % arg
    return EVENTS[event]


def format_record(rec, t0_us):
    """One line: (t_us, worker, co, fd, event, arg, text) -> text."""
    t_us, worker, co, fd, event, arg, text = rec
    who = "acc" if worker < 0 else "w%d" % worker
    return "%12.3f  %-4s %6s %5d  %s" % (
        (t_us - t0_us) / 1000.0,
        who,
        co if co else "-",
        fd,
        describe(event, arg, text),
    )


HEADER = "%12s  %-4s %6s %5s  %s" % ("ms", "who", "co", "fd", "step")


def dropped_line(n):
    """The printer's line for n records a ring's writer lapped before they were printed."""
    return "%12s  (%d step%s not printed: the trace printer fell behind)" % ("...", n, "" if n == 1 else "s")


def summary_table(stats, labels=None):
    """The per-worker counters as a text table (printed at shutdown with --stats); labels
    name the rows (default: the worker numbers; procstats: "p0.w1" per process)."""
    cols = [
        ("connections", "conns"),
        ("requests", "reqs"),
        ("bytes_out", "bytes out"),
        ("switches", "switches"),
        ("wakeups", "wakeups"),
        ("ready_max", "ready max"),
        ("coroutines_total", "coroutines"),
        ("stack_pool", "pool"),
        ("cache_hits", "cache hits"),
        ("py_calls", "py calls"),
        ("log_dropped", "log dropped"),
    ]
    rows = [["worker"] + [c[1] for c in cols] + ["yields r/w/ready/py"]]
    for i, st in enumerate(stats):
        y = st["yields"]
        rows.append(
            [labels[i] if labels else str(i)]
            + [str(st[c[0]]) for c in cols]
            + ["%d/%d/%d/%d" % (y["read"], y["write"], y["ready"], y["python"])]
        )
    total = ["all"] + [str(sum(st[c[0]] for st in stats)) for c in cols] + ["-"]
    rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows)
