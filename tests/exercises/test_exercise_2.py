"""Exercise 2, add a route: docs/exercises/time_app.py answers GET /time with the server's
time as JSON while the demo site is served next to it, on both engines; the trace of the
request shows the handler's turn on the worker's own stack, a yield (python)."""

import importlib.util
import json
import time

import pytest
from exhelp import ENGINES, EXERCISES, TREE, Sink, root, start, wait_for  # noqa: F401 (fixtures)

from conftest import Conn
from minginx_cffi.trace import EV_YIELD


def load_app():
    spec = importlib.util.spec_from_file_location("time_app", EXERCISES / "time_app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


@pytest.mark.parametrize("engine", ENGINES)
def test_time_route_next_to_the_site(start, engine):
    sink = Sink()
    srv = start(engine, app=load_app(), root=str(TREE / "minginx_cffi" / "site"), trace=sink)
    c = Conn(srv.port)
    try:
        before = time.time()
        r = c.request("GET", "/time")
        after = time.time()
        assert r.status == 200, "GET /time: %r" % r
        assert r.header("content-type", "").startswith("application/json")
        t = json.loads(r.body)["time"]
        assert isinstance(t, (int, float)) and before - 1 <= t <= after + 1, t
        site = c.request("GET", "/index.html")
        assert site.status == 200 and b"minginx" in site.body.lower()
    finally:
        c.close()
    # the handler ran: its coroutine yielded MG_YIELD_PYTHON (3) to the worker loop
    assert wait_for(lambda: any(r[4] == EV_YIELD and r[5] == 3 for r in sink.records))
