"""The native handler API: ``App``, ``@app.route``, ``@app.middleware``, ``Request``, ``Response``.

    from minginx_cffi import App, Response

    app = App()

    @app.route("/hello")
    def hello(request):
        return "Hello, world!"

    @app.route("/users/{id:int}", methods=["GET", "DELETE"])
    def user(request, id):
        return {"id": id, "method": request.method}

Run it with ``minginx-cffi serve --app module:app`` (add ``--root DIR`` and
unknown paths fall through to the static files; without it they are 404).

Handlers run on the worker thread's own stack, never on a coroutine's:
the connection's coroutine parses the request in C and yields it to its
worker's scheduler, which calls Python with the GIL held once per batch, and
the coroutine sends the response in C.  See csrc/pycall.c.

A handler returns a ``Response``, or what one can be made of: ``str``
(text/plain), ``bytes``, ``dict``/``list`` (JSON), an iterable of bytes (a
streamed body), or a tuple ``(body, status)`` / ``(body, status, headers)``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar, Union

from . import _dispatch

if TYPE_CHECKING:

    class _View(Protocol):  # what an engine hands a dispatcher (_bridge.CallView, pyport ConnView)
        method: str
        raw_path: bytes
        query: bytes
        body: bytes
        minor_version: int
        scheme: str
        client: tuple[str, int]

        def header_pairs(self) -> Iterable[tuple[bytes, bytes]]: ...


#: What a header name or value may be given as (Headers keeps str; bytes are latin-1).
HeaderField = Union[str, bytes, bytearray, memoryview, int]
#: What a Response body may be: bytes-like, str (UTF-8), dict/list (JSON), an iterable of bytes.
Body = Union[bytes, bytearray, memoryview, str, dict[str, Any], list[Any], Iterable[bytes], None]
#: What a handler may return (see to_response).
HandlerResult = Union["Response", Body, tuple[Body, int], tuple[Body, int, Any]]
Handler = Callable[..., HandlerResult]
CallNext = Callable[["Request"], "Response"]
Middleware = Callable[["Request", CallNext], HandlerResult]
H = TypeVar("H", bound=Callable[..., Any])

__all__ = ["App", "Request", "Response", "Headers", "HTTPError"]


class HTTPError(Exception):
    """Raise in a handler to answer with this status (and an optional text body)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class BodyNotJSON(HTTPError, ValueError):
    """Request.json() on a body that is not JSON: the client's error, a 400 (RFC 9110
    section 15.5.1).  A ValueError too, so ``except ValueError`` around json() still works."""

    def __init__(self, why: str) -> None:
        super().__init__(400, "400 Bad Request: the body is not JSON (%s)\n" % why)


class UnusableResponse(TypeError):
    """A handler returned something that cannot be made into a response."""


