"""ASGI 3 (--asgi) on both engines over real sockets: FastAPI, Starlette, and raw apps
checking the protocol."""

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import Conn, free_port, get, wait_for

fastapi = pytest.importorskip("fastapi")

from fastapi import BackgroundTasks, Depends, FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402

from minginx_cffi.asgi import build_scope  # noqa: E402

CLI = [sys.executable, "-m", "minginx_cffi"]

# ------------------------------------------------------------- the FastAPI app

events = []  # what background tasks and lifespan did, in order


async def lifespan(app):
    events.append("startup")
    yield {"greeting": "hello from lifespan"}
    events.append("shutdown")


fa = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


class Teapot(Exception):
    pass


@fa.exception_handler(Teapot)
async def teapot_handler(request, exc):
    return JSONResponse(status_code=418, content={"teapot": str(exc)})


def paging(q: str = "", limit: int = 10):
    return {"q": q, "limit": limit}


@fa.get("/hello", response_class=PlainTextResponse)
async def hello():
    return "hello"


@fa.get("/items/{item_id}")
async def read_item(item_id: int, q: str = ""):
    return {"item_id": item_id, "q": q}


@fa.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price": item.price}


@fa.get("/paged")
async def paged(params: dict = Depends(paging)):
    return params


@fa.post("/later")
async def later(tasks: BackgroundTasks, tag: str):
    tasks.add_task(events.append, "background " + tag)
    return {"queued": tag}


@fa.get("/stream")
async def stream():
    async def rows():
        for i in range(5):
            yield "row %d\n" % i
            await asyncio.sleep(0)

    return StreamingResponse(rows(), media_type="text/plain")


@fa.get("/state")
async def state(request: Request):
    return {"greeting": request.state.greeting}


@fa.get("/teapot")
async def teapot():
    raise Teapot("short and stout")


@fa.get("/sync")
def sync_route():  # run in anyio's thread pool, from our loop
    return {"sync": threading.current_thread() is not threading.main_thread()}


@fa.get("/boom")
async def boom():
    raise ValueError("boom")


# ----------------------------------------------------------- the Starlette app


async def home(request):
    return PlainTextResponse("starlette home")


async def echo(request):
    return JSONResponse(
        {"echo": await request.json(), "url": str(request.url_for("echo")), "path": request.url.path}
    )


async def rows(request):
    async def gen():
        for i in range(3):
            yield b"row %d\n" % i

    return StreamingResponse(gen(), media_type="text/plain")


st_app = Starlette(
    routes=[Route("/", home), Route("/echo", echo, methods=["POST"], name="echo"), Route("/rows", rows)]
)


@pytest.fixture
def fsrv(make_server):
    events.clear()
    return make_server(asgi=fa, root=None)


def test_fastapi_routes_parameters_and_dependencies(fsrv):
    r = get(fsrv.port, "/hello")
    assert (r.status, r.body, r.header("content-type")) == (200, b"hello", "text/plain; charset=utf-8")
    assert json.loads(get(fsrv.port, "/items/42?q=x%20y").body) == {"item_id": 42, "q": "x y"}
    assert json.loads(get(fsrv.port, "/paged?q=a&limit=3").body) == {"q": "a", "limit": 3}
    assert json.loads(get(fsrv.port, "/paged").body) == {"q": "", "limit": 10}
    assert get(fsrv.port, "/items/notanint").status == 422
    assert get(fsrv.port, "/nowhere").status == 404
    assert json.loads(get(fsrv.port, "/sync").body) == {"sync": True}


