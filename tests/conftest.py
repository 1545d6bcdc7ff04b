"""Shared fixtures: a document root with known files, a server on 127.0.0.1 port 0, a raw HTTP client."""

import hashlib
import os
import random
import select
import shutil
import socket
import time

import pytest

from minginx_cffi import Server

INDEX = b"<!doctype html><title>t</title><h1>hello from the test root</h1>\n"


@pytest.fixture(scope="session")
def site_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_bytes(INDEX)
    (root / "hello.txt").write_bytes(b"hello world\n")
    (root / "style.css").write_bytes(b"body{color:red}\n")
    (root / "app.js").write_bytes(b"console.log(1)\n")
    (root / "mod.mjs").write_bytes(b"export default 1\n")
    (root / "data.json").write_bytes(b'{"a": 1}\n')
    (root / "pic.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    (root / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "pic.webp").write_bytes(b"RIFF")
    (root / "code.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "font.woff2").write_bytes(b"wOF2")
    (root / "blob.unknownext").write_bytes(b"???")
    (root / "empty.txt").write_bytes(b"")
    (root / "with space.txt").write_bytes(b"spaced\n")
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"[core]\n")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: x\n")
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<p>sub index</p>\n")
    (root / "sub" / "page.html").write_bytes(b"<p>sub page</p>\n")
    (root / "noindex").mkdir()
    (root / "noindex" / "file.txt").write_bytes(b"x\n")
    rnd = os.urandom(1 << 20)
    (root / "1mib.bin").write_bytes(rnd)
    with open(root / "50mib.bin", "wb") as f:
        for i in range(50):
            f.write(hashlib.sha256(b"%d" % i).digest() * (1 << 15))
    return root


@pytest.fixture(scope="session")
def outside_secret(site_root):
    """A file next to (outside) the root, and a symlink in the root pointing at it."""
    secret = site_root.parent / "secret.txt"
    secret.write_bytes(b"TOP SECRET\n")
    link = site_root / "escape.txt"
    if not link.exists():
        link.symlink_to(secret)
    inside = site_root / "inside-link.txt"
    if not inside.exists():
        inside.symlink_to(site_root / "hello.txt")
    return secret


@pytest.fixture(params=["lifo", "fifo"])
def policy(request):
    return request.param


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`pytest -n auto` (README, .ci/run): three pytest-xdist workers per CPU, at most 12.  The
    tests mostly wait (on sockets, timeouts, servers starting in subprocesses): a whole run
    keeps about 0.8 of a CPU busy, so one worker per CPU, xdist's own "auto", leaves most of
    the machine idle.  Each worker makes its own site_root (a 51 MiB tree): hence the cap."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # PyPy: none
    return max(2, min(12, 3 * (cpus or 1)))


#: "cffi-uring" is the C engine with --io uring (csrc/uring.c)
ENGINES = os.environ.get("MINGINX_ENGINES", "cffi,cffi-uring,python").split(",")


def engine_options(name):
    """Server() keywords for a name in ENGINES (tests that start one server per engine)."""
    return dict(engine="cffi", io="uring") if name == "cffi-uring" else dict(engine=name)


def engine_args(name):
    """The CLI's flags for a name in ENGINES."""
    return ["--engine", "cffi", "--io", "uring"] if name == "cffi-uring" else ["--engine", name]


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    """Every end-to-end test runs on both engines: the C core and the pure-Python port,
    and the C core on both of its I/O backends.  "cffi-uring" is the engine "cffi" with
    MINGINX_TEST_IO=uring for the test's duration: every server it makes (Server(),
    make_server, the CLI in a subprocess) defaults to --io uring, and a test that
    branches on engine == "cffi" treats it as the C engine it is."""
    if request.param == "cffi-uring":
        monkeypatch.setenv("MINGINX_TEST_IO", "uring")
        return "cffi"
    monkeypatch.delenv("MINGINX_TEST_IO", raising=False)
    return request.param


@pytest.fixture
def make_server(site_root, engine):
    servers = []

    def make(**kw):
        kw.setdefault("engine", engine)
        kw.setdefault("root", str(site_root))
        kw.setdefault("port", 0)
        kw.setdefault("workers", 2)
        kw.setdefault("grace", 2.0)
        if "MINGINX_THREADS" in os.environ:  # the handler tests inline: MINGINX_THREADS=0
            kw.setdefault("threads", int(os.environ["MINGINX_THREADS"]))
        srv = Server(**kw).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.shutdown()


@pytest.fixture
def server(make_server, policy):
    return make_server(policy=policy)


# ----------------------------------------------------------------- client


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<Response %d %s %r>" % (self.status, self.reason, self.body[:60])


class Conn:
    """A raw HTTP/1.1 client over one socket: send bytes, read whole responses."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def read_response(self, head_request=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        resp = Response(int(status), reason, headers, b"", head)
        if head_request or resp.status in (204, 304) or resp.status < 200:
            return resp
        if (resp.header("transfer-encoding") or "").lower() == "chunked":
            resp.body = self._read_chunked()
            return resp
        length = resp.header("content-length")
        assert length is not None, "no Content-Length in %r" % head
        n = int(length)
        while len(self.buf) < n:
            self._fill()
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def _read_chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            if n == 0:
                while b"\r\n" not in self.buf:  # trailers end with an empty line
                    self._fill()
                while not self.buf.startswith(b"\r\n"):
                    _, _, self.buf = self.buf.partition(b"\r\n")
                    while b"\r\n" not in self.buf:
                        self._fill()
                self.buf = self.buf[2:]
                return body
            while len(self.buf) < n + 2:
                self._fill()
            body, self.buf = body + self.buf[:n], self.buf[n + 2 :]

    def request(self, method="GET", path="/", headers=None, body=b""):
        hdrs = {"Host": "127.0.0.1"}
        hdrs.update(headers or {})
        req = "%s %s HTTP/1.1\r\n" % (method, path)
        req += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.send(req.encode("latin-1") + body)
        return self.read_response(head_request=(method == "HEAD"))

    def closed_by_peer(self, timeout=3.0):
        """True if the server closes the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


#: make test-asan preloads the sanitizers' runtimes (LD_PRELOAD) into every process it
#: starts.  Tools the tests run get an environment without them (curl hangs under
#: libasan), and systemd-socket-activate, which gives its child only the variables named
#: with -E, passes them on so that the server it starts runs sanitized too.
SANITIZER_VARS = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "MINGINX_SANITIZED")


