"""WSGI (PEP 3333) through the C engine, with a real Flask app and with bare WSGI callables."""

import json
import threading

import pytest

from conftest import Conn, get, raw

flask = pytest.importorskip("flask")

fapp = flask.Flask("minginx_test")


@fapp.route("/")
def index():
    return "flask index"


@fapp.route("/user/<name>")
def user(name):
    return flask.jsonify(name=name, args=flask.request.args.to_dict())


@fapp.route("/form", methods=["POST"])
def form():
    return flask.jsonify(dict(flask.request.form))


@fapp.route("/upload", methods=["POST"])
def upload():
    return {"size": len(flask.request.get_data())}


@fapp.route("/stream")
def stream():
    def gen():
        for i in range(4):
            yield "row %d\n" % i

    return flask.Response(flask.stream_with_context(gen()), mimetype="text/plain")


@fapp.route("/headers")
def headers():
    return {
        "ua": flask.request.headers.get("User-Agent"),
        "host": flask.request.host,
        "remote": flask.request.remote_addr,
        "path": flask.request.path,
    }


@fapp.route("/fail")
def fail():
    raise ValueError("flask handler failed")


@pytest.fixture
def fsrv(make_server):
    return make_server(wsgi=fapp, root=None)


def test_flask_routes(fsrv):
    assert get(fsrv.port, "/").body == b"flask index"
    r = get(fsrv.port, "/user/ada?x=1")
    assert r.status == 200 and json.loads(r.body) == {"name": "ada", "args": {"x": "1"}}
    assert get(fsrv.port, "/nope").status == 404
    assert get(fsrv.port, "/", "POST", {"Content-Length": "0"}).status == 405


def test_flask_form_post(fsrv):
    body = b"a=1&b=hello+world&c=%C3%A9"
    r = get(
        fsrv.port,
        "/form",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body))},
        body,
    )
    data = json.loads(r.body)
    assert data["a"] == "1" and data["b"] == "hello world" and data["c"] == "é"


def test_flask_chunked_upload(fsrv):
    c = Conn(fsrv.port)
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"a\r\n0123456789\r\n5\r\nabcde\r\n0\r\n\r\n"
    )
    assert json.loads(c.read_response().body) == {"size": 15}
    c.close()


def test_flask_streaming_response(fsrv):
    out = raw(fsrv.port, b"GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert b"row 0\n" in body and b"row 3\n" in body and body.endswith(b"0\r\n\r\n")


def test_flask_environ(fsrv):
    r = get(fsrv.port, "/headers", headers={"User-Agent": "ua/1", "Host": "example.org:8080"})
    data = json.loads(r.body)
    assert data == {"ua": "ua/1", "host": "example.org:8080", "remote": "127.0.0.1", "path": "/headers"}


def test_flask_error_is_500_and_serving_goes_on(fsrv):
    assert get(fsrv.port, "/fail").status == 500
    assert get(fsrv.port, "/").status == 200


def test_bare_wsgi_write_close_and_environ(make_server):
    seen = {}
    closed = threading.Event()

    class Result:
        def __init__(self, parts):
            self.parts = parts

        def __iter__(self):
            return iter(self.parts)

        def close(self):
            closed.set()

    def wsgi(environ, start_response):
        seen.update({k: v for k, v in environ.items() if isinstance(v, (str, tuple, bool))})
        seen["input"] = environ["wsgi.input"].read()
        write = start_response("202 Accepted Thing", [("X-A", "1")])
        write(b"written-")
        return Result([b"iter1-", b"", b"iter2"])

    srv = make_server(wsgi=wsgi, root=None)
    c = Conn(srv.port)
    r = c.request("PUT", "/p%20q/r?x=1&y", {"Content-Length": "4", "X-Foo": "bar", "X_Bad": "no"}, b"data")
    assert r.status == 202 and r.reason == "Accepted Thing" and r.header("x-a") == "1"
    assert r.body == b"written-iter1-iter2"
    assert closed.wait(5)
    assert seen["REQUEST_METHOD"] == "PUT" and seen["PATH_INFO"] == "/p q/r"
    assert seen["QUERY_STRING"] == "x=1&y" and seen["CONTENT_LENGTH"] == "4"
    assert seen["HTTP_X_FOO"] == "bar" and "HTTP_X_BAD" not in seen
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1" and seen["wsgi.version"] == (1, 0)
    assert seen["input"] == b"data" and seen["wsgi.url_scheme"] == "http"
    c.close()


def test_wsgi_with_content_length_and_root(make_server, site_root):
    def wsgi(environ, start_response):
        if environ["PATH_INFO"] != "/api":
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return iter([b"hello"])

    srv = make_server(wsgi=wsgi, root=str(site_root))
    r = get(srv.port, "/api")
    assert r.body == b"hello" and r.header("transfer-encoding") is None
