"""The trace attacked: hostile request targets and methods in its text, the JSON of GET
/_minginx/trace and the --trace lines they reach, another connection's steps kept out of
it, and the two engines saying the same for the same bytes."""

import json

from conftest import Conn, wait_for
from minginx_cffi.trace import EV_HANDLER_DONE, EV_PARSE_HTTP


class Sink:
    def __init__(self):
        self.records = []

    def __call__(self, records):
        self.records.extend(records)


def trace_of(c):
    r = c.request("GET", "/_minginx/trace")
    assert r.status == 200
    return json.loads(r.body)  # valid JSON, whatever the requests before it held


def test_trace_endpoint_keeps_what_the_printer_drained(make_server):
    """--trace and --stats together: the printer drains the rings every 50 ms, and GET
    /_minginx/trace still shows the connection from its accept.  The C ring keeps its
    records after a drain (the reader only moves its tail); the port popped them from
    its deque, so the endpoint showed only what came after the last drain (an unpark
    on), and neither the acceptor's accept and dispatch."""
    sink = Sink()
    srv = make_server(stats=True, trace=sink, workers=1)
    c = Conn(srv.port)
    assert c.request("GET", "/hello.txt").status == 200
    # the printer has had this request's steps, acceptor's included
    assert wait_for(lambda: any(r[4] == EV_HANDLER_DONE for r in sink.records))
    data = trace_of(c)
    names = [e["event"] for e in data["events"]]
    assert names[:4] == ["accept", "dispatch", "fd_batch", "coroutine_create"], names
    done = [e for e in data["events"] if e["event"] == "handler_done"]
    assert [(e["method"], e["path"], e["status"]) for e in done] == [("GET", "/hello.txt", 200)]
    # and the printer still had every record once: nothing doubled by the endpoint's copy
    texts = [r[6] for r in sink.records if r[4] == EV_PARSE_HTTP]
    assert texts.count("GET /hello.txt") == 1
    c.close()
