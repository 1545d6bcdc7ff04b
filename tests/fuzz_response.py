"""Fuzz the handler response path through cffi with atheris (make fuzz).

The invariant, first. For every handler head (status, reason, fields), the C
writer (the test hook mg_test_head: what csrc/pycall.c mg_call_start runs on it,
head_check_status then fields_check, then csrc/h1.c's status and field lines,
fed by _dispatch.flatten_fields) and the
port's (pyport/response.py check_status, handler_fields, then pyport/h1.py head_text):
  - never crash; C answers 0 (sent) or -EINVAL (refused), nothing else;
  - agree on sending or refusing it (a TypeError from as_bytes is a refusal:
    both engines answer it with a 500);
  - when sent, write the same status line and header lines, and keep the same
    Content-Length (-1: none) and the same "Connection: close" flag;
and what is sent is a well-formed head (RFC 9112 2.1, 4, 5; RFC 9110 5.5, 5.6.2):
  - "HTTP/1.1" SP 3DIGIT SP reason CRLF, the reason with no CTL but HTAB;
  - each line token ":" SP value CRLF, the value with no CTL but HTAB and no
    whitespace at either end (so followed by CRLF it ends the head there and
    nothing in it reads as a second head);
  - none of the fields the server owns (Content-Length, Transfer-Encoding,
    Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Date, Server):
    the writer frames the body itself, and a Content-Length is at most one number;
  - every field the handler gave that the server does not own is there, in order.

The input bytes are read by a FuzzedDataProvider: a status (mostly 0..700), a
reason, up to 8 fields whose names and values are often picked from the ones
the writer treats specially (in any case, with whitespace around), how the list
is handed over (list, tuple, generator) and of which types (bytes, bytearray,
memoryview, a bytes subclass).

    python tests/fuzz_response.py -max_total_time=60 tests/fuzz_response_corpus

tests/test_response_writer.py runs check() over fixed tricky cases and seeded
random ones, without atheris, in every test run.
"""

import contextlib
import errno
import re
import sys

FUZZING = __name__ == "__main__"  # else imported by tests/test_response_writer.py
if FUZZING:
    import atheris

with atheris.instrument_imports() if FUZZING else contextlib.nullcontext():
    from minginx_cffi import _dispatch
    from minginx_cffi._native import ffi, lib
    from minginx_cffi.pyport import h1 as pyh1
    from minginx_cffi.pyport import response as pyresponse

OWNED = {
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"date",
    b"server",
}
STATUS_LINE = re.compile(rb"HTTP/1\.1 [2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*\r\n")
FIELD_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): "
    rb"((?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)\r\n"
)

NAMES = [
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Keep-Alive",
    b"Proxy-Connection",
    b"TE",
    b"Trailer",
    b"Upgrade",
    b"Date",
    b"Server",
    b"Host",
    b"Content-Type",
    b"Set-Cookie",
    b"X-A",
    b"Content-Length ",
    b"Content_Length",
    b"a:b",
]
VALUES = [
    b"0",
    b"5",
    b"05",
    b"  7\t",
    b"-1",
    b"+5",
    b"5, 5",
    b"1" * 18,
    b"1" * 19,
    b"",
    b"close",
    b"Close",
    b"keep-alive, close",
    b"foo close",
    b"close;x",
    b"closed",
    b"chunked",
    b"a\r\nSet-Cookie: x=1",
    b"a\nb",
    b"a\rb",
    b"a\0b",
    b"\t",
    b" x ",
    b"\x7f",
    b"\xff\x80",
    b"text/html; charset=utf-8",
]


class Bytes(bytes):
    """A bytes subclass, as a handler might hand over."""


class Int(int):
    """An int subclass (an IntEnum such as http.HTTPStatus is one), as an ASGI app might send."""


def c_head(status, reason, make_fields):
    """The C writer's answer: None (refused) or (head bytes, length, close)."""
    try:
        block, n = _dispatch.flatten_fields(make_fields())
    except TypeError:
        return None
    cap = 64 + len(reason) + len(block) + 2 * n  # as minginx.h promises
    out = ffi.new("char[]", cap)
    out_len, length, close = ffi.new("size_t *"), ffi.new("int64_t *"), ffi.new("int *")
    try:  # as _bridge.Bridge.start calls mg_call_start: what cffi will not take is a 500
        r = lib.mg_test_head(
            status, reason, len(reason), block, len(block), n, out, cap, out_len, length, close
        )
    except (TypeError, OverflowError):
        return None
    assert r in (0, -errno.EINVAL), ("mg_test_head answered", r)
    if r < 0:
        return None
    return ffi.buffer(out, out_len[0])[:], length[0], bool(close[0])


