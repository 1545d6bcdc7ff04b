"""One Config: every option of the server, in one table, validated once.

Theory of operation.  ``OPTIONS`` is the table: one ``Option`` row per setting, with its
type, default, range or choices, help text, the engines that implement it and the C field
it fills (``mg_config`` in csrc/minginx.h).  Everything else is made from the table:

* the CLI (cli.py): ``click_options()`` turns the rows into ``serve``'s flags, in order,
  so ``--help`` (and README's usage block, ``make readme-usage``) comes from here;
* ``Config(**values)``: a frozen object that checks every value once, in one place, and
  computes what follows from them (the worker count, the handler threads, the --header
  lines, the error pages' bytes, the trusted proxies, the resolved --io);
* ``Server(config)`` (server.py) and the master process (_master.py) read a Config;
  both engines are built as ``Engine(config, dispatch)`` and take from it the rows
  they implement: _native.py copies each row's ``c`` field into ``mg_config``,
  pyport/__init__.py reads the values.  An engine that lacks a row refuses a value
  other than its default with one line (``Config.check``).

Adding an option is one row here plus its consumer (tests/test_config.py walks the table
and proves each row reaches the engines that have it, or is refused by the one that
does not).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
from typing import Any, Callable

from . import _native
from . import log as _log

__all__ = ["Config", "Option", "OPTIONS", "ConfigError", "ENGINE_NAMES"]


class ConfigError(ValueError):
    """A value the user can fix; server.ServerError is raised from it (one line)."""


#: the engines (--engine): the C core through cffi, or the pure-Python port
ENGINE_NAMES = ("cffi", "python")
BOTH = frozenset(ENGINE_NAMES)
CFFI = frozenset({"cffi"})
INT_MAX = (1 << 31) - 1  # the C engine's settings are C ints (minginx.h: mg_config)

#: Python threads running --app/--wsgi handlers (README: "Handlers that block").  Real
#: handlers block (databases, HTTP calls, files), and one blocked inline freezes its whole
#: worker, static files included; gunicorn gthread and Starlette's threadpool make the
#: same choice.  --threads 0 keeps handlers inline, the fastest for ones that never block.
DEFAULT_THREADS = 8
#: seconds a pooled handler may run before its client gets 504 (0: no limit)
DEFAULT_HANDLER_TIMEOUT = 60.0
#: access-log line formats (--access-log-format): nginx's combined, or one JSON object a line
ACCESS_LOG_FORMATS = ("combined", "json")


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting.  kind: int, float, bool, "choice", str, "path", "multi" (repeatable
    strings), "flag" (given or not), "any" (an API value the CLI does not have)."""

    name: str
    kind: Any
    default: Any
    help: str = ""
    lo: Any = None  # int and float: the range, both ends included
    hi: Any = None
    choices: tuple = ()
    engines: frozenset = BOTH  # the engines that implement it
    c: str | None = None  # the mg_config field _native.Engine fills from it
    engine_arg: bool = True  # False: the server or the master consumes it, not an engine
    cli: bool = True  # False: a keyword of Server() only
    metavar: str | None = None
    show_default: bool = True
    envvar: str | None = None
    path: dict | None = None  # click.Path's arguments, for kind "path"
    cli_default: Any = "same"  # the CLI's default where it is not the API's ("same": default)

    @property
    def cli_flag(self) -> str:
        """The CLI's spelling: "--name" ("--x/--no-x" for a bool: click_options)."""
        return "--" + self.name.replace("_", "-")

    @property
    def shown(self) -> str:
        """The name in messages: the CLI's flag without its dashes (send-timeout)."""
        return self.name.replace("_", "-")