def test_fastapi_json_bodies_and_validation(fsrv):
    body = json.dumps({"name": "pen", "price": 1.5}).encode()
    r = get(
        fsrv.port,
        "/items",
        "POST",
        {"Content-Type": "application/json", "Content-Length": str(len(body))},
        body,
    )
    assert (r.status, json.loads(r.body)) == (200, {"name": "pen", "price": 1.5})
    bad = b'{"name": "pen", "price": "cheap"}'
    r = get(
        fsrv.port,
        "/items",
        "POST",
        {"Content-Type": "application/json", "Content-Length": str(len(bad))},
        bad,
    )
    assert r.status == 422 and json.loads(r.body)["detail"][0]["loc"] == ["body", "price"]
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)  # the engine decodes it
    r = get(
        fsrv.port,
        "/items",
        "POST",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        chunked,
    )
    assert json.loads(r.body) == {"name": "pen", "price": 1.5}


def test_fastapi_streaming_lifespan_state_background_and_handlers(fsrv):
    c = Conn(fsrv.port)
    r = c.request("GET", "/stream")
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == b"".join(b"row %d\n" % i for i in range(5))
    r = c.request("GET", "/state")  # the same keep-alive connection
    assert json.loads(r.body) == {"greeting": "hello from lifespan"}
    r = c.request("GET", "/teapot")
    assert (r.status, json.loads(r.body)) == (418, {"teapot": "short and stout"})
    r = c.request("POST", "/later?tag=t1", {"Content-Length": "0"})
    assert json.loads(r.body) == {"queued": "t1"}
    assert wait_for(lambda: "background t1" in events)
    r = c.request("GET", "/boom")
    assert r.status == 500
    c.close()
    assert events[0] == "startup"


def test_fastapi_lifespan_shutdown_runs_on_stop(make_server):
    events.clear()
    srv = make_server(asgi=fa, root=None)
    assert get(srv.port, "/hello").body == b"hello"
    srv.shutdown()
    assert events == ["startup", "shutdown"]


def test_head_of_a_stream(make_server):
    srv = make_server(asgi=st_app, root=None)
    c = Conn(srv.port)
    r = c.request("HEAD", "/rows")
    assert r.status == 200 and r.header("content-type") == "text/plain; charset=utf-8"
    assert c.request("GET", "/rows").body == b"row 0\nrow 1\nrow 2\n"


def test_starlette_app_and_root_path(make_server):
    srv = make_server(asgi=st_app, root=None, root_path="/api")
    assert get(srv.port, "/").body == b"starlette home"
    r = get(srv.port, "/echo", "POST", {"Content-Length": "7"}, b'{"a":1}')
    assert json.loads(r.body) == {"echo": {"a": 1}, "url": "http://127.0.0.1/api/echo", "path": "/api/echo"}


# ----------------------------------------------------------------- raw apps

seen = []  # (scope, first receive(), second receive()) per request


async def scope_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        scope["state"]["db"] = "ready"
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    first = await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-body", str(len(first["body"])).encode())],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})
    seen.append((scope, first, await receive()))  # complete: http.disconnect


def test_the_scope_exactly_and_the_body_through_receive(make_server):
    seen.clear()
    srv = make_server(asgi=scope_app, root=None, root_path="/mnt")
    c = Conn(srv.port)
    c.send(
        b"POST /caf%C3%A9/a%2Fb?x=%20y&z HTTP/1.0\r\nHost: h\r\nX-Two: 1\r\nx-two: 2\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    r = c.read_response()
    assert (r.status, r.header("x-body"), r.body) == (200, "5", b"ok")
    client = c.sock.getsockname()
    c.close()
    assert wait_for(lambda: seen)
    scope, first, second = seen[0]
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.0",
        "method": "POST",
        "scheme": "http",
        "path": "/mnt/caf\u00e9/a/b",
        "raw_path": b"/caf%C3%A9/a%2Fb",
        "query_string": b"x=%20y&z",
        "root_path": "/mnt",
        "headers": [(b"host", b"h"), (b"x-two", b"1"), (b"x-two", b"2"), (b"content-length", b"5")],
        "client": client,
        "server": ("127.0.0.1", srv.port),
        "state": {"db": "ready"},
    }
    assert first == {"type": "http.request", "body": b"hello", "more_body": False}
    assert second == {"type": "http.disconnect"}


