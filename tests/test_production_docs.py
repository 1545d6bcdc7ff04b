"""docs/production.md runs: its systemd units (with Debian's systemd-socket-activate), its
commands, its logrotate configuration (the real logrotate) and its nginx configuration
(the real nginx in front, over the Unix socket) are taken from the page itself, with only
the machine's paths and ports replaced, so the page cannot rot."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import (
    Conn,
    free_port,
    system_install,
    system_python_missing,
    tool_env,
    wait_for,
)

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "production.md")
CLI = [sys.executable, "-m", "minginx_cffi"]
COMBINED = re.compile(r'^(\S+) - (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$')


def blocks(lang):
    """The page's fenced blocks of this language, in order."""
    with open(DOC) as f:
        text = f.read()
    return re.findall(r"^```%s\n(.*?)^```$" % re.escape(lang), text, re.S | re.M)


def unit(name):
    """A unit file of the page (the ini block after its file name) as {key: value}."""
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"`/etc/systemd/system/%s`:\n\n```ini\n(.*?)^```$" % re.escape(name), text, re.S | re.M)
    assert m, name
    return dict(line.split("=", 1) for line in m.group(1).splitlines() if "=" in line)


@pytest.fixture
def box():
    """A world-readable directory standing in for /srv/www, /var/log and /run (with the
    unit's RuntimeDirectory= and LogsDirectory=, root's until a test gives them to User=)."""
    d = tempfile.mkdtemp(prefix="minginx-prod-")
    os.chmod(d, 0o755)
    for sub in ("www", "log", "run", "log/minginx", "run/minginx"):
        os.mkdir(os.path.join(d, sub))
        os.chmod(os.path.join(d, sub), 0o755)
    with open(os.path.join(d, "www", "index.html"), "w") as f:
        f.write("<h1>production</h1>\n")
    os.chmod(os.path.join(d, "www", "index.html"), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def install_command():
    """The page's install line: a venv of its own at /opt/minginx/venv."""
    (line,) = [line for b in blocks("sh") for line in b.splitlines() if "/opt/minginx/venv" in line]
    return line


@pytest.fixture(scope="module")
def venv():
    """The page's install line run as a reader runs it, with Debian's python3 (PEP 668's
    marker: outside a venv its pip refuses), in a copy of this tree."""
    why = system_python_missing()
    if why:
        pytest.skip(why)
    commands = [shlex.split(c.replace("/opt/minginx/venv", "{venv}")) for c in install_command().split("&&")]
    return system_install(commands, "venv")


def localise(text, box, venv=None):
    """The page's paths, put in the box (and the page's venv, the one made from it)."""
    if venv is not None:
        text = text.replace("/opt/minginx/venv", venv)
    return (
        text.replace("/srv/www", os.path.join(box, "www"))
        .replace("/var/log/minginx", os.path.join(box, "log", "minginx"))
        .replace("/run/minginx", os.path.join(box, "run", "minginx"))
    )


def command(line, box):
    """A `minginx-cffi serve ...` line of the page as an argv for this tree."""
    argv = shlex.split(localise(line, box))
    assert argv[0] == "minginx-cffi", line
    return CLI + argv[1:]


def as_unit_user(service, box):
    """The argv prefix that applies the unit's LimitNOFILE=, User= and Group= (as systemd
    does, in that order: limits as root), and makes its RuntimeDirectory= and
    LogsDirectory= in the box, owned by User= (as systemd makes them before ExecStart)."""
    import grp
    import pwd

    if os.geteuid() != 0:
        pytest.skip("the unit's User= needs root to switch to")
    for tool in ("setpriv", "prlimit"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (util-linux)" % tool)
    uid, gid = pwd.getpwnam(service["User"]).pw_uid, grp.getgrnam(service["Group"]).gr_gid
    for key, where in (("RuntimeDirectory", "run"), ("LogsDirectory", "log")):
        d = os.path.join(box, where, service[key])
        os.makedirs(d, exist_ok=True)
        os.chown(d, uid, gid)
    # LimitNOFILE=, capped by this machine's own hard limit (a container may not raise it)
    n = nofile(service)
    setpriv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--init-groups"]
    return ["prlimit", "--nofile=%d:%d" % (n, n)] + setpriv


def nofile(service):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = int(service["LimitNOFILE"])
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


class Notifications:
    """The NOTIFY_SOCKET end: the datagrams a Type=notify service sends, as systemd reads them."""

    def __init__(self, box):
        import socket

        self.path = os.path.join(box, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # User= writes to it
        self.sock.settimeout(0.1)
        self.got = []

    def read(self):
        try:
            while True:
                self.got.append(self.sock.recv(4096).decode())
        except OSError:
            pass
        return self.got

    def wait(self, field, after=0, timeout=20):
        assert wait_for(lambda: any(field in m.split("\n") for m in self.read()[after:]), timeout=timeout), (
            field,
            self.got,
        )
        return next(i for i, m in enumerate(self.got) if i >= after and field in m.split("\n"))

    def close(self):
        self.sock.close()


class Running:
    def __init__(self, argv, banner=True, env=None):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if banner:
            self.wait_banner()

    def wait_banner(self):
        self.banner = self.p.stdout.readline().decode()
        assert "serving" in self.banner, (self.banner, self.p.stderr.read1().decode())

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            return self.p.wait(timeout)
        finally:
            err = self.p.stderr.read().decode()
            self.stderr = err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def status(pid):
    """/proc/PID/status as {field: value} ({} once the process is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict((k, v.strip()) for k, _, v in (line.partition(":") for line in f))
    except OSError:
        return {}


def get(port, path="/"):
    c = Conn(port)
    try:
        return c.request("GET", path)
    finally:
        c.close()


def log_lines(path, n, timeout=10):
    """The file's lines once it has n of them (the writer thread hands them over within 1 s)."""
    assert wait_for(
        lambda: os.path.exists(path) and len(open(path).read().splitlines()) >= n, timeout=timeout
    ), open(path).read() if os.path.exists(path) else "no file"
    return open(path).read().splitlines()


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate is not installed (apt-get install systemd)",
)
def test_the_systemd_units_serve_reload_and_stop_as_the_units_user(box, venv):
    """The page's units as systemd would run them: the socket handed in
    (systemd-socket-activate), the unit's LimitNOFILE=, User=, Group=, RuntimeDirectory=
    and LogsDirectory= applied, its ExecStart= with the page's venv, and Type=notify's
    messages read from NOTIFY_SOCKET (READY, RELOADING, WATCHDOG, STOPPING)."""
    socket_unit, service = unit("minginx.socket"), unit("minginx.service")
    listen = socket_unit["ListenStream"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", listen)
    assert service["Type"] == "notify" and service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    port = free_port()
    notify = Notifications(box)
    watchdog_usec = 400000  # a ping every 0.2 s (the page's WatchdogSec=30 would take 15 s)
    argv = (
        ["systemd-socket-activate", "-l", "127.0.0.1:%d" % port]
        + ["-E", "NOTIFY_SOCKET=%s" % notify.path, "-E", "WATCHDOG_USEC=%d" % watchdog_usec]
        + as_unit_user(service, box)
        + shlex.split(localise(service["ExecStart"], box, venv))
    )
    assert argv[argv.index("serve") - 1] == os.path.join(venv, "bin", "minginx-cffi")
    # systemd-socket-activate starts the server when the first connection comes
    srv = Running(argv, banner=False, env=tool_env())
    try:
        line = srv.p.stderr.readline().decode()
        assert "Listening on 127.0.0.1:%d" % port in line, line
        c = Conn(port)
        srv.wait_banner()
        ready = notify.wait("READY=1")
        assert "fd limit %d" % nofile(service) in srv.banner, srv.banner
        assert c.request("GET", "/index.html").status == 200
        c.close()
        pid_file = os.path.join(box, "run", service["RuntimeDirectory"], "minginx.pid")
        pid = int(open(pid_file).read())
        assert pid == srv.p.pid  # systemd-socket-activate execs the server: $MAINPID
        assert status(pid)["Uid"].split() == [str(os.stat(pid_file).st_uid)] * 4 != ["0"] * 4
        os.kill(pid, signal.SIGHUP)  # ExecReload
        reloading = notify.wait("RELOADING=1", after=ready + 1)
        notify.wait("READY=1", after=reloading + 1)
        assert get(port, "/").status == 200
        lines = log_lines(os.path.join(box, "log", service["LogsDirectory"], "access.log"), 2)
        assert all(COMBINED.match(line) for line in lines), lines
        pings = len([m for m in notify.read() if m == "WATCHDOG=1"])
        notify.wait("WATCHDOG=1", after=len(notify.got))
        assert pings >= 1, notify.got
        # KillSignal, within TimeoutStopSec
        assert srv.stop(signal.SIGTERM, timeout=float(service["TimeoutStopSec"])) == 0
        assert any("STOPPING=1" in m for m in notify.read()), notify.got
        assert "reloaded" in srv.stderr and "[error]" not in srv.stderr, srv.stderr
        assert not os.path.exists(pid_file)
    finally:
        srv.kill()
        notify.close()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing_in_the_units(tmp_path, venv):
    """The page's units, ExecStart= pointing at the venv its install line made."""
    import pwd

    try:
        pwd.getpwnam(unit("minginx.service")["User"])
    except KeyError:
        pytest.skip("no user %s here" % unit("minginx.service")["User"])
    with open(DOC) as f:
        text = f.read()
    paths = []
    for name in ("minginx.socket", "minginx.service"):
        m = re.search(r"`/etc/systemd/system/%s`:\n\n```ini\n(.*?)^```$" % re.escape(name), text, re.S | re.M)
        path = tmp_path / name
        path.write_text(m.group(1).replace("/opt/minginx/venv", venv))
        paths.append(str(path))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no"] + paths, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout, r.stderr)


@pytest.mark.skipif(
    shutil.which("logrotate") is None, reason="logrotate is not installed (apt-get install logrotate)"
)
def test_the_logrotate_configuration_loses_no_line(box, venv):
    """The page's logrotate configuration (as root, as logrotate runs) rotating the log of
    the unit's ExecStart= running as the unit's user: no line lost, the new file the server's."""
    service = unit("minginx.service")
    conf = [b for b in blocks("conf") if b.startswith("/var/log/minginx/access.log {")]
    assert len(conf) == 1
    conf_path = os.path.join(box, "logrotate.conf")
    with open(conf_path, "w") as f:
        f.write(localise(conf[0], box))
    port = free_port()
    log = os.path.join(box, "log", "minginx", "access.log")
    argv = as_unit_user(service, box) + shlex.split(localise(service["ExecStart"], box, venv))
    srv = Running(argv + ["--port", str(port), "--workers", "1"], env=tool_env())
    try:
        for _ in range(5):
            assert get(port, "/index.html").status == 200
        assert len(log_lines(log, 5)) == 5
        r = subprocess.run(
            ["logrotate", "-f", "-s", os.path.join(box, "state"), conf_path],
            capture_output=True,
            text=True,
            timeout=30,
            env=tool_env(),
        )
        assert r.returncode == 0, r.stderr
        rotated = log + ".1"  # delaycompress: the newest rotation stays plain
        assert os.path.exists(rotated)
        # postrotate's USR1 made the server open a new file; what comes now goes there
        assert wait_for(lambda: os.path.exists(log))
        for _ in range(3):
            assert get(port, "/missing").status == 404
        new = log_lines(log, 3)
        assert len(new) == 3 and all(" 404 " in line for line in new), new
        assert len(open(rotated).read().splitlines()) == 5
        assert os.stat(log).st_uid == os.stat(os.path.dirname(log)).st_uid != 0
        assert srv.stop() == 0
    finally:
        srv.kill()


@pytest.mark.skipif(
    not os.path.exists("/usr/sbin/nginx"), reason="nginx is not installed (apt-get install nginx-light)"
)
def test_nginx_in_front_over_the_unix_socket(box):
    uds_line = [line for b in blocks("sh") for line in b.splitlines() if "--uds" in line]
    assert len(uds_line) == 1
    srv = Running(command(uds_line[0], box))
    nginx = None
    try:
        (conf,) = blocks("nginx")
        port = free_port()
        conf = localise(conf, box).replace("listen 80;", "listen 127.0.0.1:%d;" % port)
        tmp = os.path.join(box, "nginx")
        os.mkdir(tmp)
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(
                "daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                "events { worker_connections 64; }\nhttp {\n access_log off;\n"
                " client_body_temp_path %s; proxy_temp_path %s;\n%s}\n" % (tmp, tmp, tmp, tmp, conf)
            )
        nginx = subprocess.Popen(
            ["/usr/sbin/nginx", "-c", os.path.join(tmp, "nginx.conf"), "-p", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def up():
            try:
                return get(port, "/index.html").status == 200
            except OSError:
                return False

        if not wait_for(up, timeout=10):
            nginx.terminate()
            err = nginx.communicate(timeout=10)[1].decode()
            log = (
                open(os.path.join(tmp, "error.log")).read()
                if os.path.exists(os.path.join(tmp, "error.log"))
                else ""
            )
            pytest.fail("nginx in front does not answer: %s %s" % (err, log))
        assert get(port, "/index.html").body == b"<h1>production</h1>\n"
        # the client nginx saw (127.0.0.1, from X-Forwarded-For), not "unix:"
        lines = log_lines(os.path.join(box, "log", "minginx", "access.log"), 2)
        m = COMBINED.match(lines[-1])
        assert m and m.group(1) == "127.0.0.1" and m.group(5) == "200", lines
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        assert srv.stop() == 0
        srv.kill()
    assert not os.path.exists(os.path.join(box, "run", "minginx", "minginx.sock"))  # removed at exit


def test_dropping_root_as_the_page_says(box):
    if os.geteuid() != 0:
        pytest.skip("--user needs root")
    line = [line for b in blocks("sh") for line in b.splitlines() if "--user" in line]
    assert len(line) == 1
    port = free_port()
    argv = command(line[0].replace("--host 0.0.0.0 --port 80", "--host 127.0.0.1 --port %d" % port), box)
    srv = Running(argv)
    try:
        assert get(port, "/").status == 200
        import pwd

        uid = pwd.getpwnam("www-data").pw_uid
        kids = [
            pid
            for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if status(pid).get("PPid") == str(srv.p.pid)
        ]
        assert kids and all(status(pid)["Uid"].split() == [str(uid)] * 4 for pid in kids)
        assert srv.stop() == 0
    finally:
        srv.kill()
