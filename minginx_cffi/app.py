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

import json
import re
import urllib.parse

from . import _dispatch

__all__ = ["App", "Request", "Response", "Headers", "HTTPError"]

class HTTPError(Exception):
    """Raise in a handler to answer with this status (and an optional text body)."""

    def __init__(self, status, message=None):
        super().__init__(status, message)
        self.status = status
        self.message = message


class BodyNotJSON(HTTPError, ValueError):
    """Request.json() on a body that is not JSON: the client's error, a 400 (RFC 9110
    section 15.5.1).  A ValueError too, so ``except ValueError`` around json() still works."""

    def __init__(self, why):
        super().__init__(400, "400 Bad Request: the body is not JSON (%s)\n" % why)


class UnusableResponse(TypeError):
    """A handler returned something that cannot be made into a response."""


def _field_text(x, what):
    """A header name or value as Headers keeps it: str.  bytes (or bytearray,
    memoryview) are latin-1, so they go on the wire byte for byte; an int is its
    decimal; anything else (None above all) is a TypeError, never "None" on the
    wire (a handler's TypeError is its 500, logged)."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).decode("latin-1")
    if isinstance(x, int) and not isinstance(x, bool):
        return str(int(x))
    raise TypeError("%s is %s; a header takes str, bytes or int" % (what, type(x).__name__))


def _name(x):
    return x if x.__class__ is str else _field_text(x, "a header name")


def _value(x):
    return x if x.__class__ is str else _field_text(x, "a header value")


class Headers:
    """A case-insensitive multi-map of header fields, in order.  Names and values are
    kept as str; bytes given are latin-1 (see _field_text)."""

    __slots__ = ("_items",)

    def __init__(self, items=None):
        if items is None:
            self._items = []
        elif isinstance(items, dict):
            self._items = [(_name(k), _value(v)) for k, v in items.items()]
        else:
            self._items = [(_name(k), _value(v)) for k, v in items]

    def __getitem__(self, name):
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def get(self, name, default=None):
        name = _name(name).lower()
        for k, v in self._items:
            if k.lower() == name:
                return v
        return default

    def get_all(self, name):
        name = _name(name).lower()
        return [v for k, v in self._items if k.lower() == name]

    def __setitem__(self, name, value):
        name = _name(name)
        self.pop(name)
        self._items.append((name, _value(value)))

    def add(self, name, value):
        self._items.append((_name(name), _value(value)))

    def pop(self, name, default=None):
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

    def __contains__(self, name):
        return self.get(name) is not None

    def __iter__(self):
        return iter(k for k, _ in self._items)

    def items(self):
        return list(self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return "Headers(%r)" % self._items


class Request:
    """One HTTP request: method, path, query, headers (read lazily from the C parse), body."""

    __slots__ = ("_view", "method", "raw_path", "path", "query", "body", "params", "_headers",
                 "_args", "_client", "http_version", "handler", "scheme")

    def __init__(self, view, path, params=None):
        self._view = view
        self.method = view.method
        self.raw_path = view.raw_path
        self.path = path
        self.query = view.query.decode("latin-1")
        self.body = view.body
        self.params = params or {}
        self.handler = None   # the route's function, for middleware to look at
        self.http_version = "1.%d" % view.minor_version
        self._headers = None
        self._args = None
        self._client = None
        self.scheme = view.scheme   # "http", or "https" from a trusted proxy (--proxy-headers)

    @property
    def headers(self):
        """Case-insensitive; duplicate fields are all kept (``headers.get_all``)."""
        if self._headers is None:
            self._headers = Headers([(k.decode("latin-1"), v.decode("latin-1"))
                                     for k, v in self._view.header_pairs()])
        return self._headers

    @property
    def args(self):
        """The query string as a dict of lists."""
        if self._args is None:
            self._args = urllib.parse.parse_qs(self.query, keep_blank_values=True)
        return self._args

    @property
    def client(self):
        """(address, port) of the peer; with --proxy-headers, of the client a trusted proxy
        names (port 0: the proxy does not say it)."""
        if self._client is None:
            self._client = self._view.client
        return self._client

    def json(self):
        """The body parsed as JSON; a body that is not JSON raises BodyNotJSON (a 400)."""
        try:
            return json.loads(self.body)
        except ValueError as e:   # JSONDecodeError, UnicodeDecodeError
            raise BodyNotJSON(str(e).partition("\n")[0][:200]) from None
        except RecursionError:    # "[[[[..." deeper than the parser goes: not ours to 500
            raise BodyNotJSON("nested too deeply") from None

    def text(self, encoding="utf-8"):
        return self.body.decode(encoding)

    def __repr__(self):
        return "<Request %s %s>" % (self.method, self.path)


class Response:
    """status, headers, and a body: bytes, str, dict/list (JSON) or an iterable of bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, body=b"", status=200, headers=None, content_type=None):
        self.status = int(status)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        if isinstance(body, str):
            body = body.encode("utf-8")
            default_type = "text/plain; charset=utf-8"
        elif isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode("utf-8")
            default_type = "application/json"
        elif body is None:
            body = b""
            default_type = None
        elif isinstance(body, (bytes, bytearray, memoryview)):
            body = bytes(body)
            default_type = "application/octet-stream"
        elif hasattr(body, "__iter__"):
            default_type = "application/octet-stream"
        else:
            raise TypeError("a Response body is bytes, str, dict, list or an iterable of bytes, "
                            "not %s" % type(body).__name__)
        self.body = body
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        elif default_type and "content-type" not in self.headers and self.status not in (204, 304):
            self.headers.add("Content-Type", default_type)

    def __repr__(self):
        return "<Response %d>" % self.status


