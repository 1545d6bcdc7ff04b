"""Exercise 4, switch the policy: docs/exercises/policy.txt predicts the order in which
three connections that became readable while the worker was busy are scheduled, under
--policy fifo and lifo; the check makes it happen over real sockets, on both engines."""

import pytest
from exhelp import ENGINES, root, scheduled_orders, sections, start  # noqa: F401 (fixtures)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", ["fifo", "lifo"])
def test_the_prediction(start, engine, policy):
    predicted = [" ".join(line.split()) for line in sections("policy.txt").get(policy, [])]
    (real,) = scheduled_orders(start, engine, policy)
    assert [real] == predicted, "--policy %s on %s: predicted %s, scheduled %s" % (
        policy,
        engine,
        predicted,
        real,
    )
