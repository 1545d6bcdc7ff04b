"""Exercise 1, add a header: every static file response carries
X-Content-Type-Options: nosniff, on both engines (GET and HEAD)."""

import pytest
from exhelp import ENGINES, root, start  # noqa: F401 (fixtures)

from conftest import Conn


@pytest.mark.parametrize("engine", ENGINES)
def test_static_files_say_nosniff(start, engine):
    srv = start(engine)
    c = Conn(srv.port)
    try:
        for path in ("/hello.txt", "/index.html", "/style.css"):
            r = c.request("GET", path)
            assert r.status == 200
            assert r.header_all("x-content-type-options") == ["nosniff"], (engine, path, r.raw_head)
        r = c.request("HEAD", "/hello.txt")
        assert r.header_all("x-content-type-options") == ["nosniff"], (engine, "HEAD", r.raw_head)
    finally:
        c.close()
