"""acceptor.py - the main thread's accept loop and dispatch() (csrc/acceptor.c).

Sleeps in epoll on the listening socket and a wake-up pipe (signals write to
it; it returns when the pipe is readable and leaves its bytes to the caller);
accepts until EAGAIN, queues each fd for the next worker, round-robin, and then
writes each worker's fds down its pipe at once (4 bytes each, one wake-up per
worker).  Out of fds: pause accepting for 100 ms.
"""

import errno
import os
import select
import socket
import struct
import time

from ..trace import EV_ACCEPT, EV_DISPATCH
from .ring import TraceRing

ACCEPT_BACKOFF = 0.1
MG_DISPATCH_BATCH = 64  # fds sent to a worker in one write


class Acceptor:
    def __init__(self, engine):
        self.engine = engine
        self.ep = select.epoll()
        self.next_worker = 0
        self.paused = False
        self.registered = set()
        self.trace = engine.cfg["trace"]
        self.ring = TraceRing()
        self.queues = []  # per worker: fds accepted, not yet written down its pipe

    def dispatch(self, fd):
        """Queue fd for the next worker, round-robin; dispatch_flush() sends the queues."""
        index = self.next_worker % len(self.queues)
        self.next_worker += 1
        if self.trace:  # before the write: the worker may read it at once
            self.ring.append((time.monotonic_ns() // 1000, -1, 0, fd, EV_DISPATCH, index, ""))
        self.queues[index].append(fd)
        if len(self.queues[index]) >= MG_DISPATCH_BATCH:
            self._flush_one(index)

    def _flush_one(self, index):
        fds, self.queues[index] = self.queues[index], []
        pipes = self.engine.pipes
        data = struct.pack("%di" % len(fds), *fds)  # < PIPE_BUF: all or nothing
        for k in range(len(pipes)):  # a full pipe passes them to the next worker
            try:
                os.write(pipes[(index + k) % len(pipes)], data)
                return
            except BlockingIOError:
                continue
        for fd in fds:  # every worker is 16,000 connections behind: shed them
            os.close(fd)

    def dispatch_flush(self):
        for index, q in enumerate(self.queues):
            if q:
                self._flush_one(index)

    def _register(self, fd):
        if fd not in self.registered:
            self.ep.register(fd, select.EPOLLIN)
            self.registered.add(fd)

    def _unregister(self, fd):
        if fd in self.registered:
            self.ep.unregister(fd)
            self.registered.discard(fd)

    def accept_loop(self, listen_fd, wake_fd):
        self.queues = [[] for _ in self.engine.pipes]
        self._register(wake_fd)
        if not self.paused:
            self._register(listen_fd)
        lsock = socket.socket(fileno=os.dup(listen_fd))
        lsock.setblocking(False)
        try:
            while True:
                events = self.ep.poll(ACCEPT_BACKOFF if self.paused else -1)
                if not events and self.paused:
                    self.paused = False
                    self._register(listen_fd)
                    continue
                for fd, _ in events:
                    if fd == wake_fd:
                        return 0  # its bytes are the caller's: server.py counts a stop per signal
                    if fd == listen_fd:
                        back_off = self._accept_batch(lsock)
                        self.dispatch_flush()
                        if back_off:
                            self.paused = True
                            self._unregister(listen_fd)
        finally:
            lsock.close()
            self._unregister(listen_fd)

    def _accept_batch(self, lsock):
        for _ in range(1024):
            try:
                conn, _ = lsock.accept()
            except BlockingIOError:
                return False
            except (InterruptedError, ConnectionAbortedError):
                continue
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return True
                if e.errno in (errno.EPROTO, errno.EPERM):
                    continue
                return True
            conn.setblocking(False)
            # TCP_NODELAY comes from the listener (server.py: _tune_listener)
            fd = conn.detach()
            if self.trace:
                self.ring.append((time.monotonic_ns() // 1000, -1, 0, fd, EV_ACCEPT, 0, ""))
            self.dispatch(fd)
        return False

    def close(self):
        self.ep.close()
