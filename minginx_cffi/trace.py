"""The trace of the happy path and the stats table, as text (both engines).

Each worker (and the acceptor) records one event per step of the seed's happy
path; ``Server(trace=True)`` (``minginx-cffi serve --trace``) drains the
records every 50 ms and prints one line each:

      time (us)  worker  coroutine  fd  step
       1234.567  accept           -   9  accept
       1236.012  acc              -   9  dispatch -> worker 0
       1250.880  w0               1   9  pipe read into fd_batch
       ...

The event numbers are csrc/minginx.h's mg_event (_native checks they agree).
"""

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
) = range(len(EVENTS))
#: --io uring: the IORING_OP_* a coroutine submits (linux/io_uring.h)
URING_OPS = {6: "POLL_ADD", 9: "SENDMSG", 26: "SEND", 27: "RECV"}
YIELD_REASONS = ("ready", "read", "write", "python")


def describe(event, arg):
    """The step's words, as the seed names it."""
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
        return "wake_fd"
    if event == EV_WAKE_PYTHON:
        return "wake_python (a handler thread answered)"
    if event == EV_HANDLER_DONE:
        return "handler done (%d)" % arg
    if event == EV_FINISHED:
        return "finished = 1"
    if event == EV_PARK:
        return "park (idle after %d request%s: fd kept, coroutine to the pool)" % (
            arg,
            "" if arg == 1 else "s",
        )
    if event == EV_UNPARK:
        return "unpark (input on a parked fd) -> coroutine_create"
    if event == EV_SUBMIT:
        return "submit (io_uring SQE: %s)" % URING_OPS.get(arg, "op %d" % arg)
    if event == EV_COMPLETE:
        return "complete (io_uring CQE: res %d) -> the counterpart of wake_fd" % arg
    return EVENTS[event]


def format_record(rec, t0_us):
    """One line: (t_us, worker, co, fd, event, arg) -> text."""
    t_us, worker, co, fd, event, arg = rec
    who = "acc" if worker < 0 else "w%d" % worker
    return "%12.3f  %-4s %6s %5d  %s" % (
        (t_us - t0_us) / 1000.0,
        who,
        co if co else "-",
        fd,
        describe(event, arg),
    )


HEADER = "%12s  %-4s %6s %5s  %s" % ("ms", "who", "co", "fd", "step")


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
