"""The command line, run as users run it: a subprocess, real signals, real exit codes."""

import contextlib
import mmap
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ENGINES, Conn, free_port, wait_for

CLI = [sys.executable, "-m", "minginx_cffi"]


def start(*args):
    port = free_port()
    p = subprocess.Popen(
        CLI + ["serve", "--port", str(port)] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    line = p.stdout.readline().decode()
    return p, port, line


def test_serve_default_demo_site():
    p, port, banner = start("--workers", "1")
    try:
        assert "http://127.0.0.1:%d" % port in banner
        assert "workers 1" in banner and "policy lifo" in banner and "site" in banner
        r = Conn(port).request("GET", "/")
        assert r.status == 200 and b"minginx-cffi" in r.body
        assert Conn(port).request("GET", "/style.css").header("content-type").startswith("text/css")
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


IMPORT_FAILURES = {
    "runtime": (
        'import os\n\n\ndef settings():\n    raise RuntimeError("DATABASE_URL is not set")\n\n\nsettings()\n',
        ['badapp.py", line 8, in <module>', 'badapp.py", line 5, in settings'],
        "cannot import 'badapp': RuntimeError: DATABASE_URL is not set",
    ),
    "syntax": (
        "def app(environ, start_response:\n    pass\n",
        ['badapp.py", line ', "SyntaxError"],  # the line: 1 from 3.10 on, 2 on 3.9's parser
        "cannot import 'badapp': SyntaxError: ",
    ),
    "dependency": (
        "import no_such_package_here\n",
        ['badapp.py", line 1, in <module>'],
        "cannot import 'badapp': ModuleNotFoundError: No module named 'no_such_package_here'",
    ),
}


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("kind", sorted(IMPORT_FAILURES))
def test_an_app_that_fails_to_import_shows_its_frames_and_one_line(tmp_path, kind, processes):
    """As uvicorn: the app's own frames (not the server's, not importlib's) and one summary
    line, exit 1.  Before, a SyntaxError or an exception raised at import was a 27-line
    [critical] traceback of the server's own frames."""
    src, frames, summary = IMPORT_FAILURES[kind]
    (tmp_path / "badapp.py").write_text(src)
    p = subprocess.run(
        CLI + ["serve", "--port", str(free_port()), "--wsgi", "badapp:app", "--processes", processes],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    err = p.stderr.decode()
    assert p.returncode == 1, err
    for frame in frames:
        assert frame in err, err
    last = err.strip().splitlines()[-1]
    assert summary in last and "[error]" in last, err
    assert "minginx_cffi" not in err and "importlib" not in err and "[critical]" not in err, err
    assert len(err.strip().splitlines()) <= 10, err


def read_until(fd, needle, timeout=20):
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out += os.read(fd, 4096)
            except OSError:  # EIO: the pty's other end closed
                break
    return out


@pytest.mark.parametrize("processes", ["1", "2"])
def test_the_banner_is_written_once_in_a_terminal(processes):
    """stdout and stderr on one terminal: the banner once (the error log's record), not
    the stdout line and then the same text again.  Piped apart, each still has it."""
    main, other = pty.openpty()
    port = free_port()
    p = subprocess.Popen(
        CLI + ["serve", "--port", str(port), "--workers", "1", "--processes", processes],
        stdin=subprocess.DEVNULL,
        stdout=other,
        stderr=other,
    )
    os.close(other)
    try:
        out = read_until(main, b"serving")
        assert Conn(port).request("GET", "/").status == 200  # serving: everything said is out
        out += read_until(main, b"\n", timeout=0.5)
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
        os.close(main)
    assert out.count(b"serving") == 1, out
    p, port, banner = start("--workers", "1", "--processes", processes)
    try:
        assert "serving" in banner
        assert b"serving" in read_until(p.stderr.fileno(), b"serving")
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


@pytest.mark.parametrize(
    "args, switch",
    [((), os.environ.get("MINGINX_TEST_SWITCH") or "ucontext"), (("--switch", "fast"), "fast")],
)
def test_the_banner_names_the_switch_ucontext_by_default(args, switch):
    """The seed's swapcontext design is the default (but under make test-asan, see
    _native.DEFAULT_SWITCH); the fast switch is one flag away."""
    p, port, banner = start("--workers", "1", *args)
    try:
        assert "engine cffi, switch %s," % switch in banner
        assert Conn(port).request("GET", "/").status == 200
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


def test_version_flag_and_banner_name_the_package_version():
    from minginx_cffi import __version__

    out = subprocess.run(CLI + ["--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "minginx-cffi, version %s\n" % __version__
    p, port, banner = start("--workers", "1")
    try:
        assert "(version %s, workers 1," % __version__ in banner
        # the response names the software, not its version (nginx's `server_tokens off`):
        # a version in every response tells a scanner which advisories to try
        r = Conn(port).request("GET", "/")
        assert r.header("server") == "minginx-cffi"
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


def test_the_port_banner_names_no_switch():
    p, port, banner = start("--workers", "1", "--engine", "python")
    try:
        assert "engine python" in banner and "switch" not in banner
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0


def test_sigterm_shuts_down_cleanly_exit_0(site_root):
    p, port, _ = start("--root", str(site_root), "--policy", "fifo", "--no-defer-accept")
    assert Conn(port).request("GET", "/hello.txt").status == 200
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_sigterm_lets_an_inflight_transfer_finish(site_root):
    """The transfer ends complete, and then so does its keep-alive connection: after
    the drain (1 s), not the keep-alive timeout (30 s here; it used to be kept that
    long, --grace 60 permitting: tests/test_shutdown_keepalive.py)."""
    p, port, _ = start("--root", str(site_root), "--grace", "60", "--keepalive-timeout", "30")
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    data = s.recv(65536)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    got = len(data) - data.index(b"\r\n\r\n") - 4
    while got < 50 * (1 << 20):
        chunk = s.recv(1 << 20)
        assert chunk, got
        got += len(chunk)
    assert got == 50 * (1 << 20)
    s.settimeout(10)  # the EOF, well before the keep-alive timeout
    assert s.recv(1) == b""
    assert p.wait(10) == 0


def wait_for_line(p, needle):
    """Read the master's stderr up to the line that holds needle (or its end)."""
    lines = []
    while not lines or needle not in lines[-1]:
        line = p.stderr.readline().decode()
        if not line:
            raise AssertionError("no line with %r: %s" % (needle, "".join(lines)))
        lines.append(line)
    return lines


def test_second_sigint_exits_at_once(site_root):
    """The second Ctrl-C right after the master took the first: it reaches the server
    process soon after the first SIGINT did.  Passed on as a second SIGINT, the two were
    often one by the time the process's handler ran (1 run in 5): it finished the transfer
    gracefully until the master killed it KILL_AFTER seconds later.  The master sends
    QUIT_NOW for the second (_master.py), a signal the first cannot absorb."""
    p, port, _ = start("--root", str(site_root), "--grace", "60")
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(1000)  # in flight, and we stop reading
    p.send_signal(signal.SIGINT)
    wait_for_line(p, "SIGINT, finishing in-flight responses (up to 60s; again to quit now)")
    assert p.poll() is None  # still finishing the transfer
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == 0
    err = p.stderr.read().decode()
    assert "killing it" not in err, err  # it stopped at once, not by the master's kill
    s.close()


HOG_SRC = """
import mmap, sys
from minginx_cffi import App
app = App()

@app.route("/hog")
def hog(request):
    # holds the GIL until the test sets byte 0 of ./flag: no other thread of the process
    # runs Python meanwhile, the main thread's signal handlers neither
    with open("flag", "r+b") as f:
        flag = mmap.mmap(f.fileno(), 2)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    flag[1] = 1
    while not flag[0]:
        pass
    sys.setswitchinterval(interval)
    return "done"
"""


@contextlib.contextmanager
def gil_held(tmp_path, port, p):
    """A response in flight (its reader stops reading) and hog.py's handler spinning with
    the GIL held until flag[0] is set; yields the flag.  Whatever happens, the handler is
    let go, the server process p killed if it still runs, the sockets closed."""
    with open(tmp_path / "flag", "r+b") as f:
        flag = mmap.mmap(f.fileno(), 2)
    socks = []
    try:
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=20))
        socks[0].sendall(b"GET /50mib.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        socks[0].recv(1000)  # in flight, and we stop reading
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=20))
        socks[1].sendall(b"GET /hog HTTP/1.1\r\nHost: a\r\n\r\n")
        assert wait_for(lambda: flag[1], timeout=20)  # the handler holds the GIL
        yield flag
    finally:
        flag[0] = 1
        if p.poll() is None:
            p.kill()
            p.wait()
        for x in socks:
            x.close()


def test_a_second_sigint_cuts_off_while_a_handler_holds_the_gil(site_root, tmp_path, engine):
    """Ctrl-C twice while a handler holds the GIL: the server process's signal handlers
    run only once it lets go, after both signals came.  Two SIGINTs were then one (CPython
    runs a handler once for every delivery it missed): a graceful stop, killed by the
    master KILL_AFTER seconds later.  QUIT_NOW stays a signal of its own."""
    (tmp_path / "hog.py").write_text(HOG_SRC)
    (tmp_path / "flag").write_bytes(b"\0\0")
    p, port, _ = start_in(
        tmp_path, "--engine", engine, "--app", "hog:app", "--root", str(site_root), "--grace", "60"
    )
    with gil_held(tmp_path, port, p) as flag:
        p.send_signal(signal.SIGINT)
        wait_for_line(p, "SIGINT, finishing in-flight responses")
        p.send_signal(signal.SIGINT)
        # the master passes it on at once; nothing shows when (the process runs no Python
        # until the flag is set): if it came later, this run could not tell old from new
        time.sleep(0.3)
        flag[0] = 1
        assert p.wait(30) == 0
        err = p.stderr.read().decode()
        assert "killing it" not in err, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--root", "/nonexistent/dir"], "not a directory"),
        (["--workers", "0"], "workers"),
        (["--policy", "random"], "policy"),
        (["--port", "99999"], "port"),
        (["--bogus"], "bogus"),
    ],
)
def test_bad_flags_one_line_nonzero(args, needle):
    p = subprocess.run(CLI + ["serve"] + args, capture_output=True, timeout=30)
    assert p.returncode != 0
    err = p.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_port_in_use_one_line_nonzero():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        p = subprocess.run(CLI + ["serve", "--port", str(port)], capture_output=True, timeout=30)
        assert p.returncode == 1
        err = p.stderr.decode().strip()
        assert len(err.splitlines()) == 1 and "in use" in err
    finally:
        s.close()


