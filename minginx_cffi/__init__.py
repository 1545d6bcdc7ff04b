"""minginx-cffi: a coroutine-based HTTP/1.1 server whose engine is a small C library driven through cffi."""

__version__ = "0.1.0"

from .app import App, Headers, HTTPError, Request, Response  # noqa: E402
from .server import Server, ServerError, serve  # noqa: E402

__all__ = [
    "App",
    "Headers",
    "HTTPError",
    "Request",
    "Response",
    "Server",
    "ServerError",
    "serve",
    "__version__",
]
