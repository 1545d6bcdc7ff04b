"""The access log (csrc/accesslog.c, pyport/accesslog.py): nginx's combined line per
response, json, rotation, bounds."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from conftest import Conn, free_port, get, raw, wait_for

CLI = [sys.executable, "-m", "minginx_cffi"]

# the standard combined-log regex (as log analysers read it)
COMBINED = re.compile(
    rb"^(?P<addr>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} "
    rb'[+-]\d{4})\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    rb'"(?P<ua>[^"]*)"$'
)


def lines_of(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n")
    return data.splitlines()


def parse(path):
    out = []
    for line in lines_of(path):
        m = COMBINED.match(line)
        assert m, line
        out.append(m)
    return out


def hello_wsgi(environ, start_response):
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"made it\n"]


def test_a_mixed_run_parses_as_combined_with_statuses_and_body_bytes(make_server, tmp_path, site_root):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log))
    port = srv.address[1]
    etag = get(port, "/hello.txt").header("etag")
    expect = [(b"GET /hello.txt HTTP/1.1", 200, 12)]
    r = get(port, "/hello.txt", headers={"Range": "bytes=0-4"})
    assert r.status == 206
    expect.append((b"GET /hello.txt HTTP/1.1", 206, 5))
    assert get(port, "/hello.txt", headers={"If-None-Match": etag}).status == 304
    expect.append((b"GET /hello.txt HTTP/1.1", 304, 0))
    r = get(port, "/missing", headers={"Referer": "http://example.com/x", "User-Agent": "tester/1"})
    assert r.status == 404
    expect.append((b"GET /missing HTTP/1.1", 404, len(r.body)))
    assert get(port, "/hello.txt", method="HEAD").status == 200
    expect.append((b"HEAD /hello.txt HTTP/1.1", 200, 0))
    assert raw(port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    body400 = raw(port, b"GARBAGE\r\n\r\n").split(b"\r\n\r\n", 1)[1]
    expect += [(b"GARBAGE", 400, len(body400))] * 2
    assert raw(port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 501"
    )
    srv.shutdown()  # every line reaches the file by the time it returns

    got = parse(log)
    assert sorted(
        (m["request"], int(m["status"]), int(m["bytes"]))
        for m in got
        if not m["request"].startswith(b"CONNECT")
    ) == sorted(expect)
    assert [int(m["status"]) for m in got if m["request"].startswith(b"CONNECT")] == [501]
    for m in got:
        assert m["addr"] == b"127.0.0.1" and m["ident"] == b"-" and m["user"] == b"-"
    missing = [m for m in got if m["request"] == b"GET /missing HTTP/1.1"][0]
    assert missing["referer"] == b"http://example.com/x" and missing["ua"] == b"tester/1"
    garbage = [m for m in got if m["request"] == b"GARBAGE"][0]
    assert garbage["referer"] == b"-" and garbage["ua"] == b"-"


@pytest.mark.skipif(shutil.which("goaccess") is None, reason="goaccess is not installed")
def test_goaccess_reads_it(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log))
    port = srv.address[1]
    paths = ["/hello.txt", "/style.css", "/missing", "/sub/", "/index.html"]
    for p in paths:
        get(port, p, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"})
    srv.shutdown()
    report = tmp_path / "report.json"
    subprocess.run(
        ["goaccess", str(log), "--log-format=COMBINED", "-o", str(report)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    general = json.loads(report.read_text())["general"]
    assert general["total_requests"] == len(paths)
    assert general["failed_requests"] == 0


def test_a_handler_response_is_logged(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log), wsgi=hello_wsgi)
    port = srv.address[1]
    c = Conn(port)
    for _ in range(3):
        assert c.request("GET", "/x?y=1").status == 201
    c.close()
    srv.shutdown()
    got = parse(log)
    assert [(m["request"], m["status"], m["bytes"]) for m in got] == [
        (b"GET /x?y=1 HTTP/1.1", b"201", b"8")
    ] * 3


def test_the_stats_endpoint_is_logged(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log), stats=True)
    r = get(srv.address[1], "/_minginx/stats")
    assert json.loads(r.body)["workers"][0]["log_dropped"] == 0
    srv.shutdown()
    [m] = parse(log)
    assert m["request"] == b"GET /_minginx/stats HTTP/1.1" and int(m["bytes"]) == len(r.body)


def test_json_lines_parse_with_the_same_fields_and_request_time(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log), access_log_format="json")
    port = srv.address[1]
    get(port, "/hello.txt", headers={"User-Agent": 'caf\xe9 "q"'.encode().decode("latin-1")})
    raw(port, b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nUser-Agent: a\xffb\r\nConnection: close\r\n\r\n")
    srv.shutdown()
    data = log.read_bytes()
    data.decode("utf-8")  # valid UTF-8, whatever the client sent
    rows = [json.loads(line) for line in data.splitlines()]
    assert len(rows) == 2
    by_ua = {r["http_user_agent"]: r for r in rows}
    ok = by_ua['caf\xe9 "q"']
    assert ok["status"] == 200 and ok["body_bytes_sent"] == 12 and ok["remote_addr"] == "127.0.0.1"
    assert ok["request"] == "GET /hello.txt HTTP/1.1" and ok["http_referer"] == ""
    assert isinstance(ok["request_time"], float) and 0 <= ok["request_time"] < 5
    assert re.fullmatch(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}", ok["time_local"])
    assert set(ok) == {
        "remote_addr",
        "remote_user",
        "time_local",
        "request",
        "status",
        "body_bytes_sent",
        "http_referer",
        "http_user_agent",
        "request_time",
    }
    if "a\xffb" in by_ua:  # the parser took the obs-text value: escaped, not raw
        assert by_ua["a\xffb"]["request"] == "GET /\xff\xfe HTTP/1.1"


def test_hostile_bytes_are_escaped_and_forge_no_line(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log))
    port = srv.address[1]
    ua = b'x" 200 0 "-" "y\\\xff\tz'  # what a field value may hold: obs-text, HTAB
    assert raw(
        port,
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: "
        + ua
        + b'\r\nReferer: "\\\r\n\r\n',
    ).startswith(b"HTTP/1.1 200")
    raw(port, b'GET /a\x01"\x1b[31m\\ HTTP/1.1\r\nHost: x\r\n\r\n')
    raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")  # TLS at a plain port
    srv.shutdown()
    got = parse(log)
    assert len(got) == 3
    line = [m for m in got if m["status"] == b"200"][0]
    assert line["ua"] == b"x\\x22 200 0 \\x22-\\x22 \\x22y\\x5C\\xFF\\x09z"
    assert line["referer"] == b"\\x22\\x5C"
    for m in got:
        assert all(0x20 <= c < 0x7F for c in m.group(0))


def test_shutdown_loses_no_line(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log), workers=3)
    port = srv.address[1]
    conns = [Conn(port) for _ in range(6)]
    n = 0
    for i in range(50):
        for c in conns:
            assert c.request("GET", "/hello.txt").status == 200
            n += 1
    for c in conns:
        c.close()
    srv.shutdown()  # at once: the lines are still in the workers' buffers
    assert len(parse(log)) == n


def test_an_idle_workers_lines_reach_the_file_within_a_second(make_server, tmp_path):
    log = tmp_path / "access.log"
    srv = make_server(access_log=str(log))
    get(srv.address[1], "/hello.txt")
    assert wait_for(lambda: log.read_bytes().count(b"\n") == 1, timeout=1.0)


def test_a_log_nobody_reads_does_not_stop_the_server(make_server, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, never read: the pipe fills
    try:
        srv = make_server(access_log=str(fifo), workers=1, stats=True)
        c = Conn(srv.address[1])
        ua = "u" * 30000
        n = 300  # ~9 MiB of lines: past the pipe and the writer's 4 MiB queue
        for _ in range(n):
            assert c.request("GET", "/hello.txt", headers={"User-Agent": ua}).status == 200
        c.close()
        # the line follows the response: wait for the last one
        assert wait_for(lambda: sum(w["log_lines"] for w in srv.stats()) == n)
        assert sum(w["log_dropped"] for w in srv.stats()) > 0
        srv.shutdown()  # the writer gives up on the stuck pipe after a second
    finally:
        os.close(reader)


def test_server_keywords_are_checked(tmp_path):
    from minginx_cffi.server import Server, ServerError

    with pytest.raises(ServerError, match="access-log-format"):
        Server(access_log="-", access_log_format="xml")
    with pytest.raises(ServerError, match="cannot open the access log"):
        Server(access_log=str(tmp_path / "no" / "such" / "dir" / "a.log"))
    with pytest.raises(ServerError, match="access-log must be"):
        Server(access_log=3)


# -- the command line -------------------------------------------------------------------


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else [])
    )
    return e


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--access-log", "/nonexistent-dir/x/access.log"], "cannot open the access log"),
        (["--access-log-format", "xml"], "access-log-format"),
    ],
)
def test_bad_access_log_flags_are_one_line_nonzero(args, needle):
    p = subprocess.run(
        CLI + ["serve", "--port", str(free_port())] + args, capture_output=True, timeout=30, env=env()
    )
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1 and needle in err, err


def test_no_access_log_wins_and_writes_nothing(tmp_path, site_root):
    log = tmp_path / "a.log"
    port = free_port()
    p = subprocess.Popen(
        CLI
        + [
            "serve",
            "--port",
            str(port),
            "--root",
            str(site_root),
            "--workers",
            "1",
            "--access-log",
            str(log),
            "--no-access-log",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        p.stdout.readline()
        assert get(port, "/hello.txt").status == 200
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert not log.exists()


def test_access_log_to_stdout(tmp_path, site_root, engine):
    port = free_port()
    p = subprocess.Popen(
        CLI
        + [
            "serve",
            "--port",
            str(port),
            "--root",
            str(site_root),
            "--workers",
            "1",
            "--engine",
            engine,
            "--access-log",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    try:
        p.stdout.readline()  # the banner
        assert get(port, "/hello.txt").status == 200
        line = p.stdout.readline()
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert COMBINED.match(line.rstrip(b"\n")), line


def test_sigusr1_rotation_under_a_client_loop_loses_no_line(tmp_path, site_root, engine):
    log = tmp_path / "access.log"
    port = free_port()
    p = subprocess.Popen(
        CLI
        + [
            "serve",
            "--port",
            str(port),
            "--root",
            str(site_root),
            "--workers",
            "2",
            "--engine",
            engine,
            "--access-log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    made = [0]
    stop = threading.Event()

    def client():
        c = Conn(port)
        while not stop.is_set():
            assert c.request("GET", "/hello.txt").status == 200
            made[0] += 1
        c.close()

    try:
        p.stdout.readline()
        t = threading.Thread(target=client)
        t.start()
        assert wait_for(lambda: made[0] >= 200 and log.stat().st_size > 0, timeout=20)
        os.rename(log, tmp_path / "access.log.1")  # logrotate's way
        p.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: log.exists() and log.stat().st_size > 0, timeout=10)
        mark = made[0]
        assert wait_for(lambda: made[0] >= mark + 200, timeout=20)
        stop.set()
        t.join()
    finally:
        stop.set()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    old, new = parse(tmp_path / "access.log.1"), parse(log)
    assert old and new
    assert len(old) + len(new) == made[0]
