"""worker.py - a worker thread's loop: select.epoll, the dispatch pipe, fd_batch, the ready queue, timers.

Step for step csrc/worker.c: schedule() runs the ready coroutines
(RDY_FIFO oldest first, RDY_LIFO newest first), epoll_wait sleeps until an
fd is ready or the nearest timer is due, the pipe's fds are read into
fd_batch and each gets coroutine_create() + add_to_ready(), and wake_fd()
puts the coroutine parked on a ready socket back on the ready queue.
Sockets are registered once, edge-triggered, for both directions.

Handler threads (--threads N, csrc/pycall.c's deferred rounds): a coroutine
that needs Python (call_python) puts a Job on the engine's HandlerPool and
yields MG_YIELD_PYTHON; a pool thread runs it and post()s it back onto the
worker's completion list, writing the worker's wake fd (an eventfd, a pipe
before Python 3.10) when the list was empty; drain_posts() resumes the
coroutine.  A job not back within --handler-timeout is orphaned: its client
gets 504, the late answer is dropped, and a late stream iterator is closed
in the pool.  An ASGI app's START round (asgiport.py) is timed the same way,
its NEXT rounds are not (a stream may wait for events); its app hears
http.disconnect when the timer gives the round up.

Parking (csrc/worker.c): a keep-alive connection waiting for its next
request waits as a coroutine for MG_PARK_DELAY (the idle list: a busy one
never pays a park and an unpark per request), then keeps only its socket and
a Parked record (park_table, and the parked list in deadline order); its
coroutine ends.  Input on it makes a
new coroutine with the connection's id (unpark); its deadline passing, or
the loop ending, closes it.
"""

import collections
import ctypes
import errno
import gc
import logging
import os
import queue
import resource
import select
import socket
import struct
import sys
import threading
import time

from ..procstats import FIELDS
from ..trace import (  # noqa: F401
    EV_ADD_TO_READY,
    EV_FD_BATCH,
    EV_PARK,
    EV_RECV_ASYNC,
    EV_RUN_PYTHON,
    EV_SCHEDULE,
    EV_UNPARK,
    EV_WAKE_FD,
    EV_WAKE_PYTHON,
    EV_YIELD,
)
from .accesslog import alog_rejected, alog_tick
from .coroutine import (
    MG_DRAIN_IDLE,
    MG_PARK_DELAY,
    MG_TIMER_DRAIN,
    MG_TIMER_NONE,
    MG_TIMER_PYTHON,
    MG_YIELD_PYTHON,
    MG_YIELD_READ,
    MG_YIELD_READY,
    MG_YIELD_WRITE,
    coroutine_create,
    coroutine_destroy,
)
from .io import RECV_SIZE, send_early
from .linux import EPOLLRDHUP
from .ring import TraceRing

RDY_FIFO, RDY_LIFO = 0, 1
MG_POOL_KEEP = 32  # connections a burst may shed before the heap is trimmed (C: MG_POOL_KEEP)
MG_POOL_TRIM = 1.0  # seconds between trims (C: MG_POOL_TRIM_MS)


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()
# CPython frees a closed connection's objects as their counts drop; PyPy's GC at its next
# major collection, which a burst's end does not bring: _heap_trim asks for one there
_GC_FREES_LATE = sys.implementation.name != "cpython"
MG_CMD_STOP, MG_CMD_EXIT = -1, -2
MG_FD_BATCH = 256
_EPOLL_SOCK = select.EPOLLIN | select.EPOLLOUT | EPOLLRDHUP | select.EPOLLET
_WANT = {
    MG_YIELD_READ: select.EPOLLIN | EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR,
    MG_YIELD_WRITE: select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR,
}
_GONE = EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
YIELD_NAMES = ("ready", "read", "write", "python")
BUSY_BODY = b"Too many connections"


def busy(w):
    """The 503 for a connection over --max-connections (csrc/worker.c), through a detached
    exchange: (its bytes, how many of them are its head)."""
    from .h1 import Exchange

    x = Exchange(None, w=w)
    x.respond(503, [(b"Content-Type", b"text/plain"), (b"Retry-After", b"1")], len(BUSY_BODY))
    for _ in x.body(BUSY_BODY):  # detached: nothing is sent, nothing waits
        pass
    return x.out, x.head_bytes


class Parked:
    """An idle keep-alive connection without a coroutine (C: mg_parked)."""

    __slots__ = ("fd", "sock", "id", "requests", "deadline")

    def __init__(self, fd, sock, id, requests, deadline):
        self.fd, self.sock, self.id, self.requests, self.deadline = fd, sock, id, requests, deadline