disconnects = []


async def streaming_app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")  # served all the same (uvicorn's "auto")

    async def watch():
        await receive()
        disconnects.append((await receive())["type"])

    watcher = asyncio.ensure_future(watch())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while True:  # forever, one piece each time the engine asks for one
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    except OSError:
        disconnects.append("OSError")
    await watcher


def test_client_gone_mid_stream_is_http_disconnect(make_server):
    disconnects.clear()
    srv = make_server(asgi=streaming_app, root=None)
    c = Conn(srv.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c._fill()
    c.close()
    assert wait_for(lambda: len(disconnects) == 2, timeout=10)
    assert sorted(disconnects) == ["OSError", "http.disconnect"]


parked = threading.Event()


async def parked_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    parked.set()
    disconnects.append((await receive())["type"])  # before any response: only a hang-up ends it
    await send({"type": "http.response.start", "status": 200, "headers": []})


def test_a_client_leaving_a_parked_request_is_http_disconnect(make_server, engine):
    disconnects.clear()
    parked.clear()
    srv = make_server(asgi=parked_app, root=None, workers=1)
    c = Conn(srv.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parked.wait(5)
    c.close()
    assert wait_for(lambda: disconnects == ["http.disconnect"])
    assert wait_for(lambda: srv.stats()[0]["coroutines_alive"] == 0)


def test_a_client_that_sends_and_closes_at_once_is_http_disconnect(make_server, engine):
    """The hang-up comes before the call parks: the worker saw the FIN while it read the
    request (the last part of the head and the close in one edge), so no later epoll event
    tells it again; it must still reach the app."""
    disconnects.clear()
    parked.clear()
    srv = make_server(asgi=parked_app, root=None, workers=1)
    c = Conn(srv.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the coroutine parks for the rest of the head
    assert wait_for(lambda: srv.stats()[0]["yields"]["read"] >= 1)
    # corked, the end of the head and the FIN leave in one segment: one epoll edge
    # (EPOLLIN | EPOLLRDHUP) that wakes the coroutine's read, none after it parks
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    c.send(b"\r\n")
    c.close()
    assert wait_for(lambda: disconnects == ["http.disconnect"])
    assert parked.is_set()
    assert wait_for(lambda: srv.stats()[0]["coroutines_alive"] == 0)


async def broken_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        return
    path = scope["path"]
    if path == "/nothing":
        return
    if path == "/raise":
        raise KeyError("before start")
    if path == "/bad-header":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nInjected: 1")]}
        )
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/bad-status":
        await send({"type": "http.response.start", "status": 1000, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/int-body":  # bytes(5) would be five NUL bytes
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": 5})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    if path == "/raise-mid":
        raise KeyError("after start")
    if path == "/int-body-mid":
        await send({"type": "http.response.body", "body": 5})
    # /unfinished: returns without the last piece


@pytest.mark.parametrize("path", ["/nothing", "/raise", "/bad-header", "/bad-status", "/int-body"])
def test_no_usable_response_is_a_500(make_server, path):
    srv = make_server(asgi=broken_app, root=None)
    c = Conn(srv.port)
    r = c.request("GET", path)
    assert r.status == 500 and b"Injected" not in r.raw_head
    assert c.request("GET", "/nothing").status == 500  # the connection lives on


@pytest.mark.parametrize("path", ["/raise-mid", "/unfinished", "/int-body-mid"])
def test_a_stream_the_app_abandons_is_cut(make_server, path):
    srv = make_server(asgi=broken_app, root=None)
    c = Conn(srv.port)
    c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    assert c.closed_by_peer()
    assert c.buf.startswith(b"HTTP/1.1 200") and c.buf.endswith(b"4\r\npart\r\n")  # no last chunk


@pytest.mark.parametrize("path", ["/int-body", "/int-body-mid"])
def test_a_body_that_is_not_bytes_is_the_apps_error_and_logged(make_server, path, caplog):
    """ "body": 5 was bytes(5), five NUL bytes sent as the body: now a TypeError in the
    app's send(), which the app does not catch, so its error (a 500 before the head
    went out, a cut stream after it), logged with the reason."""
    srv = make_server(asgi=broken_app, root=None)
    c = Conn(srv.port)
    if path == "/int-body":
        r = c.request("GET", path)
        assert r.status == 500 and b"\0" not in r.body
    else:
        c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        assert c.closed_by_peer() and b"\0" not in c.buf
    assert wait_for(lambda: "body must be bytes" in caplog.text), caplog.text


async def slow_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(2)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_slow_requests_do_not_stall_the_worker(make_server, engine):
    srv = make_server(asgi=slow_app, root=None, workers=1)
    slow = [Conn(srv.port) for _ in range(4)]
    for c in slow:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.monotonic()
    assert get(srv.port, "/fast").body == b"/fast"
    assert time.monotonic() - t0 < 1.0
    for c in slow:
        assert c.read_response().body == b"/slow"
        c.close()


async def framing_app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    length = {"/long": b"3", "/short": b"10", "/long-stream": b"3"}.get(path)
    headers = [(b"content-length", length)] if length else []
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path.endswith("-stream") or path == "/stream":
        await send({"type": "http.response.body", "body": b"he", "more_body": True})
        await send({"type": "http.response.body", "body": b"llo", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.body", "body": b"hello" if path != "/short" else b"hi"})


@pytest.mark.parametrize(
    "path,version,want",
    [
        ("/long", "1.1", b"hel"),
        ("/short", "1.1", b"hi"),
        ("/long-stream", "1.1", b"hel"),
        ("/stream", "1.0", b"hello"),
    ],
)
def test_framing_the_engine_owns(make_server, path, version, want):
    """Both engines frame an ASGI response alike (the C writer, or response.py for the
    port): a body longer than its Content-Length is cut to it, a shorter one or an
    HTTP/1.0 stream ends with the connection."""
    srv = make_server(asgi=framing_app, root=None)
    c = Conn(srv.port)
    c.send(b"GET %s HTTP/%s\r\nHost: x\r\n\r\n" % (path.encode(), version.encode()))
    assert c.closed_by_peer()
    head, _, body = c.buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == want, c.buf


sleeping = []  # the slow requests now inside the app


async def sleepy_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        sleeping.append(1)
        await asyncio.sleep(2)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_four_sleeping_requests_stall_neither_the_engine_nor_a_fast_route(make_server, engine):
    """issue 13: with --workers 1, four ASGI requests sleeping 2 s leave the worker free:
    what the engine serves itself (the stats endpoint: --asgi serves no --root files) and a
    fast endpoint of the same app each answer at once, before any sleeper is done."""
    sleeping.clear()
    srv = make_server(asgi=sleepy_app, root=None, workers=1, stats=True)
    slow = [Conn(srv.port) for _ in range(4)]
    t_slow = time.monotonic()
    for c in slow:
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: len(sleeping) == 4)
    for path in ["/_minginx/stats", "/fast", "/_minginx/stats", "/fast"]:
        t0 = time.monotonic()
        r = get(srv.port, path)
        assert r.status == 200 and time.monotonic() - t0 < 0.5, (path, time.monotonic() - t0)
    assert time.monotonic() - t_slow < 2.0  # all of it while the four still slept
    for c in slow:
        assert c.read_response().body == b"/slow"
        c.close()


# ------------------------------------------------------------ the command line

FAILING_SRC = """
from contextlib import asynccontextmanager
from starlette.applications import Starlette

@asynccontextmanager
async def lifespan(app):
    raise RuntimeError("database is down")
    yield

app = Starlette(lifespan=lifespan)

async def raw(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no config file"})
"""


@pytest.mark.parametrize(
    "attr,needle", [("app", "RuntimeError: database is down"), ("raw", "no config file")]
)
def test_failing_startup_exits_non_zero_with_the_message(tmp_path, engine, attr, needle):
    (tmp_path / "failing.py").write_text(FAILING_SRC)
    p = subprocess.run(
        CLI + ["serve", "--engine", engine, "--port", str(free_port()), "--asgi", "failing:" + attr],
        cwd=str(tmp_path),
        capture_output=True,
        timeout=30,
    )
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1, err
    assert "startup failed" in err and needle in err, err


def test_build_scope_decodes_like_uvicorn():
    class View:
        raw_path = b"/%E2%82%AC%ff"
        query = b""
        method = "GET"
        minor_version = 1
        client = ("::1", 1)
        scheme = "http"
        server_port = 80

        def header_pairs(self, lower=False):
            return [(b"host" if lower else b"Host", b"H")]

    s = build_scope(View(), "", "::", {})
    assert s["path"] == "/\u20ac\ufffd" and s["headers"] == [(b"host", b"H")]


def test_a_loop_the_app_blocks_does_not_hang_the_stop(caplog):
    """An async route that blocks its loop (a time.sleep, a busy loop) never lets the
    loop stop: LoopThread.stop joined it with no timeout, so the shutdown hung for as
    long as the app blocked.  Now the stop is bounded by its timeout, and says why."""
    import minginx_cffi.asgi as asgi_mod

    release = threading.Event()

    async def app(scope, receive, send):  # no lifespan: the runner's startup goes on
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")

    runner = asgi_mod.Runner(app)
    runner.start()

    async def block():
        release.wait(30)  # what a blocking call in an async route does to the loop

    asyncio.run_coroutine_threadsafe(block(), runner.loop)
    done = threading.Event()
    t = threading.Thread(target=lambda: (runner.stop(timeout=1.0), done.set()), daemon=True)
    start = time.monotonic()
    t.start()
    try:
        assert done.wait(8), "the stop hung on a blocked loop"
        assert time.monotonic() - start < 6
        assert "did not stop within" in caplog.text
    finally:
        release.set()


BOOM_SRC = """
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()


@app.get("/boom")
def boom():
    raise ValueError("the database said no")


@app.get("/cut")
def cut():
    def pieces():
        yield b"first piece\\n"
        raise ValueError("the stream broke")

    return StreamingResponse(pieces())
"""


def test_an_asgi_500_is_logged_as_uvicorn_logs_it(tmp_path, engine):
    """Starlette's ServerErrorMiddleware answers 500 and re-raises for the server to log:
    that is 'Exception in ASGI application' with the traceback, as uvicorn logs it, not a
    failure mid-stream.  A stream that breaks after its head is the one that says it is cut."""
    (tmp_path / "boom.py").write_text(BOOM_SRC)
    port = free_port()
    p = subprocess.Popen(
        CLI + ["serve", "--engine", engine, "--port", str(port), "--workers", "1", "--asgi", "boom:app"],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert b"serving" in p.stdout.readline()
        r = Conn(port).request("GET", "/boom")
        assert r.status == 500
        c = Conn(port)
        c.sock.sendall(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        c.sock.settimeout(10)
        while True:  # the cut: the connection closes with the chunked body unfinished
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            got += chunk
        assert b"first piece" in got and not got.endswith(b"0\r\n\r\n"), got
    finally:
        p.terminate()
        err = p.communicate(timeout=20)[1].decode()
    boom = [x for x in err.splitlines() if "(GET /boom)" in x]
    assert boom and "[error]" in boom[0] and "Exception in ASGI application (GET /boom)" in boom[0], err
    assert "cut" not in boom[0] and "ValueError: the database said no" in err, err
    cut = [x for x in err.splitlines() if "(GET /cut)" in x]
    assert cut and "after its response began: the response is cut" in cut[0], err