def _field_text(x: Any, what: str) -> str:
    """A header name or value as Headers keeps it: str.  bytes (or bytearray,
    memoryview) are latin-1, so they go on the wire byte for byte; an int is its
    decimal; anything else (None above all) is a TypeError, never "None" on the
    wire (a handler's TypeError is its 500, logged)."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).decode("latin-1")
    if isinstance(x, int) and not isinstance(x, bool):
        return str(int(x))
    raise TypeError("%s is %s; a header takes str, bytes or int" % (what, type(x).__name__))


def _name(x: HeaderField) -> str:
    return x if x.__class__ is str else _field_text(x, "a header name")


def _value(x: HeaderField) -> str:
    return x if x.__class__ is str else _field_text(x, "a header value")


class Headers:
    """A case-insensitive multi-map of header fields, in order.  Names and values are
    kept as str; bytes given are latin-1 (see _field_text)."""

    __slots__ = ("_items",)

    def __init__(
        self,
        items: Mapping[HeaderField, HeaderField] | Iterable[tuple[HeaderField, HeaderField]] | None = None,
    ) -> None:
        self._items: list[tuple[str, str]]
        if items is None:
            self._items = []
        elif isinstance(items, Mapping):
            self._items = [(_name(k), _value(v)) for k, v in items.items()]
        else:
            self._items = [(_name(k), _value(v)) for k, v in items]

    def __getitem__(self, name: HeaderField) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def get(self, name: HeaderField, default: str | None = None) -> str | None:
        lname = _name(name).lower()
        for k, v in self._items:
            if k.lower() == lname:
                return v
        return default

    def get_all(self, name: HeaderField) -> list[str]:
        lname = _name(name).lower()
        return [v for k, v in self._items if k.lower() == lname]

    def __setitem__(self, name: HeaderField, value: HeaderField) -> None:
        sname = _name(name)
        self.pop(sname)
        self._items.append((sname, _value(value)))

    def add(self, name: HeaderField, value: HeaderField) -> None:
        self._items.append((_name(name), _value(value)))

    def pop(self, name: HeaderField, default: str | None = None) -> str | None:
        lname = _name(name).lower()
        found = default
        kept = []
        for k, v in self._items:
            if k.lower() == lname:
                found = v
            else:
                kept.append((k, v))
        self._items = kept
        return found

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes, bytearray, memoryview, int)):
            return False
        return self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "Headers(%r)" % self._items


class Request:
    """One HTTP request: method, path, query, headers (read lazily from the C parse), body."""

    __slots__ = (
        "_view",
        "method",
        "raw_path",
        "path",
        "query",
        "body",
        "params",
        "_headers",
        "_args",
        "_client",
        "http_version",
        "handler",
        "scheme",
    )

    method: str
    raw_path: bytes
    path: str
    query: str
    body: bytes
    params: dict[str, Any]
    handler: Handler | None
    http_version: str
    scheme: str

    def __init__(self, view: _View, path: str, params: dict[str, Any] | None = None) -> None:
        self._view = view
        self.method = view.method
        self.raw_path = view.raw_path
        self.path = path
        self.query = view.query.decode("latin-1")
        self.body = view.body
        self.params = params or {}
        self.handler = None  # the route's function, for middleware to look at
        self.http_version = "1.%d" % view.minor_version
        self._headers: Headers | None = None
        self._args: dict[str, list[str]] | None = None
        self._client: tuple[str, int] | None = None
        self.scheme = view.scheme  # "http", or "https" from a trusted proxy (--proxy-headers)

    @property
    def headers(self) -> Headers:
        """Case-insensitive; duplicate fields are all kept (``headers.get_all``)."""
        if self._headers is None:
            self._headers = Headers(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._view.header_pairs()]
            )
        return self._headers

    @property
    def args(self) -> dict[str, list[str]]:
        """The query string as a dict of lists."""
        if self._args is None:
            self._args = urllib.parse.parse_qs(self.query, keep_blank_values=True)
        return self._args

    @property
    def client(self) -> tuple[str, int]:
        """(address, port) of the peer; with --proxy-headers, of the client a trusted proxy
        names (port 0: the proxy does not say it)."""
        if self._client is None:
            self._client = self._view.client
        return self._client

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON raises BodyNotJSON (a 400)."""
        try:
            return json.loads(self.body)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise BodyNotJSON(str(e).partition("\n")[0][:200]) from None
        except RecursionError:  # "[[[[..." deeper than the parser goes: not ours to 500
            raise BodyNotJSON("nested too deeply") from None

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    def __repr__(self) -> str:
        return "<Request %s %s>" % (self.method, self.path)


class Response:
    """status, headers, and a body: bytes, str, dict/list (JSON) or an iterable of bytes."""

    __slots__ = ("status", "headers", "body")

    status: int
    headers: Headers
    body: bytes | Iterable[bytes]

    def __init__(
        self,
        body: Body = b"",
        status: int = 200,
        headers: Headers
        | Mapping[HeaderField, HeaderField]
        | Iterable[tuple[HeaderField, HeaderField]]
        | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        default_type: str | None
        data: bytes | Iterable[bytes]
        if isinstance(body, str):
            data = body.encode("utf-8")
            default_type = "text/plain; charset=utf-8"
        elif isinstance(body, (dict, list)):
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            default_type = "application/json"
        elif body is None:
            data = b""
            default_type = None
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            default_type = "application/octet-stream"
        elif hasattr(body, "__iter__"):
            data = body
            default_type = "application/octet-stream"
        else:
            raise TypeError(
                "a Response body is bytes, str, dict, list or an iterable of bytes, "
                "not %s" % type(body).__name__
            )
        self.body = data
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        elif default_type and "content-type" not in self.headers and self.status not in (204, 304):
            self.headers.add("Content-Type", default_type)

    def __repr__(self) -> str:
        return "<Response %d>" % self.status


def to_response(value: Any, where: str) -> Response:
    """What a handler returned, as a Response; TypeError with a clear message if unusable."""
    if isinstance(value, Response):
        return value
    if isinstance(value, (str, bytes, bytearray, dict, list)):
        return Response(value)
    if isinstance(value, tuple) and 2 <= len(value) <= 3 and isinstance(value[1], int):
        return Response(value[0], value[1], value[2] if len(value) == 3 else None)
    if value is not None and hasattr(value, "__iter__") and not isinstance(value, (tuple, set)):
        return Response(value)
    raise UnusableResponse(
        "%s returned %s; expected a Response, str, bytes, dict, list, an iterable "
        "of bytes, or (body, status[, headers])" % (where, type(value).__name__)
    )


def encode_headers(headers: Iterable[tuple[Any, Any]]) -> list[tuple[bytes, bytes]]:
    """A field list as the response writer takes it: [(name bytes, value bytes)].

    Nothing is checked here: the engine's one response writer refuses a bad
    name or value (CR, LF, NUL, a non-token name) and the framing fields a
    handler may not set (csrc/response.c, pyport/response.py).  Connection,
    Content-Length and the like are the writer's to interpret."""
    return [
        (
            name.encode("latin-1") if name.__class__ is str else name,
            value.encode("latin-1") if value.__class__ is str else value,
        )
        for name, value in headers
    ]


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(int|path|str))?\}")
_CONVERTERS = {"str": (r"[^/]+", str), "int": (r"-?\d+", int), "path": (r".+", str)}