class HandlerTimedOut(TimeoutError):
    """A pooled handler round outlived --handler-timeout; its job is an orphan now."""

    def __init__(self, job):
        super().__init__("handler timed out")
        self.job = job


class Job:
    """One handler round for a pool thread (C: a deferred mg_pycall)."""

    __slots__ = (
        "co",
        "worker",
        "fn",
        "args",
        "result",
        "exc",
        "posted",
        "orphan",
        "late",
        "close_after",
        "gone",
    )

    def __init__(self, co, worker, fn, args, late=None):
        self.co, self.worker, self.fn, self.args = co, worker, fn, args
        self.result = self.exc = None
        self.posted = self.orphan = False
        self.late = late  # applied (in the pool) to an orphan's late result
        self.close_after = None  # an iterator to close once an orphan's round is back
        self.gone = None  # called (worker thread) when the client hangs up meanwhile


class HandlerPool:
    """N threads running Jobs; each job is post()ed back to its worker, whatever happened."""

    def __init__(self, threads):
        self.queue = queue.SimpleQueue()
        self.put = self.queue.put
        self.threads = [
            threading.Thread(target=self._run, name="minginx-handler-%d" % i, daemon=True)
            for i in range(threads)
        ]
        for t in self.threads:
            t.start()

    def _run(self):
        get = self.queue.get
        while True:
            job = get()
            if job is None:
                return
            try:
                job.result = job.fn(*job.args)
            except BaseException as e:
                job.exc = e
            job.worker.post(job)

    def stop(self, timeout=None):
        for _ in self.threads:
            self.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)


def call_python(co, fn, *args, late=None):
    """Run fn(*args) for coroutine co: inline with --threads 0, else on a handler thread
    while co waits (yield MG_YIELD_PYTHON).  Returns its result or raises its exception;
    raises HandlerTimedOut after --handler-timeout (the job is an orphan then)."""
    w = co.worker
    if w.pool is None:
        if w.trace:  # C: run_python hands the call to mg_py_batch (the port: one call a batch)
            w.trace_push(EV_RUN_PYTHON, co, co.fd, 1)
        return fn(*args)
    co.trace_yield = EV_RUN_PYTHON  # traced after the yield below, as C's
    job = Job(co, w, fn, args, late)
    w.inflight += 1
    w.pool.put(job)
    w.timer_set(co, MG_TIMER_PYTHON)
    co.py_job = job
    try:
        yield MG_YIELD_PYTHON
    except GeneratorExit:  # destroyed while the round runs (shutdown)
        job.orphan = True
        raise
    finally:
        co.py_job = None
    if not job.posted:  # woken by the timer
        raise give_up(job, "handler")
    w.timer_clear(co)
    if job.exc is not None:
        exc, job.exc = job.exc, None
        raise handler_raised(exc)
    return job.result


class HandlerGeneratorExit(RuntimeError):
    """A handler that raised GeneratorExit itself: re-raised as is, it would read as the
    coroutine being closed (shutdown) and end its worker."""


def handler_raised(exc):
    """What a handler's exception is re-raised as inside a coroutine."""
    if isinstance(exc, GeneratorExit):
        wrapped = HandlerGeneratorExit("the handler raised GeneratorExit")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def give_up(job, what):
    """A round past --handler-timeout (C: yield_to_python's -ETIMEDOUT): the job becomes
    an orphan, whose late answer drain_posts drops; returns the HandlerTimedOut to raise."""
    w = job.worker
    job.orphan = True
    w.stats["handler_timeouts"] += 1
    logging.getLogger("minginx_cffi").error(
        "minginx-cffi: %s still running after %g s: connection closed, its answer will be dropped",
        what,
        w.durations[MG_TIMER_PYTHON],
    )
    return HandlerTimedOut(job)


def close_later(co, it, job=None, run=None):
    """Close a response iterator without blocking the worker: after an orphaned round
    still using it comes back (job), on a handler thread, or inline with --threads 0.
    run: the request's Context.run, so the close sees the handler's context variables."""
    w = co.worker
    if job is not None and job.orphan and not job.posted:
        job.close_after = (it, run)
    elif w.pool is None:
        _close_iter(it)
    else:
        w.inflight += 1
        w.pool.put(Job(None, w, run or _call, (_close_iter, it)))


def _call(fn, *args):
    return fn(*args)


