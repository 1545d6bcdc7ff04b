"""coroutine.py - coroutines as generators: coroutine_create, trampoline_start, coroutine_destroy.

The C engine (csrc/coroutine.c) gives each coroutine its own stack and
switches with swapcontext.  Here a generator plays the coroutine: `yield`
is the swapcontext back to schedule(), and gen.send() the one into it.  A
generator's frame lives on the heap and runs on whatever thread stack calls
send(), so there is no stack to allocate, guard or pool, and a Python
handler called from a coroutine runs on the worker thread's stack anyway.

What a coroutine yields is the reason it stopped (csrc/minginx.h mg_yield).
"""

from ..trace import EV_COROUTINE_CREATE, EV_COROUTINE_DESTROY, EV_FINISHED, EV_TRAMPOLINE_START

MG_YIELD_READY, MG_YIELD_READ, MG_YIELD_WRITE, MG_YIELD_PYTHON = range(4)
(
    MG_TIMER_NONE,
    MG_TIMER_HEADER,
    MG_TIMER_KEEPALIVE,
    MG_TIMER_SEND,
    MG_TIMER_LINGER,
    MG_TIMER_PYTHON,
    MG_TIMER_DRAIN,
) = range(7)
MG_DRAIN_IDLE = 1.0  # seconds an idle connection gets at a graceful stop (C: MG_DRAIN_IDLE_MS)
MG_PARK_DELAY = 0.1  # seconds a keep-alive connection waits as a coroutine before it is parked
# (C: MG_PARK_DELAY_MS; csrc/worker.c says why 100 ms)


class Coroutine:
    """A connection's coroutine (C: struct mg_coroutine)."""

    __slots__ = (
        "worker",
        "entry",
        "gen",
        "id",
        "fd",
        "sock",
        "finished",
        "waiting",
        "timed_out",
        "idle",
        "timer_class",
        "deadline",
        "centry",
        "py_job",
        "hup",
        # the access log's view of the response in flight (accesslog.py)
        "status",
        "sent",
        "log_sent0",
        "head_bytes",
        "log_start",
        "peer",
        "client",
        # between requests (worker.park): heads read so far; an unparked one's deadline
        "requests",
        "park_deadline",
        # lazy parking (worker.idle_link, idle_sweep): idle past the delay, park at the next EAGAIN
        "park_due",
        # with --trace: "METHOD /path" of the request in flight (C: trace_req, trace_parse);
        # trace_yield: what the next yield is, for the trace: io_park's wait to read is
        # recv_async's (C: coroutine_yield_io), a handler's round is run_python's after it
        "trace_req",
        "trace_yield",
    )

    def __repr__(self):
        return "<Coroutine %d fd %d>" % (self.id, self.fd)


def trampoline_start(co):
    """The generator every coroutine runs: the entry, then finished = 1."""
    w = co.worker
    if w.trace:
        w.trace_push(EV_TRAMPOLINE_START, co, co.fd)
    yield from co.entry(co)
    co.finished = 1
    if w.trace:
        w.trace_push(EV_FINISHED, co, co.fd)


def coroutine_create(w, entry, sock, id=0):
    """id: a parked connection's next coroutine keeps the connection's (C: coroutine_create_as)."""
    co = Coroutine()
    co.worker = w
    co.entry = entry
    if not id:
        w.next_id += 1
        id = w.next_id
    co.id = id
    co.sock = sock
    co.fd = sock.fileno() if sock is not None else -1
    co.finished = 0
    co.waiting = -1
    co.timed_out = co.idle = False
    co.timer_class = MG_TIMER_NONE
    co.deadline = 0.0
    co.centry = None
    co.py_job = None
    co.hup = False  # the peer hung up (EPOLLRDHUP/HUP/ERR seen): worker.wake_fd
    co.status = 0  # the status of the response begun (io.send_async reads it off the head)
    co.sent = co.log_sent0 = 0  # bytes sent on the connection; when this response began
    co.head_bytes = None  # bytes of this response's head, once it responds (h1.py Exchange)
    co.log_start = 0.0
    co.peer = None  # (address, port), looked up once (front.conn_peer)
    co.client = None  # THE CLIENT of the request in flight (front.py: request_client, conn_client)
    co.requests = 0
    co.park_deadline = 0.0
    co.park_due = False
    co.trace_req = ""
    co.trace_yield = 0
    co.gen = trampoline_start(co)
    if co.fd >= 0:
        w.fd_table[co.fd] = co
    if w.trace:
        w.trace_push(EV_COROUTINE_CREATE, co, co.fd)
    w.all.add(co)
    w.stats["coroutines_alive"] += 1
    w.stats["coroutines_total"] += 1
    return co


def coroutine_destroy(co):
    w = co.worker
    if w.trace:
        w.trace_push(EV_COROUTINE_DESTROY, co, co.fd)
    w.timer_clear(co)
    w.idle.pop(co, None)
    w.all.discard(co)
    if co.centry is not None:
        co.centry.release()
        co.centry = None
    if co.fd >= 0:
        w.fd_table[co.fd] = None
        co.sock.close()  # also takes it out of the epoll set
    co.gen.close()  # a coroutine destroyed while parked: finally blocks run
    w.stats["coroutines_alive"] -= 1
