"""The process model, run as operators run it: the CLI's master process in a subprocess,
real signals (TERM/INT, HUP's reload, a killed server process), sockets handed in
(systemd-socket-activate, --fd, --uds) and --user/--group."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import Conn, free_port, socket_activate_env_args, tool_env, wait_for

CLI = [sys.executable, "-m", "minginx_cffi"]
NOBODY = 65534

# The application reads a file when it is imported: a reload that imports it anew
# answers the new value.
APP_SRC = """
import os
VALUE = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "value.txt")).read().strip()

def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %d" % (VALUE, os.getpid())).encode()]

def env(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s|%s|%s" % (os.environ.get("LISTEN_FDS"), environ["REMOTE_ADDR"],
                           environ["SERVER_PORT"])).encode()]
"""

BROKEN_SRC = 'raise RuntimeError("this version does not import")\n'

LIFESPAN_FAILS = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
"""


@pytest.fixture
def app_dir():
    # world-readable (tmp_path's parent is 0700): --user nobody imports from it too
    d = tempfile.mkdtemp(prefix="minginx-proc-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "relapp.py"), "w") as f:
        f.write(APP_SRC)
    with open(os.path.join(d, "value.txt"), "w") as f:
        f.write("one\n")
    for name in ("relapp.py", "value.txt"):
        os.chmod(os.path.join(d, name), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def children(pid):
    """The live processes whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/status" % entry) as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(status["PPid"]) == pid and not status["State"].strip().startswith("Z"):
            out.append(int(entry))
    return sorted(out)


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        line = next(line for line in f if line.startswith("Uid:"))
    return [int(x) for x in line.split()[1:]]


class Master:
    """minginx-cffi serve in a subprocess: its banner, its stderr lines as they come."""

    def __init__(self, *args, cwd=None, port=None, argv=None, env=None, listen=True, **popen):
        self.port = port or free_port()
        argv = argv or (CLI + ["serve"] + (["--port", str(self.port)] if listen else []))
        self.p = subprocess.Popen(
            argv + list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen
        )
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.banner = None

    def _read(self):
        for line in self.p.stderr:
            with self.cond:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()

    def wait_banner(self):
        self.banner = self.p.stdout.readline().decode()
        assert "serving" in self.banner, (self.banner, self.lines)
        return self

    def wait_line(self, needle, start=0, timeout=30):
        """The first stderr line from index start on that contains needle."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                assert left > 0, "no %r in %r" % (needle, self.lines)
                self.cond.wait(left)

    @property
    def pid(self):
        return self.p.pid

    def children(self):
        return children(self.p.pid)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        finally:
            self.reader.join(5)

    def kill(self):
        if self.p.poll() is None:
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)
            self.p.kill()
            self.p.wait()


@pytest.fixture
def masters():
    started = []

    def start(*args, **kw):
        m = Master(*args, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.kill()


def fetch(port, path="/"):
    c = Conn(port)
    try:
        return c.request("GET", path)
    finally:
        c.close()


class ClientLoop(threading.Thread):
    """Requests without a pause, keep-alive ones and new connections in turn, counting
    the errors.  No request is ever sent again: a server stopping gracefully gives an
    idle keep-alive connection time for one more request, answered with "Connection:
    close" (csrc/worker.c begin_graceful_stop), so a reload loses none."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stopped = threading.Event()
        self.errors = []
        self.bodies = []

    def run(self):
        conn = None
        while not self.stopped.is_set():
            try:
                if conn is None:
                    conn = Conn(self.port)
                r = conn.request("GET", "/")
                if r.status != 200:
                    self.errors.append("status %d" % r.status)
                self.bodies.append(r.body.decode())
                if r.header("connection", "").lower() == "close" or len(self.bodies) % 5 == 0:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def stop(self):
        self.stopped.set()
        self.join(30)


# -- SIGHUP: a graceful reload ------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2])
def test_sighup_reloads_the_code_with_no_failed_request(masters, app_dir, engine, processes):
    m = masters(
        "--wsgi",
        "relapp:wsgi",
        "--engine",
        engine,
        "--workers",
        "2",
        "--processes",
        str(processes),
        cwd=app_dir,
    ).wait_banner()
    assert wait_for(lambda: len(m.children()) == processes)
    old = m.children()
    client = ClientLoop(m.port)
    client.start()
    try:
        assert wait_for(lambda: len(client.bodies) >= 50, timeout=20)
        with open(os.path.join(app_dir, "value.txt"), "w") as f:
            f.write("two\n")
        for round in range(2):  # twice: the second reload replaces a reloaded generation
            mark = len(m.lines)
            m.p.send_signal(signal.SIGHUP)
            m.wait_line("reloaded", start=mark)
            # the old generation drains and exits; the loop keeps going meanwhile
            assert wait_for(lambda: not set(old) & set(m.children()), timeout=20), m.lines
            new = m.children()
            assert len(new) == processes and not set(new) & set(old)
            seen = len(client.bodies)
            assert wait_for(lambda: len(client.bodies) >= seen + 50, timeout=20)
            old = new
    finally:
        client.stop()
    assert client.errors == [], client.errors[:5]
    assert client.bodies[0].startswith("one ")
    last = client.bodies[-1].split()
    assert last[0] == "two" and int(last[1]) in old  # the new code, in a new process
    assert m.stop() == 0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_reload_under_wrk_loses_no_request(masters, site_root, engine):
    """wrk keeps 10 keep-alive connections busy through two reloads: not one socket
    error or non-2xx answer (an idle connection's close at a graceful stop used to
    cost one read error per connection)."""
    m = masters("--root", str(site_root), "--engine", engine, "--workers", "1").wait_banner()
    wrk = subprocess.Popen(
        ["wrk", "-t1", "-c10", "-d4s", "http://127.0.0.1:%d/hello.txt" % m.port],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for delay in (1.0, 1.5):  # reloads at about 1 s and 2.5 s of wrk's 4
            time.sleep(delay)
            mark = len(m.lines)
            m.p.send_signal(signal.SIGHUP)
            m.wait_line("reloaded", start=mark)
        out = wrk.communicate(timeout=30)[0]
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    assert re.search(r"\d+ requests in", out), out
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    assert m.stop() == 0


def test_a_new_generation_that_fails_leaves_the_old_one_serving(masters, app_dir):
    m = masters("--wsgi", "relapp:wsgi", "--workers", "1", "--processes", "2", cwd=app_dir).wait_banner()
    assert wait_for(lambda: len(m.children()) == 2)
    old = m.children()
    with open(os.path.join(app_dir, "relapp.py"), "w") as f:
        f.write(BROKEN_SRC)
    mark = len(m.lines)
    m.p.send_signal(signal.SIGHUP)
    line = m.wait_line("reload failed", start=mark)
    assert "the old processes keep serving" in line and "[error]" in line, line
    # an error the operator fixes, not a crash: the app's frames, no [critical] record
    assert not [x for x in m.lines[mark:] if "[critical]" in x or "minginx_cffi/" in x], m.lines[mark:]
    assert wait_for(lambda: m.children() == old, timeout=10)
    for _ in range(10):
        value, pid = fetch(m.port).body.decode().split()
        assert value == "one" and int(pid) in old
    with open(os.path.join(app_dir, "relapp.py"), "w") as f:  # fixed: the next HUP works
        f.write(APP_SRC)
    with open(os.path.join(app_dir, "value.txt"), "w") as f:
        f.write("two\n")
    mark = len(m.lines)
    m.p.send_signal(signal.SIGHUP)
    m.wait_line("reloaded", start=mark)
    assert wait_for(lambda: not set(old) & set(m.children()), timeout=20)
    assert fetch(m.port).body.decode().split()[0] == "two"
    assert m.stop() == 0


# -- TERM/INT, the pid file, a process that dies -----------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_term_and_int_stop_every_process_and_remove_the_pid_file(masters, app_dir, tmp_path, sig):
    pid_file = tmp_path / "server.pid"
    m = masters(
        "--wsgi",
        "relapp:wsgi",
        "--workers",
        "1",
        "--processes",
        "2",
        "--pid-file",
        str(pid_file),
        cwd=app_dir,
    ).wait_banner()
    assert int(pid_file.read_text()) == m.pid  # the master's, not a server process's
    assert wait_for(lambda: len(m.children()) == 2)
    kids = m.children()
    assert fetch(m.port).status == 200
    assert m.stop(sig) == 0
    assert not pid_file.exists()
    for pid in kids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", m.port), timeout=1)


def test_a_killed_process_is_replaced(masters, app_dir, engine):
    m = masters(
        "--wsgi", "relapp:wsgi", "--engine", engine, "--workers", "1", "--processes", "2", cwd=app_dir
    ).wait_banner()
    assert wait_for(lambda: len(m.children()) == 2)
    kids = m.children()
    mark = len(m.lines)
    os.kill(kids[0], signal.SIGKILL)
    line = m.wait_line("starting another", start=mark)
    assert "process %d killed by SIGKILL" % kids[0] in line
    assert wait_for(lambda: len(m.children()) == 2 and kids[0] not in m.children(), timeout=20)
    replacement = (set(m.children()) - set(kids)).pop()
    assert wait_for(lambda: fetch(m.port).body.decode().split()[1] == str(replacement), timeout=20)
    # killed again at once: the back-off grows instead of spinning
    mark = len(m.lines)
    os.kill(replacement, signal.SIGKILL)
    assert "starting another in 0.2s" in m.wait_line("starting another", start=mark)
    assert m.stop() == 0


def test_a_start_up_failure_is_one_line_and_a_nonzero_exit(app_dir):
    with open(os.path.join(app_dir, "lifespan.py"), "w") as f:
        f.write(LIFESPAN_FAILS)
    for processes in ("1", "2"):
        p = subprocess.run(
            CLI
            + [
                "serve",
                "--port",
                str(free_port()),
                "--asgi",
                "lifespan:app",
                "--workers",
                "1",
                "--processes",
                processes,
            ],
            cwd=app_dir,
            capture_output=True,
            timeout=60,
        )
        err = p.stderr.decode().strip()
        assert p.returncode == 1 and len(err.splitlines()) == 1, err
        assert "ASGI startup failed: no database" in err and "Traceback" not in err, err


def test_a_master_killed_outright_takes_its_processes_down(masters, app_dir):
    m = masters("--wsgi", "relapp:wsgi", "--workers", "1", "--processes", "2", cwd=app_dir).wait_banner()
    assert wait_for(lambda: len(m.children()) == 2)
    kids = m.children()
    m.p.kill()
    m.p.wait()

    def gone():
        for pid in kids:
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                pass
        return True

    assert wait_for(gone, timeout=20)


# -- sockets handed in ------------------------------------------------------------------


@pytest.mark.parametrize("processes", ["1", "2"])
def test_systemd_socket_activation(masters, app_dir, processes):
    port = free_port()
    m = masters(
        "--wsgi",
        "relapp:env",
        "--workers",
        "1",
        "--processes",
        processes,
        argv=["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, "-E", "PYTHONPATH"]
        + socket_activate_env_args("MINGINX_ENGINES")
        + CLI
        + ["serve"],
        cwd=app_dir,
        listen=False,
        env=dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p),
        ),
    )
    m.wait_line("Listening on 127.0.0.1:%d" % port)
    # the tool starts the server at the first connection; that connection is served
    r = fetch(port)
    m.wait_banner()
    assert "http://127.0.0.1:%d" % port in m.banner
    listen_fds, remote, server_port = r.body.decode().split("|")
    assert listen_fds == "None"  # unset: the server processes and the app never see it
    assert remote == "127.0.0.1" and server_port == str(port)
    for _ in range(10):
        assert fetch(port).status == 200
    if processes == "2":
        assert len(m.children()) == 2  # execed: the tool's pid is the master's
    assert m.stop() == 0


def socket_activated(cwd, fd_setup, *args):
    """The CLI with fd 3 set up by the shell and LISTEN_PID naming it (exec keeps the pid)."""
    script = '%s LISTEN_FDS=1 LISTEN_PID=$$ exec "$@"' % fd_setup
    return subprocess.run(
        ["sh", "-c", script, "sh"] + CLI + ["serve"] + list(args), cwd=cwd, capture_output=True, timeout=60
    )


@pytest.mark.parametrize(
    "fd_setup,needle",
    [
        ("exec 3</etc/hostname;", "fd 3) is not a socket"),
        ("exec 3<&-;", "not an open file descriptor"),
    ],
)
def test_a_bad_socket_handed_in_is_one_line(app_dir, fd_setup, needle):
    p = socket_activated(app_dir, fd_setup, "--workers", "1")
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1 and needle in err, err


def test_inherited_fd(masters, app_dir, engine):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    m = masters(
        "--fd",
        str(s.fileno()),
        "--wsgi",
        "relapp:env",
        "--engine",
        engine,
        "--workers",
        "1",
        "--processes",
        "2",
        cwd=app_dir,
        listen=False,
        pass_fds=(s.fileno(),),
    ).wait_banner()
    s.close()
    assert "http://127.0.0.1:%d" % port in m.banner
    for _ in range(10):
        assert fetch(port).body.decode().endswith("|127.0.0.1|%d" % port)
    assert m.stop() == 0


@pytest.mark.parametrize("kind", ["udp", "not listening", "unopened"])
def test_a_bad_fd_is_one_line(app_dir, kind):
    s = socket.socket(type=socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    fd = s.fileno() if kind != "unopened" else 900
    p = subprocess.run(
        CLI + ["serve", "--fd", str(fd), "--workers", "1"],
        cwd=app_dir,
        pass_fds=(s.fileno(),),
        capture_output=True,
        timeout=60,
    )
    s.close()
    err = p.stderr.decode().strip()
    needle = {
        "udp": "not a stream",
        "not listening": "not listening",
        "unopened": "not an open file descriptor",
    }[kind]
    assert p.returncode == 1 and len(err.splitlines()) == 1 and needle in err, err


def curl_unix(path, url):
    return subprocess.run(
        ["curl", "-s", "--unix-socket", path, "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=30,
        env=tool_env(),
    ).stdout.decode()


def test_unix_socket(masters, app_dir, engine):
    path = os.path.join(app_dir, "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on: a server that is gone
    stale.close()
    m = masters(
        "--uds",
        path,
        "--wsgi",
        "relapp:env",
        "--engine",
        engine,
        "--workers",
        "1",
        "--processes",
        "2",
        cwd=app_dir,
        listen=False,
    ).wait_banner()
    assert "on unix:%s " % path in m.banner
    # the handler sees nginx's unix: for the peer, and no port
    assert curl_unix(path, "http://x/") == "None|unix:|0\n200"
    # a second server on the same path is refused like a busy port, and leaves it alone
    p = subprocess.run(CLI + ["serve", "--uds", path], capture_output=True, timeout=60)
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1 and "in use" in err, err
    assert curl_unix(path, "http://x/").endswith("200")
    assert m.stop() == 0
    assert not os.path.exists(path)  # removed at exit


def test_unix_socket_static_files(masters, site_root, engine, tmp_path):
    path = str(tmp_path / "s.sock")
    m = masters(
        "--uds", path, "--root", str(site_root), "--engine", engine, "--workers", "1", listen=False
    ).wait_banner()
    out = subprocess.run(
        ["curl", "-s", "--unix-socket", path, "http://x/50mib.bin"],
        env=tool_env(),
        capture_output=True,
        timeout=60,
    ).stdout
    assert out == (site_root / "50mib.bin").read_bytes()
    assert curl_unix(path, "http://x/nope").endswith("404")
    assert m.stop() == 0


def test_uds_never_removes_a_file_that_is_not_a_socket(tmp_path):
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    p = subprocess.run(CLI + ["serve", "--uds", str(path)], capture_output=True, timeout=60)
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1 and "not a socket" in err, err
    assert path.read_text() == "keep me"


# -- --user / --group ---------------------------------------------------------------------


def free_privileged_port():
    for port in range(1000, 600, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    return None


def test_user_nobody_drops_root_after_binding(masters, app_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    port = free_privileged_port()
    if port is None:
        pytest.skip("no free port below 1024 on 127.0.0.1")
    m = masters(
        "--wsgi",
        "relapp:wsgi",
        "--user",
        "nobody",
        "--workers",
        "1",
        "--processes",
        "2",
        cwd=app_dir,
        port=port,
    ).wait_banner()
    assert wait_for(lambda: len(m.children()) == 2)
    for pid in m.children():
        assert uid_of(pid) == [NOBODY] * 4  # real, effective, saved, filesystem
    assert uid_of(m.pid) == [0] * 4  # the master stays root, as nginx's (it serves nothing)
    assert fetch(port).body.decode().startswith("one ")
    # a reload re-imports the app as nobody, on the port it can no longer bind
    with open(os.path.join(app_dir, "value.txt"), "w") as f:
        f.write("two\n")
    old = m.children()
    mark = len(m.lines)
    m.p.send_signal(signal.SIGHUP)
    m.wait_line("reloaded", start=mark)
    assert wait_for(lambda: not set(old) & set(m.children()), timeout=20)
    assert fetch(port).body.decode().startswith("two ")
    assert m.stop() == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_user_nobody_writes_the_access_log_and_reopens_it(masters, app_dir, processes):
    """--user nobody --access-log PATH: the master (root) makes the file and gives it to
    nobody, as nginx's master does, so the server processes can open it; a USR1 after the
    file was moved away makes the new one the same way.  Before, the master created the log
    as root 0644 and the dropped processes could not open it: the server did not start."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    logs = os.path.join(app_dir, "logs")
    os.mkdir(logs)
    os.chmod(logs, 0o755)  # root's, as /var/log: nobody cannot create files in it
    log = os.path.join(logs, "access.log")
    m = masters(
        "--root",
        app_dir,
        "--user",
        "nobody",
        "--workers",
        "1",
        "--processes",
        str(processes),
        "--access-log",
        log,
    ).wait_banner()
    assert fetch(m.port, "/value.txt").status == 200
    assert wait_for(lambda: "GET /value.txt" in open(log).read())
    assert os.stat(log).st_uid == NOBODY
    os.rename(log, log + ".1")
    m.p.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(log))
    assert fetch(m.port, "/value.txt?again").status == 200
    assert wait_for(lambda: "GET /value.txt?again" in open(log).read())
    assert "?again" not in open(log + ".1").read()
    assert os.stat(log).st_uid == NOBODY
    assert m.stop() == 0
    assert not [line for line in m.lines if "[error]" in line or "[critical]" in line], m.lines


def test_a_root_the_user_cannot_read_is_one_line(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    root = tmp_path / "private"
    root.mkdir(mode=0o700)
    p = subprocess.run(
        CLI + ["serve", "--port", str(free_port()), "--root", str(root), "--user", "nobody"],
        capture_output=True,
        timeout=60,
    )
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1, err
    assert "root %r is not readable by user nobody" % str(root) in err, err


AS_NOBODY = """
import os, sys
# imported as root: the interpreter's own files may be root's alone (pyenv under /root)
import encodings.idna, minginx_cffi._master
from minginx_cffi.cli import main
os.setgroups([]); os.setgid(65534); os.setuid(65534)
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--user", "root"], "need root to switch to root"),
        (["--user", "nobody", "--port", "-"], None),  # names who we are: no error from --user
    ],
)
def test_user_when_not_root(args, needle):
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody first")
    port = str(free_port())
    args = [port if a == "-" else a for a in args]
    if needle is None:
        # the bundled demo site: site_root's parent is root's alone
        m = Master(*args, argv=[sys.executable, "-c", AS_NOBODY, "serve", "--workers", "1"], listen=False)
        try:
            m.wait_banner()
            assert fetch(int(port), "/").status == 200
            assert uid_of(m.children()[0]) == [NOBODY] * 4
            assert m.stop() == 0
        finally:
            m.kill()
        return
    p = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, "serve", "--port", port] + args, capture_output=True, timeout=60
    )
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1 and needle in err, err


# -- every bad input: one line, a non-zero exit -------------------------------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--user", "no-such-user-here"], "unknown user 'no-such-user-here'"),
        (["--group", "no-such-group-here"], "unknown group 'no-such-group-here'"),
        (["--fd", "-1"], "--fd"),
        (["--fd", "abc"], "--fd"),
        (["--fd", "0", "--uds", "/tmp/x.sock"], "not both"),
        (["--uds", "/tmp/minginx-x.sock", "--accept", "reuseport"], "reuseport"),
        (["--uds", "/nonexistent/dir/s.sock"], "cannot listen on unix:/nonexistent/dir/s.sock"),
        (["--uds", "/tmp/" + "x" * 200], "cannot listen on unix:"),
    ],
)
def test_bad_process_flags_one_line_nonzero(args, needle):
    p = subprocess.run(CLI + ["serve", "--port", str(free_port())] + args, capture_output=True, timeout=60)
    err = p.stderr.decode().strip()
    assert p.returncode in (1, 2), err
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