def _rows() -> list[Option]:
    o = Option
    # one row per option, in the order of serve --help
    return [
        o(
            "root",
            "path",
            None,
            "Directory to serve (default: the bundled demo site).",
            path=dict(file_okay=False, dir_okay=True),
            show_default=False,
        ),
        o("host", str, "127.0.0.1", "Address to listen on.", engine_arg=False),
        o("port", int, 3094, "", 0, 65535, engine_arg=False),
        o(
            "workers",
            int,
            None,
            "Worker threads (default: CPU count).",
            1,
            _native.MAX_WORKERS,
            engine_arg=False,
            show_default=False,
        ),
        o(
            "policy",
            "choice",
            "lifo",
            "Ready-queue order: RDY_FIFO or RDY_LIFO.",
            choices=tuple(sorted(_native.POLICIES)),
            c="policy",
        ),
        o(
            "engine",
            "choice",
            "cffi",
            "cffi: the C engine; python: the pure-Python port of the same design.",
            choices=ENGINE_NAMES,
            engine_arg=False,
        ),
        o(
            "switch",
            "choice",
            _native.DEFAULT_SWITCH,
            "Context switch: glibc's swapcontext (the seed's design), or the fast one "
            "(x86-64 assembly, no signal-mask system call: a few percent less CPU).",
            choices=tuple(_native.SWITCHES),
            engines=CFFI,
            c="switch_mode",
        ),
        o(
            "accept",
            "choice",
            "dispatch",
            "dispatch: the main thread accepts and hands fds down pipes (the seed); "
            "reuseport: each worker accepts on its own SO_REUSEPORT listener.",
            choices=tuple(_native.ACCEPT_MODES),
            engines=CFFI,
            c="accept_mode",
        ),
        o(
            "io",
            "choice",
            None,
            "Worker I/O: epoll (readiness, then the system call: the seed) or uring "
            "(io_uring: calls submitted, completions reaped; Linux 5.11+, cffi engine "
            "only; exits if the kernel refuses it).",
            choices=tuple(_native.IO_MODES),
            engines=CFFI,
            c="io",
            cli_default=_native.DEFAULT_IO,
        ),
        o(
            "defer_accept",
            bool,
            True,
            "TCP_DEFER_ACCEPT: accept a connection when its request arrives, not at "
            "the handshake (as h2o); off, the first read waits in epoll as in the seed.",
            engine_arg=False,
        ),
        o(
            "grace",
            float,
            5.0,
            "Seconds in-flight responses get to finish at shutdown.",
            0,
            3600,
            engine_arg=False,
        ),
        o(
            "stack_size",
            int,
            _native.DEFAULT_STACK_SIZE,
            "Bytes per coroutine stack.",
            _native.MIN_STACK_SIZE,
            64 << 20,
            engines=CFFI,
            c="stack_size",
        ),
        o(
            "header_timeout",
            float,
            10.0,
            "Seconds to receive a whole request head (0: no limit).",
            0,
            86400,
            c="header_timeout_ms",
        ),
        o(
            "keepalive_timeout",
            float,
            15.0,
            "Seconds an idle keep-alive connection is kept; 0 turns keep-alive off (as nginx).",
            0,
            86400,
            c="keepalive_timeout_ms",
        ),
        o("send_timeout", float, 60.0, "Seconds a send may make no progress.", 0, 86400, c="send_timeout_ms"),
        o(
            "max_body",
            int,
            1 << 20,
            "Largest request body read (and discarded by the static files).",
            0,
            INT_MAX,
            c="max_body",
        ),
        o(
            "gzip_static",
            bool,
            True,
            "Send FILE.gz (not older than FILE) to clients that accept gzip.",
            c="gzip_static",
        ),
        o(
            "open_file_cache",
            int,
            1024,
            "Open files cached per worker (0: off).",
            0,
            1 << 20,
            c="open_file_cache",
        ),
        o(
            "small_file_cache",
            int,
            16384,
            "Files up to this many bytes are kept in memory (0: off).",
            0,
            1 << 20,
            c="small_file_max",
        ),
        o(
            "app",
            "any",
            None,
            "A minginx_cffi.App to run (with --root: after the files; its unknown paths are 404).",
            metavar="MODULE:ATTR",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "wsgi",
            "any",
            None,
            "A WSGI application to run (Flask, Django...).",
            metavar="MODULE:ATTR",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "asgi",
            "any",
            None,
            "An ASGI 3 application to run (FastAPI, Starlette...); HTTP only, no WebSockets.",
            metavar="MODULE:ATTR",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "root_path",
            str,
            "",
            "ASGI root_path: the prefix a proxy mounts the app under (e.g. /api).",
            metavar="PATH",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "threads",
            int,
            DEFAULT_THREADS,
            "Python threads running --app/--wsgi handlers, so a handler that blocks never "
            "stalls a worker; 0 runs them inline on the worker (fastest when none blocks).",
            0,
            1024,
        ),
        o(
            "handler_timeout",
            float,
            DEFAULT_HANDLER_TIMEOUT,
            "Seconds a pooled handler may run before its client gets 504 and the "
            "connection closes (0: no limit; the thread itself cannot be stopped).",
            0,
            86400,
            c="handler_timeout_ms",
        ),
        o(
            "processes",
            int,
            1,
            "Server processes sharing the port with SO_REUSEPORT, run by a master "
            "process that holds the sockets (SIGHUP: a graceful reload).",
            1,
            256,
            engine_arg=False,
        ),
        o(
            "reload",
            "flag",
            False,
            "For development: reload (as SIGHUP does) when a file under --reload-dir changes.",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "reload_dir",
            "multi",
            (),
            "A directory --reload watches, with its subdirectories (repeatable; default: the current one).",
            metavar="DIR",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "reload_include",
            "multi",
            (),
            "Files whose change reloads, a glob pattern (repeatable; default: *.py).",
            metavar="GLOB",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "reload_exclude",
            "multi",
            (),
            "Files whose change never reloads, a glob pattern "
            "(repeatable; default: .*, *~, *.py[cod], *.swp).",
            metavar="GLOB",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "fd",
            "fd",
            None,
            "Serve the listening socket inherited as file descriptor N "
            "(systemd's LISTEN_FDS is read without it).",
            metavar="N",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "uds",
            "path",
            None,
            "Listen on a Unix socket at PATH (for a proxy in front) instead of a port.",
            metavar="PATH",
            path=dict(dir_okay=False),
            engine_arg=False,
            show_default=False,
        ),
        o(
            "user",
            "any",
            None,
            "Server processes drop root to this user as they start (the master, "
            "which holds the sockets, stays root as nginx's).",
            metavar="NAME",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "group",
            "any",
            None,
            "Drop root to this group (default: --user's own group).",
            metavar="NAME",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "max_connections",
            int,
            0,
            "Open connections at most, over all workers (with --processes, each process "
            "takes its share, rounded up); more get 503 (0: no limit).",
            0,
            1 << 24,
            c="max_connections",
        ),
        o(
            "pid_file",
            "path",
            None,
            "Write the server's pid here while it runs.",
            path=dict(dir_okay=False),
            engine_arg=False,
            show_default=False,
        ),
        # None: the embedding program's logging config decides (the CLI's is "info")
        o(
            "log_level",
            "choice",
            None,
            "Error-log lines (stderr) below this level are not written.",
            choices=tuple(_log.LEVELS),
            engine_arg=False,
            cli_default="info",
        ),
        o(
            "access_log",
            "any",
            None,
            "Write a line per request to PATH ('-': stdout); SIGUSR1 reopens it (logrotate). Off by default.",
            metavar="PATH|-",
            show_default=False,
        ),
        # a flag of its own (click < 8.2 reads flag_value=None on a shared destination as an
        # option taking a value): given, it wins over --access-log (from_cli)
        o(
            "no_access_log",
            "flag",
            False,
            "Write no access log (the default; wins over --access-log).",
            engine_arg=False,
            show_default=False,
        ),
        o(
            "access_log_format",
            "choice",
            "combined",
            "combined: nginx's combined format; json: one object a line, with request_time.",
            choices=ACCESS_LOG_FORMATS,
            c="access_log_format",
        ),
        o(
            "header",
            "multi",
            (),
            "Add this header to static 2xx/3xx answers, as nginx's add_header "
            "(repeatable; e.g. 'Cache-Control: max-age=3600').",
            metavar="'NAME: VALUE'",
            show_default=False,
        ),
        o(
            "error_page",
            "multi",
            (),
            "Serve this file of the root as the body of the server's own error "
            "responses with CODE (repeatable; e.g. 404=/404.html).",
            metavar="CODE=PATH",
            show_default=False,
        ),
        o(
            "proxy_headers",
            bool,
            False,
            "Take the client address and scheme from X-Forwarded-For/-Proto (or "
            "Forwarded) sent by a peer in --forwarded-allow-ips.",
            c="proxy_headers",
        ),
        o(
            "forwarded_allow_ips",
            "any",
            "127.0.0.1",
            "Comma-separated IPs or networks of the proxies to trust, '*' for any.",
            metavar="IPS",
            envvar="FORWARDED_ALLOW_IPS",
        ),
        o(
            "trace",
            "flag",
            False,
            "Print each step of the happy path, per connection, as it happens.",
            c="trace",
            show_default=False,
        ),
        o(
            "stats",
            bool,
            False,
            "GET /_minginx/stats (JSON) and a table at shutdown; on by default for the demo site.",
            c="stats_endpoint",
            show_default=False,
        ),
        o("serve_dotfiles", bool, False, "Serve /.git, /.env and other dotfiles.", c="serve_dotfiles"),
        o("follow_symlinks", bool, False, "Follow symlinks that lead outside the root.", c="follow_symlinks"),
        # keywords of Server() only
        o("reuse_port", bool, False, "SO_REUSEPORT on the first listener.", engine_arg=False, cli=False),
    ]