def test_root_is_a_file_one_line_nonzero(site_root):
    p = subprocess.run(
        CLI + ["serve", "--root", str(site_root / "hello.txt")], capture_output=True, timeout=30
    )
    assert p.returncode != 0 and len(p.stderr.decode().strip().splitlines()) == 1


SERVE_FOREVER = """
import sys
from minginx_cffi import Server
root, port, engine = sys.argv[1], int(sys.argv[2]), sys.argv[3]
Server(root=root, port=port, app="hog:app", engine=engine, grace=3600).serve_forever()
"""


def pending(pid, signum):
    """signum is pending for the process: sent, not yet taken by any of its threads."""
    with open("/proc/%d/status" % pid) as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("ShdPnd:"))
    return bool(mask >> (signum - 1) & 1)


def test_serve_forever_counts_every_sigint_while_a_handler_holds_the_gil(site_root, tmp_path, engine):
    """Server.serve_forever() on its own (no master): each SIGINT the process took counts,
    though its handler runs once for both (CPython runs a handler once for every delivery
    it missed while a handler held the GIL): the second one cuts the transfer off instead
    of a graceful stop of up to --grace (an hour here)."""
    (tmp_path / "hog.py").write_text(HOG_SRC)
    (tmp_path / "flag").write_bytes(b"\0\0")
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-c", SERVE_FOREVER, str(site_root), str(port), engine],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert "http://127.0.0.1:%d" % port in p.stdout.readline().decode()
    with gil_held(tmp_path, port, p) as flag:
        for _ in range(2):
            p.send_signal(signal.SIGINT)
            # taken (its C handler ran), so the next one is a delivery of its own
            assert wait_for(lambda: not pending(p.pid, signal.SIGINT), timeout=20)
        flag[0] = 1
        assert p.wait(30) == 0


