"""A stranger's attack on issue 14's front (try_files, --header, --error-page, --proxy-headers).

Each test here failed on main when written; an xfail(strict) one still does, for a
defect outside front.c / static.c / pyport/front.py / pyport/static.py (the reason says
where).  Both engines, compared with nginx 1.22 (try_files $uri $uri/ @app, realip
with real_ip_recursive) where nginx has the feature.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import Conn

# What the WSGI app saw, for the paths the files did not take.


def seen_app(environ, start_response):
    body = json.dumps(
        {
            "path": environ["PATH_INFO"],
            "raw": environ["RAW_URI"],
            "addr": environ["REMOTE_ADDR"],
            "port": environ["REMOTE_PORT"],
            "scheme": environ["wsgi.url_scheme"],
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def seen(r):
    assert r.status == 200, r
    return json.loads(r.body)


# ------------------------------------------- proxy headers: what is an address


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "fe80::1%eth0"},
        {"X-Forwarded-For": '::1%a b"c'},  # anything after the %
        {"Forwarded": 'for="[fe80::1%eth0]:80"'},
        {"Forwarded": 'for="[::1%25x]"'},
    ],
    ids=["xff-scope", "xff-scope-junk", "forwarded-scope", "forwarded-scope-escaped"],
)
def test_an_ipv6_scope_is_not_a_client_address(make_server, headers):
    """The Python port took any "v6%anything" (ipaddress accepts a scope id) as the client:
    REMOTE_ADDR and the access log got '::1%a b"c' there, while the C (inet_pton) keeps the
    peer.  nginx's realip refuses it too (the peer stays)."""
    srv = make_server(wsgi=seen_app, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    s = seen(Conn(srv.port).request("GET", "/api", headers))
    assert s["addr"] == "127.0.0.1" and s["port"] != "0", (headers, s)


@pytest.mark.parametrize(
    "given, text",
    [
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),  # nginx's $remote_addr says the same
        ("::1.2.3.4", "::1.2.3.4"),
        ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
    ],
)
def test_the_client_text_is_inet_ntops_on_both_engines(make_server, given, text):
    """The Python port wrote str(ipaddress): "::ffff:102:304" where the C (inet_ntop) and
    nginx write "::ffff:1.2.3.4"."""
    srv = make_server(wsgi=seen_app, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    s = seen(Conn(srv.port).request("GET", "/api", {"X-Forwarded-For": given}))
    assert (s["addr"], s["port"]) == (text, "0")


def test_the_access_log_prints_the_forwarded_client(make_server, tmp_path, engine):
    """README: handlers and the access log see the effective client.  The C log does
    (conn_client_addr reads conn_client), and so does the port's (accesslog.py reads
    front.py's conn_client)."""
    log = tmp_path / "access.log"
    srv = make_server(wsgi=seen_app, proxy_headers=True, forwarded_allow_ips="127.0.0.1", access_log=str(log))
    c = Conn(srv.port)
    assert seen(c.request("GET", "/api/a", {"X-Forwarded-For": "203.0.113.7"}))["addr"] == "203.0.113.7"
    assert c.request("GET", "/hello.txt", {"X-Forwarded-For": "198.51.100.2"}).status == 200
    assert seen(c.request("GET", "/api/b"))["addr"] == "127.0.0.1"  # the same connection
    srv.shutdown()  # every line is in the file when it returns
    addrs = [line.split(" ", 1)[0] for line in log.read_text().splitlines()]
    assert addrs == ["203.0.113.7", "198.51.100.2", "127.0.0.1"], addrs


# ------------------------------------------------ try_files: long paths


def test_a_long_path_goes_to_the_handler_as_nginxs_try_files_does(make_server):
    """A 5000-byte path cannot name a file (the decoded path buffer is 4080 bytes), but it
    can name an app route: nginx's try_files fails its stat (ENAMETOOLONG) and passes it
    to @app; we answered 414 on both engines, only because --root was given."""
    srv = make_server(wsgi=seen_app)
    c = Conn(srv.port)
    path = "/api/" + "a" * 5000
    assert seen(c.request("GET", path))["raw"] == path
    encoded = "/api/" + "%61" * 2000  # 6005 bytes sent, 2005 decoded: still not a file
    assert c.request("GET", encoded).status == 200
    # a long path whose ".." climbs above the root goes to the handler too, unread (nginx:
    # 400, which it finds while parsing the request line; we do not normalise a path too
    # long to name a file, and the handler sees it as it would without --root)
    climb = "/a/" + "../" * 1500
    assert seen(c.request("GET", climb))["raw"] == climb
    assert c.request("GET", "/hello.txt").body == b"hello world\n"  # the connection goes on


@pytest.mark.parametrize(
    "path, status",
    [
        ("/" + "./" * 2100, 414),  # normalises to "/", but is 4201 bytes decoded
        ("/" + "a" * 4100 + "%zz", 414),  # too long before the bad escape is reached
        ("/" + "a" * 10 + "%zz" + "a" * 5000, 400),
        ("/" + "%2e/" * 700 + "./" * 1500, 414),  # 4401 decoded bytes, from 5801 sent
        ("/" + "b" * 4078, 404),  # 4079 decoded bytes: the longest path looked up
        ("/" + "b" * 4079, 414),
    ],
    ids=["dots", "escape-after", "escape-before", "escaped-dots", "longest", "one-more"],
)
def test_static_files_draw_the_too_long_line_where_the_c_does(make_server, path, status):
    """Without a handler: the Python port counted the normalised path (> 4000 bytes), the
    C the decoded one (>= 4080, before normalising, and before a later bad escape), so
    "/" + "./" * 2100 was index.html on one engine and 414 on the other."""
    srv = make_server()
    r = Conn(srv.port).request("GET", path)
    assert r.status == status, (path[:40], r)


# ------------------------------------------------------------ --error-page


def test_an_error_page_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    """--error-page 404=/pipe, where pipe is a FIFO under the root: Server() blocks for
    ever in open() (nobody writes to the FIFO), so the CLI never starts nor says why."""
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe")
    code = (
        "import sys\nfrom minginx_cffi.server import Server, ServerError\n"
        "try:\n    Server(root=sys.argv[1], error_page=['404=/pipe'], port=0)\n"
        "except ServerError as e:\n    print(e)\n    sys.exit(2)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        capture_output=True,
        timeout=5,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    assert p.returncode == 2 and "not a regular file" in p.stdout.decode(), p