OPTIONS: tuple[Option, ...] = tuple(_rows())
BY_NAME = {row.name: row for row in OPTIONS}


# ------------------------------------------------------------------ checks


def _check_number(row: Option, value: Any) -> None:
    """A value of an int or float row that is not a number in its range (NaN is not:
    click's FloatRange lets it through)."""
    kind, lo, hi = row.kind, row.lo, row.hi
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(
            "%s must be %s between %s and %s, not %r"
            % (row.shown, "an integer" if kind is int else "a number", lo, hi, value)
        )
    if kind is float and 0 < value < 0.001 and row.name.endswith("timeout"):
        # the engine counts milliseconds and reads 0 as "no limit"
        raise ConfigError("%s must be 0 (no limit) or at least 0.001 s, not %r" % (row.shown, value))


def _check_row(row: Option, value: Any) -> None:
    if row.kind in (int, float):
        if value is None and row.default is None:
            return
        _check_number(row, value)
    elif row.kind == "choice" and value not in row.choices and not (value is None and row.default is None):
        raise ConfigError("%s must be one of: %s" % (row.shown, ", ".join(row.choices)))


def check_spec(spec: str) -> tuple[str, str]:
    """Split "module:attribute" without importing anything (the master checks it)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError("%r: expected module:attribute, e.g. myapp:app" % spec)
    return module_name, attr


def header_lines(values: Any) -> bytes:
    """--header 'NAME: VALUE' (strings, or (name, value) pairs) as the static answers'
    extra lines, checked once by the engine's one header writer (csrc/response.c
    head_fields through front.c mg_static_fields), for both engines."""
    if isinstance(values, str):
        values = [values]
    fields = []
    for v in values or ():
        if isinstance(v, tuple) and len(v) == 2:
            name, value, shown = v[0], v[1], "%s: %s" % v
        elif isinstance(v, str):
            name, sep, value = v.partition(":")
            shown = v
            if not sep:
                raise ConfigError("--header %r: expected 'NAME: VALUE'" % v)
        else:
            raise ConfigError("--header %r: expected 'NAME: VALUE'" % (v,))
        try:
            field = (
                name.encode("ascii") if isinstance(name, str) else bytes(name),
                value.encode("utf-8") if isinstance(value, str) else bytes(value),
            )
        except (UnicodeError, TypeError):
            raise ConfigError("--header %r: the name is not ASCII" % (shown,)) from None
        try:
            _native.static_fields([field])
        except ValueError as e:
            raise ConfigError("--header %r: %s" % (shown, e)) from None
        fields.append(field)
    try:
        return _native.static_fields(fields) if fields else b""
    except ValueError as e:
        raise ConfigError("--header: %s" % e) from None


def error_pages(values: Any, root: str) -> tuple:
    """--error-page CODE=PATH (strings, (code, path) pairs or a {code: path} dict) as
    ((code, path relative to the root, the file's bytes), ...), read once, now."""
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
                raise ConfigError("--error-page %r: expected CODE=PATH, e.g. 404=/404.html" % v)
        elif isinstance(v, tuple) and len(v) == 2:
            code, path = v
        else:
            raise ConfigError("--error-page %r: expected CODE=PATH" % (v,))
        shown = "%s=%s" % (code, path)
        try:
            status = int(code)
        except (TypeError, ValueError):
            raise ConfigError("--error-page %r: %r is not a status code" % (shown, code)) from None
        if not 400 <= status <= 599:
            raise ConfigError("--error-page %r: the status must be 4xx or 5xx" % shown)
        if not isinstance(path, str) or not path.strip("/"):
            raise ConfigError("--error-page %r: expected a file under the root" % shown)
        full = os.path.realpath(os.path.join(root_real, path.lstrip("/")))
        if not full.startswith(root_real.rstrip("/") + "/"):
            raise ConfigError("--error-page %r: %s is outside the root %s" % (shown, path, root))
        try:
            # a FIFO or a device would block (or never end) the read below: a regular file only
            if not stat.S_ISREG(os.stat(full).st_mode):
                raise ConfigError("--error-page %r: %s is not a regular file" % (shown, path))
            with open(full, "rb") as f:
                body = f.read(_native.ERROR_PAGE_MAX + 1)
        except OSError as e:
            raise ConfigError("--error-page %r: cannot read %s: %s" % (shown, path, e.strerror)) from None
        if len(body) > _native.ERROR_PAGE_MAX:
            raise ConfigError(
                "--error-page %r: %s is larger than %d bytes" % (shown, path, _native.ERROR_PAGE_MAX)
            )
        pages[status] = (status, os.path.relpath(full, root_real), body)
    return tuple(pages.values())


def forwarded_allow(value: Any) -> tuple:
    """--forwarded-allow-ips: comma-separated IPs and CIDRs, "*" for any (uvicorn's)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out: list[Any] = []
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
            raise ConfigError("--forwarded-allow-ips: %r is not an IP address or network" % item) from None
    return tuple(out)


def access_log_path(access_log: Any) -> str | None:
    """The access log: a path made absolute (SIGUSR1 reopens it whatever the cwd), "-"
    (stdout) or None (off)."""
    if access_log is None or access_log is False:
        return None
    if not isinstance(access_log, (str, os.PathLike)) or not os.fspath(access_log):
        raise ConfigError("access-log must be a file path or '-' (stdout), not %r" % (access_log,))
    access_log = os.fspath(access_log)
    return access_log if access_log == "-" else os.path.abspath(access_log)


def default_root() -> str:
    """The demo site bundled with the package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")


# ------------------------------------------------------------------ Config


class Config:
    """Every setting of a server, checked once; frozen.  ``Config(**values)`` takes the
    table's names (Server()'s keywords); what is not given is the row's default.
    Derived values (read-only attributes): nworkers, threads (0 without --app/--wsgi),
    static_files, add_headers (the --header lines), error_pages, forwarded_allow,
    reuse_port, access_log (absolute), max_connections_per_process, uring_flags (the
    IORING_SETUP flags a ring gets here, with --io uring)."""

    __slots__ = ("_values", "_derived")

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise TypeError("Config() got unknown settings: %s" % ", ".join(unknown))
        v = {row.name: values.get(row.name, row.default) for row in OPTIONS}
        object.__setattr__(self, "_values", v)
        object.__setattr__(self, "_derived", {})
        self._check(v)

    def __getattr__(self, name: str) -> Any:
        # a derived value first: root (absolute, the demo site for None), threads (0
        # without --app/--wsgi), access_log (absolute; None with --no-access-log), reuse_port
        try:
            return self._derived[name] if name in self._derived else self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is frozen: use config.replace(%s=...)" % name)

    def replace(self, **changes: Any) -> Config:
        """A new Config with these settings changed (checked again)."""
        return Config(**dict(self._values, **changes))

    def values(self) -> dict[str, Any]:
        """The settings as given (table names), for Config(**values)."""
        return dict(self._values)

    def __repr__(self) -> str:
        given = ", ".join(
            "%s=%r" % (row.name, self._values[row.name])
            for row in OPTIONS
            if self._values[row.name] != row.default
        )
        return "Config(%s)" % given

    # -- the one place every value is checked ---------------------------

    def _check(self, v: dict[str, Any]) -> None:
        d = self._derived
        if v["log_level"] is not None:
            try:
                _log.level_number(v["log_level"])
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if v["engine"] not in ENGINE_NAMES:
            raise ConfigError("engine must be one of: %s" % ", ".join(ENGINE_NAMES))
        handlers = [n for n in ("app", "wsgi", "asgi") if v[n] is not None]
        if len(handlers) > 1:
            raise ConfigError("give one of --app, --wsgi or --asgi, not both")
        for name in handlers:
            if isinstance(v[name], str):
                check_spec(v[name])
        rp = v["root_path"]
        if rp and (not isinstance(rp, str) or not rp.startswith("/") or rp.endswith("/")):
            raise ConfigError("root-path must start with / and not end with one, not %r" % rp)
        root = v["root"]
        d["root"] = os.path.abspath(root if root is not None else default_root())
        # With a handler and no --root, unknown paths are 404, not the demo site.
        d["static_files"] = root is not None or not handlers
        if not os.path.isdir(d["root"]):
            raise ConfigError("root %r is not a directory" % d["root"])
        if not os.access(d["root"], os.R_OK | os.X_OK):
            raise ConfigError("root %r is not readable" % d["root"])
        workers = v["workers"]
        nworkers = workers if workers is not None else os.cpu_count() or 1
        if workers is None and nworkers > _native.MAX_WORKERS:
            nworkers = _native.MAX_WORKERS
        d["nworkers"] = nworkers
        _check_number(BY_NAME["workers"], nworkers)
        if v["io"] is None:  # epoll; a test run's MINGINX_TEST_IO for the C engine
            v["io"] = _native.default_io() if v["engine"] == "cffi" else "epoll"
        for row in OPTIONS:
            if row.name != "workers":
                _check_row(row, v[row.name])
        self._check_engine(v)
        d["threads"] = v["threads"] if (v["app"] is not None or v["wsgi"] is not None) else 0
        d["reuse_port"] = bool(v["reuse_port"]) or v["accept"] == "reuseport" or v["processes"] > 1
        fd, uds = v["fd"], v["uds"]
        if fd is not None and uds is not None:
            raise ConfigError("give one of --fd or --uds, not both")
        if (fd is not None or uds is not None) and v["accept"] == "reuseport":
            raise ConfigError(
                "--accept reuseport binds a listener per worker: it cannot be "
                "used with --fd, --uds or sockets handed in by systemd"
            )
        if fd is not None and (isinstance(fd, bool) or not isinstance(fd, int) or fd < 0):
            raise ConfigError("fd must be a file descriptor number, not %r" % (fd,))
        for rd in v["reload_dir"] or ():
            if not isinstance(rd, (str, os.PathLike)) or not os.path.isdir(rd):
                raise ConfigError("--reload-dir %r is not a directory" % (rd,))
        if (v["reload_dir"] or v["reload_include"] or v["reload_exclude"]) and not v["reload"]:
            raise ConfigError("--reload-dir, --reload-include and --reload-exclude go with --reload")
        d["add_headers"] = header_lines(v["header"])
        d["error_pages"] = error_pages(v["error_page"], d["root"])
        d["forwarded_allow"] = forwarded_allow(v["forwarded_allow_ips"])
        d["access_log"] = None if v["no_access_log"] else access_log_path(v["access_log"])
        # --max-connections is a total over every worker (each engine counts all of a
        # process's); with --processes each process takes its share, rounded up
        mc = v["max_connections"]
        d["max_connections_per_process"] = -(-mc // v["processes"]) if mc else 0

    def _check_engine(self, v: dict[str, Any]) -> None:
        """A row the chosen engine lacks: any value but its default is one line."""
        engine = v["engine"]
        if v["io"] == "uring" and engine != "cffi":
            raise ConfigError(
                "--io uring is for the cffi engine: the pure-Python port is "
                "epoll only (the standard library has no io_uring)"
            )
        if v["accept"] == "reuseport" and engine != "cffi":
            raise ConfigError("--accept reuseport is for the cffi engine")
        self._derived["uring_flags"] = None
        if v["io"] == "uring":
            try:
                self._derived["uring_flags"] = _native.uring_probe()
            except OSError as e:
                raise ConfigError("--io uring: io_uring is not available: %s" % e.strerror) from None
        for row in OPTIONS:
            if engine not in row.engines and v[row.name] != row.default and row.name not in ("io", "accept"):
                raise ConfigError(
                    "--%s is for the %s engine: the %s engine does not have it"
                    % (row.shown, " and ".join(sorted(row.engines)), engine)
                )

    # -- what the engines read -------------------------------------------

    def ms(self, name: str) -> int:
        """A seconds row in milliseconds, as the engines count."""
        return int(round(self._values[name] * 1000))  # 2.01 s is 2010 ms, not 2009


def from_cli(options: dict[str, Any]) -> dict[str, Any]:
    """serve's click values as Config keywords: --no-access-log wins, and --stats left
    unsaid is on (with the trace kept for the page) for the bundled demo site alone."""
    options = dict(options)
    if options.pop("no_access_log", False):
        options["access_log"] = None
    if options.get("stats") is None:
        handler = options.get("app") or options.get("wsgi") or options.get("asgi")
        demo = options.get("root") is None and not handler
        options["stats"] = demo
        options["trace"] = options.get("trace") or (demo and "record")
    return options


def click_options(command: Callable) -> Callable:
    """serve's flags, made from the table in its order (cli.py)."""
    import click

    for row in reversed(OPTIONS):
        if not row.cli:
            continue
        kw: dict[str, Any] = {"help": row.help} if row.help else {}
        if row.metavar:
            kw["metavar"] = row.metavar
        if row.envvar:
            kw["envvar"] = row.envvar
        decls = [row.cli_flag]
        if row.kind is bool:
            if row.name == "stats":
                kw["default"] = None  # unsaid: from_cli decides (the demo site's default)
            else:
                kw["default"] = row.default
                kw["show_default"] = row.show_default
            decls = ["--%s/--no-%s" % (row.shown, row.shown)]
        elif row.kind == "flag":
            kw.update(is_flag=True, default=False)
        elif row.kind in (int, float):
            kw["type"] = (click.IntRange if row.kind is int else click.FloatRange)(row.lo, row.hi)
            kw["default"] = row.default
            if row.show_default and row.default is not None:
                kw["show_default"] = True
        elif row.kind == "choice":
            default = row.default if row.cli_default == "same" else row.cli_default
            kw.update(type=click.Choice(list(row.choices)), default=default, show_default=True)
        elif row.kind == "multi":
            kw["multiple"] = True
        elif row.kind == "path":
            kw["type"] = click.Path(**(row.path or {}))
            kw["default"] = row.default
        elif row.kind == "fd":
            kw["type"] = click.IntRange(0, None)
            kw["default"] = None
        else:  # str and "any": text
            kw["default"] = row.default
            if row.show_default and row.default not in (None, ""):
                kw["show_default"] = True
        command = click.option(*decls, **kw)(command)
    return command
