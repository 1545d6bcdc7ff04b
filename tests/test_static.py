"""The static-file middleware end to end, over real sockets: methods, paths, MIME types, errors, traversal."""

import email.utils
import re

import pytest

from conftest import INDEX, raw, status_of


def test_get_index(server, connect):
    c = connect(server.port)
    r = c.request("GET", "/index.html")
    assert r.status == 200
    assert r.body == INDEX
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert int(r.header("content-length")) == len(INDEX)
    assert r.header("server") == "minginx-cffi"
    assert r.header("connection") == "keep-alive"
    assert email.utils.parsedate_to_datetime(r.header("date")) is not None
    assert email.utils.parsedate_to_datetime(r.header("last-modified")) is not None
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+(\.[0-9a-f]+)?"', r.header("etag"))


def test_root_serves_index(server, connect):
    r = connect(server.port).request("GET", "/")
    assert r.status == 200 and r.body == INDEX


def test_head_has_headers_no_body(server, connect):
    c = connect(server.port)
    r = c.request("HEAD", "/index.html")
    assert r.status == 200
    assert int(r.header("content-length")) == len(INDEX)
    # the next response on the same connection starts right away: no body was sent
    r2 = c.request("GET", "/hello.txt")
    assert r2.body == b"hello world\n"


def test_404(server, connect):
    r = connect(server.port).request("GET", "/nope.html")
    assert r.status == 404
    assert b"404" in r.body and r.header("content-type").startswith("text/html")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_405_with_allow(server, connect, method):
    c = connect(server.port)
    r = c.request(method, "/index.html", {"Content-Length": "3"}, b"abc")
    assert r.status == 405
    assert "GET" in r.header("allow") and "HEAD" in r.header("allow")
    # the body was read and discarded, never parsed as a request: the connection still works
    assert c.request("GET", "/hello.txt").status == 200


def test_unknown_method_is_501(server, connect):
    assert connect(server.port).request("BREW", "/").status == 501


def test_options(server, connect):
    # 200 with Content-Length: 0 (RFC 9110 9.3.7; a 204 may not carry Content-Length, 8.6)
    r = connect(server.port).request("OPTIONS", "*")
    assert r.status == 200 and "GET" in r.header("allow") and r.header("content-length") == "0"


def test_directory_without_slash_redirects(server, connect):
    r = connect(server.port).request("GET", "/sub?x=1")
    assert r.status == 301
    assert r.header("location") == "/sub/?x=1"


def test_directory_with_slash_serves_its_index(server, connect):
    r = connect(server.port).request("GET", "/sub/")
    assert r.status == 200 and r.body == b"<p>sub index</p>\n"


def test_directory_without_index_is_not_listed(server, connect):
    r = connect(server.port).request("GET", "/noindex/")
    assert r.status in (403, 404)
    assert b"file.txt" not in r.body


def test_query_string_ignored(server, connect):
    r = connect(server.port).request("GET", "/hello.txt?v=123&x=%zz")
    assert r.status == 200 and r.body == b"hello world\n"


def test_percent_decoding(server, connect):
    c = connect(server.port)
    assert c.request("GET", "/with%20space.txt").body == b"spaced\n"
    assert c.request("GET", "/%68ello.txt").body == b"hello world\n"
    assert c.request("GET", "/sub%2fpage.html").body == b"<p>sub page</p>\n"


@pytest.mark.parametrize("path", ["/hello%2.txt", "/hello%zz.txt", "/hello%00.txt", "/%", "/a%0"])
def test_bad_escapes_are_400(server, connect, path):
    assert connect(server.port).request("GET", path).status == 400


MIME = {
    "/index.html": "text/html",
    "/style.css": "text/css",
    "/app.js": "text/javascript",
    "/mod.mjs": "text/javascript",
    "/data.json": "application/json",
    "/pic.svg": "image/svg+xml",
    "/pic.png": "image/png",
    "/pic.webp": "image/webp",
    "/code.wasm": "application/wasm",
    "/font.woff2": "font/woff2",
    "/hello.txt": "text/plain",
    "/blob.unknownext": "application/octet-stream",
}


