"""ASGI 3: run asyncio applications (FastAPI, Starlette...), ``minginx-cffi serve --asgi module:app``.

Theory of operation.  The engines keep doing what they do (parsing, keep-alive,
static files, timeouts, sending); the application runs on ONE asyncio event
loop per process, on its own thread (``LoopThread``; uvloop when installed).

    worker thread (GIL, a batch)   the request's scope is built from the parse
                                   (``build_scope``) and the batch handed to the
                                   loop with one call_soon_threadsafe
    loop thread                    ``Cycle.run``: a task per request runs
                                   app(scope, receive, send)
    send()                         http.response.start is kept; the first
                                   http.response.body (or the end) gives the
                                   head and the first piece to the engine
                                   through a *reply* (below); each later piece
                                   waits until the engine asks for it (a NEXT
                                   round: it sent the previous one), so a fast
                                   app never queues more than one piece
    receive()                      the body, read whole by the engine (up to
                                   --max-body), as one http.request; then
                                   http.disconnect once the response is complete
                                   or the engine reports the client gone

On Python 3.12 and later each request's task starts eagerly: its first step
runs at once, inside the batch that brought the request (asyncio's eager
start; before 3.12, in the loop's next pass), so an app that never waits (a FastAPI hello) answers within
that one loop callback, without a Handle and a second loop pass per request,
and its task never enters asyncio's registry of pending tasks.  The task is a
real asyncio Task from its first step on: current_task(), anyio's cancel
scopes and task groups, cancel_requests() see the same task in every step.

A *reply* is what an engine gives a cycle to answer through, on the loop
thread: ``head(status, fields, body, more)`` and ``piece(data, last)``
(each True while the engine takes more pieces: False after the last, and
for a HEAD, a 204 or a head the writer refused, which became a 500),
``error_500()``, ``cut()`` (end a stream without its end: the connection
closes).  Each engine has one thin reply that posts each answer back to the
parked coroutine, whose worker is woken through its eventfd and sends it:
_bridge._CallReply for the C engine (mg_call_post), pyport/asgiport.PortReply
for the port (worker.post).  Neither worker thread ever waits for the loop.

Status and headers are not checked here: the engine's one response writer
does (csrc/response.c, pyport/response.py), and a head it refuses is a 500.
The response's state, by the messages the app has sent:

    START --start--> HEAD --body(more)--> STREAM --body(last)--> DONE
                       \\------------body(last)--------------------/
    HEAD or STREAM --the engine takes no more--> DISCARD --body(last)--> DONE
"""

import asyncio
import concurrent.futures
import sys
import threading
import time
import traceback
from urllib.parse import unquote_to_bytes

from . import _dispatch

__all__ = ["Runner", "LoopThread", "build_scope", "http_scope", "ClientDisconnected", "StartupFailed"]

log = _dispatch.log

ASGI = {"version": "3.0", "spec_version": "2.4"}  # 2.4: send() on a closed connection raises OSError
LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}

HTTP_VERSIONS = ("1.0", "1.1")  # by the request line's minor version (the parsers take no other)
START, HEAD, STREAM, DISCARD, DONE = "START", "HEAD", "STREAM", "DISCARD", "DONE"


class ClientDisconnected(OSError):
    """send() after the client went away (ASGI HTTP spec 2.4)."""


class StartupFailed(Exception):
    """The application's lifespan startup failed; str() is its message, one line."""


def new_event_loop():
    """uvloop's loop when it is installed (as uvicorn's "auto"), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """One event loop running forever on its own daemon thread."""

    def __init__(self):
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self._run, name="minginx-asgi-loop", daemon=True)
        self._lock = threading.Lock()
        self._ended = False  # run_forever returned
        self._abandoned = False  # stop() gave up waiting: the thread closes the loop itself

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        with self._lock:
            self._ended = True
            if self._abandoned:
                self.loop.close()

    def start(self):
        self.thread.start()

    def run(self, coro, timeout=None):
        """Run a coroutine on the loop from another thread; its result, or its exception."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout=10.0):
        """Cancel what still runs (a task parked on a client that will never come back),
        stop the loop, join the thread, close the loop: within timeout seconds.  An app
        that blocks its loop (a time.sleep in an async route) never lets the loop stop:
        then a warning says so and the thread is left behind (a daemon: it ends with
        the process), rather than hang the shutdown."""
        if not self.thread.is_alive():
            return
        deadline = time.monotonic() + timeout

        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        coro = cancel_all()
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:  # the loop is closed: it never ran, and must not warn it was never awaited
            coro.close()
        else:
            try:
                fut.result(max(0.0, min(5.0, deadline - time.monotonic())))
            except (concurrent.futures.TimeoutError, RuntimeError, asyncio.CancelledError):
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandoned = not self._ended
        if self._abandoned:
            log.warning(
                "minginx-cffi: the ASGI event loop did not stop within %.1f s (the app blocks it); "
                "leaving it behind",
                timeout,
            )
            return
        self.loop.close()