APP_SRC = """
import os
from minginx_cffi import App
app = App()

@app.route("/pid")
def pid(request):
    return str(os.getpid())

def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi says hi"]
"""


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "myapp.py").write_text(APP_SRC)
    return tmp_path


def parent_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line.split()[1] for line in f if line.startswith("PPid:")))


def start_in(cwd, *args):
    port = free_port()
    p = subprocess.Popen(
        CLI + ["serve", "--port", str(port)] + list(args),
        cwd=str(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = p.stdout.readline().decode()
    return p, port, line


def test_cli_app_and_wsgi(app_dir):
    p, port, banner = start_in(app_dir, "--app", "myapp:app", "--workers", "1")
    try:
        assert "app" in banner
        # the handler runs in a server process of the master (the CLI's own process)
        pid = int(Conn(port).request("GET", "/pid").body)
        assert pid != p.pid and parent_of(pid) == p.pid
        assert Conn(port).request("GET", "/index.html").status == 404  # no --root: no files
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
    p, port, banner = start_in(app_dir, "--wsgi", "myapp:wsgi", "--workers", "1")
    try:
        assert Conn(port).request("GET", "/anything").body == b"wsgi says hi"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0


KINDS_SRC = """
from flask import Flask
from fastapi import FastAPI
from minginx_cffi import App

flask_app = Flask(__name__)
fastapi_app = FastAPI()
native = App()
number = 42

def wsgi(environ, start_response):
    return []

async def asgi(scope, receive, send):
    pass
"""


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["--app", "kinds:flask_app"],
            "--app wants a minginx_cffi.App; kinds:flask_app is a WSGI "
            "application (Flask): use --wsgi kinds:flask_app",
        ),
        (["--app", "kinds:wsgi"], "use --wsgi kinds:wsgi"),
        (["--app", "kinds:fastapi_app"], "is an ASGI application (FastAPI): use --asgi kinds:fastapi_app"),
        (["--app", "kinds:asgi"], "use --asgi kinds:asgi"),
        (["--app", "kinds:number"], "--app wants a minginx_cffi.App, got kinds:number (int)"),
        (
            ["--wsgi", "kinds:fastapi_app"],
            "--wsgi wants a WSGI application; kinds:fastapi_app is an ASGI application (FastAPI): use --asgi",
        ),
        (["--wsgi", "kinds:native"], "is a minginx_cffi.App (App): use --app kinds:native"),
        (["--wsgi", "kinds:number"], "--wsgi wants a WSGI application, got kinds:number (int)"),
        (
            ["--asgi", "kinds:flask_app"],
            "--asgi wants an ASGI application; kinds:flask_app is a WSGI "
            "application (Flask): use --wsgi kinds:flask_app",
        ),
        (["--asgi", "kinds:native"], "use --app kinds:native"),
        (["--asgi", "kinds:number"], "--asgi wants an ASGI application, got kinds:number (int)"),
    ],
)
def test_an_app_for_the_wrong_flag_is_one_line_pointing_at_the_right_one(tmp_path, engine, args, needle):
    """issue 13: a Flask object given to --app was a 30-line traceback; now one line naming
    the flag that serves it, told by the object's shape, and a non-zero exit."""
    pytest.importorskip("flask")
    pytest.importorskip("fastapi")
    (tmp_path / "kinds.py").write_text(KINDS_SRC)
    p = subprocess.run(
        CLI + ["serve", "--engine", engine, "--port", str(free_port())] + args,
        cwd=str(tmp_path),
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and needle in err, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--app", "nosuchmodule:app"], "cannot import"),
        (["--app", "myapp:nope"], "no attribute"),
        (["--app", "myapp"], "module:attribute"),
        (["--wsgi", "myapp:app", "--app", "myapp:app"], "not both"),
    ],
)
def test_cli_bad_app_one_line(app_dir, args, needle):
    p = subprocess.run(CLI + ["serve"] + args, cwd=str(app_dir), capture_output=True, timeout=30)
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1 and needle in err, err


