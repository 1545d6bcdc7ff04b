"""The coroutine runtime through cffi: create, yield, resume, destroy, pools, and FIFO vs LIFO order."""

import subprocess
import sys
import textwrap

import platform

import pytest

from minginx_cffi._native import RuntimeWorker

SWITCHES = ["ucontext"] + (["fast"] if platform.machine() == "x86_64" else [])


@pytest.fixture(params=SWITCHES, autouse=True)
def switch(request, monkeypatch):
    """Every runtime test runs with swapcontext and with the fast switch."""
    monkeypatch.setattr(RuntimeWorker.__init__, "__defaults__",
                        RuntimeWorker.__init__.__defaults__[:-1] + (request.param,))
    return request.param


def test_switch_in_force(switch):
    w = RuntimeWorker("fifo")
    assert w.switch == switch
    w.free()


def run_worker(policy, plan):
    w = RuntimeWorker(policy)
    try:
        for ident, yields in plan:
            w.spawn(ident, yields)
        switches = w.run()
        return w.log, switches, w.stats()
    finally:
        w.free()


def test_create_run_destroy():
    log, switches, st = run_worker("fifo", [(7, 0)])
    assert log == [7]
    assert switches == 1
    assert st["coroutines_total"] == 1
    assert st["coroutines_alive"] == 0          # coroutine_destroy ran
    assert st["stack_pool"] == 1                # and its stack went to the pool


def test_yield_and_resume_keep_local_state():
    # each coroutine logs its id once per run: 3 yields = 4 runs, in order
    log, switches, st = run_worker("fifo", [(1, 3)])
    assert log == [1, 1, 1, 1]
    assert switches == 4
    assert st["yields"]["ready"] == 3
    assert st["coroutines_alive"] == 0


def test_fifo_order_is_round_robin():
    log, _, _ = run_worker("fifo", [(0, 1), (1, 1), (2, 1)])
    assert log == [0, 1, 2, 0, 1, 2]


def test_lifo_order_runs_newest_first():
    # LIFO: the newest ready coroutine runs first (2, 1, 0); one that yields to
    # let the others run goes behind them, under LIFO too, so nobody starves.
    log, _, _ = run_worker("lifo", [(0, 1), (1, 1), (2, 1)])
    assert log == [2, 1, 0, 2, 1, 0]


def test_a_yielding_coroutine_cannot_starve_the_others_under_lifo():
    # the 1 MiB sendfile case: one coroutine yields many times, three others once
    log, _, _ = run_worker("lifo", [(0, 0), (1, 0), (2, 0), (9, 50)])
    assert log[:4] == [9, 2, 1, 0]   # after its first turn, the others go before it again


def test_stacks_are_pooled_not_remapped():
    w = RuntimeWorker("fifo")
    try:
        for round_ in range(5):
            for i in range(50):
                w.spawn(i, 1)
            w.run()
        st = w.stats()
        assert st["coroutines_total"] == 250
        assert st["coroutines_alive"] == 0
        # 50 at once at most, so 50 mappings served all 250 coroutines
        assert st["stacks_mapped"] == 50
        assert st["stack_pool"] == 50
    finally:
        w.free()


def test_deep_but_fitting_stack_use():
    w = RuntimeWorker("fifo", stack_size=256 * 1024)
    try:
        w.spawn_deep(128 * 1024)
        assert w.run() == 1
        assert w.stats()["coroutines_alive"] == 0
    finally:
        w.free()


def test_invalid_arguments_raise():
    with pytest.raises(OSError):
        RuntimeWorker("fifo", stack_size=1024)


def test_floating_point_state_survives_switches():
    # the fast switch saves MXCSR and the x87 control word like a call would
    w = RuntimeWorker("fifo")
    for i in range(20):
        w.spawn(i, 5)
    w.run()
    assert 0.1 + 0.2 == 0.30000000000000004 and 1.0 / 3.0 * 3.0 == 1.0
    w.free()


def test_stack_overflow_hits_the_guard_page():
    # Crash-prone: run in a subprocess.  Using more stack than the coroutine
    # has must fault on the guard page (SIGSEGV), never corrupt memory.
    code = textwrap.dedent("""
        import sys
        from minginx_cffi._native import RuntimeWorker
        w = RuntimeWorker("fifo", stack_size=32 * 1024, switch=sys.argv[1])
        w.spawn_deep(256 * 1024)
        w.run()
        print("survived")
    """)
    p = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, RuntimeWorker().switch],
                       capture_output=True, timeout=60)
    assert b"survived" not in p.stdout
    assert p.returncode != 0
    # reported in plain words, by our handler on its alternate signal stack
    assert b"overflowed its stack of 32768 bytes" in p.stderr