def http_scope(method, minor_version, scheme, raw_path, query, headers, client, server, root_path, state):
    """The HTTP connection scope (https://asgi.readthedocs.io/en/latest/specs/www.html),
    the one builder both engines use (the port through build_scope, the C bridge from
    its call's fields: _bridge.AsgiBridge._scope).

    path is percent-decoded UTF-8 and, as the spec asks (and uvicorn does),
    starts with root_path; raw_path is the path as sent, without root_path.
    server: (host, port); state: lifespan's, copied per request."""
    if b"%" in raw_path:
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    else:
        path = raw_path.decode("utf-8", "replace")
    return {
        "type": "http",
        "asgi": ASGI,
        "http_version": HTTP_VERSIONS[minor_version],
        "method": method,
        "scheme": scheme,
        "path": root_path + path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "state": state.copy(),
    }


def build_scope(view, root_path, server, state, headers=None):
    """http_scope from a parsed request's view (the port's)."""
    return http_scope(
        view.method,
        view.minor_version,
        view.scheme,
        view.raw_path,
        view.query,
        view.header_pairs(lower=True) if headers is None else headers,
        view.client,
        (server, view.server_port),
        root_path,
        state,
    )


class Cycle:
    """One request-response cycle, lived on the loop thread (see the module's state diagram)."""

    __slots__ = (
        "reply",
        "body",
        "state",
        "status",
        "fields",
        "body_read",
        "gone",
        "complete",
        "wanted",
        "waiter",
        "disconnect",
        "app_done",
        "_where",
        "hup",
    )

    def __init__(self, reply, body, where=None):
        self.reply = reply
        self.body = body
        self._where = where  # "METHOD path", for the log; None: the reply's
        self.state = START
        self.status = self.fields = None
        self.body_read = False
        self.gone = False  # the client left: send() raises
        self.complete = False  # receive() now answers http.disconnect
        self.wanted = False  # the engine asked for the next piece (a NEXT round is open)
        self.waiter = None  # send() of a piece waits here for `wanted`
        self.disconnect = None  # receive() waits here for the end
        self.app_done = False
        self.hup = False  # the engine saw the client hang up (not yet answered)

    @property
    def where(self):
        return self._where if self._where is not None else self.reply.where

    async def run(self, app, scope):
        try:
            await app(scope, self.receive, self.send)
        except BaseException as e:
            # uvicorn's line, "Exception in ASGI application", the one people search logs for
            if self.gone or self.hup:  # the app noticed the client leaving (Starlette: ClientDisconnect)
                log.info("minginx-cffi: ASGI app for %s: client gone (%s)", self.where, type(e).__name__)
            elif self.state == DONE:
                # answered whole, then raised: Starlette's ServerErrorMiddleware sends its 500
                # and re-raises for the server to log; nothing was cut
                log.error(
                    "minginx-cffi: Exception in ASGI application (%s)\n%s",
                    self.where,
                    traceback.format_exc().rstrip(),
                )
            elif self.state != START and self.state != HEAD:
                log.error(
                    "minginx-cffi: Exception in ASGI application (%s), after its response began: "
                    "the response is cut\n%s",
                    self.where,
                    traceback.format_exc().rstrip(),
                )
            else:
                log.error(
                    "minginx-cffi: Exception in ASGI application (%s): 500\n%s",
                    self.where,
                    traceback.format_exc().rstrip(),
                )
            self._end_early()
            if isinstance(e, asyncio.CancelledError):
                raise  # the task was cancelled (shutdown): asyncio must see it
            # SystemExit, KeyboardInterrupt raised by the app itself (signals reach the main
            # thread only): re-raised, they would end the loop thread for every request
        else:
            if self.state != DONE and self.state != DISCARD and not (self.gone or self.hup):
                log.error(
                    "minginx-cffi: ASGI app for %s returned without completing its response", self.where
                )
            self._end_early()

    def _end_early(self):
        """The app is finished: whatever the engine still waits for is answered now."""
        self.app_done = True
        if not self.gone:
            if self.state == START or self.state == HEAD:
                self.state = DONE
                if self.hup:  # the client hung up before the head: nobody to answer (nginx: 499)
                    self.reply.cut()
                else:
                    self.reply.error_500()
            elif self.state == STREAM and self.wanted:
                self.state = DONE
                self.wanted = False
                self.reply.cut()
            # STREAM without an open round: the engine's next NEXT round cuts (want_next)
        self._finish()

    def _finish(self):
        self.complete = True
        d = self.disconnect
        if d is not None and not d.done():
            d.set_result(None)

    # -- the app's side -----------------------------------------------

    async def receive(self):
        if not self.body_read:
            self.body_read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.complete:
            if self.disconnect is None:
                self.disconnect = asyncio.get_running_loop().create_future()
            await self.disconnect
        return {"type": "http.disconnect"}

    async def send(self, message):
        if self.gone or self.hup:
            raise ClientDisconnected("the client closed the connection")
        kind = message["type"]
        if kind == "http.response.start":
            if self.state != START:
                raise RuntimeError("http.response.start sent twice")
            self.status = message["status"]
            self.fields = list(message.get("headers", ()))  # flatten_fields unpacks the pairs
            self.state = HEAD
            return
        if kind != "http.response.body":
            raise RuntimeError("unsupported ASGI message %r" % (kind,))
        if self.state == START:
            raise RuntimeError("http.response.body before http.response.start")
        if self.state == DONE:
            raise RuntimeError("http.response.body after the response was complete")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            # bytes(5) would be five NUL bytes: the app's error, raised into its send()
            raise TypeError("http.response.body's body must be bytes, not %s" % type(body).__name__)
        more = bool(message.get("more_body", False))
        if self.state == DISCARD:
            if not more:
                self.state = DONE
                self._finish()
            return
        if self.state == HEAD:
            taking = self.reply.head(self.status, self.fields, body, more)
            self.state = DONE if not more else STREAM if taking else DISCARD
            if self.state == DONE:
                self._finish()
            return
        if not body and more:
            return
        if not self.wanted:  # backpressure: the engine has not sent the last piece yet
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        self.wanted = False
        taking = self.reply.piece(body, not more)
        if not more:
            self.state = DONE
            self._finish()
        elif not taking:
            self.state = DISCARD  # cut to the Content-Length: the rest is dropped

    # -- the engine's side (on the loop thread) --------------------------

    def want_next(self):
        """A NEXT round: the engine sent the last piece and wants the next."""
        if self.state != STREAM or self.app_done:
            self.state = DONE
            self.reply.cut()
            return
        self.wanted = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def client_left(self):
        """The engine saw the client hang up while the app runs: receive() says
        http.disconnect and send() raises, but the engine's round is still answered
        when the app ends (its send then fails and the connection closes)."""
        self.hup = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ClientDisconnected("the client closed the connection"))
        self._finish()

    def abort(self):
        """The client is gone (an ABORT round, or the engine saw it hang up)."""
        self.gone = True
        self.wanted = False
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(ClientDisconnected("the client closed the connection"))
        self._finish()