def _close_iter(it):
    from .._dispatch import close_iter

    close_iter(it)


def new_stats():
    """A worker's counters: mg_stats's words, named once in procstats.FIELDS (whose
    "yields.*" words are nested here as stats["yields"])."""
    st = dict.fromkeys((f for f in FIELDS if not f.startswith("yields.")), 0)
    st["yields"] = dict.fromkeys(YIELD_NAMES, 0)
    return st


class Worker:
    def __init__(self, engine, index):
        from .conn import conn_entry
        from .static import FileCache

        self.engine = engine
        self.cfg = engine.cfg
        self.index = index
        self.policy = RDY_LIFO if self.cfg["policy"] == "lifo" else RDY_FIFO
        self.epfd = select.epoll()
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.epfd.register(self.pipe_r, select.EPOLLIN)
        # handler threads post finished jobs here and wake us through post_r
        self.pool = engine.pool
        self.inflight = 0
        self.post_lock = threading.Lock()
        self.posted = []
        if hasattr(os, "eventfd"):
            self.post_r = self.post_w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self.post_r, self.post_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.epfd.register(self.post_r, select.EPOLLIN)
        # fd -> coroutine: sized from the fd limit, not FD_SETSIZE
        self.fd_table = [None] * min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 24)
        # fd -> Parked, in deadline order (an OrderedDict: the oldest first)
        self.parked = collections.OrderedDict()
        # coroutine -> when it began to wait between requests, oldest first (lazy parking)
        self.idle = collections.OrderedDict()
        self.ready = collections.deque()
        # every read goes through here and is copied out at once (io.recv_now)
        self.recv_view = memoryview(bytearray(RECV_SIZE))
        self.trim_high = 0  # connections open at most since the last heap trim
        self.trim_at = 0.0  # no trim before this time (once a second, as the C pools')
        self.all = set()
        self.next_id = 0
        self.stopping = False
        self.exiting = False
        self.stats = new_stats()
        self.now = time.monotonic()
        self.timers = [collections.OrderedDict() for _ in range(7)]
        self.durations = [
            0,
            self.cfg["header_timeout"],
            self.cfg["keepalive_timeout"],
            self.cfg["send_timeout"],
            2.0,
            self.cfg["handler_timeout"],
            MG_DRAIN_IDLE,
        ]
        self.date_sec = -1  # the Date field heads carry, for this second (h1.py date_line)
        self.date_hdr = b""
        self.cache = FileCache(self, self.cfg["open_file_cache"])
        self.trace = self.cfg["trace"]
        # the access log (accesslog.py): lines not yet handed to the writer
        self.alog = engine.alog
        self.alog_lines = []
        self.alog_bytes = 0
        self.alog_since = 0.0
        self.alog_sec = -1
        self.alog_time = b""
        self.ring = TraceRing()  # as the C ring: the oldest are overwritten
        self.conn_entry = conn_entry

    # -- ready queue -----------------------------------------------------

    def trace_push(self, event, co, fd, arg=0, text=""):
        self.ring.append((time.monotonic_ns() // 1000, self.index, co.id if co else 0, fd, event, arg, text))

    def add_to_ready(self, co, at_tail=False):
        """At the head under RDY_LIFO, else at the tail; a MG_YIELD_READY goes to the tail
        under either policy, or under LIFO it would run again at once and starve the rest."""
        if self.trace:
            self.trace_push(EV_ADD_TO_READY, co, co.fd)
        co.waiting = MG_YIELD_READY
        if self.policy == RDY_LIFO and not at_tail:
            self.ready.appendleft(co)
        else:
            self.ready.append(co)
        n = len(self.ready)
        if n > self.stats["ready_max"]:
            self.stats["ready_max"] = n

    def schedule(self):
        ready = self.ready
        stats = self.stats
        yields = stats["yields"]
        for _ in range(len(ready)):
            if not ready:
                break
            co = ready.popleft()
            co.waiting = -1
            stats["switches"] += 1
            if self.trace:
                self.trace_push(EV_SCHEDULE, co, co.fd)
            try:
                reason = co.gen.send(None)
            except StopIteration:
                coroutine_destroy(co)
                continue
            yields[YIELD_NAMES[reason]] += 1
            if self.trace:
                then, co.trace_yield = co.trace_yield, 0
                if then == EV_RECV_ASYNC and reason == MG_YIELD_READ:  # C: coroutine_yield_io
                    self.trace_push(EV_RECV_ASYNC, co, co.fd, -errno.EAGAIN)
                else:
                    self.trace_push(EV_YIELD, co, co.fd, reason)
                    if then == EV_RUN_PYTHON and reason == MG_YIELD_PYTHON:
                        # C: the worker loop's run_python, once the coroutine has yielded
                        self.trace_push(EV_RUN_PYTHON, co, co.fd, 1)
            if reason == MG_YIELD_READY:
                self.add_to_ready(co, at_tail=True)
            else:
                co.waiting = reason

    def wake_fd(self, fd, events):
        co = self.fd_table[fd]
        if co is None:
            p = self.parked.get(fd)
            if p is not None and events & _WANT[MG_YIELD_READ]:
                self._unpark(p, events)
            return
        if events & _GONE:
            # the peer's FIN (or a reset) is for good: kept, for a round that parks later
            co.hup = True
            job = co.py_job
            if co.waiting == MG_YIELD_PYTHON and job is not None and job.gone is not None:
                job.gone()  # an ASGI app hears http.disconnect (pyport/asgiport.py)
        if events & _WANT.get(co.waiting, 0):
            self.stats["wakeups"] += 1
            if self.trace:
                self.trace_push(EV_WAKE_FD, co, fd, events)
            self.add_to_ready(co)

    # -- parking (csrc/worker.c: worker_park, unpark) ----------------------

    def park(self, co):
        """An idle keep-alive connection gives its coroutine up; True if parked
        (co.fd is -1 then: the coroutine's end leaves the socket open)."""
        if co.fd < 0:
            return False
        if co.park_deadline:
            deadline = co.park_deadline  # made at an unpark: the parked deadline goes on
        else:
            deadline = co.deadline if co.timer_class != MG_TIMER_NONE else float("inf")
        if self.trace:
            self.trace_push(EV_PARK, co, co.fd, co.requests)
        p = Parked(co.fd, co.sock, co.id, co.requests, deadline)
        parked = self.parked
        last = next(reversed(parked.values())) if parked else None
        parked[p.fd] = p
        if last is not None and last.deadline > deadline:
            # almost always in order (now + the same duration); else sort once
            items = sorted(parked.values(), key=lambda q: q.deadline)
            parked.clear()
            parked.update((q.fd, q) for q in items)
        self.fd_table[co.fd] = None
        self.stats["parked"] += 1
        co.fd, co.sock = -1, None
        return True

    def idle_link(self, co):
        """Lazy parking (csrc/worker.c worker_idle_link): a keep-alive connection waits
        as a coroutine first; idle_sweep parks it once it has waited MG_PARK_DELAY."""
        co.park_due = False
        self.idle[co] = self.now

    def idle_unlink(self, co):
        self.idle.pop(co, None)

    def _idle_sweep(self):
        """Idle past the delay: resumed with park_due set, the coroutine reads once more
        (input may have come while it sat on the ready queue) and parks at its EAGAIN."""
        idle = self.idle
        due = self.now - MG_PARK_DELAY
        while idle:
            co, since = next(iter(idle.items()))
            if since > due:
                break
            idle.popitem(last=False)
            if co.waiting == MG_YIELD_READ:
                co.park_due = True
                self.add_to_ready(co)

    def _heap_trim(self):
        """C: pools_trim.  The port pools no stacks or buffers of its own, but what a burst
        of connections freed (their coroutines, request bytes) sits amid malloc's heap:
        once the open connections fell by more than MG_POOL_KEEP, malloc_trim gives the
        free pages back, at most once a second (tests/test_burst_rss.py).  On PyPy that
        memory is garbage in the GC's arenas until a major collection: one runs first."""
        alive = self.stats["coroutines_alive"] + self.stats["parked"]
        if alive > self.trim_high:
            self.trim_high = alive
        if self.trim_high - alive <= MG_POOL_KEEP or self.now < self.trim_at:
            return
        self.trim_at = self.now + MG_POOL_TRIM
        self.trim_high = alive
        if _GC_FREES_LATE:
            gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)

    def _unpark(self, p, events):
        del self.parked[p.fd]
        self.stats["parked"] -= 1
        if self.trace:
            self.ring.append((time.monotonic_ns() // 1000, self.index, p.id, p.fd, EV_UNPARK, events, ""))
        co = coroutine_create(self, self.conn_entry, p.sock, id=p.id)
        co.requests = p.requests  # conn_entry: between requests, not a first one
        co.park_deadline = p.deadline
        self.stats["wakeups"] += 1
        self.add_to_ready(co)

    def _park_close(self, p):
        del self.parked[p.fd]
        self.stats["parked"] -= 1
        p.sock.close()  # also takes it out of the epoll set

    # -- timers: one list per class, in deadline order (csrc/worker.c) ---

    def timer_set(self, co, cls):
        self.timer_clear(co)
        co.timed_out = False
        d = self.durations[cls]
        if d <= 0:
            return
        co.timer_class = cls
        co.deadline = self.now + d
        self.timers[cls][co] = co.deadline

    def timer_clear(self, co):
        if co.timer_class != MG_TIMER_NONE:
            self.timers[co.timer_class].pop(co, None)
            co.timer_class = MG_TIMER_NONE

    def _next_timeout(self):
        if self.ready:
            return 0
        best = None
        for t in self.timers:
            if t:
                d = next(iter(t.values()))
                if best is None or d < best:
                    best = d
        if self.idle:
            d = next(iter(self.idle.values())) + MG_PARK_DELAY
            if best is None or d < best:
                best = d
        if self.parked:
            d = next(iter(self.parked.values())).deadline
            if d != float("inf") and (best is None or d < best):
                best = d
        if self.trim_high - self.stats["coroutines_alive"] - self.stats["parked"] > MG_POOL_KEEP and (
            best is None or self.trim_at < best
        ):
            best = self.trim_at  # a burst is over: trim on time
        due = alog_tick(self)  # pending access-log lines wait no longer than this
        if due is not None and (best is None or self.now + due < best):
            best = self.now + due
        if best is None:
            return -1
        return max(0.0, min(best - self.now, 60.0)) + 0.001

    def _expire_timers(self):
        self._idle_sweep()
        self._heap_trim()
        now = self.now
        parked = self.parked
        while parked:
            p = next(iter(parked.values()))
            if p.deadline > now:
                break
            self.stats["timeouts"] += 1
            self._park_close(p)
        for cls, t in enumerate(self.timers):
            while t:
                co, deadline = next(iter(t.items()))
                if deadline > now:
                    break
                t.popitem(last=False)
                co.timer_class = MG_TIMER_NONE
                co.timed_out = True
                self.stats["timeouts"] += 1
                if cls == MG_TIMER_PYTHON and co.waiting == MG_YIELD_PYTHON:
                    job = co.py_job
                    if job is not None and job.gone is not None:
                        # the round is given up (504, orphaned): an ASGI app still holding
                        # the request hears http.disconnect (C: timers_expire -> mg_py_gone)
                        job.gone()
                if co.waiting in (MG_YIELD_READ, MG_YIELD_WRITE) or (
                    cls == MG_TIMER_PYTHON and co.waiting == MG_YIELD_PYTHON
                ):
                    self.add_to_ready(co)  # a pooled round: call_python gives it up (504)

    # -- handler threads' completions (csrc/pycall.c: mg_call_post, drain_posts) --

    def post(self, job):
        """Any thread: hand a finished job back; the wake fd is written only when the
        list was empty (the worker clears it before taking the list)."""
        with self.post_lock:
            was_empty = not self.posted
            self.posted.append(job)
        if was_empty:
            try:
                os.write(self.post_w, b"\1\0\0\0\0\0\0\0")
            except OSError:  # the worker is gone (freed): nobody waits for it
                pass

    def drain_posts(self):
        try:
            while os.read(self.post_r, 4096) and self.post_r != self.post_w:
                pass  # a pipe: empty it (an eventfd reads as one counter)
        except (BlockingIOError, InterruptedError):
            pass
        with self.post_lock:
            jobs, self.posted = self.posted, []
        for job in jobs:
            self.inflight -= 1
            job.posted = True
            co = job.co
            if job.orphan:
                if job.close_after is not None:
                    close_later(co, job.close_after[0], None, job.close_after[1])
                elif job.late is not None and job.exc is None:
                    self.inflight += 1
                    self.pool.put(Job(None, self, job.late, (job.result,)))
                continue
            if co is None or co.finished:
                continue
            if self.trace:
                self.trace_push(EV_WAKE_PYTHON, co, co.fd)
            self.add_to_ready(co)

    # -- the dispatch pipe -----------------------------------------------

    def _read_dispatch_pipe(self):
        while True:
            try:
                data = os.read(self.pipe_r, 4 * MG_FD_BATCH)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            if not data:
                return
            fd_batch = struct.unpack("%di" % (len(data) // 4), data)
            for fd in fd_batch:
                if fd >= 0:
                    self._accept_from_pipe(fd)
                elif fd == MG_CMD_STOP:
                    self._begin_graceful_stop()
                elif fd == MG_CMD_EXIT:
                    self.exiting = True
            if len(data) < 4 * MG_FD_BATCH:
                return

    def _accept_from_pipe(self, fd):
        self.stats["connections"] += 1
        if self.trace:
            self.trace_push(EV_FD_BATCH, None, fd)
        limit = self.cfg["max_connections"]
        if limit and self.engine.conns_open() >= limit:  # over all workers (parked ones are open)
            out, head = busy(self)
            try:  # over --max-connections: say so and close, never stall
                n = send_early(fd, out)
            except OSError:
                n = -1
            if self.alog is not None:
                alog_rejected(self, fd, 503, n - head if n > head else 0)
            os.close(fd)
            self.stats["rejected"] += 1
            return
        if fd >= len(self.fd_table):
            os.close(fd)
            return
        sock = socket.socket(fileno=fd)
        # the acceptor made the fd non-blocking, and CPython leaves it so; PyPy's
        # socket(fileno=) applies the default timeout (None: blocking) to the fd, and every
        # recv_async would then sleep in recv(2) until its client sent, the worker's other
        # connections waiting behind it (tests/test_connections.py:
        # test_idle_keepalive_connection_never_holds_up_its_worker)
        sock.setblocking(False)
        co = coroutine_create(self, self.conn_entry, sock)
        self.epfd.register(fd, _EPOLL_SOCK)
        self.add_to_ready(co)

    def _begin_graceful_stop(self):
        self.stopping = True
        # an idle connection gets MG_DRAIN_IDLE more to send one last request, answered
        # with "Connection: close": a client may be sending it right now (csrc/worker.c)
        # (queued ones too: woken by a blank line or just unparked, still between requests)
        drain = self.now + MG_DRAIN_IDLE
        for co in list(self.all):
            # (park_deadline: unparked in this batch, conn_entry not yet begun)
            if (
                not (co.idle or co.park_deadline)
                or co.timed_out
                or co.waiting not in (MG_YIELD_READ, MG_YIELD_READY)
            ):
                continue
            if co.timer_class == MG_TIMER_NONE or co.deadline > drain:
                self.timer_set(co, MG_TIMER_DRAIN)
            if co.park_deadline > drain:
                co.park_deadline = drain  # unparked: the deadline it parks again with
        # parked ones too; min() keeps them in order
        for p in self.parked.values():
            p.deadline = min(p.deadline, drain)

    # -- the loop ----------------------------------------------------------

    def run(self):
        poll = self.epfd.poll
        pipe_r = self.pipe_r
        self.now = time.monotonic()
        shared = self.engine.shared
        while not self.exiting:
            self.schedule()
            if (
                self.stopping
                and self.stats["coroutines_alive"] == 0
                and self.inflight == 0
                and not self.parked
            ):
                break
            if shared is not None:  # once per iteration, never per request (csrc/worker.c)
                shared[0].publish(shared[1], self.index, self.stats_dict())
            try:
                events = poll(self._next_timeout(), 512)
            except InterruptedError:
                continue
            self.now = time.monotonic()
            for fd, ev in events:
                if fd == pipe_r:
                    self._read_dispatch_pipe()
                elif fd == self.post_r:
                    self.drain_posts()
                else:
                    self.wake_fd(fd, ev)
            self._expire_timers()
        self.ready.clear()
        for co in list(self.all):
            coroutine_destroy(co)
        while self.parked:
            self._park_close(next(iter(self.parked.values())))
        alog_tick(self, force=True)  # every line written so far goes to the writer
        if shared is not None:  # the final counts, for the master's table
            shared[0].publish(shared[1], self.index, self.stats_dict())
        return 0

    def stop(self, graceful=True):
        os.write(self.pipe_w, struct.pack("i", MG_CMD_STOP if graceful else MG_CMD_EXIT))

    def stats_dict(self):
        st = dict(self.stats)
        st["yields"] = dict(self.stats["yields"])
        st["cache_entries"] = len(self.cache.entries) if self.cache.enabled else 0
        return st

    def free(self):
        alog_tick(self, force=True)  # a worker that never ran its loop to the end
        self.cache.clear()
        for fd in {self.pipe_r, self.pipe_w, self.post_r, self.post_w}:
            os.close(fd)
        self.epfd.close()
