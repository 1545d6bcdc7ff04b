"""--processes N as one server: every process's worker counters in one shared region.

Theory of operation.  Before forking, the parent maps one anonymous
MAP_SHARED region (``SharedStats(nslots, nworkers)``): one slot per server
process, each of ``nworkers`` entries laid out as csrc/minginx.h's mg_stats
(25 64-bit words: FIELDS below, in order), then one more row of ``nworkers``
entries holding the processes that have exited (``fold``).  Child i runs
``Server(..., stats_slot=(shared, i))``: each of its workers copies its own
counters into its entry once per loop iteration, before it sleeps, and when it
stops (csrc/worker.c, pyport/worker.py), so the per-request counters stay
plain increments in the worker's own memory.  Any process's
``GET /_minginx/stats`` then shows every slot and the total (csrc/stats.c,
pyport/conn.py), and the parent prints ONE table after its children exit
(``table()``); the children print none.

A master that starts a new generation of children (a reload) first calls
``fold(slots)`` for the slots of the children that exited: their counts go
into the retired row and the slots are zeroed for the next ones.

Words are written and read whole (C: relaxed atomics; here: an entry packed
into a private buffer, then copied in with one memcpy of aligned 8-byte words),
so no number is ever torn; a set read while workers run is a snapshot in
motion, as one process's stats already are.  Never struct.pack_into on the
region: it zeroes the whole entry before it writes the fields one by one, and a
process reading between saw every count of a serving process as 0.
"""

import mmap
import struct

from . import trace as _trace

__all__ = ["SharedStats", "FIELDS"]

#: mg_stats's words in order (csrc/minginx.h; _native checks they agree)
FIELDS = (
    "connections",
    "requests",
    "bytes_out",
    "switches",
    "yields.ready",
    "yields.read",
    "yields.write",
    "yields.python",
    "wakeups",
    "timeouts",
    "ready_max",
    "coroutines_alive",
    "coroutines_total",
    "stack_pool",
    "stacks_mapped",
    "cache_hits",
    "cache_misses",
    "cache_entries",
    "py_batches",
    "py_calls",
    "rejected",
    "handler_timeouts",
    "log_lines",
    "log_dropped",
    "parked",
)
#: gauges: what a process has now, not a count; an exited process has none of it
GAUGES = frozenset(("coroutines_alive", "stack_pool", "stacks_mapped", "cache_entries", "parked"))
_ENTRY = struct.Struct("=" + "".join("q" if f == "coroutines_alive" else "Q" for f in FIELDS))
ENTRY_SIZE = _ENTRY.size


def flatten(st):
    """A stats dict (yields nested, as Worker.stats() gives it) -> the entry's values."""
    y = st["yields"]
    return [y[f[7:]] if f.startswith("yields.") else st[f] for f in FIELDS]


def nest(values):
    """The entry's values -> a stats dict in Worker.stats()'s shape."""
    st = {"yields": {}}
    for f, v in zip(FIELDS, values):
        if f.startswith("yields."):
            st["yields"][f[7:]] = v
        else:
            st[f] = v
    return st


def add(a, b):
    """Two stats dicts summed (a new dict)."""
    return nest([x + y for x, y in zip(flatten(a), flatten(b))])


def zero():
    return nest([0] * len(FIELDS))


class SharedStats:
    """One region for nslots processes of nworkers workers each (and the retired row)."""

    def __init__(self, nslots, nworkers):
        if nslots < 1 or nworkers < 1:
            raise ValueError("SharedStats needs at least one slot and one worker")
        self.nslots = nslots
        self.nworkers = nworkers
        # anonymous and shared: the children forked after this see the same pages
        self.region = mmap.mmap(
            -1, (nslots + 1) * nworkers * ENTRY_SIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
        )

    def _offset(self, row, worker):
        return (row * self.nworkers + worker) * ENTRY_SIZE

    def _write(self, off, values):
        """One entry's words at off, each going from its old value to its new one
        (pack_into would zero them all first: see the module's docstring)."""
        self.region[off : off + ENTRY_SIZE] = _ENTRY.pack(*values)

    def publish(self, slot, worker, st):
        """The port's workers: worker's counters (a stats dict) into slot."""
        if worker < self.nworkers:
            self._write(self._offset(slot, worker), flatten(st))

    def read(self, slot):
        """Slot's workers, as stats dicts (slot == nslots: the retired row)."""
        return [nest(_ENTRY.unpack_from(self.region, self._offset(slot, i))) for i in range(self.nworkers)]

    def retired(self):
        return self.read(self.nslots)

    def fold(self, slots):
        """The processes in slots have exited: add their counts into the retired row
        (counters summed, ready_max the larger, gauges dropped) and zero the slots."""
        for i in range(self.nworkers):
            acc = list(_ENTRY.unpack_from(self.region, self._offset(self.nslots, i)))
            for s in slots:
                off = self._offset(s, i)
                for k, (f, v) in enumerate(zip(FIELDS, _ENTRY.unpack_from(self.region, off))):
                    if f == "ready_max":
                        acc[k] = max(acc[k], v)
                    elif f not in GAUGES:
                        acc[k] += v
                self._write(off, [0] * len(FIELDS))
            self._write(self._offset(self.nslots, i), acc)

    def snapshot(self, live=None):
        """{"processes": [per-slot totals], "retired": ..., "total": ...}; live (slot, stats
        list) puts a process's own live counters in place of its slot's last published."""
        processes = []
        total = zero()
        for s in range(self.nslots):
            workers = live[1] if live is not None and live[0] == s else self.read(s)
            slot = zero()
            for st in workers:
                slot = add(slot, st)
            processes.append(slot)
            total = add(total, slot)
        retired = zero()
        for st in self.retired():
            retired = add(retired, st)
        return {"processes": processes, "retired": retired, "total": add(total, retired)}

    def table(self):
        """The shutdown table of the whole server: a row per process and worker
        ("p1.w0"), the retired processes' row if any, and the total."""
        rows, labels = [], []
        for s in range(self.nslots):
            workers = self.read(s)
            if not any(any(flatten(st)) for st in workers):
                continue  # a slot no process has counted in (the master's other bank)
            for i, st in enumerate(workers):
                rows.append(st)
                labels.append("p%d.w%d" % (s, i))
        retired = zero()
        for st in self.retired():
            retired = add(retired, st)
        if any(flatten(retired)):
            rows.append(retired)
            labels.append("retired")
        return _trace.summary_table(rows, labels)

    def close(self):
        self.region.close()
