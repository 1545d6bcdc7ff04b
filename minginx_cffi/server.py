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
import ipaddress  # at start-up: after --user drops privileges, a lazy import may not read the stdlib
import os
import resource
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from . import __version__, _native
from . import log as _log
from .log import logger

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "Server",
    "ServerError",
    "serve",
    "default_root",
    "load_app",
    "ENGINES",
    "LIMITS",
    "DEFAULT_THREADS",
    "DEFAULT_HANDLER_TIMEOUT",
]

#: Python threads running --app/--wsgi handlers (README: "Handlers that block").  Real
#: handlers block (databases, HTTP calls, files), and one blocked inline freezes its whole
#: worker, static files included; gunicorn gthread and Starlette's threadpool make the
#: same choice.  --threads 0 keeps handlers inline, the fastest for ones that never block.
DEFAULT_THREADS = 8
#: seconds a pooled handler may run before its client gets 504 (0: no limit)
DEFAULT_HANDLER_TIMEOUT = 60.0


def _python_engine(*args, **kwargs):
    from .pyport import Engine

    return Engine(*args, **kwargs)


#: engines by name (the CLI's --engine choices): the C core, or the pure-Python port
ENGINES = {"cffi": _native.Engine, "python": _python_engine}


class ServerError(Exception):
    """A problem the user can fix (a root that is not a directory, a port in use...)."""


INT_MAX = (1 << 31) - 1  # the C engine's settings are C ints (minginx.h: mg_config)

#: the numeric settings and their ranges, checked by Server() for every caller (the
#: CLI's click ranges are made from this table too): what the C engine would
#: overflow on (max_body past INT_MAX was a traceback), and what has no meaning
LIMITS = {
    "port": (int, 0, 65535),
    "workers": (int, 1, _native.MAX_WORKERS),
    "processes": (int, 1, 256),
    "stack_size": (int, _native.MIN_STACK_SIZE, 64 << 20),
    "max_body": (int, 0, INT_MAX),
    "open_file_cache": (int, 0, 1 << 20),
    "small_file_cache": (int, 0, 1 << 20),
    "max_connections": (int, 0, 1 << 24),
    "grace": (float, 0, 3600),
    "header_timeout": (float, 0, 86400),  # seconds; x 1000 must fit an int of ms
    "keepalive_timeout": (float, 0, 86400),
    "send_timeout": (float, 0, 86400),
    "threads": (int, 0, 1024),
    "handler_timeout": (float, 0, 86400),
}


def check_limits(**values):
    """Raise ServerError for a value of LIMITS that is not a number in its range
    (NaN is not: click's FloatRange lets it through)."""
    for name, value in values.items():
        kind, lo, hi = LIMITS[name]
        ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
        if not ok or isinstance(value, bool) or not lo <= value <= hi:
            raise ServerError(
                "%s must be %s between %s and %s, not %r"
                % (name.replace("_", "-"), "an integer" if kind is int else "a number", lo, hi, value)
            )
        if kind is float and 0 < value < 0.001 and name.endswith("timeout"):
            # the engine counts milliseconds and reads 0 as "no limit"
            raise ServerError(
                "%s must be 0 (no limit) or at least 0.001 s, not %r" % (name.replace("_", "-"), value)
            )


#: access-log line formats (--access-log-format): nginx's combined, or one JSON object a line
ACCESS_LOG_FORMATS = ("combined", "json")


def check_access_log(access_log, access_log_format):
    """(path or "-" or None, format), checked: the directory must exist and the file
    must open for append (it is created, as nginx creates its logs at start)."""
    if access_log_format not in ACCESS_LOG_FORMATS:
        raise ServerError(
            "access-log-format must be one of: %s, not %r"
            % (", ".join(ACCESS_LOG_FORMATS), access_log_format)
        )
    if access_log is None or access_log is False:
        return None, access_log_format
    if not isinstance(access_log, (str, os.PathLike)) or not os.fspath(access_log):
        raise ServerError("access-log must be a file path or '-' (stdout), not %r" % (access_log,))
    access_log = os.fspath(access_log)
    if access_log != "-":
        access_log = os.path.abspath(access_log)  # SIGUSR1 reopens it whatever the cwd
        os.close(open_access_log(access_log))
    return access_log, access_log_format


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


