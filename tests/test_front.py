"""In front of an app: files and handlers in one server, --header, --error-page,
--proxy-headers (both engines)."""

import json
import subprocess
import sys

import pytest

from conftest import Conn, free_port
from minginx_cffi import App
from minginx_cffi.server import Server, ServerError

CLI = [sys.executable, "-m", "minginx_cffi"]

# ---------------------------------------------------------------- the apps
# Each answers "from the <kind> app" with what it saw: path, client, scheme.

native = App()


def _seen(kind, path, client, scheme):
    return json.dumps({"by": kind, "path": path, "client": list(client), "scheme": scheme}).encode()


@native.route("/api/{rest:path}", methods=["GET", "POST"])
def api(request, rest):
    return _seen("app", request.raw_path.decode(), request.client, request.scheme)


@native.route("/hello.txt")
def shadowed(request):
    return "the App's /hello.txt"


@native.route("/noindex/")
def noindex(request):
    return _seen("app", request.raw_path.decode(), request.client, request.scheme)


def wsgi_app(environ, start_response):
    body = _seen(
        "wsgi",
        environ["RAW_URI"],
        (environ["REMOTE_ADDR"], int(environ["REMOTE_PORT"])),
        environ["wsgi.url_scheme"],
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = _seen("asgi", scope["raw_path"].decode(), scope["client"], scope["scheme"])
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


HANDLERS = {"app": dict(app=native), "wsgi": dict(wsgi=wsgi_app), "asgi": dict(asgi=asgi_app)}


@pytest.fixture(params=sorted(HANDLERS))
def kind(request):
    return request.param


def seen(r):
    assert r.status == 200, r
    return json.loads(r.body)


# ------------------------------------------------- files and handlers together


def test_an_existing_file_is_served_from_disk_beside_every_handler(make_server, kind, site_root):
    srv = make_server(**HANDLERS[kind])
    c = Conn(srv.port)
    r = c.request("GET", "/style.css")
    assert r.status == 200 and r.body == b"body{color:red}\n"
    assert r.header("content-type").startswith("text/css") and r.header("etag")
    # static's conditional requests and ranges, not the app's
    assert c.request("GET", "/style.css", {"If-None-Match": r.header("etag")}).status == 304
    part = c.request("GET", "/1mib.bin", {"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == (site_root / "1mib.bin").read_bytes()[10:20]
    # a directory with an index is a file ($uri/), asked without its slash a 301 to it
    assert c.request("GET", "/sub/").body == b"<p>sub index</p>\n"
    r = c.request("GET", "/sub")
    assert r.status == 301 and r.header("location") == "/sub/"
    assert c.request("HEAD", "/hello.txt").header("content-length") == "12"


def test_everything_else_goes_to_the_handler(make_server, kind):
    srv = make_server(**HANDLERS[kind])
    c = Conn(srv.port)
    assert seen(c.request("GET", "/api/users/1")) == {
        "by": kind,
        "path": "/api/users/1",
        "client": ["127.0.0.1", seen(c.request("GET", "/api/x"))["client"][1]],
        "scheme": "http",
    }
    # a directory without an index is not a file: the handler's (not a 403)
    assert seen(c.request("GET", "/noindex/"))["by"] == kind


@pytest.mark.parametrize(
    "path",
    ["/.env", "/.git/config", "/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt", "/escape.txt"],
)
def test_traversal_and_dotfiles_never_come_from_disk(make_server, kind, path, outside_secret):
    srv = make_server(**HANDLERS[kind])
    r = Conn(srv.port).request("GET", path)
    assert b"SECRET" not in r.body, (path, r)
    if ".." in path or "%2e" in path:
        assert r.status == 400, r  # names nothing: 400 before any handler, as nginx
    else:  # a dotfile, a symlink out of the root: not our files, the handler's business
        assert r.status == (404 if kind == "app" else 200), r


def test_a_post_to_a_file_is_what_the_static_files_answer(make_server, kind):
    """try_files picks the file whatever the method; the static files then allow GET, HEAD
    and OPTIONS only (nginx: 405 for a POST to a static file)."""
    srv = make_server(**HANDLERS[kind])
    c = Conn(srv.port)
    r = c.request("POST", "/hello.txt", {"Content-Length": "3"}, b"abc")
    assert r.status == 405 and r.header("allow") == "GET, HEAD, OPTIONS"
    assert c.request("GET", "/hello.txt").body == b"hello world\n"  # the connection goes on
    assert seen(c.request("POST", "/api/p", {"Content-Length": "1"}, b"x"))["by"] == kind


def test_a_file_wins_over_an_app_route_and_unknown_app_paths_are_404(make_server):
    srv = make_server(app=native)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").body == b"hello world\n"
    r = c.request("GET", "/nothing/here")
    assert r.status == 404 and b"404" in r.body


def test_without_a_root_everything_goes_to_the_handler(make_server, kind):
    srv = make_server(root=None, **HANDLERS[kind])
    c = Conn(srv.port)
    assert seen(c.request("GET", "/api/x"))["by"] == kind
    if kind == "app":
        assert c.request("GET", "/index.html").status == 404  # no demo site
    else:
        assert seen(c.request("GET", "/index.html"))["by"] == kind


def test_the_banner_tells_what_answers_what(site_root):
    srv = Server(root=str(site_root), wsgi=wsgi_app, port=0)
    assert "files under %s, then WSGI app wsgi_app" % site_root in srv.banner()
    assert "serving ASGI app asgi_app on" in Server(asgi=asgi_app, port=0).banner()
    assert "serving files under %s on" % site_root in Server(root=str(site_root), port=0).banner()


# ------------------------------------------------------------------ --header


def test_header_goes_on_static_200_206_301_304_and_not_on_errors(make_server):
    srv = make_server(app=native, header=["Cache-Control: max-age=60", "X-Frame-Options:DENY"])
    c = Conn(srv.port)
    r = c.request("GET", "/hello.txt")
    assert r.header("cache-control") == "max-age=60" and r.header("x-frame-options") == "DENY"
    assert (
        c.request("GET", "/hello.txt", {"If-None-Match": r.header("etag")}).header("cache-control")
        == "max-age=60"
    )
    assert c.request("GET", "/hello.txt", {"Range": "bytes=0-1"}).header("cache-control") == "max-age=60"
    assert c.request("GET", "/sub").header("cache-control") == "max-age=60"  # 301
    assert c.request("GET", "/nothing").header("cache-control") is None  # 404
    assert c.request("POST", "/hello.txt").header("cache-control") is None  # 405
    assert c.request("GET", "/api/x").header("cache-control") is None  # the app's own


@pytest.mark.parametrize(
    "value, why",
    [
        ("NoColon", "expected 'NAME: VALUE'"),
        ("Bad Name: x", "not a token"),
        (": x", "empty"),
        ("X-A: a\r\nX-B: b", "control character"),
        ("X-A: a\nb", "control character"),
        ("X-A: a\x00b", "NUL"),
        ("Content-Length: 5", "writes this header itself"),
        ("transfer-encoding: chunked", "writes this header itself"),
        ("Connection: close", "writes this header itself"),
        ("Date: x", "writes this header itself"),
        ("Content-Range: bytes 0-1/2", "writes this header itself"),
        ("Content-Type: text/plain", "writes this header itself"),
        ("X-Long: " + "a" * 2000, "longer than 1024"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else None,
)
def test_bad_header_values_are_refused_at_start(site_root, engine, value, why):
    with pytest.raises(ServerError) as e:
        Server(root=str(site_root), header=[value], engine=engine, port=0)
    assert why in str(e.value) or (why == "NUL" and "control character" in str(e.value)), e.value


def test_cli_bad_header_is_one_line_and_non_zero(site_root):
    p = subprocess.run(
        CLI
        + ["serve", "--root", str(site_root), "--port", str(free_port()), "--header", "Content-Length: 1"],
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1 and "--header" in err, err


# -------------------------------------------------------------- --error-page


@pytest.fixture(scope="module")
def pages_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "errors").mkdir()
    (root / "errors" / "404.html").write_bytes(b"<h1>nothing here, friend</h1>\n")
    (root / "errors" / "405.json").write_bytes(b'{"error": "method"}\n')
    (root.parent / "outside.html").write_bytes(b"outside\n")
    return root


def test_error_page_is_the_body_of_404_and_405_with_its_type(make_server, pages_root, engine):
    srv = make_server(root=str(pages_root), error_page=["404=/errors/404.html", "405=errors/405.json"])
    c = Conn(srv.port)
    r = c.request("GET", "/missing")
    assert r.status == 404 and r.body == b"<h1>nothing here, friend</h1>\n"
    assert r.header("content-type") == "text/html; charset=utf-8"
    h = c.request("HEAD", "/missing")
    assert h.status == 404 and h.body == b"" and h.header("content-length") == str(len(r.body))
    r = c.request("POST", "/hello.txt", {"Content-Length": "0"})
    assert r.status == 405 and r.body == b'{"error": "method"}\n'
    assert r.header("content-type") == "application/json" and r.header("allow")
    h = c.request("HEAD", "/missing/")  # HEAD: the head only, the connection goes on
    assert h.status == 404 and h.body == b""
    assert c.request("GET", "/hello.txt").body == b"hello\n"


def test_error_page_is_not_used_for_an_apps_own_404(make_server, pages_root):
    def notfound(environ, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"the app's own 404"]

    srv = make_server(root=str(pages_root), wsgi=notfound, error_page=["404=/errors/404.html"])
    assert Conn(srv.port).request("GET", "/missing").body == b"the app's own 404"


@pytest.mark.parametrize(
    "spec, why",
    [
        ("404=/nope.html", "cannot read"),
        ("404=../outside.html", "outside the root"),
        ("404=/errors/../../outside.html", "outside the root"),
        ("302=/hello.txt", "4xx or 5xx"),
        ("abc=/hello.txt", "not a status code"),
        ("404", "expected CODE=PATH"),
        ("404=/errors", "not a regular file"),
    ],
)
def test_bad_error_pages_are_refused_at_start(pages_root, spec, why):
    with pytest.raises(ServerError) as e:
        Server(root=str(pages_root), error_page=[spec], port=0)
    assert why in str(e.value), e.value


def test_cli_bad_error_page_is_one_line_and_non_zero(pages_root):
    p = subprocess.run(
        CLI
        + [
            "serve",
            "--root",
            str(pages_root),
            "--port",
            str(free_port()),
            "--error-page",
            "404=/missing.html",
        ],
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1 and "--error-page" in err, err


# ------------------------------------------------------------ behind a proxy


def proxied(make_server, kind, allow="127.0.0.1", **kw):
    return make_server(proxy_headers=True, forwarded_allow_ips=allow, **HANDLERS[kind], **kw)


def client_of(srv, headers):
    r = Conn(srv.port).request("GET", "/api/who", headers)
    s = seen(r)
    return s["client"][0], s["client"][1], s["scheme"]


def test_proxy_headers_from_a_trusted_peer_set_client_and_scheme(make_server, kind):
    srv = proxied(make_server, kind)
    assert client_of(srv, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}) == (
        "203.0.113.7",
        0,
        "https",
    )
    # the chain: the rightmost address that is not a trusted proxy
    assert client_of(srv, {"X-Forwarded-For": "6.6.6.6, 203.0.113.7, 127.0.0.1"})[:2] == ("203.0.113.7", 0)
    # all trusted: the leftmost
    assert client_of(srv, {"X-Forwarded-For": "127.0.0.1,127.0.0.1"})[:2] == ("127.0.0.1", 0)
    assert client_of(srv, {"X-Forwarded-For": "2001:DB8::1"})[0] == "2001:db8::1"
    addr, port, scheme = client_of(srv, {})
    assert addr == "127.0.0.1" and port != 0 and scheme == "http"


def test_proxy_headers_from_an_untrusted_peer_change_nothing(make_server, kind):
    srv = proxied(make_server, kind, allow="10.0.0.1")
    addr, port, scheme = client_of(
        srv,
        {
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "Forwarded": "for=198.51.100.1;proto=https",
        },
    )
    assert (addr, scheme) == ("127.0.0.1", "http") and port != 0


def test_without_proxy_headers_nothing_changes(make_server, kind):
    srv = make_server(**HANDLERS[kind])
    addr, port, scheme = client_of(srv, {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert (addr, scheme) == ("127.0.0.1", "http") and port != 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "not-an-ip"},
        {"X-Forwarded-For": "1.2.3.4, garbage"},  # the rightmost untrusted is garbage
        {"X-Forwarded-For": ""},
        {"X-Forwarded-For": "1.2.3.4:80"},
        {"X-Forwarded-For": "<script>"},
        {"X-Forwarded-Proto": "ftp"},
        {"X-Forwarded-Proto": "https, http"},
        {"Forwarded": "for=unknown"},
        {"Forwarded": "for=_hidden;proto=gopher"},
        {"Forwarded": 'for="[::1"'},
        {"Forwarded": ";;;,,,==="},
    ],
)
def test_garbage_proxy_values_are_ignored(make_server, headers):
    srv = proxied(make_server, "wsgi")
    addr, port, scheme = client_of(srv, headers)
    assert (addr, scheme) == ("127.0.0.1", "http") and port != 0, headers


def test_forwarded_rfc7239(make_server, kind):
    srv = proxied(make_server, kind)
    assert client_of(srv, {"Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https'}) == (
        "2001:db8:cafe::17",
        0,
        "https",
    )
    # elements right to left: 127.0.0.1 is ours, so the client is the one before it
    assert client_of(
        srv, {"Forwarded": "for=192.0.2.60;proto=https;by=203.0.113.43, for=127.0.0.1;proto=http"}
    ) == ("192.0.2.60", 0, "https")
    assert client_of(srv, {"Forwarded": "For=198.51.100.9:8080"})[:2] == ("198.51.100.9", 0)
    # for=unknown still says the scheme
    assert client_of(srv, {"Forwarded": "for=unknown;proto=https"})[2] == "https"


def test_x_forwarded_wins_over_forwarded(make_server):
    """A proxy that appends X-Forwarded-For passes a client's own Forwarded through:
    read first, it would let the client choose its address (csrc/front.c)."""
    srv = proxied(make_server, "asgi")
    assert client_of(srv, {"Forwarded": "for=6.6.6.6;proto=https", "X-Forwarded-For": "203.0.113.7"}) == (
        "203.0.113.7",
        0,
        "http",
    )


def test_several_x_forwarded_for_lines_are_one_list(make_server):
    srv = proxied(make_server, "app")
    r = Conn(srv.port).request("GET", "/api/who", {"X-Forwarded-For": "198.51.100.1"})
    assert seen(r)["client"][0] == "198.51.100.1"
    c = Conn(srv.port)
    c.send(
        b"GET /api/who HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.1\r\n"
        b"X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n\r\n"
    )
    assert seen(c.read_response())["client"][0] == "203.0.113.9"


def test_trust_all_and_networks(make_server):
    srv = proxied(make_server, "wsgi", allow="*")
    assert client_of(srv, {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})[0] == "6.6.6.6"
    srv = proxied(make_server, "wsgi", allow="10.0.0.0/8, 127.0.0.0/8")
    assert client_of(srv, {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"})[0] == "203.0.113.7"


def test_the_client_is_per_request_on_a_keep_alive_connection(make_server):
    srv = proxied(make_server, "app")
    c = Conn(srv.port)
    assert seen(c.request("GET", "/api/a", {"X-Forwarded-For": "203.0.113.7"}))["client"][0] == "203.0.113.7"
    assert seen(c.request("GET", "/api/b"))["client"][0] == "127.0.0.1"


@pytest.mark.parametrize("value", ["nope", "1.2.3.4/40", "127.0.0.1, ::g"])
def test_bad_forwarded_allow_ips_are_refused(site_root, value):
    with pytest.raises(ServerError) as e:
        Server(root=str(site_root), proxy_headers=True, forwarded_allow_ips=value, port=0)
    assert "--forwarded-allow-ips" in str(e.value)
