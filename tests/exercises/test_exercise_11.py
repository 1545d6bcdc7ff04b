"""Exercise 11, measure a cache: docs/exercises/cache.txt predicts the open-file cache's
counters after 50 requests for a file and 10 for a missing one, under three settings;
the check makes the requests on both engines and reads the counters."""

import pytest
from exhelp import ENGINES, TREE, root, sections, start  # noqa: F401 (fixtures)

from conftest import Conn

SETTINGS = {
    "default": {},
    "open-file-cache 0": {"open_file_cache": 0},
    "small-file-cache 0": {"small_file_cache": 0},
}


def predicted(name):
    out = {}
    for line in sections("cache.txt").get(name, []):
        key, _, value = line.partition("=")
        out[key.strip()] = int(value) if value.strip().isdigit() else None
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_the_prediction(start, engine, setting):
    srv = start(engine, root=str(TREE / "minginx_cffi" / "site"), **SETTINGS[setting])
    c = Conn(srv.port)
    try:
        for _ in range(50):
            assert c.request("GET", "/index.html").status == 200
        for _ in range(10):
            assert c.request("GET", "/nope.html").status == 404
    finally:
        c.close()
    (st,) = srv.stats()
    real = {"hits": st["cache_hits"], "misses": st["cache_misses"], "entries": st["cache_entries"]}
    assert predicted(setting) == real, "[%s] on %s: predicted %s, counted %s" % (
        setting,
        engine,
        predicted(setting),
        real,
    )