def test_processes_share_the_port_and_stop_together(app_dir):
    p, port, banner = start_in(app_dir, "--app", "myapp:app", "--workers", "1", "--processes", "2")
    try:
        assert "processes 2" in banner
        pids = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                pids.add(Conn(port).request("GET", "/pid").body)
            except (ConnectionError, EOFError):
                time.sleep(0.05)
        assert len(pids) == 2 and str(p.pid).encode() not in pids
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(15) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


# -- a busy port, in every accept mode -------------------------------------------------

BUSY_MODES = [
    (engine, mode)
    for engine, modes in [
        ("cffi", ["", "--accept reuseport", "--processes 2", "--processes 2 --accept reuseport"]),
        ("python", ["", "--processes 2"]),
    ]
    if engine in ENGINES
    for mode in modes
]


def foreign_reuseport_listener():
    """Another program's listener with SO_REUSEPORT, under our own uid (what Linux
    would let a SO_REUSEPORT socket of ours join)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("engine,mode", BUSY_MODES)
def test_a_busy_port_is_refused(engine, mode, site_root):
    # Item 10: --accept reuseport and --processes used to bind with SO_REUSEPORT
    # at once, and so joined a server already on the port: clients alternated
    # between the two sites.  The second server must say the port is in use.
    args = ["--engine", engine, "--workers", "2", "--root", str(site_root)] + mode.split()
    first, port, banner = start(*args)
    try:
        assert "http://127.0.0.1:%d" % port in banner
        second = subprocess.run(CLI + ["serve", "--port", str(port)] + args, capture_output=True, timeout=30)
        err = second.stderr.decode().strip()
        assert second.returncode == 1, err
        assert len(err.splitlines()) == 1 and "in use" in err, err
        for _ in range(10):  # the first one still serves, alone
            assert Conn(port).request("GET", "/hello.txt").status == 200
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0


@pytest.mark.parametrize("engine,mode", BUSY_MODES)
def test_a_foreign_reuseport_listener_is_not_joined(engine, mode):
    s = foreign_reuseport_listener()
    try:
        p = subprocess.run(
            CLI + ["serve", "--engine", engine, "--port", str(s.getsockname()[1])] + mode.split(),
            capture_output=True,
            timeout=30,
        )
        err = p.stderr.decode().strip()
        assert p.returncode == 1 and len(err.splitlines()) == 1 and "in use" in err, err
    finally:
        s.close()


# -- start-up failures once the workers run --------------------------------------------


def check_one_line_failure(p, needle):
    err = p.stderr.decode().strip()
    assert p.returncode == 1, err
    # past the banner, the error log has the start's [info] record too (tests/test_log.py)
    problems = [l for l in err.splitlines() if " [info] [" not in l]
    assert len(problems) == 1 and "[error]" in problems[0], err
    assert needle in err and "Traceback" not in err, err


def test_a_pid_file_in_a_missing_directory_fails_cleanly(engine, tmp_path):
    # Item 11: this used to be a traceback, with the workers left running.
    p = subprocess.run(
        CLI
        + [
            "serve",
            "--engine",
            engine,
            "--port",
            str(free_port()),
            "--workers",
            "2",
            "--pid-file",
            str(tmp_path / "no" / "x.pid"),
        ],
        capture_output=True,
        timeout=30,
    )
    check_one_line_failure(p, "pid file")


def test_an_unwritable_stdout_fails_cleanly(engine):
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            CLI + ["serve", "--engine", engine, "--port", str(free_port()), "--workers", "2"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=30,
        )
    check_one_line_failure(p, "cannot write to stdout")


def test_an_unwritable_stdout_fails_cleanly_with_processes(engine):
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            CLI
            + ["serve", "--engine", engine, "--port", str(free_port()), "--workers", "1", "--processes", "2"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=30,
        )
    # Children that had already started say how they stop (SIGTERM from the parent) on the
    # same stderr; the parent's own word is the one line that ends it.
    err = p.stderr.decode().strip()
    assert p.returncode == 1, err
    assert "cannot write to stdout" in err.splitlines()[-1] and "Traceback" not in err, err


ACCEPT_FAILS = """
import errno, sys
from minginx_cffi import _native, pyport
from minginx_cffi.cli import main