def tool_env():
    """os.environ for a tool that is not ours (curl, logrotate...): no sanitizer runtime."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def socket_activate_env_args(*names):
    """systemd-socket-activate's -E arguments: names, and the sanitizers' when set."""
    return [a for n in names + SANITIZER_VARS if n in os.environ for a in ("-E", n)]


_ports = random.Random()  # seeded from os.urandom: each pytest-xdist worker draws its own


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port nothing listens on right now (for servers started as subprocesses).  Drawn
    below the kernel's ephemeral range: a port from bind(port 0) is free when we look, but
    every connect() on the machine takes its local port from that same range, and one may
    take ours before the server binds it ("Address already in use": seen when thousands
    of connections ran at once next door, and likelier under pytest-xdist).  Below the
    range only another free_port() can draw the same port in that moment."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _ports.randrange(10000, low) if low > 11000 else 0
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port below %d" % low)


def get(port, path, method="GET", headers=None, body=b""):
    """One request on a fresh connection: the Response."""
    c = Conn(port)
    try:
        return c.request(method, path, headers, body)
    finally:
        c.close()


@pytest.fixture
def connect():
    conns = []

    def make(port, timeout=10.0):
        c = Conn(port, timeout)
        conns.append(c)
        return c

    yield make
    for c in conns:
        c.close()


def raw(port, data, timeout=5.0, per_byte=False):
    """Send data on a fresh connection, return everything the server sends until it closes or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            if per_byte:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(len(data)):
                    s.send(data[i : i + 1])
            else:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before we finished: read what it sent
        out = b""
        s.settimeout(timeout)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def split_responses(data):
    """Split a byte stream of responses (with Content-Length bodies) into (status, headers, body)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode("latin-1")
        n = int(headers.get("content-length", 0)) if status >= 200 and status not in (204, 304) else 0
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def status_of(resp_bytes):
    line = resp_bytes.split(b"\r\n", 1)[0]
    return int(line.split(b" ")[1]) if line.startswith(b"HTTP/1.1 ") else None


def readable(sock, timeout):
    """True once sock has something to read (or EOF) within timeout seconds.  poll(2), not
    select(2): the test process may hold more than FD_SETSIZE (1024) descriptors by the time
    a late test runs, and select() refuses any fd above that."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(timeout * 1000))