_CYCLE_RUN = Cycle.run.__code__


if sys.version_info >= (3, 12):

    def start_task(loop, coro):
        """Run coro's first step now, as a Task (asyncio's eager start)."""
        return asyncio.Task(coro, loop=loop, eager_start=True)
else:

    def start_task(loop, coro):
        """Before 3.12 asyncio has no eager start: the first step runs in the loop's next
        pass.  (Emulating it on asyncio's private Python Task saved nothing measurable on
        3.11, 309.9k -> 309.4k instructions per FastAPI request, and would tie us to
        fields that differ between 3.9, 3.10 and 3.11.)"""
        return loop.create_task(coro)


class Lifespan:
    """The lifespan protocol (https://asgi.readthedocs.io/en/latest/specs/lifespan.html), on the
    loop.  An app that raises or returns before answering startup does not speak it: it is
    served all the same (uvicorn's "auto")."""

    def __init__(self, app, state):
        self.app = app
        self.state = state
        self.supported = True
        self.inbox = None
        self.answer = None  # future: the app's answer to the current event, (type, message)
        self.task = None

    async def startup(self):
        loop = asyncio.get_running_loop()
        self.inbox = asyncio.Queue()
        self.answer = loop.create_future()
        scope = {"type": "lifespan", "asgi": LIFESPAN_ASGI, "state": self.state}
        self.task = loop.create_task(self._main(scope))
        await self.inbox.put({"type": "lifespan.startup"})
        kind, message = await self.answer
        if kind == "lifespan.startup.failed":
            raise StartupFailed(_one_line(message) or "lifespan.startup.failed")
        if kind != "lifespan.startup.complete":
            self.supported = False
            log.info("minginx-cffi: the ASGI app does not support lifespan (%s)", message)

    async def shutdown(self):
        if not self.supported or self.task.done():
            return
        self.answer = asyncio.get_running_loop().create_future()
        await self.inbox.put({"type": "lifespan.shutdown"})
        kind, message = await self.answer
        if kind != "lifespan.shutdown.complete":
            log.error("minginx-cffi: ASGI lifespan shutdown failed: %s", message)

    async def _main(self, scope):
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException as e:
            if self.answer.done() and self.answer.result()[0] == "lifespan.startup.failed":
                pass  # Starlette re-raises what it reported: the message says it all
            elif self.answer.done():
                log.error("minginx-cffi: ASGI lifespan raised:\n%s", traceback.format_exc().rstrip())
            else:
                self.answer.set_result(("raised", "%s: %s" % (type(e).__name__, e)))
            if isinstance(e, asyncio.CancelledError):
                raise  # as in Cycle.run: only a cancellation goes on up
        else:
            if not self.answer.done():
                self.answer.set_result(("returned", "its lifespan coroutine returned"))

    async def _send(self, message):
        if not self.answer.done():
            self.answer.set_result((message["type"], message.get("message", "")))


