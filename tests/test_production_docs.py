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

from conftest import Conn, free_port, socket_activate_env_args, tool_env, wait_for

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
    """A world-readable directory standing in for /srv/www, /var/log/minginx and /run."""
    d = tempfile.mkdtemp(prefix="minginx-prod-")
    os.chmod(d, 0o755)
    for sub in ("www", "log", "run"):
        os.mkdir(os.path.join(d, sub))
        os.chmod(os.path.join(d, sub), 0o755)
    with open(os.path.join(d, "www", "index.html"), "w") as f:
        f.write("<h1>production</h1>\n")
    os.chmod(os.path.join(d, "www", "index.html"), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def localise(text, box):
    """The page's paths, put in the box."""
    return (
        text.replace("/usr/local/bin/minginx-cffi", " ".join(map(shlex.quote, CLI)))
        .replace("/srv/www", os.path.join(box, "www"))
        .replace("/var/log/minginx", os.path.join(box, "log"))
        .replace("/run/minginx.pid", os.path.join(box, "run", "minginx.pid"))
        .replace("/run/minginx.sock", os.path.join(box, "run", "minginx.sock"))
    )


def command(line, box):
    """A `minginx-cffi serve ...` line of the page as an argv for this tree."""
    argv = shlex.split(localise(line, box))
    assert argv[0] == "minginx-cffi", line
    return CLI + argv[1:]


class Running:
    def __init__(self, argv, banner=True):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
def test_the_systemd_units_serve_reload_and_stop(box):
    socket_unit, service = unit("minginx.socket"), unit("minginx.service")
    listen = socket_unit["ListenStream"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", listen)
    port = free_port()
    argv = (
        ["systemd-socket-activate", "-l", "127.0.0.1:%d" % port]
        + socket_activate_env_args("PYTHONPATH")
        + shlex.split(localise(service["ExecStart"], box))
    )
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    # systemd-socket-activate starts the server when the first connection comes
    srv = Running(argv, banner=False)
    try:
        line = srv.p.stderr.readline().decode()
        assert "Listening on 127.0.0.1:%d" % port in line, line
        c = Conn(port)
        srv.wait_banner()
        assert c.request("GET", "/index.html").status == 200
        c.close()
        pid = int(open(os.path.join(box, "run", "minginx.pid")).read())
        assert pid == srv.p.pid  # systemd-socket-activate execs the server: $MAINPID
        os.kill(pid, signal.SIGHUP)  # ExecReload
        assert wait_for(lambda: get(port, "/").status == 200)
        lines = log_lines(os.path.join(box, "log", "access.log"), 2)
        assert all(COMBINED.match(line) for line in lines), lines
        # KillSignal, within TimeoutStopSec
        assert srv.stop(signal.SIGTERM, timeout=float(service["TimeoutStopSec"])) == 0
        assert "reloaded" in srv.stderr, srv.stderr
        assert not os.path.exists(os.path.join(box, "run", "minginx.pid"))
    finally:
        srv.kill()


@pytest.mark.skipif(
    shutil.which("logrotate") is None, reason="logrotate is not installed (apt-get install logrotate)"
)
def test_the_logrotate_configuration_loses_no_line(box):
    conf = [b for b in blocks("conf") if b.startswith("/var/log/minginx/access.log {")]
    assert len(conf) == 1
    conf_path = os.path.join(box, "logrotate.conf")
    with open(conf_path, "w") as f:
        f.write(localise(conf[0], box))
    port = free_port()
    log = os.path.join(box, "log", "access.log")
    srv = Running(
        CLI
        + [
            "serve",
            "--root",
            os.path.join(box, "www"),
            "--port",
            str(port),
            "--workers",
            "1",
            "--access-log",
            log,
            "--pid-file",
            os.path.join(box, "run", "minginx.pid"),
        ]
    )
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
        lines = log_lines(os.path.join(box, "log", "access.log"), 2)
        m = COMBINED.match(lines[-1])
        assert m and m.group(1) == "127.0.0.1" and m.group(5) == "200", lines
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        assert srv.stop() == 0
        srv.kill()
    assert not os.path.exists(os.path.join(box, "run", "minginx.sock"))  # removed at exit


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
