"""Exercise 5, a third policy: --policy random (RDY_RANDOM), on both engines.  Connections
that become readable together are scheduled in an order that is neither always FIFO's
nor always LIFO's; the CLI takes it, the stats page names it, and requests are served."""

import json
import subprocess
import sys

import pytest
from exhelp import ENGINES, root, scheduled_orders, start  # noqa: F401 (fixtures)

from conftest import Conn


def test_the_cli_offers_it():
    out = subprocess.run(
        [sys.executable, "-m", "minginx_cffi", "serve", "--help"], stdout=subprocess.PIPE, check=True
    ).stdout.decode()
    assert "random" in out, "serve --help does not list --policy random"


@pytest.mark.parametrize("engine", ENGINES)
def test_random_order(start, engine):
    # five connections wake together, eight rounds: a coin flip per wake-up gives one of
    # 16 orders per round, each as likely; all eight rounds alike has odds of 16**-7
    orders = scheduled_orders(start, engine, "random", names="ABCDE", rounds=8)
    assert all(sorted(o.split()) == list("ABCDE") for o in orders), orders
    assert len(set(orders)) > 1, "every round in the same order: %s" % orders[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_served_and_named(start, engine):
    srv = start(engine, policy="random", workers=2, stats=True)
    c = Conn(srv.port)
    try:
        for _ in range(20):
            assert c.request("GET", "/hello.txt").body == b"hello world\n"
        st = c.request("GET", "/_minginx/stats")
        assert json.loads(st.body)["policy"] == "random"
    finally:
        c.close()