def default_root():
    """The demo site bundled with the package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")


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
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ServerError("%r: expected module:attribute, e.g. myapp:app" % spec)
    return module_name, attr


def load_app(spec):
    """Import "module:attribute" (as uvicorn and gunicorn do, from the current directory)."""
    module_name, attr = check_spec(spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise ServerError("cannot import %r: %s" % (module_name, e)) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServerError("module %r has no attribute %r" % (module_name, attr)) from None
    return obj


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


def parse_header_options(values, engine):
    """--header 'NAME: VALUE' (strings, or (name, value) pairs) as the static answers'
    extra lines, checked by the engine's one header writer (csrc/response.c head_fields
    through front.c mg_static_fields; pyport/response.py handler_fields)."""
    if isinstance(values, str):
        values = [values]
    if engine == "python":
        from .pyport.front import static_fields
    else:
        static_fields = _native.static_fields
    fields = []
    for v in values or ():
        if isinstance(v, tuple) and len(v) == 2:
            name, value, shown = v[0], v[1], "%s: %s" % v
        elif isinstance(v, str):
            name, sep, value = v.partition(":")
            shown = v
            if not sep:
                raise ServerError("--header %r: expected 'NAME: VALUE'" % v)
        else:
            raise ServerError("--header %r: expected 'NAME: VALUE'" % (v,))
        try:
            field = (
                name.encode("ascii") if isinstance(name, str) else bytes(name),
                value.encode("utf-8") if isinstance(value, str) else bytes(value),
            )
        except (UnicodeError, TypeError):
            raise ServerError("--header %r: the name is not ASCII" % (shown,)) from None
        try:
            static_fields([field])
        except ValueError as e:
            raise ServerError("--header %r: %s" % (shown, e)) from None
        fields.append(field)
    try:
        return static_fields(fields) if fields else b""
    except ValueError as e:
        raise ServerError("--header: %s" % e) from None


def parse_error_pages(values, root):
    """--error-page CODE=PATH (strings, (code, path) pairs or a {code: path} dict) as
    [(code, path relative to the root, the file's bytes)], read once, now."""
    if isinstance(values, dict):
        values = list(values.items())
    elif isinstance(values, str):
        values = [values]
    root_real = os.path.realpath(root)
    pages = {}
    for v in values or ():
        if isinstance(v, str):
            code, sep, path = v.partition("=")
            if not sep:
                raise ServerError("--error-page %r: expected CODE=PATH, e.g. 404=/404.html" % v)
        elif isinstance(v, tuple) and len(v) == 2:
            code, path = v
        else:
            raise ServerError("--error-page %r: expected CODE=PATH" % (v,))
        shown = "%s=%s" % (code, path)
        try:
            code = int(code)
        except (TypeError, ValueError):
            raise ServerError("--error-page %r: %r is not a status code" % (shown, code)) from None
        if not 400 <= code <= 599:
            raise ServerError("--error-page %r: the status must be 4xx or 5xx" % shown)
        if not isinstance(path, str) or not path.strip("/"):
            raise ServerError("--error-page %r: expected a file under the root" % shown)
        full = os.path.realpath(os.path.join(root_real, path.lstrip("/")))
        if not full.startswith(root_real.rstrip("/") + "/"):
            raise ServerError("--error-page %r: %s is outside the root %s" % (shown, path, root))
        try:
            # a FIFO or a device would block (or never end) the read below: a regular file only
            if not stat.S_ISREG(os.stat(full).st_mode):
                raise ServerError("--error-page %r: %s is not a regular file" % (shown, path))
            with open(full, "rb") as f:
                body = f.read(_native.ERROR_PAGE_MAX + 1)
        except OSError as e:
            raise ServerError("--error-page %r: cannot read %s: %s" % (shown, path, e.strerror)) from None
        if len(body) > _native.ERROR_PAGE_MAX:
            raise ServerError(
                "--error-page %r: %s is larger than %d bytes" % (shown, path, _native.ERROR_PAGE_MAX)
            )
        pages[code] = (code, os.path.relpath(full, root_real), body)
    return list(pages.values())


def parse_forwarded_allow_ips(value):
    """--forwarded-allow-ips: comma-separated IPs and CIDRs, "*" for any (uvicorn's)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if item == "*":
            out.append("*")
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ServerError("--forwarded-allow-ips: %r is not an IP address or network" % item) from None
    return out


class Server:
    """A minginx-cffi server: ``Server(root=...).serve_forever()``.

    For embedding (and the tests), ``start()`` runs the acceptor on a
    background thread instead and ``shutdown()`` stops it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 3094,
        workers: int | None = None,
        policy: str = "lifo",
        grace: float = 5.0,
        stack_size: int = _native.DEFAULT_STACK_SIZE,
        serve_dotfiles: bool = False,
        follow_symlinks: bool = False,
        header_timeout: float = 10.0,
        keepalive_timeout: float = 15.0,
        send_timeout: float = 60.0,
        max_body: int = 1 << 20,
        gzip_static: bool = True,
        open_file_cache: int = 1024,
        small_file_cache: int = 16384,
        app: App | str | None = None,
        wsgi: Callable[..., Any] | str | None = None,
        reuse_port: bool = False,
        processes: int = 1,
        engine: str = "cffi",
        max_connections: int = 0,
        pid_file: str | os.PathLike[str] | None = None,
        trace: bool | str | Callable[..., Any] = False,
        stats: bool = False,
        switch: str = _native.DEFAULT_SWITCH,
        accept: str = "dispatch",
        io: str | None = None,
        defer_accept: bool = True,
        asgi: Callable[..., Any] | str | None = None,
        root_path: str = "",
        threads: int = DEFAULT_THREADS,
        handler_timeout: float = DEFAULT_HANDLER_TIMEOUT,
        log_level: str | None = None,
        stats_slot: Any = None,
        access_log: str | None = None,
        access_log_format: str = "combined",
        header: Iterable[str] = (),
        error_page: Iterable[str] = (),
        proxy_headers: bool = False,
        forwarded_allow_ips: str | Iterable[str] = "127.0.0.1",
        fd: Iterable[int] | int | None = None,
        uds: str | None = None,
        user: str | int | None = None,
        group: str | int | None = None,
    ) -> None:
        # log_level: "debug".."critical" sets the "minginx_cffi" logger's level and C's
        # (None: the embedding program's logging config decides); log.configure() is the
        # CLI's.  stats_slot: (procstats.SharedStats, i), this process's slot (--processes).
        if log_level is not None:
            try:
                _log.level_number(log_level)
            except ValueError as e:
                raise ServerError(str(e)) from None
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
        if sum(x is not None for x in (app, wsgi, asgi)) > 1:
            raise ServerError("give one of --app, --wsgi or --asgi, not both")
        for flag, spec in (("app", app), ("wsgi", wsgi), ("asgi", asgi)):
            if spec is not None:
                obj: Any = load_app(spec) if isinstance(spec, str) else spec
                check_app_kind(flag, flag, obj, spec)
                app, wsgi, asgi = (
                    obj if flag == "app" else app,
                    obj if flag == "wsgi" else wsgi,
                    obj if flag == "asgi" else asgi,
                )
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ServerError("root-path must start with / and not end with one, not %r" % root_path)
        if log_level is not None:
            _log.set_level(log_level)  # after the app's import: it may have configured logging
        self.app, self.wsgi, self.asgi = app, wsgi, asgi
        self.root_path = root_path
        self._asgi_runner = None
        if engine not in ENGINES:
            raise ServerError("engine must be one of: %s" % ", ".join(ENGINES))
        self.engine = engine
        # With a handler and no --root, unknown paths are 404, not the demo site.
        self.static_files = root is not None or (app is None and wsgi is None and asgi is None)
        self.reuse_port = reuse_port
        self.processes = processes
        self.root = os.path.abspath(root if root is not None else default_root())
        if not os.path.isdir(self.root):
            raise ServerError("root %r is not a directory" % self.root)
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ServerError("root %r is not readable" % self.root)
        self.host = host
        self.port = port
        self.nworkers = workers or os.cpu_count() or 1
        if self.nworkers > _native.MAX_WORKERS and workers is None:
            self.nworkers = _native.MAX_WORKERS
        check_limits(
            port=port,
            workers=self.nworkers,
            processes=processes,
            stack_size=stack_size,
            max_body=max_body,
            open_file_cache=open_file_cache,
            small_file_cache=small_file_cache,
            max_connections=max_connections,
            grace=grace,
            header_timeout=header_timeout,
            keepalive_timeout=keepalive_timeout,
            send_timeout=send_timeout,
            threads=threads,
            handler_timeout=handler_timeout,
        )
        self.threads = threads if (app is not None or wsgi is not None) else 0
        if policy not in _native.POLICIES:
            raise ServerError("policy must be one of: %s" % ", ".join(_native.POLICIES))
        self.policy = policy
        self.grace = grace
        self.pid_file = pid_file
        # trace: True prints each step (--trace); a callable receives the records instead
        self.trace = trace
        self.stats_enabled = stats
        if accept not in _native.ACCEPT_MODES:
            raise ServerError("accept must be one of: %s" % ", ".join(_native.ACCEPT_MODES))
        if accept == "reuseport" and engine != "cffi":
            raise ServerError("--accept reuseport is for the cffi engine")
        if switch not in _native.SWITCHES:
            raise ServerError("switch must be one of: %s" % ", ".join(_native.SWITCHES))
        if io is None:  # epoll; a test run's MINGINX_TEST_IO for the C engine (_native.default_io)
            io = _native.default_io() if engine == "cffi" else "epoll"
        if io not in _native.IO_MODES:
            raise ServerError("io must be one of: %s" % ", ".join(_native.IO_MODES))
        self.uring_flags = None
        if io == "uring":
            if engine != "cffi":
                raise ServerError(
                    "--io uring is for the cffi engine: the pure-Python port is "
                    "epoll only (the standard library has no io_uring)"
                )
            try:
                self.uring_flags = _native.uring_probe()
            except OSError as e:
                raise ServerError("--io uring: io_uring is not available: %s" % e.strerror) from None
        self.io = io
        self.accept = accept
        self.switch = switch
        self.reuse_port = reuse_port or accept == "reuseport"
        self.defer_accept = defer_accept
        # Sockets handed in (--fd N, --uds PATH) and the user to become once bound
        # (--user/--group); serve() uses them for the CLI, a Server on its own too.
        if fd is not None and uds is not None:
            raise ServerError("give one of --fd or --uds, not both")
        if (fd is not None or uds is not None) and accept == "reuseport":
            raise ServerError(
                "--accept reuseport binds a listener per worker: it cannot be "
                "used with --fd, --uds or sockets handed in by systemd"
            )
        if fd is not None and (isinstance(fd, bool) or not isinstance(fd, int) or fd < 0):
            raise ServerError("fd must be a file descriptor number, not %r" % (fd,))
        self.fd, self.uds = fd, uds
        self._uds_bound = None  # the socket file bind() made, removed at the end
        self.user, self.group = user, group
        self._listeners: list[socket.socket] = []
        self._adopted: list[socket.socket] = []  # reuseport: the other workers' listeners, from adopt()
        self._trace_thread = None
        self._trace_t0 = None
        self._trace_dropped = 0  # the engine's count of lapped records, as last printed
        # in front of an app: files first, --header, --error-page, --proxy-headers
        add_headers = parse_header_options(header, engine)
        error_pages = parse_error_pages(error_page, self.root)
        forwarded_allow = parse_forwarded_allow_ips(forwarded_allow_ips)
        self.proxy_headers = bool(proxy_headers)
        # --max-connections is a total: each worker takes its share
        per_worker = -(-max_connections // self.nworkers) if max_connections else 0
        self._engine_args = dict(
            max_connections=per_worker,
            trace=bool(trace),
            switch=switch,
            accept=accept,
            stats_endpoint=bool(stats),
            threads=self.threads,
            handler_timeout=handler_timeout,
            policy=policy,
            stack_size=stack_size,
            serve_dotfiles=serve_dotfiles,
            follow_symlinks=follow_symlinks,
            header_timeout=header_timeout,
            keepalive_timeout=keepalive_timeout,
            send_timeout=send_timeout,
            max_body=max_body,
            gzip_static=gzip_static,
            open_file_cache=open_file_cache,
            small_file_cache=small_file_cache,
            add_headers=add_headers,
            error_pages=error_pages,
            proxy_headers=self.proxy_headers,
            forwarded_allow=forwarded_allow,
        )
        if engine == "cffi":
            self._engine_args["io"] = io  # the port has one backend: epoll
        self.access_log, self.access_log_format = check_access_log(access_log, access_log_format)
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
        sock = self._sock
        s = socket.socket(sock.family, sock.type, sock.proto)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(sock.getsockname())
            self._tune_listener(s)
            s.listen(65535)
        except OSError as e:
            s.close()
            raise ServerError(
                "cannot listen on %s port %s: %s" % (self.host, self.port, e.strerror)
            ) from None
        s.setblocking(False)
        return s

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

    def _tune_listener(self, sock):
        """Options every accepted connection inherits from its listener (Linux)."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # a Unix socket (--uds) has neither Nagle nor handshakes
        # Responses go out whole (one sendmsg, or corked head + file): Nagle
        # would only hold back a streamed response's last piece.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.defer_accept:
            # The kernel completes the handshake but wakes accept only when the
            # request's first bytes are in (or after 1 s and a SYN-ACK resent):
            # one wake-up per connection instead of two, and a connect that
            # never sends costs no fd.  h2o and Apache (AcceptFilter) do this
            # by default; nginx has it as "listen ... deferred".
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)

    def bind(self):
        """Claim the listening socket: --uds's Unix socket, --fd's inherited one, or
        host:port.  With user/group set, become that user once it is bound."""
        from . import _sockets

        if self.uds is not None:
            sock = _sockets.bind_unix(self.uds)
            self._uds_bound = (self.uds, os.stat(self.uds).st_ino)
        elif self.fd is not None:
            sock = _sockets.inherited_socket(self.fd, "--fd %d" % self.fd)
        else:
            sock = self._bind_tcp()
        if self.fd is not None:
            self._tune_listener(sock)
        self.adopt(sock)
        if self.user is not None or self.group is not None:
            _sockets.drop_privileges(self.user, self.group, self._readable_dirs())
        return sock

    def _readable_dirs(self):
        """What the server reads after it drops root: the files, and the app's directory."""
        dirs = [("root", self.root)]
        if self.app is not None or self.wsgi is not None or self.asgi is not None:
            dirs.append(("app directory", os.getcwd()))
        return dirs

    def _bind_tcp(self):
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise ServerError("cannot resolve host %r: %s" % (self.host, e.strerror)) from None
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
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self._tune_listener(sock)
            # The kernel caps the backlog at net.core.somaxconn (4096 here);
            # the seed's 10 was the cause of its 1.6 s latency spikes.
            sock.listen(65535)
        except OSError as e:
            sock.close()
            raise ServerError(
                "cannot listen on %s port %s: %s" % (self.host, self.port, e.strerror)
            ) from None
        sock.setblocking(False)
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
            log_fd = open_access_log(self.access_log)
            try:
                self._engine = ENGINES[self.engine](
                    self.root,
                    dispatch=dispatch,
                    static_files=self.static_files,
                    access_log_fd=log_fd,
                    access_log_path=self.access_log if self.access_log != "-" else None,
                    access_log_format=self.access_log_format,
                    **self._engine_args,
                )
            finally:
                if log_fd is not None and log_fd != 1:
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
                    print(self.banner(), flush=True)
                except OSError as e:
                    raise ServerError("cannot write to stdout: %s" % e.strerror) from None
                logger.info(self.banner())  # stdout is for scripts; the log has it too
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
            raise RuntimeError("minginx: engine freed while its workers run")
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
