"""Python handlers through the C engine: routes, params, methods, JSON, headers, bodies,
middleware, errors, stacks."""

import json
import socket
import threading
import time

import pytest

from conftest import Conn, get, raw, status_of
from minginx_cffi import App, HTTPError, Response

app = App()
ORDER = []


@app.route("/hello")
def hello(request):
    return "Hello, world!"


@app.route("/users/{id:int}", methods=["GET", "PUT", "DELETE"])
def user(request, id):
    return {"id": id, "method": request.method}


@app.route("/files/{rest:path}")
def files(request, rest):
    return {"rest": rest}


@app.route("/echo", methods=["POST", "PUT"])
def echo(request):
    return Response(
        request.body,
        headers={"X-Len": str(len(request.body)), "Content-Type": request.headers.get("content-type", "x/y")},
    )


@app.route("/json", methods=["POST"])
def echo_json(request):
    data = request.json()
    data["seen"] = True
    return data


@app.route("/headers")
def headers(request):
    return {
        "ua": request.headers.get("USER-AGENT"),
        "x": request.headers.get_all("x-multi"),
        "query": request.query,
        "args": request.args,
        "client": request.client[0],
        "path": request.path,
    }


@app.route("/status")
def status(request):
    return "made", 201, {"X-Custom": "yes", "Set-Cookie": "a=1"}


@app.route("/bytes")
def raw_bytes(request):
    return Response(b"\x00\x01\x02", content_type="application/octet-stream")


@app.route("/stream")
def stream(request):
    def gen():
        for i in range(5):
            yield b"piece %d;" % i

    return Response(gen(), content_type="text/plain")


@app.route("/teapot")
def teapot(request):
    raise HTTPError(418, "short and stout\n")


@app.route("/boom")
def boom(request):
    raise RuntimeError("kaboom")


@app.route("/unusable")
def unusable(request):
    return 12345


@app.route("/bad-header")
def bad_header(request):
    return Response("x", headers={"X-Evil": "a\r\nInjected: yes"})


@app.route("/deep")
def deep(request):
    nested = []
    for _ in range(900):
        nested = [nested]
    return {"len": len(repr(nested))}


@app.route("/sleep")
def sleep(request):
    t0 = time.monotonic()
    time.sleep(float(request.args["s"][0]))
    return {"start": t0, "end": time.monotonic()}


@app.middleware
def outer(request, call_next):
    ORDER.append("outer-in")
    response = call_next(request)
    ORDER.append("outer-out")
    response.headers["X-Outer"] = "1"
    return response


@app.middleware
def inner(request, call_next):
    ORDER.append("inner-in")
    response = call_next(request)
    ORDER.append("inner-out")
    response.headers["X-Inner"] = "1"
    return response


@pytest.fixture
def srv(make_server):
    return make_server(app=app, root=None)


def test_route_and_text(srv):
    r = get(srv.port, "/hello")
    assert r.status == 200 and r.body == b"Hello, world!"
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.header("content-length") == "13" and r.header("date") and r.header("server")


def test_path_params_and_json(srv):
    r = get(srv.port, "/users/42")
    assert r.header("content-type") == "application/json"
    assert json.loads(r.body) == {"id": 42, "method": "GET"}
    assert json.loads(get(srv.port, "/files/a/b/c.txt").body) == {"rest": "a/b/c.txt"}
    assert get(srv.port, "/users/abc").status == 404  # int converter does not match


