"""Orchestration: the listening socket, N worker threads running the C loop, the acceptor, shutdown.

The threads, and what each runs:

* N worker threads: ``Worker.run()``, the C worker loop, with the GIL released
  for as long as the worker lives;
* the main thread: ``Engine.accept_loop()``, the C acceptor, also without the
  GIL.  It returns to Python only when the wake-up pipe is written to, which
  ``signal.set_wakeup_fd`` does on SIGINT/SIGTERM, so Python's signal handlers
  run promptly and the loop never polls.  It leaves the pipe's bytes to Python,
  which counts them: one byte per signal delivered (_take_wakeups).

Shutdown (SIGINT/SIGTERM, or ``Server.shutdown()``): stop accepting, ask each
worker to stop gracefully (idle connections close, in-flight responses
finish, the last response on each connection says ``Connection: close``), wait
up to ``grace`` seconds, then cut off whatever is left.  A second SIGINT cuts
off at once.
"""

from __future__ import annotations

import importlib
import inspect
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable

from . import __version__, _native
from . import config as _config
from . import log as _log
from .config import DEFAULT_HANDLER_TIMEOUT, DEFAULT_THREADS, ENGINE_NAMES, Config, ConfigError, default_root
from .log import logger

__all__ = [
    "Server",
    "ServerError",
    "serve",
    "default_root",
    "load_app",
    "ENGINES",
    "DEFAULT_THREADS",
    "DEFAULT_HANDLER_TIMEOUT",
]


def _python_engine(config, dispatch, access_log_fd=None):
    from .pyport import Engine

    return Engine(config, dispatch, access_log_fd)


#: engines by name (the CLI's --engine choices): the C core, or the pure-Python port;
#: each is Engine(config, dispatch)
ENGINES = {"cffi": _native.Engine, "python": _python_engine}
assert tuple(ENGINES) == ENGINE_NAMES


class ServerError(Exception):
    """A problem the user can fix (a root that is not a directory, a port in use...).
    Its message is one line; detail, where there is one, is what leads up to it (an app's
    own frames when its import failed), logged before the line."""

    detail: str | None = None


def open_access_log(path):
    """An fd to append the access log to (1 for "-"), or None; ServerError if it cannot open."""
    if path is None:
        return None
    if path == "-":
        return 1
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise ServerError("cannot open the access log %s: %s" % (path, e.strerror)) from None


def same_file(fd1, fd2):
    """fd1 and fd2 write to one file: one terminal, or one file or pipe (2>&1)."""
    try:
        a, b = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def announce(banner):
    """The banner: a line on stdout (for scripts) and a record of the error log, but
    once only where both reach the same place (a terminal, or 2>&1): the record then.
    OSError if stdout cannot be written."""
    if not same_file(1, 2):
        print(banner, flush=True)
    logger.info("%s", banner)


def raise_fd_limit():
    """The seed's ``ulimit -n`` step: lift the soft fd limit to the hard one.  Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ValueError, OSError):
        return soft


def check_spec(spec):
    """Split "module:attribute" without importing anything (serve()'s master checks it)."""
    try:
        return _config.check_spec(spec)
    except ConfigError as e:
        raise ServerError(str(e)) from None


def load_app(spec):
    """Import "module:attribute" (as uvicorn and gunicorn do, from the current directory)."""
    module_name, attr = check_spec(spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            raise ServerError("cannot import %r: %s" % (module_name, e)) from None  # it is not there
        raise _app_failure(module_name, e) from None
    except Exception as e:  # SyntaxError, or what its code raised (DATABASE_URL is not set)
        raise _app_failure(module_name, e) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServerError("module %r has no attribute %r" % (module_name, attr)) from None
    return obj


def _app_failure(module_name, e):
    """An exception raised while the app's module was imported, as uvicorn shows it: a
    ServerError whose line sums it up and whose detail is the traceback of the app's own
    frames (not the server's, not importlib's)."""
    ours = (
        os.path.dirname(os.path.abspath(__file__)) + os.sep,
        os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep,
        "<frozen importlib",
    )
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if not f.filename.startswith(ours)
        and "frozen importlib" not in f.filename  # PyPy: "<builtin>/frozen ..."
    ]
    lines = traceback.format_exception_only(type(e), e)
    if frames:
        lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames) + lines
    what = "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__
    if isinstance(e, SyntaxError):
        what = "SyntaxError: %s (%s, line %s)" % (e.msg, e.filename, e.lineno)
    err = ServerError("cannot import %r: %s" % (module_name, what))
    err.detail = "importing %r failed:\n%s" % (module_name, "".join(lines).rstrip())
    return err


