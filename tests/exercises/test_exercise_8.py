"""Exercise 8, a per-worker counter on the stats page: "parks", how many times a worker
has parked an idle keep-alive connection (the gauge "parked" says how many are parked
now), in GET /_minginx/stats on both engines and in the page's counters table."""

import json
import socket

import pytest
from exhelp import ENGINES, TREE, read_response, root, start, wait_for  # noqa: F401 (fixtures)

from conftest import Conn


@pytest.mark.parametrize("engine", ENGINES)
def test_parks_counted(start, engine):
    srv = start(engine, stats=True, workers=2)

    def total(name):
        return sum(w[name] for w in srv.stats())

    conns = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(3)]
    try:
        for s in conns:
            s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(s).status == 200
        assert wait_for(lambda: total("parked") == 3), "three idle connections are parked"
        # one of them again: unparked, served, idle, parked a second time
        conns[0].sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(conns[0]).status == 200
        assert wait_for(lambda: total("parked") == 3 and total("coroutines_alive") == 0)
        c = Conn(srv.port)
        data = json.loads(c.request("GET", "/_minginx/stats").body)
        c.close()
        assert all("parks" in w for w in data["workers"]), "no parks in /_minginx/stats"
        assert sum(w["parks"] for w in data["workers"]) == 4, data["workers"]
        assert sum(w["parked"] for w in data["workers"]) == 3
    finally:
        for s in conns:
            s.close()


def test_the_page_shows_it():
    site = TREE / "minginx_cffi" / "site"
    assert "w.parks" in (site / "stats.js").read_text(), "stats.js does not put w.parks in the table"
    assert "<th>parks</th>" in (site / "stats.html").read_text(), "stats.html has no parks column"
