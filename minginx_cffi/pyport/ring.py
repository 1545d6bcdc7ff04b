"""ring.py - a trace ring (csrc/trace.c): one writer, the printer's drain, and GET /_minginx/trace.

The C ring is an array the writer overwrites in a circle; its reader (the
--trace printer) only moves its own tail, so the records it has printed stay
in the array until lapped, and /_minginx/trace reads them there.  Here the
same: recs keeps the latest MG_TRACE_RING records for the endpoint, and the
printer takes from a queue of its own (fresh), which drops its oldest as the
C reader counts the ones it was lapped on.
"""

import collections

MG_TRACE_RING = 16384  # records per ring (csrc/internal.h)


class TraceRing:
    __slots__ = ("recs", "fresh", "dropped")

    def __init__(self):
        self.recs = collections.deque(maxlen=MG_TRACE_RING)  # the latest, for /_minginx/trace
        self.fresh = collections.deque(maxlen=MG_TRACE_RING)  # not yet drained
        self.dropped = 0  # records the writer pushed out of fresh before a drain (C: lapped)

    def append(self, rec):
        self.recs.append(rec)
        if len(self.fresh) == MG_TRACE_RING:
            self.dropped += 1
        self.fresh.append(rec)

    def snapshot(self):
        """The latest records, oldest first (a copy: the writer may be another thread)."""
        return list(self.recs)

    def drain(self, out):
        """Move the records not yet drained to out."""
        fresh = self.fresh
        while fresh:
            out.append(fresh.popleft())
