"""The command line: ``minginx-cffi serve``, its flags made from config.OPTIONS; it calls serve()."""

import os
import sys

import click

from . import __version__, log
from .config import click_options, from_cli
from .server import ServerError, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minginx-cffi")
def cli():
    """minginx-cffi: a coroutine HTTP/1.1 server with a C engine, driven from Python."""


@cli.command("serve")
@click_options  # every flag is a row of config.OPTIONS
def serve_command(**options):
    """Serve static files over HTTP/1.1."""
    serve(**from_cli(options))


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
        if e.detail:
            log.write_record(log.LEVELS["error"], "minginx-cffi: %s" % e.detail)
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