class Sink:
    """Server(trace=sink): the trace records (t_us, worker, co, fd, event, arg, text) as drained."""

    def __init__(self):
        self.records = []

    def __call__(self, records):
        self.records.extend(records)


def wait_for(pred, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def alive(srv):
    """Connections open: those with a coroutine, and idle ones parked without one."""
    return sum(w["coroutines_alive"] + w["parked"] for w in srv.stats())


# The exercise checks of docs/walkthrough.md, section 6 (tests/exercises/): they fail on the
# tree as it is, by design, so the suite does not collect them; `make exercise N=3` runs one
# by its path (a path given on the command line is collected all the same).
collect_ignore = ["exercises"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium_args(profile):
    """Headless Chromium as the page tests start it: no sandbox (root), and none of its
    background connections, which this machine's closed network refuses; a fresh profile."""
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--user-data-dir=%s" % profile,
    ]


# ------------------------------------------------------- a venv of Debian's own Python

#: Debian's Python, with its PEP 668 marker: the Python a reader of README and
#: docs/production.md has (pyenv's, which runs the suite, lives under /root, 0700)
SYSTEM_PYTHON = "/usr/bin/python3"
TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree_digest():
    """What an install of this tree is made from: the package, the C and the build files."""
    h = hashlib.sha1()
    for top in ("minginx_cffi", "csrc"):
        for d, dirs, files in sorted(os.walk(os.path.join(TREE, top))):
            dirs.sort()
            for name in sorted(files):
                if name.endswith((".py", ".c", ".h", ".html", ".css", ".js", ".txt", ".svg", ".png", ".gz")):
                    path = os.path.join(d, name)
                    h.update(path[len(TREE) :].encode())
                    with open(path, "rb") as f:
                        h.update(f.read())
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        if os.path.exists(os.path.join(TREE, name)):  # make test-asan's copy has no setup.py
            with open(os.path.join(TREE, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def copy_tree(dest):
    """The files an install reads, copied to dest (pip builds in the tree it is given)."""
    ignore = shutil.ignore_patterns("*.so", "*.o", "__pycache__", "_minginx.c", "build", ".venv*")
    for top in ("minginx_cffi", "csrc"):
        shutil.copytree(os.path.join(TREE, top), os.path.join(dest, top), ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        if os.path.exists(os.path.join(TREE, name)):
            shutil.copy(os.path.join(TREE, name), dest)


def system_python_missing():
    """Why Debian's Python cannot make a venv that builds this tree here, or None."""
    import subprocess

    if not os.path.exists(SYSTEM_PYTHON):
        return "Debian's python3 is not installed"
    probe = "import venv, ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_config_h_filename())"
    if subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode:
        return "Debian's python3 has no venv or headers (apt-get install python3-venv python3-dev)"
    return None


def system_install(commands, venv_name):
    """Run commands (argv lists; "{venv}" in an argument is the venv's path) in a copy of
    this tree with Debian's Python as python3, as a reader on a fresh machine does; the
    venv, in a world-readable place (a page's User= runs it).  Made once per tree and set
    of commands (every pytest-xdist worker waits for the first: a lock), kept under /tmp.
    Returns the venv's path."""
    import fcntl
    import subprocess

    key = hashlib.sha1(("%s %r" % (_tree_digest(), commands)).encode()).hexdigest()[:16]
    base = "/tmp/minginx-system-%s" % key
    venv = os.path.join(base, venv_name)
    with open(base + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(base, "done")):
            shutil.rmtree(base, ignore_errors=True)
            src = os.path.join(base, "src")
            os.makedirs(src)
            os.chmod(base, 0o755)
            copy_tree(src)
            drop = ("LD_PRELOAD", "PYTHONPATH", "MINGINX_WERROR", "VIRTUAL_ENV")
            env = {k: v for k, v in os.environ.items() if k not in drop}
            for argv in commands:
                argv = [a.replace("{venv}", venv) for a in argv]
                if argv[0] == "python3":
                    argv[0] = SYSTEM_PYTHON
                r = subprocess.run(argv, cwd=src, capture_output=True, text=True, env=env)
                assert r.returncode == 0, (argv, r.stdout, r.stderr)
            open(os.path.join(base, "done"), "w").close()
    return venv