def port_head(status, reason, make_fields):
    """The port's answer, in the same shape (its head without Server and Date)."""
    try:
        pyresponse.check_status(status, reason)
        fields, length, close = pyresponse.handler_fields(make_fields())
    except (pyresponse.Refused, TypeError):
        return None
    return pyh1.head_text(status, reason, fields), length, bool(close)


def well_formed(head, fields):
    """The sent head is one status line and the handler's fields it may send, each a
    well-formed line, in order; followed by CRLF it ends there."""
    m = STATUS_LINE.match(head)
    assert m, ("a bad status line", head)
    pos, names = m.end(), []
    while pos < len(head):
        m = FIELD_LINE.match(head, pos)
        assert m, ("a bad header line", head[pos:])
        assert m.group(1).lower() not in OWNED, ("a field the server owns was sent", head)
        names.append(m.group(1))
        pos = m.end()
    assert (head + b"\r\n").find(b"\r\n\r\n") == len(head) - 2, ("a second head", head)
    want = [bytes(name) for name, _ in fields if bytes(name).lower() not in OWNED]
    assert names == want, ("fields lost or added", names, want)


def check(status, reason, fields, kind=list):
    """Both writers on one handler head; fields a list of (name, value), handed over as
    kind(fields) (list, tuple, or iter for a generator-like one-shot iterable)."""
    make_fields = lambda: kind(fields)  # noqa: E731 (a fresh one-shot iterable per engine)
    c = c_head(status, reason, make_fields)
    port = port_head(status, reason, make_fields)
    assert (c is None) == (port is None), (
        "C and the port disagree on refusing",
        status,
        reason,
        fields,
        kind,
        c,
        port,
    )
    if c is not None:
        assert c == port, ("C and the port write different heads", status, reason, fields, c, port)
        well_formed(c[0], fields)
    return c


def _recase(rng_choice, name):
    return bytes(c ^ 0x20 if 0x61 <= (c | 0x20) <= 0x7A and rng_choice() else c for c in name)


def from_bytes(data):
    """(status, reason, fields, kind) from fuzz bytes (atheris' FuzzedDataProvider)."""
    fdp = atheris.FuzzedDataProvider(data)
    pick = fdp.ConsumeIntInRange
    status = pick(0, 700) if pick(0, 7) else pick(-(2**31), 2**31 - 1)
    reason = fdp.ConsumeBytes(pick(0, 12))
    status = Int(status) if pick(0, 7) == 0 else status
    reason = Bytes(reason) if pick(0, 7) == 0 else reason
    fields = []
    for _ in range(pick(0, 8)):
        how = pick(0, 3)
        if how == 0:
            name = fdp.ConsumeBytes(pick(0, 8))
        else:
            name = _recase(fdp.ConsumeBool, NAMES[pick(0, len(NAMES) - 1)])
        how = pick(0, 3)
        if how == 0:
            value = fdp.ConsumeBytes(pick(0, 12))
        else:
            value = VALUES[pick(0, len(VALUES) - 1)]
            if how == 3:
                value = b" \t"[pick(0, 1) : pick(1, 2)] + value + b" \t"[pick(0, 1) : pick(1, 2)]
        wrap = (bytes, bytes, bytes, bytearray, memoryview, Bytes)[pick(0, 5)]
        fields.append((wrap(name), value if pick(0, 3) else wrap(value)))
    kind = (list, list, tuple, iter)[pick(0, 3)]
    return status, reason, fields, kind


def random_case(rng):
    """A case for the seeded run in tests/test_response_writer.py, drawn as from_bytes draws."""
    status = rng.choice([rng.randrange(0, 700), rng.choice([199, 200, 204, 304, 599, 600])])
    reason = (
        bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
        if rng.random() < 0.3
        else rng.choice([b"", b"OK", b"Fine\tthanks", b"\xe9t\xe9"])
    )
    status = Int(status) if rng.random() < 0.1 else status
    reason = Bytes(reason) if rng.random() < 0.1 else reason
    fields = []
    for _ in range(rng.randrange(6)):
        name = (
            _recase(lambda: rng.random() < 0.5, rng.choice(NAMES))
            if rng.random() < 0.8
            else bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
        )
        value = (
            rng.choice(VALUES)
            if rng.random() < 0.8
            else bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
        )
        if rng.random() < 0.3:
            value = rng.choice([b" ", b"\t", b""]) + value + rng.choice([b" ", b"\t", b""])
        fields.append((name, value))
    return status, reason, fields, rng.choice([list, tuple, iter])


def TestOneInput(data):
    check(*from_bytes(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