def test_methods_405_with_allow(srv):
    r = get(srv.port, "/hello", "POST", {"Content-Length": "0"})
    assert r.status == 405 and r.header("allow") == "GET, HEAD"
    assert get(srv.port, "/users/1", "DELETE").status == 200
    r = get(srv.port, "/users/1", "PATCH")
    assert r.status == 405 and set(r.header("allow").split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


def test_head_of_a_get_route(srv):
    c = Conn(srv.port)
    r = c.request("HEAD", "/hello")
    assert r.status == 200 and r.header("content-length") == "13"
    assert c.request("GET", "/hello").body == b"Hello, world!"  # nothing left over
    c.close()


def test_unknown_route_without_root_is_404(srv):
    assert get(srv.port, "/index.html").status == 404


def test_unknown_route_falls_through_to_static(make_server, site_root):
    srv = make_server(app=app, root=str(site_root))
    assert get(srv.port, "/hello.txt").body == b"hello world\n"
    assert get(srv.port, "/hello").body == b"Hello, world!"


def test_headers_both_ways(srv):
    r = get(srv.port, "/headers?a=1&b=two&a=3", headers={"User-Agent": "tester/1", "X-Multi": "one"})
    data = json.loads(r.body)
    assert data["ua"] == "tester/1" and data["x"] == ["one"]
    assert data["args"] == {"a": ["1", "3"], "b": ["two"]} and data["client"] == "127.0.0.1"
    r = get(srv.port, "/status")
    assert r.status == 201 and r.header("x-custom") == "yes" and r.header("set-cookie") == "a=1"
    assert get(srv.port, "/bytes").body == b"\x00\x01\x02"


def test_percent_encoded_path(srv):
    assert json.loads(get(srv.port, "/files/a%20b/%C3%A9").body) == {"rest": "a b/é"}


def test_body_content_length(srv):
    body = bytes(range(256)) * 100
    r = get(srv.port, "/echo", "POST", {"Content-Length": str(len(body)), "Content-Type": "a/b"}, body)
    assert r.body == body and r.header("x-len") == str(len(body)) and r.header("content-type") == "a/b"


def test_body_larger_than_the_request_buffer(srv):
    body = b"z" * 300000
    r = get(srv.port, "/echo", "PUT", {"Content-Length": str(len(body))}, body)
    assert r.body == body


def test_body_chunked(srv):
    c = Conn(srv.port)
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert c.read_response().body == b"hello world!"
    assert c.read_response().body == b"Hello, world!"
    c.close()


def test_json_body(srv):
    body = json.dumps({"a": [1, 2]}).encode()
    r = get(srv.port, "/json", "POST", {"Content-Length": str(len(body))}, body)
    assert json.loads(r.body) == {"a": [1, 2], "seen": True}


@app.route("/json-or-none", methods=["POST"])
def json_or_none(request):
    try:
        return {"got": request.json()}
    except ValueError:  # the way handlers caught it before json() became a 400
        return {"got": None}


@pytest.mark.parametrize("body", [b"", b"{not json", b"\xff\xfe\x00", b"[" * 100000])
def test_a_body_that_is_not_json_is_a_400(srv, body):
    """issue 13: request.json() on a body that is not JSON is the client's error, a 400 with
    a short message (it was a 500 and a traceback in the log), on the same connection."""
    c = Conn(srv.port)
    r = c.request("POST", "/json", {"Content-Length": str(len(body))}, body)
    assert r.status == 400 and r.body.startswith(b"400 Bad Request: the body is not JSON (")
    assert len(r.body) < 300 and r.body.endswith(b")\n")
    r = c.request("POST", "/json-or-none", {"Content-Length": str(len(body))}, body)
    assert (r.status, json.loads(r.body)) == (200, {"got": None})
    c.close()


def test_body_over_max_body_is_413(make_server):
    srv = make_server(app=app, root=None, max_body=1000)
    out = raw(srv.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
    assert status_of(out) == 413
    out = raw(
        srv.port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"3e8\r\n"
        + b"x" * 1000
        + b"\r\n"
        + b"3e8\r\n"
        + b"x" * 1000
        + b"\r\n0\r\n\r\n",
    )
    assert status_of(out) == 413


def test_streamed_response_is_chunked(srv):
    c = Conn(srv.port)
    c.send(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.sock.recv(65536)
    assert b"Transfer-Encoding: chunked" in head
    data = head.partition(b"\r\n\r\n")[2]
    while not data.endswith(b"0\r\n\r\n"):
        data += c.sock.recv(65536)
    decoded, rest = b"", data
    while True:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        decoded, rest = decoded + rest[:n], rest[n + 2 :]
    assert decoded == b"piece 0;piece 1;piece 2;piece 3;piece 4;"
    assert c.request("GET", "/hello").body == b"Hello, world!"
    c.close()


def test_streamed_response_http10_is_close_delimited(srv):
    out = raw(srv.port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"chunked" not in head
    assert body == b"piece 0;piece 1;piece 2;piece 3;piece 4;"


def test_middleware_order(srv):
    ORDER.clear()
    r = get(srv.port, "/hello")
    assert ORDER == ["outer-in", "inner-in", "inner-out", "outer-out"]
    assert r.header("x-outer") == "1" and r.header("x-inner") == "1"


def test_exception_gives_500_and_server_keeps_serving(srv, caplog):
    r = get(srv.port, "/boom")
    assert r.status == 500 and b"kaboom" not in r.body and b"Traceback" not in r.body
    assert get(srv.port, "/hello").status == 200
    assert "RuntimeError: kaboom" in caplog.text  # the traceback goes to the log


def test_unusable_return_gives_500_with_a_clear_log_line(srv, caplog):
    assert get(srv.port, "/unusable").status == 500
    assert "handler unusable returned int" in caplog.text


def test_header_injection_is_refused(srv):
    r = get(srv.port, "/bad-header")
    assert r.status == 500 and r.header("injected") is None


def test_http_error(srv):
    r = get(srv.port, "/teapot")
    assert r.status == 418 and r.body == b"short and stout\n"


def test_deep_recursion_runs_on_the_thread_stack(make_server):
    # repr() of a list nested 900 deep needs far more than a 64 KiB coroutine
    # stack: it works because handlers run on the worker thread's own stack.
    srv = make_server(app=app, root=None, stack_size=64 * 1024)
    r = get(srv.port, "/deep")
    assert r.status == 200 and json.loads(r.body)["len"] == 2 * 901


def test_two_workers_run_python_while_static_files_are_served(make_server, site_root):
    srv = make_server(app=app, root=str(site_root), workers=3)
    # round-robin: connections go to workers 0, 1, 2 in order
    static_conn = Conn(srv.port)
    slow = [Conn(srv.port), Conn(srv.port)]
    assert static_conn.request("GET", "/hello.txt").status == 200  # pins it to worker 0
    results = []

    def slow_call(c):
        results.append(json.loads(c.request("GET", "/sleep?s=1.0").body))

    threads = [threading.Thread(target=slow_call, args=(c,)) for c in slow]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.2)
    served = 0
    while any(t.is_alive() for t in threads):
        assert static_conn.request("GET", "/index.html").status == 200
        served += 1
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < 1.9  # both handlers ran at once
    assert results[0]["start"] < results[1]["end"] and results[1]["start"] < results[0]["end"]
    assert served > 20  # static files kept flowing meanwhile
    st = srv.stats()
    assert st[1]["py_calls"] >= 1 and st[2]["py_calls"] >= 1


def test_client_gone_mid_stream_closes_the_iterator(make_server):
    closed = threading.Event()
    a = App()

    @a.route("/forever")
    def forever(request):
        class Forever:
            def __iter__(self):
                return self

            def __next__(self):
                return b"x" * 65536

            def close(self):
                closed.set()

        return Response(Forever())

    srv = make_server(app=a, root=None)
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /forever HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(65536)
    s.close()
    assert closed.wait(10)
    assert get(srv.port, "/forever", "HEAD").status == 200