def _one_line(message):
    """An app's failure message as one line: its last non-empty line (Starlette sends a
    whole traceback, whose last line is the exception)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Runner:
    """An ASGI application served by one process: its loop thread, lifespan and cycles."""

    def __init__(self, app, root_path="", server="127.0.0.1"):
        self.app = app
        self.root_path = root_path
        self.server = server
        self.state = {}
        self.loop_thread = None
        self.lifespan = None
        self.loop = None
        self.warned_upgrade = False

    def start(self):
        """Start the loop thread and run lifespan startup; StartupFailed if the app says so."""
        self.loop_thread = LoopThread()
        self.loop = self.loop_thread.loop
        self.loop_thread.start()
        self.lifespan = Lifespan(self.app, self.state)
        try:
            self.loop_thread.run(self.lifespan.startup())
        except BaseException:
            self.loop_thread.stop()
            raise

    def stop(self, timeout=10.0):
        """Lifespan shutdown, then the loop goes (the engines' workers have stopped)."""
        if self.loop_thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            if self.lifespan is not None:
                self.loop_thread.run(self.lifespan.shutdown(), timeout)
        except Exception as e:
            log.error("minginx-cffi: ASGI lifespan shutdown: %s: %s", type(e).__name__, e)
        finally:
            # the lifespan's time counts: the whole stop is bounded by timeout (a
            # blocked loop times the lifespan out first), and the loop gets at least 1 s
            self.loop_thread.stop(max(1.0, deadline - time.monotonic()))
            self.loop_thread = None

    def scope(self, view):
        headers = view.header_pairs(lower=True)
        if not self.warned_upgrade:
            self.check_upgrade(headers)
        return build_scope(view, self.root_path, self.server, self.state, headers)

    def check_upgrade(self, headers):
        """Warn once about a WebSocket upgrade (headers: lower-cased pairs)."""
        for name, value in headers:
            if name == b"upgrade" and b"websocket" in value.lower():
                # RFC 9110 7.8: a server may ignore Upgrade; the request is plain HTTP
                self.warned_upgrade = True
                log.warning(
                    "minginx-cffi: WebSocket upgrade requested: not supported, "
                    "the request is served as plain HTTP"
                )

    def begin(self, scope, body, reply, where=None):
        """On the loop: a request's Cycle and its task (see run()); returns the Cycle.
        where: "METHOD path" for the log, or None to ask reply.where only when there is
        something to log.  The reply may be answered before begin() returns."""
        cycle = Cycle(reply, body, where)
        self.run(cycle, scope)
        return cycle

    def run(self, cycle, scope):
        """On the loop: start cycle's task, eagerly: an app that never waits has
        answered through the reply when this returns.  asyncio keeps its own (weak)
        registry of the tasks that wait: cancel_requests finds them there, so a request
        costs no set of ours and no done-callback."""
        start_task(self.loop, cycle.run(self.app, scope))

    def cancel_requests(self):
        """From any thread: cancel every request's task (its engine call is answered with a 500
        or cut), for a stop that cannot wait; lifespan goes on to its shutdown."""
        if self.loop_thread is not None:

            def cancel():
                for task in asyncio.all_tasks(self.loop):
                    # a request's task runs Cycle.run; the app's own tasks are left alone
                    if getattr(task.get_coro(), "cr_code", None) is _CYCLE_RUN:
                        task.cancel()

            self.loop.call_soon_threadsafe(cancel)

    def make_dispatch(self):
        """The engines' marker for this app: a dispatcher whose ``asgi`` is this Runner.
        Neither engine calls it: the C engine runs the app through _bridge.AsgiBridge,
        the port through pyport/asgiport.py, both with deferred rounds."""

        def dispatch(view):
            raise RuntimeError("an ASGI app is served through deferred rounds, not called")

        dispatch.asgi = self
        return dispatch