def app_kind(obj):
    """What an application object is, told cheaply by its shape: "app" (a minginx_cffi.App),
    "asgi" (an async callable: ``async def app(scope, receive, send)``, or an object whose
    ``__call__`` is one, as FastAPI's and Starlette's), "wsgi" (a plain callable taking
    exactly (environ, start_response), as Flask's and Django's), else None (unknown)."""
    from .app import App

    if isinstance(obj, App):
        return "app"
    if not callable(obj):
        return None
    # the class's __call__ itself (not callable(obj)): is it a coroutine function?
    call = obj if inspect.isroutine(obj) else getattr(type(obj), "__call__", None)  # noqa: B004
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(obj):
        return "asgi"
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return "wsgi"
    return None


_KIND_NAMES = {"app": "a minginx_cffi.App", "asgi": "an ASGI application", "wsgi": "a WSGI application"}


def check_app_kind(flag, want, obj, spec):
    """One line for an application given to the wrong flag (--app, --wsgi, --asgi):
    what it looks like and the flag to use instead (issue 13, "Errors users expect")."""
    kind = app_kind(obj)
    what = spec if isinstance(spec, str) else type(obj).__name__
    if kind is not None and kind != want:
        hint = "--%s %s" % (kind, spec) if isinstance(spec, str) else "Server(%s=...)" % kind
        raise ServerError(
            "--%s wants %s; %s is %s (%s): use %s"
            % (flag, _KIND_NAMES[want], what, _KIND_NAMES[kind], type(obj).__name__, hint)
        )
    if kind is None and (want == "app" or not callable(obj)):
        raise ServerError("--%s wants %s, got %s (%s)" % (flag, _KIND_NAMES[want], what, type(obj).__name__))