class _Route:
    __slots__ = ("pattern", "regex", "convert", "handlers")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.handlers: dict[str, Handler] = {}
        self.convert: dict[str, Callable[[str], Any]] = {}
        regex, pos = "^", 0
        for m in _PARAM.finditer(pattern):
            regex += re.escape(pattern[pos : m.start()])
            kind = m.group(2) or "str"
            sub, conv = _CONVERTERS[kind]
            regex += "(?P<%s>%s)" % (m.group(1), sub)
            self.convert[m.group(1)] = conv
            pos = m.end()
        regex += re.escape(pattern[pos:]) + "$"
        self.regex = re.compile(regex) if self.convert else None


class App:
    """Routes and middleware; ``minginx-cffi serve --app module:app`` runs it."""

    def __init__(self) -> None:
        self._exact: dict[str, _Route] = {}  # path -> _Route (no parameters: a dict lookup)
        self._patterns: list[_Route] = []  # _Route with parameters, in registration order
        self._middleware: list[Middleware] = []
        self._chain: CallNext | None = None

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[H], H]:
        """Register the decorated function for ``path`` (``{name}``, ``{name:int}``,
        ``{name:path}`` capture parts) and these methods; GET brings HEAD along."""
        if not path.startswith("/"):
            raise ValueError("a route path starts with '/': %r" % path)
        methods = [m.upper() for m in methods]

        def register(fn: H) -> H:
            route = self._exact.get(path) or next((r for r in self._patterns if r.pattern == path), None)
            if route is None:
                route = _Route(path)
                if route.regex is None:
                    self._exact[path] = route
                else:
                    self._patterns.append(route)
            for m in methods:
                route.handlers[m] = fn
            if "GET" in methods and "HEAD" not in route.handlers:
                route.handlers["HEAD"] = fn  # HEAD is GET without the body
            return fn

        return register

    def get(self, path: str) -> Callable[[H], H]:
        return self.route(path, ["GET"])

    def post(self, path: str) -> Callable[[H], H]:
        return self.route(path, ["POST"])

    def middleware(self, fn: Middleware) -> Middleware:
        """``fn(request, call_next) -> Response``; the first registered is the outermost."""
        self._middleware.append(fn)
        self._chain = None
        return fn

    # -- dispatch, called by the bridge on the worker thread ----------------

    def _match(self, path: str) -> tuple[_Route | None, dict[str, Any] | None]:
        route = self._exact.get(path)
        if route is not None:
            return route, {}
        for route in self._patterns:
            assert route.regex is not None
            m = route.regex.match(path)
            if m:
                return route, {k: route.convert[k](v) for k, v in m.groupdict().items()}
        return None, None

    def _build_chain(self) -> CallNext:
        def call_handler(request: Request) -> Response:
            fn = request.handler
            assert fn is not None
            return to_response(fn(request, **request.params), "handler %s" % fn.__name__)

        chain: CallNext = call_handler
        for mw in reversed(self._middleware):
            chain = _wrap(mw, chain)
        self._chain = chain
        return chain


def _wrap(mw: Middleware, call_next: CallNext) -> CallNext:
    def step(request: Request) -> Response:
        return to_response(mw(request, call_next), "middleware %s" % mw.__name__)

    return step


def make_dispatch(app: App) -> Callable[[Any], Any]:
    """The bridge's dispatch function for a native App."""
    exact, match = app._exact, app._match

    def dispatch(view: Any) -> Any:
        raw = view.raw_path
        path = urllib.parse.unquote(raw.decode("latin-1")) if b"%" in raw else raw.decode("latin-1")
        route = exact.get(path)
        params: dict[str, Any] | None = {}
        if route is None:
            route, params = match(path)
            if route is None:
                return _dispatch.FALLTHROUGH
        fn = route.handlers.get(view.method)
        if fn is None:
            allow = sorted(route.handlers)
            body = b"Method Not Allowed\n"
            return (
                405,
                b"",
                [(b"Allow", ", ".join(allow).encode()), (b"Content-Type", b"text/plain; charset=utf-8")],
                body,
                0,
            )
        assert params is not None
        request = Request(view, path, params)
        request.handler = fn
        try:
            if app._middleware:
                response = (app._chain or app._build_chain())(request)
            else:
                response = to_response(fn(request, **params), "handler %s" % fn.__name__)
        except HTTPError as e:
            response = Response(e.message if e.message is not None else "%d\n" % e.status, e.status)
        except UnusableResponse as e:
            _dispatch.log.error("minginx-cffi: %s", e)
            response = Response("Internal Server Error\n", 500)
        return (response.status, b"", encode_headers(response.headers.items()), response.body, 0)

    return dispatch
