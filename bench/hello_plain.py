"""The hello-world case (13 bytes of text/plain) as bare WSGI, ASGI and RSGI callables.

No imports beyond the standard library, so every server's own environment can load it:
    minginx-cffi serve --wsgi bench.hello_plain:wsgi
    gunicorn -k gevent bench.hello_plain:wsgi
    uvicorn --loop uvloop --http httptools bench.hello_plain:asgi
    granian --interface rsgi bench.hello_plain:rsgi
"""

BODY = b"Hello, world!"


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


async def rsgi(scope, proto):
    proto.response_bytes(200, [("content-type", "text/plain")], BODY)