def to_response(value, where):
    """What a handler returned, as a Response; TypeError with a clear message if unusable."""
    if isinstance(value, Response):
        return value
    if isinstance(value, (str, bytes, bytearray, dict, list)):
        return Response(value)
    if isinstance(value, tuple) and 2 <= len(value) <= 3 and isinstance(value[1], int):
        return Response(value[0], value[1], value[2] if len(value) == 3 else None)
    if value is not None and hasattr(value, "__iter__") and not isinstance(value, (tuple, set)):
        return Response(value)
    raise UnusableResponse("%s returned %s; expected a Response, str, bytes, dict, list, an iterable "
                    "of bytes, or (body, status[, headers])" % (where, type(value).__name__))


def encode_headers(headers):
    """A field list as the response writer takes it: [(name bytes, value bytes)].

    Nothing is checked here: the engine's one response writer refuses a bad
    name or value (CR, LF, NUL, a non-token name) and the framing fields a
    handler may not set (csrc/response.c, pyport/response.py).  Connection,
    Content-Length and the like are the writer's to interpret."""
    return [(name.encode("latin-1") if name.__class__ is str else name,
             value.encode("latin-1") if value.__class__ is str else value)
            for name, value in headers]


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(int|path|str))?\}")
_CONVERTERS = {"str": (r"[^/]+", str), "int": (r"-?\d+", int), "path": (r".+", str)}


class _Route:
    __slots__ = ("pattern", "regex", "convert", "handlers")

    def __init__(self, pattern):
        self.pattern = pattern
        self.handlers = {}
        self.convert = {}
        regex, pos = "^", 0
        for m in _PARAM.finditer(pattern):
            regex += re.escape(pattern[pos:m.start()])
            kind = m.group(2) or "str"
            sub, conv = _CONVERTERS[kind]
            regex += "(?P<%s>%s)" % (m.group(1), sub)
            self.convert[m.group(1)] = conv
            pos = m.end()
        regex += re.escape(pattern[pos:]) + "$"
        self.regex = re.compile(regex) if self.convert else None


class App:
    """Routes and middleware; ``minginx-cffi serve --app module:app`` runs it."""

    def __init__(self):
        self._exact = {}      # path -> _Route (no parameters: a dict lookup)
        self._patterns = []   # _Route with parameters, in registration order
        self._middleware = []
        self._chain = None

    def route(self, path, methods=("GET",)):
        if not path.startswith("/"):
            raise ValueError("a route path starts with '/': %r" % path)
        methods = [m.upper() for m in methods]

        def register(fn):
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
                route.handlers["HEAD"] = fn   # HEAD is GET without the body
            return fn
        return register

    def get(self, path):
        return self.route(path, ["GET"])

    def post(self, path):
        return self.route(path, ["POST"])

    def middleware(self, fn):
        """``fn(request, call_next) -> Response``; the first registered is the outermost."""
        self._middleware.append(fn)
        self._chain = None
        return fn

    # -- dispatch, called by the bridge on the worker thread ----------------

    def _match(self, path):
        route = self._exact.get(path)
        if route is not None:
            return route, {}
        for route in self._patterns:
            m = route.regex.match(path)
            if m:
                return route, {k: route.convert[k](v) for k, v in m.groupdict().items()}
        return None, None

    def _build_chain(self):
        def call_handler(request):
            fn = request.handler
            return to_response(fn(request, **request.params), "handler %s" % fn.__name__)

        chain = call_handler
        for mw in reversed(self._middleware):
            chain = _wrap(mw, chain)
        self._chain = chain
        return chain


def _wrap(mw, call_next):
    def step(request):
        return to_response(mw(request, call_next), "middleware %s" % mw.__name__)
    return step


def make_dispatch(app):
    """The bridge's dispatch function for a native App."""
    exact, match = app._exact, app._match

    def dispatch(view):
        raw = view.raw_path
        path = urllib.parse.unquote(raw.decode("latin-1")) if b"%" in raw else raw.decode("latin-1")
        route = exact.get(path)
        params = {}
        if route is None:
            route, params = match(path)
            if route is None:
                return _dispatch.FALLTHROUGH
        fn = route.handlers.get(view.method)
        if fn is None:
            allow = sorted(route.handlers)
            body = b"Method Not Allowed\n"
            return (405, b"", [(b"Allow", ", ".join(allow).encode()),
                               (b"Content-Type", b"text/plain; charset=utf-8")], body, 0)
        request = Request(view, path, params)
        request.handler = fn
        try:
            if app._middleware:
                response = (app._chain or app._build_chain())(request)
            else:
                response = to_response(fn(request, **params), "handler %s" % fn.__name__)
        except HTTPError as e:
            response = Response(e.message if e.message is not None else
                                "%d\n" % e.status, e.status)
        except UnusableResponse as e:
            _dispatch.log.error("minginx: %s", e)
            response = Response("Internal Server Error\n", 500)
        return (response.status, b"", encode_headers(response.headers.items()), response.body, 0)

    return dispatch
