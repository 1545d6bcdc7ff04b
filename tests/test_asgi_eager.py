"""Eager request tasks (asgi.start_task): the first step runs at once, the task stays one real Task.

On Python 3.12+ start_task is asyncio's eager_start (before 3.12, a plain Task: the unit tests
of the eager step skip there, the end-to-end ones run everywhere).  The unit tests drive
start_task on a bare loop; the end-to-end ones run apps over real sockets on both
engines, with the waits that would expose a task whose identity changed after its first step
(anyio cancel scopes and task groups) or a context shared between requests."""

import asyncio
import contextvars
import sys
import threading

import pytest

from conftest import Conn, get, wait_for
from minginx_cffi.asgi import _CYCLE_RUN, start_task

anyio = pytest.importorskip("anyio")
eager_only = pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio starts tasks eagerly from 3.12")


# ------------------------------------------------------------- start_task on a bare loop


def run_on_loop(test):
    """Run test(loop) as a plain callback (no task current), as AsgiBridge._on_loop runs."""
    loop = asyncio.new_event_loop()
    try:
        fut = loop.create_future()

        def callback():
            try:
                fut.set_result(test(loop))
            except BaseException as e:
                fut.set_exception(e)

        loop.call_soon(callback)
        return loop.run_until_complete(fut)
    finally:
        loop.close()


@eager_only
def test_a_coroutine_that_never_waits_is_done_when_start_task_returns():
    seen = []

    async def app():
        seen.append(asyncio.current_task())
        return 42

    def test(loop):
        task = start_task(loop, app())
        assert task.done() and task.result() == 42
        assert seen == [task] and asyncio.isfuture(task)  # 3.11: not an _asyncio.Future subclass
        assert asyncio.current_task(loop) is None  # left again
        assert task not in asyncio.all_tasks(loop)
        return True

    assert run_on_loop(test)


@pytest.mark.parametrize("wait", ["future", "sleep0"])
def test_a_coroutine_that_waits_keeps_its_task_and_is_registered(wait):
    seen = []

    async def app(fut):
        seen.append(asyncio.current_task())
        if wait == "future":
            await fut
        else:
            await asyncio.sleep(0)  # a bare yield
        seen.append(asyncio.current_task())
        return "done"

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        holder = []
        loop.call_soon(lambda: holder.append(start_task(loop, app(fut))))
        await asyncio.sleep(0)
        task = holder[0]
        assert not task.done() and task in asyncio.all_tasks(loop)
        assert task.get_coro().cr_code is app.__code__
        fut.set_result(None)
        assert await task == "done"
        assert seen == [task, task]

    asyncio.run(main())


@eager_only
def test_exceptions_and_cancellation_end_the_task_as_asyncio_does():
    async def raises():
        raise ValueError("boom")

    async def cancels_itself():
        raise asyncio.CancelledError()

    async def waits(started):
        started.set_result(None)
        await asyncio.sleep(60)

    async def main():
        loop = asyncio.get_running_loop()
        out = {}

        def begin():
            out["raises"] = start_task(loop, raises())
            out["cancels"] = start_task(loop, cancels_itself())
            out["started"] = loop.create_future()
            out["waits"] = start_task(loop, waits(out["started"]))

        loop.call_soon(begin)
        await asyncio.sleep(0)
        assert isinstance(out["raises"].exception(), ValueError)
        assert out["cancels"].cancelled()
        await out["started"]
        out["waits"].cancel()
        with pytest.raises(asyncio.CancelledError):
            await out["waits"]
        assert out["waits"].cancelled()

    asyncio.run(main())


@eager_only
def test_each_task_runs_in_a_copy_of_the_context():
    var = contextvars.ContextVar("var", default="unset")

    async def sets(tag):
        before = var.get()
        var.set(tag)
        return before

    def test(loop):
        first = start_task(loop, sets("a"))
        second = start_task(loop, sets("b"))
        return first.result(), second.result(), var.get()

    assert run_on_loop(test) == ("unset", "unset", "unset")


# ------------------------------------------------------------- over real sockets, both engines


async def text(send, body, status=200):
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )
    await send({"type": "http.response.body", "body": body})


request_var = contextvars.ContextVar("request_var", default="none")


async def eager_app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    first = asyncio.current_task()
    if path == "/same-task":
        await asyncio.sleep(0.01)
        later = asyncio.current_task()
        await text(send, b"same" if later is first and first is not None else b"changed")
    elif path == "/fail-after":
        # anyio cancels the waiting task itself: it must be the task the scope was entered in
        try:
            with anyio.fail_after(0.05):
                await anyio.sleep(5)
        except TimeoutError:
            await text(send, b"timed out")
    elif path == "/task-group":
        results = []

        async def child():
            await anyio.sleep(0.01)
            results.append("child")

        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        await text(send, b",".join(r.encode() for r in results))
    elif path == "/context":
        before = request_var.get()
        request_var.set(scope["query_string"].decode())
        await text(send, before.encode())
    elif path == "/cancelled":
        raise asyncio.CancelledError()
    else:
        await text(send, b"hello")


def test_the_task_is_the_same_before_and_after_a_wait(make_server, engine):
    srv = make_server(asgi=eager_app, root=None, workers=1)
    r = get(srv.port, "/same-task")
    assert (r.status, r.body) == (200, b"same")


def test_anyio_cancel_scopes_and_task_groups_span_the_first_step(make_server, engine):
    srv = make_server(asgi=eager_app, root=None, workers=1)
    r = get(srv.port, "/fail-after")
    assert (r.status, r.body) == (200, b"timed out")
    r = get(srv.port, "/task-group")
    assert (r.status, r.body) == (200, b"child")


def test_a_context_variable_set_by_one_request_is_not_seen_by_the_next(make_server, engine):
    srv = make_server(asgi=eager_app, root=None, workers=1)
    c = Conn(srv.port)
    try:
        for tag in ("one", "two"):
            c.send(b"GET /context?" + tag.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            assert (r.status, r.body) == (200, b"none")
    finally:
        c.close()


def test_an_app_cancelling_its_own_first_step_is_a_500_and_the_server_goes_on(make_server, engine):
    srv = make_server(asgi=eager_app, root=None, workers=1)
    assert get(srv.port, "/cancelled").status == 500
    r = get(srv.port, "/")
    assert (r.status, r.body) == (200, b"hello")


def request_tasks(srv):
    """The request tasks asyncio holds on the server's loop (Cycle.run)."""
    loop = srv._asgi_runner.loop

    async def count():
        return sum(1 for t in asyncio.all_tasks() if getattr(t.get_coro(), "cr_code", None) is _CYCLE_RUN)

    return asyncio.run_coroutine_threadsafe(count(), loop).result(5)


parked = threading.Event()


async def parking_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/park":
        parked.set()
        await asyncio.sleep(60)
    await text(send, b"hello")


def test_requests_that_never_wait_leave_no_task_and_a_parked_one_can_be_cancelled(make_server):
    parked.clear()
    srv = make_server(asgi=parking_app, root=None, workers=1)
    for _ in range(3):
        assert get(srv.port, "/").body == b"hello"
    assert request_tasks(srv) == 0
    c = Conn(srv.port)
    try:
        c.send(b"GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
        assert parked.wait(5)
        assert wait_for(lambda: request_tasks(srv) == 1)
        srv._asgi_runner.cancel_requests()  # what a stop that cannot wait does
        assert c.read_response().status == 500
    finally:
        c.close()
    assert wait_for(lambda: request_tasks(srv) == 0)
