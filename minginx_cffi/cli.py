"""The command line: ``minginx-cffi serve``.  The click command only calls ``server.serve()``."""

import os
import sys

import click

from . import __version__, log
from ._native import (
    ACCEPT_MODES,
    DEFAULT_IO,
    DEFAULT_STACK_SIZE,
    DEFAULT_SWITCH,
    IO_MODES,
    POLICIES,
    SWITCHES,
)
from .server import (
    ACCESS_LOG_FORMATS,
    DEFAULT_HANDLER_TIMEOUT,
    DEFAULT_THREADS,
    ENGINES,
    LIMITS,
    ServerError,
    serve,
)


def limit(name):
    """The click range of a numeric option, from server.LIMITS (Server() checks it again)."""
    kind, lo, hi = LIMITS[name]
    return click.IntRange(lo, hi) if kind is int else click.FloatRange(lo, hi)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minginx-cffi")
def cli():
    """minginx-cffi: a coroutine HTTP/1.1 server with a C engine, driven from Python."""


@cli.command("serve")
@click.option(
    "--root",
    type=click.Path(file_okay=False, dir_okay=True),
    default=None,
    help="Directory to serve (default: the bundled demo site).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=limit("port"), default=3094, show_default=True)
@click.option("--workers", type=limit("workers"), default=None, help="Worker threads (default: CPU count).")
@click.option(
    "--policy",
    type=click.Choice(sorted(POLICIES)),
    default="lifo",
    show_default=True,
    help="Ready-queue order: RDY_FIFO or RDY_LIFO.",
)
@click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default="cffi",
    show_default=True,
    help="cffi: the C engine; python: the pure-Python port of the same design.",
)
@click.option(
    "--switch",
    type=click.Choice(list(SWITCHES)),
    default=DEFAULT_SWITCH,
    show_default=True,
    help="Context switch: glibc's swapcontext (the seed's design), or the fast one "
    "(x86-64 assembly, no signal-mask system call: a few percent less CPU).",
)
@click.option(
    "--accept",
    type=click.Choice(list(ACCEPT_MODES)),
    default="dispatch",
    show_default=True,
    help="dispatch: the main thread accepts and hands fds down pipes (the seed); "
    "reuseport: each worker accepts on its own SO_REUSEPORT listener.",
)
@click.option(
    "--io",
    type=click.Choice(list(IO_MODES)),
    default=DEFAULT_IO,
    show_default=True,
    help="Worker I/O: epoll (readiness, then the system call: the seed) or uring "
    "(io_uring: calls submitted, completions reaped; Linux 5.11+, cffi engine "
    "only; exits if the kernel refuses it).",
)
@click.option(
    "--defer-accept/--no-defer-accept",
    default=True,
    show_default=True,
    help="TCP_DEFER_ACCEPT: accept a connection when its request arrives, not at "
    "the handshake (as h2o); off, the first read waits in epoll as in the seed.",
)
@click.option(
    "--grace",
    type=limit("grace"),
    default=5.0,
    show_default=True,
    help="Seconds in-flight responses get to finish at shutdown.",
)
@click.option(
    "--stack-size",
    type=limit("stack_size"),
    default=DEFAULT_STACK_SIZE,
    show_default=True,
    help="Bytes per coroutine stack.",
)
@click.option(
    "--header-timeout",
    type=limit("header_timeout"),
    default=10.0,
    show_default=True,
    help="Seconds to receive a whole request head (0: no limit).",
)
@click.option(
    "--keepalive-timeout",
    type=limit("keepalive_timeout"),
    default=15.0,
    show_default=True,
    help="Seconds an idle keep-alive connection is kept; 0 turns keep-alive off (as nginx).",
)
@click.option(
    "--send-timeout",
    type=limit("send_timeout"),
    default=60.0,
    show_default=True,
    help="Seconds a send may make no progress.",
)
@click.option(
    "--max-body",
    type=limit("max_body"),
    default=1 << 20,
    show_default=True,
    help="Largest request body read (and discarded by the static files).",
)
@click.option(
    "--gzip-static/--no-gzip-static",
    default=True,
    show_default=True,
    help="Send FILE.gz (not older than FILE) to clients that accept gzip.",
)
@click.option(
    "--open-file-cache",
    type=limit("open_file_cache"),
    default=1024,
    show_default=True,
    help="Open files cached per worker (0: off).",
)
@click.option(
    "--small-file-cache",
    type=limit("small_file_cache"),
    default=16384,
    show_default=True,
    help="Files up to this many bytes are kept in memory (0: off).",
)
@click.option(
    "--app",
    default=None,
    metavar="MODULE:ATTR",
    help="A minginx_cffi.App to run (with --root: after the files; its unknown paths are 404).",
)
@click.option(
    "--wsgi", default=None, metavar="MODULE:ATTR", help="A WSGI application to run (Flask, Django...)."
)
@click.option(
    "--asgi",
    default=None,
    metavar="MODULE:ATTR",
    help="An ASGI 3 application to run (FastAPI, Starlette...); HTTP only, no WebSockets.",
)
@click.option(
    "--root-path",
    default="",
    metavar="PATH",
    help="ASGI root_path: the prefix a proxy mounts the app under (e.g. /api).",
)
@click.option(
    "--threads",
    type=limit("threads"),
    default=DEFAULT_THREADS,
    show_default=True,
    help="Python threads running --app/--wsgi handlers, so a handler that blocks never "
    "stalls a worker; 0 runs them inline on the worker (fastest when none blocks).",
)
@click.option(
    "--handler-timeout",
    type=limit("handler_timeout"),
    default=DEFAULT_HANDLER_TIMEOUT,
    show_default=True,
    help="Seconds a pooled handler may run before its client gets 504 and the "
    "connection closes (0: no limit; the thread itself cannot be stopped).",
)
@click.option(
    "--processes",
    type=limit("processes"),
    default=1,
    show_default=True,
    help="Server processes sharing the port with SO_REUSEPORT, run by a master "
    "process that holds the sockets (SIGHUP: a graceful reload).",
)
@click.option(
    "--fd",
    type=click.IntRange(0, None),
    default=None,
    metavar="N",
    help="Serve the listening socket inherited as file descriptor N "
    "(systemd's LISTEN_FDS is read without it).",
)
@click.option(
    "--uds",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="Listen on a Unix socket at PATH (for a proxy in front) instead of a port.",
)
@click.option(
    "--user",
    default=None,
    metavar="NAME",
    help="Server processes drop root to this user as they start (the master, "
    "which holds the sockets, stays root as nginx's).",
)
@click.option(
    "--group", default=None, metavar="NAME", help="Drop root to this group (default: --user's own group)."
)
@click.option(
    "--max-connections",
    type=limit("max_connections"),
    default=0,
    show_default=True,
    help="Open connections at most, over all workers; more get 503 (0: no limit).",
)
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the server's pid here while it runs.",
)
@click.option(
    "--log-level",
    type=click.Choice(list(log.LEVELS)),
    default="info",
    show_default=True,
    help="Error-log lines (stderr) below this level are not written.",
)
@click.option(
    "--access-log",
    default=None,
    metavar="PATH|-",
    help="Write a line per request to PATH ('-': stdout); SIGUSR1 reopens it (logrotate). Off by default.",
)
# a flag of its own (click < 8.2 reads flag_value=None on a shared destination as an
# option taking a value): given, it wins over --access-log
@click.option(
    "--no-access-log",
    is_flag=True,
    default=False,
    help="Write no access log (the default; wins over --access-log).",
)
@click.option(
    "--access-log-format",
    type=click.Choice(list(ACCESS_LOG_FORMATS)),
    default="combined",
    show_default=True,
    help="combined: nginx's combined format; json: one object a line, with request_time.",
)
@click.option(
    "--header",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Add this header to static 2xx/3xx answers, as nginx's add_header "
    "(repeatable; e.g. 'Cache-Control: max-age=3600').",
)
@click.option(
    "--error-page",
    multiple=True,
    metavar="CODE=PATH",
    help="Serve this file of the root as the body of the server's own error "
    "responses with CODE (repeatable; e.g. 404=/404.html).",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Take the client address and scheme from X-Forwarded-For/-Proto (or "
    "Forwarded) sent by a peer in --forwarded-allow-ips.",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    envvar="FORWARDED_ALLOW_IPS",
    metavar="IPS",
    help="Comma-separated IPs or networks of the proxies to trust, '*' for any.",
)
@click.option(
    "--trace",
    is_flag=True,
    default=False,
    help="Print each step of the happy path, per connection, as it happens.",
)
@click.option(
    "--stats/--no-stats",
    default=None,
    help="GET /_minginx/stats (JSON) and a table at shutdown; on by default for the demo site.",
)
@click.option(
    "--serve-dotfiles/--no-serve-dotfiles",
    default=False,
    show_default=True,
    help="Serve /.git, /.env and other dotfiles.",
)
@click.option(
    "--follow-symlinks/--no-follow-symlinks",
    default=False,
    show_default=True,
    help="Follow symlinks that lead outside the root.",
)
def serve_command(**options):
    """Serve static files over HTTP/1.1."""
    if options.pop("no_access_log"):
        options["access_log"] = None
    if options["stats"] is None:
        # the demo site shows the live stats and the trace of its own request
        demo = options["root"] is None and not (options["app"] or options["wsgi"] or options["asgi"])
        options["stats"] = demo
        options["trace"] = options["trace"] or (demo and "record")
    serve(**options)


def main(argv=None):
    """Entry point: click's errors and ours become one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="minginx-cffi", standalone_mode=False)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.UsageError as e:
        # No prefix: a usage error answers the command line before any server (or log
        # level: the bad flag may be --log-level itself) exists, in the shape of --help's
        # own output; it goes to the person or script that typed it (README, "Error log").
        click.echo("minginx-cffi: %s" % e.format_message(), err=True)
        sys.exit(2)
    except click.Abort:
        sys.exit(1)
    except ServerError as e:
        # the server's last word: a log record, written whatever --log-level says
        log.write_record(log.LEVELS["error"], "minginx-cffi: %s" % e)
        _quiet_stdout()
        sys.exit(1)
    sys.exit(0)


def _quiet_stdout():
    """After a failure, a stdout that cannot be written (a full disk, a closed pipe) must
    not add its own traceback at exit, when Python flushes it: point it at /dev/null."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
