"""--processes N reads as one server: shared counters (minginx_cffi/procstats.py), one
/_minginx/stats over every process, one shutdown table."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import Conn, free_port, wait_for
from minginx_cffi import procstats
from minginx_cffi.procstats import SharedStats

CLI = [sys.executable, "-m", "minginx_cffi"]
TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=TREE + os.pathsep + os.environ.get("PYTHONPATH", ""))
PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} \[\w+\] \[\d+\] ")


def counts(requests, **more):
    st = procstats.zero()
    st["requests"] = requests
    st.update(more)
    return st


def test_a_child_publishes_into_the_parents_region():
    shared = SharedStats(2, 2)
    pid = os.fork()
    if pid == 0:  # what a child's worker does, in another process
        shared.publish(1, 1, counts(7, coroutines_alive=3, ready_max=4))
        os._exit(0)
    os.waitpid(pid, 0)
    assert [st["requests"] for st in shared.read(1)] == [0, 7]
    snap = shared.snapshot(live=(0, [counts(2), counts(1)]))
    assert [p["requests"] for p in snap["processes"]] == [3, 7]
    assert snap["total"]["requests"] == 10
    shared.close()


def test_fold_retires_slots_for_the_next_generation():
    shared = SharedStats(2, 1)
    shared.publish(0, 0, counts(5, coroutines_alive=2, ready_max=3))
    shared.publish(1, 0, counts(4, ready_max=9))
    shared.fold([0, 1])
    assert shared.read(0)[0] == procstats.zero() and shared.read(1)[0] == procstats.zero()
    retired = shared.retired()[0]
    assert retired["requests"] == 9 and retired["ready_max"] == 9
    assert retired["coroutines_alive"] == 0  # a gauge: gone with its process
    shared.publish(0, 0, counts(1))  # the next generation counts on
    assert shared.snapshot()["total"]["requests"] == 10
    table = shared.table().splitlines()
    # slot 1 was folded and nobody counts in it now (a master's idle bank): not a row
    assert [r.split()[0] for r in table] == ["worker", "p0.w0", "retired", "all"]
    assert table[-1].split()[2] == "10"
    shared.close()


def test_a_slot_read_while_its_owner_publishes_is_never_torn():
    # The port's workers publish once per loop iteration, and another process's
    # /_minginx/stats reads their slot at any moment: every word read is one the owner
    # wrote, never a half-written or zeroed one (struct.pack_into on the region zeroes
    # the whole entry before it writes the fields: a serving process read as 0 requests)
    shared = SharedStats(1, 1)
    one, two = 0x0101010101010101, 0x0202020202020202
    shared.publish(0, 0, procstats.nest([one] * len(procstats.FIELDS)))
    pid = os.fork()
    if pid == 0:
        for _ in range(30000):
            shared.publish(0, 0, procstats.nest([two] * len(procstats.FIELDS)))
            shared.publish(0, 0, procstats.nest([one] * len(procstats.FIELDS)))
        os._exit(0)
    torn, reads = set(), 0
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        words = procstats.flatten(shared.read(0)[0])
        torn.update(w for w in words if w not in (one, two))
        reads += 1
    shared.close()
    assert not torn, (reads, sorted(torn)[:4])


def test_the_c_and_python_layouts_agree():
    from minginx_cffi._minginx import ffi

    assert ffi.sizeof("mg_stats") == procstats.ENTRY_SIZE


def test_stats_slot_is_checked():
    from minginx_cffi import Server, ServerError

    with pytest.raises(ServerError, match="stats_slot"):
        Server(stats_slot=(SharedStats(1, 1), 1))
    with pytest.raises(ServerError, match="stats_slot"):
        Server(stats_slot=("region", 0))


def test_single_process_stats_have_a_total(make_server, engine):
    srv = make_server(workers=2, stats=True)
    for _ in range(4):
        assert Conn(srv.port).request("GET", "/hello.txt").status == 200
    d = json.loads(Conn(srv.port).request("GET", "/_minginx/stats").body)
    assert d["total"]["requests"] == sum(w["requests"] for w in d["workers"]) == 4
    assert "processes" not in d


def test_processes_read_as_one_server(site_root, engine):
    port = free_port()
    p = subprocess.Popen(
        CLI
        + [
            "serve",
            "--port",
            str(port),
            "--root",
            str(site_root),
            "--engine",
            engine,
            "--workers",
            "1",
            "--processes",
            "2",
            "--stats",
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert "processes 2" in p.stdout.readline().decode()
        made = 0

        def stats():
            nonlocal made
            made += 1  # this request is counted once it is answered, not in its own JSON
            return json.loads(Conn(port).request("GET", "/_minginx/stats").body)

        # new connections until the kernel has given each process some (SO_REUSEPORT
        # spreads them by a hash of the client's port); a slot nothing was counted in
        # yet is not listed, so both must be there, not only every one listed
        def both_counted(d):
            return len(d["processes"]) == 2 and all(pr["requests"] for pr in d["processes"])

        for _ in range(400):
            assert Conn(port).request("GET", "/hello.txt").status == 200
            made += 1
            if made % 10 == 0 and both_counted(stats()):
                break
        d = stats()
        assert len(d["processes"]) == 2 and d["process"] in (0, 1)
        assert all(pr["requests"] > 0 for pr in d["processes"]), d["processes"]

        # any process's endpoint shows the whole server; the other process publishes
        # before it next sleeps, so its last answer may be a moment behind
        def whole(d):
            return d["total"]["requests"] == sum(pr["requests"] for pr in d["processes"]) == made - 1

        assert wait_for(lambda: whole(stats()), timeout=5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    lines = err.decode().splitlines()
    assert all(PREFIX.match(l) for l in lines), err
    text = [PREFIX.sub("", l) for l in lines]
    heads = [t for t in text if t.split()[:1] == ["worker"] and "reqs" in t]
    assert len(heads) == 1, err  # ONE table, the parent's
    cols = heads[0].split()
    rows = {t.split()[0]: t.split() for t in text if re.match(r"\s*(p\d\.w\d|all)\s", t)}
    assert set(rows) == {"p0.w0", "p1.w0", "all"}, err
    reqs = cols.index("reqs")
    assert int(rows["all"][reqs]) == made  # every request, every process
    assert int(rows["p0.w0"][reqs]) > 0 and int(rows["p1.w0"][reqs]) > 0