class Server:
    """A minginx-cffi server: ``Server(root=...).serve_forever()``.

    For embedding (and the tests), ``start()`` runs the acceptor on a
    background thread instead and ``shutdown()`` stops it.
    """

    def __init__(self, config: Config | None = None, *, stats_slot: Any = None, **settings: Any) -> None:
        # config: a config.Config; or its settings as keywords (Server(root=..., port=0)),
        # or both (the keywords change the config's).  stats_slot: (procstats.SharedStats,
        # i), this process's slot (--processes).  log_level: "debug".."critical" sets the
        # "minginx_cffi" logger's level and C's (None: the embedding program's logging
        # config decides); log.configure() is the CLI's.
        try:
            if config is None:
                config = Config(**settings)
            elif settings:
                config = config.replace(**settings)
        except ConfigError as e:
            raise ServerError(str(e)) from None
        if not isinstance(config, Config):
            raise ServerError("Server() takes a config.Config, not %r" % (config,))
        if stats_slot is not None:
            from .procstats import SharedStats

            shared, slot = stats_slot
            if (
                not isinstance(shared, SharedStats)
                or not isinstance(slot, int)
                or not 0 <= slot < shared.nslots
            ):
                raise ServerError("stats_slot must be (SharedStats, a slot index), not %r" % (stats_slot,))
        self.stats_slot = stats_slot
        app, wsgi, asgi = config.app, config.wsgi, config.asgi
        for flag, spec in (("app", app), ("wsgi", wsgi), ("asgi", asgi)):
            if spec is not None:
                obj: Any = load_app(spec) if isinstance(spec, str) else spec
                check_app_kind(flag, flag, obj, spec)
                app, wsgi, asgi = (
                    obj if flag == "app" else app,
                    obj if flag == "wsgi" else wsgi,
                    obj if flag == "asgi" else asgi,
                )
        if config.log_level is not None:
            _log.set_level(config.log_level)  # after the app's import: it may have configured logging
        self.config = config
        self.app, self.wsgi, self.asgi = app, wsgi, asgi
        self.root_path = config.root_path
        self._asgi_runner = None
        # what the rest of the server reads, named as before
        self.engine = config.engine
        self.static_files = config.static_files
        self.processes = config.processes
        self.root = config.root
        self.host, self.port = config.host, config.port
        self.nworkers = config.nworkers
        self.threads = config.threads
        self.policy = config.policy
        self.grace = config.grace
        self.pid_file = config.pid_file
        # trace: True prints each step (--trace); a callable receives the records instead
        self.trace = config.trace
        self.stats_enabled = config.stats
        self.uring_flags = config.uring_flags
        self.io, self.accept, self.switch = config.io, config.accept, config.switch
        self.reuse_port = config.reuse_port
        self.defer_accept = config.defer_accept
        # Sockets handed in (--fd N, --uds PATH) and the user to become once bound
        # (--user/--group); serve() uses them for the CLI, a Server on its own too.
        self.fd, self.uds = config.fd, config.uds
        self._uds_bound = None  # the socket file bind() made, removed at the end
        self.user, self.group = config.user, config.group
        self._listeners: list[socket.socket] = []
        self._adopted: list[socket.socket] = []  # reuseport: the other workers' listeners, from adopt()
        self._trace_thread = None
        self._trace_t0 = None
        self._trace_dropped = 0  # the engine's count of lapped records, as last printed
        self.proxy_headers = bool(config.proxy_headers)
        self.access_log, self.access_log_format = config.access_log, config.access_log_format
        self.access_log_fd = None  # an fd the master opened for us (--user): used before the path
        if self.access_log not in (None, "-"):
            os.close(open_access_log(self.access_log))  # created now, as nginx creates its logs
        self.fd_limit = None
        self._sock = None
        self._engine: Any = None
        self._threads: list[threading.Thread] = []
        self._wake_r = self._wake_w = -1
        self._acceptor: threading.Thread | None = None
        self._stop_requested = 0
        self._quiet = False
        self._no_summary = False
        self._pool_done = False

    # -- set-up ---------------------------------------------------------

    def _bind_one(self):
        """One more listener on the port bind() claimed, joining it with SO_REUSEPORT."""
        return bind_another(self._sock, self.config)

    def adopt(self, sock):
        """Serve on listener(s) bound elsewhere: serve()'s master process hands each
        server process its own, so that every listener outlives any one generation of
        processes (a listener closed with connections in its queue would reset them).
        A list gives --accept reuseport one listener per worker, the first one first."""
        socks = list(sock) if isinstance(sock, (list, tuple)) else [sock]
        if self.accept == "reuseport" and len(socks) not in (1, self.nworkers):
            raise ServerError("adopt: %d listeners for %d workers" % (len(socks), self.nworkers))
        self._sock, self._adopted = socks[0], socks[1:]
        name = self._sock.getsockname()
        if self._sock.family == socket.AF_UNIX:
            self.uds = name if isinstance(name, str) else name.decode(errors="replace")
            self.port = 0
        else:
            self.host, self.port = name[0], name[1]

    def bind(self):
        """Claim the listening socket: --uds's Unix socket, --fd's inherited one, or
        host:port.  With user/group set, become that user once it is bound."""
        from . import _sockets

        sock, self._uds_bound = bind_listener(self.config)
        self.adopt(sock)
        if self.user is not None or self.group is not None:
            _sockets.drop_privileges(self.user, self.group, readable_dirs(self.config))
        return sock

    def _start_workers(self):
        self.fd_limit = raise_fd_limit()
        dispatch = None
        if self.app is not None:
            from .app import make_dispatch

            dispatch = make_dispatch(self.app)
        elif self.wsgi is not None:
            from . import wsgi

            dispatch = wsgi.make_dispatch(
                self.wsgi,
                multithread=self.nworkers > 1 or self.threads > 1,
                multiprocess=self.processes > 1,
                server_name=self.host,
            )
        elif self.asgi is not None:
            dispatch = self._start_asgi()
        try:
            log_fd = self.access_log_fd
            if log_fd is None:
                log_fd = open_access_log(self.access_log)
            try:
                self._engine = ENGINES[self.engine](self.config, dispatch, access_log_fd=log_fd)
            finally:
                if log_fd is not None and log_fd != 1 and log_fd != self.access_log_fd:
                    os.close(log_fd)  # the engine keeps a duplicate
        except ServerError:
            self._stop_asgi()
            raise
        except OSError as e:
            self._stop_asgi()
            raise ServerError("cannot serve %s: %s" % (self.root, e.strerror)) from None
        except BaseException:
            self._stop_asgi()
            raise
        if self.stats_slot is not None:
            self._engine.share_stats(*self.stats_slot)
        try:
            self._start_threads()
        except BaseException as e:
            self._stop_workers_now()
            self._close_listener()
            self._free(summary=False)
            if isinstance(e, OSError):
                raise ServerError("cannot start the workers: %s" % (e.strerror or e)) from None
            raise

    def _start_asgi(self):
        """The loop thread and lifespan startup, before any request; the app's dispatcher."""
        from . import asgi

        runner = asgi.Runner(self.asgi, root_path=self.root_path, server=self.host)
        try:
            runner.start()
        except asgi.StartupFailed as e:
            raise ServerError("ASGI startup failed: %s" % e) from None
        self._asgi_runner = runner
        return runner.make_dispatch()

    def _stop_asgi(self):
        """Lifespan shutdown and the loop's end: after the workers, before the engine's
        memory goes (a parked call must not be answered into freed memory)."""
        runner, self._asgi_runner = self._asgi_runner, None
        if runner is not None:
            runner.stop()

    def _start_threads(self):
        if self.accept == "reuseport":
            # one listener per worker, all on the port: the kernel spreads the connections
            self._listeners = [self._sock] + (
                self._adopted or [self._bind_one() for _ in range(self.nworkers - 1)]
            )
            self._adopted = []
        for i in range(self.nworkers):
            w = self._engine.add_worker()
            if self._listeners:
                w.listen(self._listeners[i].fileno())
            t = threading.Thread(target=w.run, name="minginx-worker-%d" % i, daemon=True)
            t.start()
            self._threads.append(t)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.trace is True or callable(self.trace):  # "record": kept for /_minginx/trace only
            self._trace_stop = threading.Event()
            self._trace_thread = threading.Thread(target=self._trace_loop, name="minginx-trace", daemon=True)
            self._trace_thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def listen_text(self) -> str:
        """Where it listens, for the banner: http://127.0.0.1:3094, http://[::1]:80, unix:PATH."""
        if self.uds is not None:
            return "unix:%s" % self.uds
        return "http://%s:%d" % (self.host if ":" not in self.host else "[%s]" % self.host, self.port)

    def banner(self) -> str:
        """One line: what answers what ("files under ROOT, then ASGI app NAME"), where."""
        handler = None
        for kind, obj in (("app", self.app), ("WSGI app", self.wsgi), ("ASGI app", self.asgi)):
            if obj is not None:
                handler = "%s %s" % (kind, getattr(obj, "__name__", type(obj).__name__))
        what = []
        if self.static_files:
            what.append("files under %s" % self.root)
        if handler:
            what.append(handler)
        procs = ", processes %d" % self.processes if self.processes > 1 else ""
        # the port's coroutines are generators: it has no context switch to name
        switch = ", switch %s" % self.switch if self.engine == "cffi" else ""
        if self.io == "uring":
            switch += ", io uring (%s)" % self.uring_flags
        elif self.engine == "cffi":
            switch += ", io epoll"
        return (
            "minginx-cffi: serving %s on %s (version %s, workers %d%s, policy %s, "
            "engine %s%s%s, fd limit %s)"
            % (
                ", then ".join(what),
                self.listen_text(),
                __version__,
                self.nworkers,
                procs,
                self.policy,
                self.engine,
                switch,
                ", accept reuseport" if self.accept == "reuseport" else "",
                self.fd_limit,
            )
        )

    # -- the main-thread way: signals stop it ---------------------------

    def serve_forever(self, quiet: bool = False, ready: Callable[[], Any] | None = None) -> None:
        """Serve until SIGINT/SIGTERM.  A failure once the workers run (the pid
        file, the banner, the accept loop) stops and joins them before the engine
        is freed, and comes out as one ServerError (tests/test_cli.py:
        test_a_start_up_failure_stops_the_workers_first).  ``ready()`` is called
        once the workers run, just before accepting (serve()'s server processes
        tell their master through it)."""
        if self._sock is None:
            self.bind()
        self._quiet = quiet  # serve()'s server processes: their master speaks for them
        self._start_workers()
        wrote_pid = finished = False
        try:
            # signals first: once the banner or the pid file is out, a SIGTERM must be graceful
            old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            old_int = signal.signal(signal.SIGINT, self._on_signal)
            old_term = signal.signal(signal.SIGTERM, self._on_signal)
            old_usr1 = signal.signal(signal.SIGUSR1, self._on_reopen)
        except BaseException:
            self._stop_workers_now()
            self._close_listener()
            self._free(summary=False)
            raise
        try:
            if self.pid_file:
                try:
                    with open(self.pid_file, "w") as f:
                        wrote_pid = True
                        f.write("%d\n" % os.getpid())
                except OSError as e:
                    raise ServerError(
                        "cannot write the pid file %s: %s" % (self.pid_file, e.strerror)
                    ) from None
            if not quiet:
                try:
                    announce(self.banner())
                except OSError as e:
                    raise ServerError("cannot write to stdout: %s" % e.strerror) from None
            if ready is not None:
                ready()
            while not self._take_wakeups():
                try:
                    self._engine.accept_loop(self._accept_fd(), self._wake_r)
                except OSError as e:
                    raise ServerError("accept loop: %s" % (e.strerror or e)) from None
            self._close_listener()
            self._drain(lambda: self._take_wakeups() > 1)
            finished = True
        finally:
            # whatever happened above, no worker thread runs once this returns
            self._stop_workers_now()
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGUSR1, old_usr1)
            signal.set_wakeup_fd(old_wakeup)
            self._close_listener()
            self._free(summary=finished)
            if wrote_pid and self.pid_file is not None:
                try:
                    os.unlink(self.pid_file)
                except OSError:
                    pass

    def _on_signal(self, signum, frame):
        """SIGINT/SIGTERM: it counts nothing.  CPython runs a handler once for all the
        deliveries it missed (two Ctrl-Cs while a handler held the GIL: one call, and the
        second did not cut off), but its C handler writes a byte to the wake-up fd for
        each: _take_wakeups counts those.  Without a handler there would be no byte."""

    def _take_wakeups(self):
        """Read the wake-up pipe: each SIGINT/SIGTERM byte in it is a stop (the first
        graceful, the second cuts off).  Returns the stops so far."""
        stops = []
        try:
            while True:
                data = os.read(self._wake_r, 512)
                if not data:
                    break
                stops += [b for b in data if b in (signal.SIGINT, signal.SIGTERM)]
        except BlockingIOError:
            pass
        if stops:
            self._request_stop(len(stops), signal.Signals(stops[0]).name)
        return self._stop_requested

    def _request_stop(self, count, name):
        """count more stops (SIGINT/SIGTERM, named name): the first is graceful."""
        if not self._stop_requested and not self._quiet:
            logger.info(
                "minginx-cffi: %s, finishing in-flight responses (up to %gs; again to quit now)",
                name,
                self.grace,
            )
        self._stop_requested += count

    def _on_reopen(self, signum, frame):
        """SIGUSR1, logrotate's signal (as nginx's): reopen the access log."""
        self.reopen_logs()

    def reopen_logs(self) -> None:
        """Reopen the access log file (after logrotate renamed it): the writer first
        writes every queued line to the old file, then opens the path again, so no
        line is lost.  A no-op without an access log to a file."""
        if self._engine is not None and self.access_log not in (None, "-"):
            self._engine.reopen_log()

    # -- the embedded way: acceptor on a thread --------------------------

    def start(self) -> Server:
        if self._sock is None:
            self.bind()
        self._start_workers()
        self._acceptor = threading.Thread(target=self._accept_thread, name="minginx-acceptor", daemon=True)
        try:
            self._acceptor.start()
        except BaseException:
            self._acceptor = None
            self._stop_workers_now()
            self._close_listener()
            self._free(summary=False)
            raise
        return self

    def _accept_fd(self):
        return -1 if self._listeners else self._sock.fileno()  # reuseport: the workers accept

    def _accept_thread(self):
        while not self._take_wakeups():  # shutdown() writes a byte of its own, not a signal's
            self._engine.accept_loop(self._accept_fd(), self._wake_r)

    def shutdown(self) -> None:
        if self._engine is None:
            return
        self._stop_requested = max(self._stop_requested, 1)
        os.write(self._wake_w, b"x")
        if self._acceptor is not None:
            self._acceptor.join()
        self._close_listener()
        self._drain(lambda: False)
        self._free()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- shared ---------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """Per-worker counters from C, a list of dicts."""
        return [w.stats() for w in self._engine.workers] if self._engine else []

    def _trace_loop(self):
        while not self._trace_stop.wait(0.05):
            self._trace_flush()

    def _trace_flush(self):
        records = self._engine.trace_drain()
        if not records:
            return
        if callable(self.trace):
            self.trace(records)
            return
        from .trace import HEADER, dropped_line, format_record

        if self._trace_t0 is None:
            self._trace_t0 = records[0][0]
            print(HEADER, flush=False)
        dropped = self._engine.trace_dropped
        if dropped > self._trace_dropped:
            # a ring lapped its reader: the lines below do not follow on from those above
            print(dropped_line(dropped - self._trace_dropped), flush=False)
            self._trace_dropped = dropped
        print("\n".join(format_record(r, self._trace_t0) for r in records), flush=True)

    def _close_listener(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._uds_bound is not None:
            from ._sockets import unlink_unix

            unlink_unix(*self._uds_bound)
            self._uds_bound = None

    def _close_listeners(self):
        for s in self._listeners[1:]:
            s.close()
        self._listeners = []

    def _stop_workers_now(self):
        """Cut every worker off and join its thread (nothing to do once _drain ran)."""
        if self._engine is None or not any(t.is_alive() for t in self._threads):
            return
        for w in self._engine.workers:
            w.stop(graceful=False)
        self._cancel_asgi_requests()
        for t in self._threads:
            t.join()

    def _cancel_asgi_requests(self):
        """A stop that cannot wait: ASGI requests still running are cancelled (a worker
        thread of an engine without deferred calls may be waiting for one)."""
        if self._asgi_runner is not None:
            self._asgi_runner.cancel_requests()

    def _drain(self, cut_short):
        for w in self._engine.workers:
            w.stop(graceful=True)
        deadline = time.monotonic() + self.grace
        while any(t.is_alive() for t in self._threads):
            if time.monotonic() >= deadline or cut_short():
                for w in self._engine.workers:
                    w.stop(graceful=False)
                self._cancel_asgi_requests()
                break
            for t in self._threads:
                t.join(0.05)
        for t in self._threads:
            t.join()
        self._close_listeners()
        # the handler threads finish their rounds in what is left of the grace
        self._pool_done = self._engine.stop_pool(max(0.0, deadline - time.monotonic()))

    def _free(self, summary=True):
        # The engine's memory is the workers' memory: never free it under a running thread.
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("minginx-cffi: engine freed while its workers run")
        self._close_listeners()
        if self._trace_thread is not None:
            self._trace_stop.set()
            self._trace_thread.join()
            self._trace_thread = None
            try:
                self._trace_flush()
            except OSError:  # stdout is gone; the engine must be freed all the same
                pass
        # no table from a server process its master stops because the server failed, and
        # none from one of several (--processes: the master prints the one table)
        if (
            summary
            and self.stats_enabled
            and self._engine is not None
            and not self._acceptor
            and not self._no_summary
            and self.stats_slot is None
        ):
            from .trace import summary_table

            logger.info("%s", summary_table(self.stats()))
        self._stop_asgi()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._engine is not None:
            if self._pool_done or self._engine.stop_pool(0.5):
                self._engine.free()
            else:
                # a handler thread may still post into the workers' memory: never free it
                # under that thread; the process exits with it unfreed
                logger.warning(
                    "minginx-cffi: a handler is still running after the grace period; "
                    "leaving the engine unfreed"
                )
            self._engine = None
        self._pool_done = False
        self._threads = []


# -- listeners: the Server's and the master's (which binds them all before it forks) --


def tune_listener(sock, config):
    """Options every accepted connection inherits from its listener (Linux)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket (--uds) has neither Nagle nor handshakes
    # Responses go out whole (one sendmsg, or corked head + file): Nagle
    # would only hold back a streamed response's last piece.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if config.defer_accept:
        # The kernel completes the handshake but wakes accept only when the
        # request's first bytes are in (or after 1 s and a SYN-ACK resent):
        # one wake-up per connection instead of two, and a connect that
        # never sends costs no fd.  h2o and Apache (AcceptFilter) do this
        # by default; nginx has it as "listen ... deferred".
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)


def bind_listener(config):
    """The listening socket config names: --uds's Unix socket, --fd's inherited one, or
    host:port.  Returns (socket, (path, inode) of the socket file made, or None)."""
    from . import _sockets

    uds_bound = None
    if config.uds is not None:
        sock = _sockets.bind_unix(config.uds)
        uds_bound = (config.uds, os.stat(config.uds).st_ino)
    elif config.fd is not None:
        sock = _sockets.inherited_socket(config.fd, "--fd %d" % config.fd)
        tune_listener(sock, config)
    else:
        sock = _bind_tcp(config)
    return sock, uds_bound


def _bind_tcp(config):
    host, port = config.host, config.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServerError("cannot resolve host %r: %s" % (host, e.strerror)) from None
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The first socket claims the port WITHOUT SO_REUSEPORT: Linux lets
        # SO_REUSEPORT sockets of the same user share a port, so binding
        # with it would quietly join another server already there (clients
        # would alternate between the two sites).  Bound alone, this fails
        # with EADDRINUSE if anyone listens there, whatever their flags;
        # once it holds the port, SO_REUSEPORT is switched on so that our
        # own other listeners (--accept reuseport, --processes) can join it.
        # Tested by tests/test_cli.py::test_a_busy_port_is_refused.
        sock.bind(addr)
        if config.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        tune_listener(sock, config)
        # The kernel caps the backlog at net.core.somaxconn (4096 here);
        # the seed's 10 was the cause of its 1.6 s latency spikes.
        sock.listen(65535)
    except OSError as e:
        sock.close()
        raise ServerError("cannot listen on %s port %s: %s" % (host, port, e.strerror)) from None
    sock.setblocking(False)
    return sock


def bind_another(sock, config):
    """One more listener on the port sock holds, joining it with SO_REUSEPORT."""
    s = socket.socket(sock.family, sock.type, sock.proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(sock.getsockname())
        tune_listener(s, config)
        s.listen(65535)
    except OSError as e:
        s.close()
        host, port = sock.getsockname()[:2]
        raise ServerError("cannot listen on %s port %s: %s" % (host, port, e.strerror)) from None
    s.setblocking(False)
    return s


def readable_dirs(config):
    """What the server reads after it drops root: the files, and the app's directory."""
    dirs = [("root", config.root)]
    if config.app is not None or config.wsgi is not None or config.asgi is not None:
        dirs.append(("app directory", os.getcwd()))
    return dirs


def serve(processes: int = 1, log_level: str = "info", **options: Any) -> None:
    """What ``minginx-cffi serve`` does: a master process that holds the listening
    sockets and runs ``processes`` server processes on them, until a signal
    (minginx_cffi/_master.py: TERM/INT stop, HUP reloads, USR1 is passed on).

    With processes > 1, they share the port with SO_REUSEPORT (the kernel spreads
    connections over their listeners), for handler code that needs more than one GIL.
    With --stats their counters meet in one procstats.SharedStats: any process's
    /_minginx/stats shows them all, and the master logs the one table at the end.

    The process is ours: log.configure() gives the "minginx_cffi" logger the
    error log's handler (every stderr line timestamped, at log_level).
    """
    try:
        _log.configure(log_level)
    except ValueError as e:
        raise ServerError(str(e)) from None
    from ._master import serve as serve_with_master

    serve_with_master(processes=processes, log_level=log_level, **options)