def accept_loop(self, listen_fd, wake_fd):
    raise OSError(errno.EBADF, "Bad file descriptor")

_native.Engine.accept_loop = pyport.Engine.accept_loop = accept_loop
main(sys.argv[1:])
"""


def test_an_accept_error_stops_the_workers_before_freeing(engine):
    # The engine used to be freed while its worker threads still ran in it
    # (make test-asan runs this too: a use-after-free there is a failure).
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            ACCEPT_FAILS,
            "serve",
            "--engine",
            engine,
            "--port",
            str(free_port()),
            "--workers",
            "4",
        ],
        capture_output=True,
        timeout=30,
    )
    check_one_line_failure(p, "accept loop: Bad file descriptor")


# -- numeric options: huge, negative, NaN, too small to mean anything ------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--max-body", str(1 << 31)], "max-body"),  # past the C int: was a traceback
        (["--max-body", str(1 << 40)], "max-body"),
        (["--max-body", "-1"], "max-body"),
        (["--header-timeout", "nan"], "header-timeout"),  # click's FloatRange lets NaN through
        (["--keepalive-timeout", "nan"], "keepalive-timeout"),
        (["--send-timeout", "nan"], "send-timeout"),
        (["--grace", "nan"], "grace"),
        (["--header-timeout", "0.0001"], "header-timeout"),  # 0 ms would read as "no limit"
        (["--send-timeout", "1e12"], "send-timeout"),
        (["--header-timeout", "-1"], "header-timeout"),
        (["--max-connections", "-1"], "max-connections"),
        (["--max-connections", str(1 << 40)], "max-connections"),
        (["--stack-size", str(1 << 40)], "stack-size"),
        (["--stack-size", "0"], "stack-size"),
        (["--open-file-cache", str(1 << 40)], "open-file-cache"),
        (["--small-file-cache", "-5"], "small-file-cache"),
        (["--workers", "100000"], "workers"),
        (["--processes", "0"], "processes"),
        (["--port", "-1"], "port"),
    ],
)
def test_bad_numbers_one_line_nonzero(args, needle):
    p = subprocess.run(CLI + ["serve", "--port", str(free_port())] + args, capture_output=True, timeout=30)
    err = p.stderr.decode().strip()
    assert p.returncode in (1, 2), err
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err


FORK_FAILS = """
import errno, os, sys
from minginx_cffi.cli import main

real_fork, forks = os.fork, []

def fork():
    if forks:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    pid = real_fork()
    if pid:
        forks.append(pid)
        print("child", pid, file=sys.stderr, flush=True)
    return pid

os.fork = fork
try:
    main(sys.argv[1:])
finally:
    for pid in forks:   # the child that did start must be gone
        try:
            os.kill(pid, 0)
            print("left running", pid, file=sys.stderr, flush=True)
        except ProcessLookupError:
            pass
"""


def test_a_failed_fork_takes_the_started_children_down(engine):
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            FORK_FAILS,
            "serve",
            "--engine",
            engine,
            "--port",
            str(free_port()),
            "--workers",
            "1",
            "--processes",
            "3",
        ],
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode()
    assert p.returncode == 1 and "fork: Resource temporarily unavailable" in err, err
    assert "left running" not in err and "Traceback" not in err, err
