"""acceptor.py - the main thread's accept loop and dispatch() (csrc/acceptor.c).

Sleeps in epoll on the listening socket and a wake-up pipe (signals write to
it); accepts until EAGAIN and writes each fd, 4 bytes, down the next
worker's pipe, round-robin.  Out of fds: pause accepting for 100 ms.
"""

import collections
import errno
import os
import select
import socket
import struct
import time

from ..trace import EV_ACCEPT, EV_DISPATCH

ACCEPT_BACKOFF = 0.1


class Acceptor:
    def __init__(self, engine):
        self.engine = engine
        self.ep = select.epoll()
        self.next_worker = 0
        self.paused = False
        self.registered = set()
        self.trace = engine.cfg["trace"]
        self.ring = collections.deque(maxlen=16384)

    def dispatch(self, fd):
        pipes = self.engine.pipes
        for _ in range(len(pipes)):
            index = self.next_worker % len(pipes)
            self.next_worker += 1
            if self.trace:   # before the write: the worker may read it at once
                self.ring.append((time.monotonic_ns() // 1000, -1, 0, fd, EV_DISPATCH, index))
            try:
                os.write(pipes[index], struct.pack("i", fd))
                return True
            except BlockingIOError:
                continue
        return False

    def _register(self, fd):
        if fd not in self.registered:
            self.ep.register(fd, select.EPOLLIN)
            self.registered.add(fd)

    def _unregister(self, fd):
        if fd in self.registered:
            self.ep.unregister(fd)
            self.registered.discard(fd)

    def accept_loop(self, listen_fd, wake_fd):
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
                        try:
                            while os.read(wake_fd, 64):
                                pass
                        except BlockingIOError:
                            pass
                        return 0
                    if fd == listen_fd and self._accept_batch(lsock):
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
                self.ring.append((time.monotonic_ns() // 1000, -1, 0, fd, EV_ACCEPT, 0))
            if not self.dispatch(fd):
                os.close(fd)
        return False

    def close(self):
        self.ep.close()