@pytest.mark.parametrize("path,ctype", MIME.items())
def test_mime_types(server, connect, path, ctype):
    r = connect(server.port).request("GET", path)
    assert r.status == 200
    assert r.header("content-type").split(";")[0] == ctype


def test_empty_file(server, connect):
    r = connect(server.port).request("GET", "/empty.txt")
    assert r.status == 200 and r.body == b"" and r.header("content-length") == "0"


def test_dotfiles_hidden_by_default(server, connect):
    c = connect(server.port)
    assert c.request("GET", "/.env").status == 404
    assert c.request("GET", "/.git/config").status == 404
    assert c.request("GET", "/%2eenv").status == 404
    assert c.request("GET", "/.well-known/security.txt").status == 200


def test_dotfiles_served_when_asked(make_server, connect):
    srv = make_server(serve_dotfiles=True)
    assert connect(srv.port).request("GET", "/.env").body == b"SECRET=1\n"


def test_symlink_out_of_root_refused(server, connect, outside_secret):
    c = connect(server.port)
    r = c.request("GET", "/escape.txt")
    assert r.status in (403, 404) and b"TOP SECRET" not in r.body
    assert c.request("GET", "/inside-link.txt").body == b"hello world\n"


def test_symlink_followed_when_asked(make_server, connect, outside_secret):
    srv = make_server(follow_symlinks=True)
    assert connect(srv.port).request("GET", "/escape.txt").body == b"TOP SECRET\n"


TRAVERSAL = [
    "/../secret.txt",
    "/../../../../etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%5csecret.txt",
    "/..\\secret.txt",
    "/.%2e/secret.txt",
    "/%252e%252e/secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%c0%af../secret.txt",
    "/./../secret.txt",
    "//../secret.txt",
    "/sub/./../../secret.txt",
    "/..;/secret.txt",
    "/%2e%2e%00/secret.txt",
    "/etc/passwd",
    "/sub/..%2f..%2fsecret.txt",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_traversal_never_escapes(server, connect, outside_secret, path):
    r = connect(server.port).request("GET", path)
    assert r.status in (400, 403, 404), (path, r)
    assert b"TOP SECRET" not in r.body and b"root:" not in r.body


def test_dot_segments_inside_root_are_normalised(server, connect):
    c = connect(server.port)
    assert c.request("GET", "/sub/../hello.txt").body == b"hello world\n"
    assert c.request("GET", "/./sub/./page.html").body == b"<p>sub page</p>\n"
    assert c.request("GET", "//hello.txt").body == b"hello world\n"


@pytest.mark.parametrize(
    "path,status,body",
    [
        ("/sub/..", 200, INDEX),  # the root, as a directory
        ("/sub/..%2f", 200, INDEX),  # the same with an encoded slash
        ("/sub/.", 200, b"<p>sub index</p>\n"),  # /sub/, not a 301 to /sub/./
        ("/sub%2f", 200, b"<p>sub index</p>\n"),
        ("/hello.txt/.", 404, None),  # a file asked for as a directory
        ("/sub/page.html/..", 200, b"<p>sub index</p>\n"),
    ],
)
def test_dot_segments_at_the_end_name_a_directory(server, connect, path, status, body):
    """A path ending in "/", "/." or "/.." (decoded) names a directory, as in nginx."""
    r = connect(server.port).request("GET", path)
    assert r.status == status, path
    if body is not None:
        assert r.body == body


@pytest.mark.parametrize(
    "req,status",
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 40000 + b"\r\n\r\n", 431),
    ],
)
def test_errors_over_the_wire_then_close(server, req, status):
    out = raw(server.port, req, timeout=5)
    assert status_of(out) == status, out[:200]
    assert b"Connection: close" in out
