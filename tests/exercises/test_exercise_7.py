"""Exercise 7, port a C change: the pure-Python engine traces "idle_close" as the C
engine does (exercise 6): when a parked connection's keep-alive deadline passes and the
timer sweep closes it (its connection's id, its fd, and how many requests it served); not
when the client closes first."""

from exhelp import idle_close_trace, root, start  # noqa: F401 (fixtures)


def test_idle_close_on_the_port(start):
    closes, closed_id = idle_close_trace(start, "python")
    assert len(closes) == 1, "one idle_close expected (only the server's close), got %s" % closes
    (rec, line) = closes[0]
    assert rec[2] == closed_id, "the record names the parked connection's id"
    assert rec[3] > 0 and rec[5] == 1, "fd and requests served: %s" % (rec,)
    assert "idle_close" in line and "1 request" in line, line
