"""The coroutine runtime through cffi: create, yield, resume, destroy, pools, and FIFO vs LIFO order."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from minginx_cffi._native import RuntimeWorker

SWITCHES = ["ucontext"] + (["fast"] if platform.machine() == "x86_64" else [])


@pytest.fixture(params=SWITCHES, autouse=True)
def switch(request, monkeypatch):
    """Every runtime test runs with swapcontext and with the fast switch."""
    monkeypatch.setattr(
        RuntimeWorker.__init__, "__defaults__", RuntimeWorker.__init__.__defaults__[:-1] + (request.param,)
    )
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
    assert st["coroutines_alive"] == 0  # coroutine_destroy ran
    assert st["stack_pool"] == 1  # and its stack went to the pool


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
    assert log[:4] == [9, 2, 1, 0]  # after its first turn, the others go before it again


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
    p = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code, RuntimeWorker().switch],
        capture_output=True,
        timeout=60,
    )
    assert b"survived" not in p.stdout
    assert p.returncode != 0
    # reported in plain words, by our handler on its alternate signal stack
    assert b"overflowed its stack of 32768 bytes" in p.stderr


def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_pooled_stacks_give_their_pages_back():
    # 48 coroutines use 192 KiB of stack each at once (9 MiB touched); once
    # they finish their regions are pooled, and a pooled region must hold
    # neither the old bytes nor the RSS (csrc/coroutine.c: region_put).
    w = RuntimeWorker("fifo", stack_size=256 * 1024)
    try:
        before = rss_kib()
        for _ in range(48):
            w.spawn_deep(192 * 1024)
        w.run()
        assert w.stats()["stack_pool"] == 48
        grown_mib = (rss_kib() - before) / 1024
        assert grown_mib < 3, "pooled stacks still hold %.1f MiB" % grown_mib
    finally:
        w.free()


def run_script(code, *args):
    # a hang (a fault looping in a handler that returns) fails by the timeout
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)] + list(args), capture_output=True, timeout=30
    )


def test_a_foreign_fault_does_not_unhook_the_overflow_report():
    # A SIGSEGV that is not a coroutine's overflow goes to the handler that was
    # there before ours (here Python's), once; a later overflow must still be
    # reported by ours.  (Ours used to put the old handler back for good: the
    # overflow then looped in Python's handler and was never reported.)
    p = run_script(
        """
        import os, signal, sys
        from minginx_cffi._native import RuntimeWorker
        seen = []
        signal.signal(signal.SIGSEGV, lambda signum, frame: seen.append(signum))
        w = RuntimeWorker("fifo", stack_size=32 * 1024, switch=sys.argv[1])
        w.spawn(1)
        w.run()                                  # our handler is installed now
        os.kill(os.getpid(), signal.SIGSEGV)     # not an overflow: Python's handler runs
        print("forwarded", seen == [signal.SIGSEGV], flush=True)
        w.spawn_deep(256 * 1024)
        w.run()
        print("survived", flush=True)
    """,
        RuntimeWorker().switch,
    )
    assert b"forwarded True" in p.stdout, (p.stdout, p.stderr)
    assert b"survived" not in p.stdout
    assert b"overflowed its stack of 32768 bytes" in p.stderr


def test_a_fault_outside_coroutines_still_kills():
    # With no handler before ours, a fault that is not an overflow takes the
    # default action: the process dies of SIGSEGV, it does not loop or go on.
    p = run_script(
        """
        import ctypes, sys
        from minginx_cffi._native import RuntimeWorker
        w = RuntimeWorker("fifo", switch=sys.argv[1])
        w.spawn(1)
        w.run()
        ctypes.string_at(16)                     # a read of address 16
        print("survived", flush=True)
    """,
        RuntimeWorker().switch,
    )
    assert b"survived" not in p.stdout
    if os.environ.get("MINGINX_SANITIZED"):  # ASan's SEGV handler was there before ours
        assert p.returncode != 0 and b"AddressSanitizer: SEGV" in p.stderr, p.stderr
    else:
        assert p.returncode == -11, (p.returncode, p.stderr)
    assert b"overflowed" not in p.stderr
