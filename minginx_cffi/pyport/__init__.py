"""pyport: the pure-Python port of the engine, the same architecture one flag away (--engine python).

Read it beside csrc/, file for file:

    csrc/coroutine.c  ->  coroutine.py   coroutine_create, trampoline_start, coroutine_destroy
    csrc/worker.c     ->  worker.py      epoll, dispatch pipe, fd_batch, add_to_ready, schedule, wake_fd
    csrc/acceptor.c   ->  acceptor.py    accept loop, dispatch
    csrc/io.c         ->  io.py          recv_async, send_async, sendfile_async, TCP_CORK
    csrc/http.c       ->  http.py        parse_http, chunked decoding, header ids
    csrc/conn.c       ->  conn.py        conn_entry (the seed's entry)
    csrc/static.c     ->  static.py      static_serve, decode_path, the open-file cache
    csrc/cache.c
    csrc/trace.c      ->  ring.py        a trace ring: the printer's drain, /_minginx/trace's copy

Coroutines are generators (``yield`` plays swapcontext); a worker is a
thread with its own select.epoll.  Standard library only.  Python's threads
share one GIL, so workers here take turns rather than run in parallel.
"""

import time

from ..config import OPTIONS
from . import static
from .acceptor import Acceptor
from .accesslog import AccessLog
from .worker import HandlerPool, Worker

__all__ = ["Engine"]


class _WorkerHandle:
    """The interface minginx_cffi.server expects of a worker (as _native.Worker)."""

    def __init__(self, worker):
        self._w = worker

    def run(self):
        return self._w.run()

    def stop(self, graceful=True):
        self._w.stop(graceful)

    def stats(self):
        return self._w.stats_dict()

    def free(self):
        self._w.free()


def _by_time(rec):
    return rec[0]


class Engine:
    """Same constructor and methods as minginx_cffi._native.Engine: ``Engine(config,
    dispatch, access_log_fd=None)``; the rows the port lacks (config.OPTIONS' engines)
    were refused by the Config."""

    def __init__(self, config, dispatch=None, access_log_fd=None):
        # As _native.Engine: inline handlers cannot time out (the worker runs them); pooled
        # ones can, every round; an ASGI app until its head (asgiport.py: START rounds only).
        asgi = getattr(dispatch, "asgi", None)
        threads = config.threads
        self.config = config
        # every row the port has, by its name, then what follows from the rows
        self.cfg = {
            row.name: getattr(config, row.name)
            for row in OPTIONS
            if row.engine_arg and "python" in row.engines
        }
        self.cfg.update(
            root=config.root,
            static_files=config.static_files,
            max_connections=config.max_connections_per_process,
            trace=bool(config.trace),
            stats=bool(config.stats),
            handler_timeout=config.handler_timeout if threads > 0 or asgi else 0,
            add_headers=config.add_headers or None,
            forwarded_allow=[n for n in config.forwarded_allow if n != "*"],
            forwarded_allow_all="*" in config.forwarded_allow,
            error_pages=static.error_pages(config.error_pages),
        )
        access_log_path = config.access_log if config.access_log != "-" else None
        access_log_format = config.access_log_format
        # the access log's writer (accesslog.py): the fd is duplicated, the caller keeps its own
        self.alog = (
            AccessLog(access_log_fd, access_log_path, access_log_format)
            if access_log_fd is not None
            else None
        )
        self.started = time.monotonic()
        self.shared = None  # share_stats: (procstats.SharedStats, this process's slot)
        self.dispatch = dispatch
        self.pool = HandlerPool(threads) if dispatch is not None and threads > 0 else None
        self.pipes = []  # each worker's dispatch pipe, for the acceptor
        self.workers = []  # handles with _native.Worker's interface
        self._acceptor = Acceptor(self)

    def share_stats(self, shared, slot):
        """As _native.Engine.share_stats: the workers publish into slot of shared."""
        self.shared = (shared, slot)

    def conns_open(self):
        """The connections open in this process, every worker's (--max-connections)."""
        return sum(h._w.stats["coroutines_alive"] + h._w.stats["parked"] for h in self.workers)

    def acceptor_ring(self):
        """The acceptor's trace records (GET /_minginx/trace looks up a connection's accept)."""
        return self._acceptor.ring

    def add_worker(self):
        w = Worker(self, len(self.workers))
        self.pipes.append(w.pipe_w)
        h = _WorkerHandle(w)
        self.workers.append(h)
        return h

    def trace_drain(self):
        """Records since the last call, in time order (as _native.Engine.trace_drain)."""
        out = []
        for ring in [self._acceptor.ring] + [h._w.ring for h in self.workers]:
            ring.drain(out)  # what was printed stays for /_minginx/trace, as in C
        out.sort(key=_by_time)  # stable: each ring keeps its own order within a tie
        return out

    @property
    def trace_dropped(self):
        """Records lapped before the printer drained them, all rings (as _native.Engine)."""
        return sum(ring.dropped for ring in [self._acceptor.ring] + [h._w.ring for h in self.workers])

    def accept_loop(self, listen_fd, wake_fd):
        return self._acceptor.accept_loop(listen_fd, wake_fd)

    def reopen_log(self):
        """As _native.Engine.reopen_log: the writer flushes, opens the path again, swaps."""
        if self.alog is None or not self.alog.path:
            return False
        self.alog.reopen()
        return True

    def stop_pool(self, timeout=None):
        """As _native.Engine.stop_pool: True once no handler thread runs."""
        return self.pool is None or self.pool.stop(timeout)

    def free(self):
        if not self.stop_pool(0):
            raise RuntimeError("minginx-cffi: engine freed while a handler thread runs")
        for h in self.workers:
            h.free()
        self.workers = []
        self.pipes = []
        self._acceptor.close()
        if self.alog is not None:
            self.alog.close()  # after the workers handed their lines over
            self.alog = None
